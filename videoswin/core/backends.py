"""The Keras backends, and how entry points choose one before Keras is imported.

Keras 3 picks TensorFlow when KERAS_BACKEND is unset; this project defaults to torch.
"""

import importlib.util
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
        actual = sys.modules["keras"].backend.backend()
        if actual != backend:
            raise SystemExit(f"keras was imported with backend {actual!r} before "
                             f"KERAS_BACKEND={backend!r} could take effect")
    return backend


def installed_backends():
    """The Keras backends whose framework imports here, in `BACKENDS` order."""
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def parse_backends(text):
    """A `--backends` value ('torch,jax', 'none', or None for every installed one) as a list;
    `ValueError` naming the unknown or missing ones."""
    if text is None:
        return installed_backends()
    if text.strip().lower() in ("", "none"):
        return []
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(BACKENDS)}, or 'none'")
    missing = [b for b in names if b not in installed_backends()]
    if missing:
        raise ValueError(f"backend(s) {', '.join(missing)} not installed here")
    return names
