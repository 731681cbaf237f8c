"""Video Swin Transformer for Keras 3 (TensorFlow, JAX, PyTorch backends)."""

from videoswin.backbone import VideoSwinBackbone
from videoswin.classifier import (VideoSwinB, VideoSwinClassifier, VideoSwinL, VideoSwinS,
                                  VideoSwinT)
from videoswin.presets import ARCHS

__version__ = "0.1.0"

__all__ = ["ARCHS", "VideoSwinBackbone", "VideoSwinClassifier", "VideoSwinT", "VideoSwinS",
           "VideoSwinB", "VideoSwinL", "__version__"]
