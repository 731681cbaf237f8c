"""Keras backend choice for entry points: honour KERAS_BACKEND, otherwise torch.

Keras 3 picks TensorFlow when KERAS_BACKEND is unset; this project defaults to torch.
Must run before anything imports keras, so this module imports nothing heavy.
"""

import os
import sys

BACKENDS = ("torch", "jax", "tensorflow")
DEFAULT_BACKEND = "torch"


def select_backend(default=DEFAULT_BACKEND):
    """Set KERAS_BACKEND (if unset) and return the backend name in use."""
    backend = os.environ.setdefault("KERAS_BACKEND", default)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    if backend not in BACKENDS:
        raise SystemExit(f"KERAS_BACKEND={backend!r} is not supported; use one of {BACKENDS}")
    if "keras" in sys.modules:
        import keras

        actual = keras.backend.backend()
        if actual != backend:
            raise SystemExit(f"keras was imported with backend {actual!r} before "
                             f"KERAS_BACKEND={backend!r} could take effect")
    return backend
