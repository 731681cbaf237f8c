"""Test session set-up: choose the Keras backend before anything imports keras."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
# Small CPU machines: keep TF/XLA from oversubscribing the cores.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_report_header(config):
    import keras

    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"
