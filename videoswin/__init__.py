"""Video Swin Transformer for Keras 3 (TensorFlow, JAX, PyTorch backends).

`import videoswin` imports no Keras: the pure facts live in `videoswin.core`, and the Keras
classes (`videoswin.VideoSwinB`, ...) load from `videoswin.model` on first access (PEP 562),
so set KERAS_BACKEND before touching them. Keras finds the classes a `.keras` file names
only once they are registered: `import videoswin.model` (or any use of a model class) does it.
"""

import importlib
import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up lines (CPU feature notes) are INFO messages: hide INFO only,
# unless the user chose a level. Takes effect if TensorFlow is imported after this.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# public name -> module that defines it
_LAZY = {
    "VideoSwinBackbone": "videoswin.model.backbone",
    "VideoSwinClassifier": "videoswin.model.classifier",
    "VideoSwinT": "videoswin.model.variants",
    "VideoSwinS": "videoswin.model.variants",
    "VideoSwinB": "videoswin.model.variants",
    "VideoSwinL": "videoswin.model.variants",
    "freeze_stages": "videoswin.model.finetune",
    "without_optimizer": "videoswin.model.finetune",
    "ARCHS": "videoswin.core.archs",
    "PRESETS": "videoswin.core.presets",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'videoswin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
