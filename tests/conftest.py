"""Test session set-up: choose the Keras backend before anything imports keras.

scripts/test.sh runs the suite once per backend. Tests marked `backend_independent`
(pure PyTorch or config parsing) run only in the torch pass; the others skip them,
saying so.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

BACKEND = os.environ["KERAS_BACKEND"]

if BACKEND == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # The same tiny models are compiled again and again, in this process and in the CLIs
    # and parity workers the tests start: one persistent XLA cache for the session (and its
    # subprocesses, through the environment) compiles each once. Results are unchanged.
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="videoswin-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backend_independent: touches no Keras backend; runs in the torch pass only")


def pytest_report_header(config):
    import keras

    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "torch":
        return
    skip = pytest.mark.skip(reason=f"backend-independent test: runs in the torch pass, "
                                   f"not again under KERAS_BACKEND={BACKEND}")
    for item in items:
        if "backend_independent" in item.keywords:
            item.add_marker(skip)
