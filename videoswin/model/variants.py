"""`VideoSwinT`, `VideoSwinS`, `VideoSwinB`, `VideoSwinL`: the named architectures."""

from videoswin.core.archs import arch
from videoswin.model.backbone import VideoSwinBackbone
from videoswin.model.classifier import VideoSwinClassifier


def _make_variant(arch_name, label):
    def constructor(num_classes=400, *, input_shape=(None, None, None, 3), window_size=(8, 7, 7),
                    include_top=True, dropout=0.5, activation=None, **backbone_kwargs):
        backbone = VideoSwinBackbone(**arch(arch_name), input_shape=input_shape,
                                     window_size=window_size, **backbone_kwargs)
        if not include_top:
            return backbone
        return VideoSwinClassifier(backbone, num_classes, dropout=dropout,
                                   activation=activation)

    constructor.__name__ = constructor.__qualname__ = f"VideoSwin{label}"
    constructor.__module__ = __name__
    constructor.__doc__ = (
        f"Video Swin-{label} ({arch_name}): a `VideoSwinClassifier`, or the backbone alone "
        "when `include_top=False`. Extra keyword arguments go to `VideoSwinBackbone` "
        "(patch_size, drop_path_rate, include_preprocessing, ...)."
    )
    return constructor


VideoSwinT = _make_variant("tiny", "T")
VideoSwinS = _make_variant("small", "S")
VideoSwinB = _make_variant("base", "B")
VideoSwinL = _make_variant("large", "L")
