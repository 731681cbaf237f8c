"""Conversion: official Video Swin checkpoints -> Keras 3 artifacts, with proofs.

config -> layouts/checkpoint -> mapping -> artifacts -> parity (against `upstream`, mmaction2's
own module, or `reference`, our PyTorch model). Importing this package does not import Keras;
entry points call `videoswin.core.backends.select_backend()` first.
"""
