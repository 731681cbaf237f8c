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


def keras_free(name):
    """`videoswin.<name>` (a pure-Python module such as presets or flops), loaded from its
    file without running `videoswin/__init__`, which imports keras: config parsing and the
    zoo must not pick the backend or pay for keras."""
    import importlib.util

    qualified = f"videoswin.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    package = importlib.util.find_spec("videoswin")
    path = os.path.join(list(package.submodule_search_locations)[0], f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_videoswin_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
