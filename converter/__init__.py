"""Conversion toolkit: official Video Swin checkpoints -> Keras 3 artifacts, with proofs.

Importing this package does not import Keras; entry points call `select_backend()` first.
"""

from converter.backend import select_backend

__all__ = ["select_backend"]
