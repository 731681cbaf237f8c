"""The Keras model: layers (windows, attention, block, embedding, stage, preprocessing), the
backbone, the classifier, the named variants, preset loading and fine-tuning helpers."""

from videoswin.model.backbone import VideoSwinBackbone
from videoswin.model.classifier import VideoSwinClassifier
from videoswin.model.finetune import freeze_stages, without_optimizer
from videoswin.model.variants import VideoSwinB, VideoSwinL, VideoSwinS, VideoSwinT

__all__ = ["VideoSwinBackbone", "VideoSwinClassifier", "VideoSwinT", "VideoSwinS",
           "VideoSwinB", "VideoSwinL", "freeze_stages", "without_optimizer"]
