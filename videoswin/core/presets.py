"""The published Video Swin models as presets: data plus metadata, keras-hub style.

Each preset is one config of `configs/recognition/swin/` (same name) published on the Hub as
`videoswin/<name>`. `VideoSwinClassifier.from_preset(name)` loads it; a test checks every
entry against its config.
"""

from dataclasses import dataclass

from videoswin.core import archs, datasets, flops

HUB_ORG = "videoswin"
CONFIG_DIR = "configs/recognition/swin"
_OFFICIAL = "https://github.com/SwinTransformer/Video-Swin-Transformer/blob/master/README.md"
_MMACTION2 = ("https://github.com/open-mmlab/mmaction2/blob/main/configs/recognition/swin/"
              "metafile.yml")
_ORIGINS = {"official": "the official release v1.0.4", "mmaction2": "the mmaction2 1.x zoo"}


@dataclass(frozen=True)
class Preset:
    name: str                           # config stem and Hub repository name
    arch: str                           # a key of videoswin.core.archs.ARCHS
    window_size: tuple
    dataset: str                        # a key of videoswin.core.datasets.DATASETS
    num_classes: int
    pretrain: str
    origin: str                         # official | mmaction2
    top1: float | None                  # published accuracy, percent
    top5: float | None
    metrics_source: str

    @property
    def hub_handle(self):
        return f"hf://{HUB_ORG}/{self.name}"

    @property
    def config_path(self):
        """The config, relative to the repository root."""
        return f"{CONFIG_DIR}/{self.name}.py"

    @property
    def params(self):
        """Parameters of the classifier (analytic; equals Keras's count_params())."""
        return flops.count_params(**archs.arch(self.arch), window_size=self.window_size,
                                  num_classes=self.num_classes)

    @property
    def description(self):
        window = "x".join(map(str, self.window_size))
        return (f"{archs.LABELS[self.arch]}, window {window}, "
                f"{datasets.DATASETS[self.dataset].title} ({self.num_classes} classes), "
                f"{self.pretrain} pretraining; from {_ORIGINS[self.origin]}.")


PRESETS = {p.name: p for p in (
    Preset('swin_tiny_patch244_window877_kinetics400_1k',
           arch='tiny', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-1K', origin='official',
           top1=78.8, top5=93.6,
           metrics_source=_OFFICIAL + '#kinetics-400'),
    Preset('swin_small_patch244_window877_kinetics400_1k',
           arch='small', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-1K', origin='official',
           top1=80.6, top5=94.5,
           metrics_source=_OFFICIAL + '#kinetics-400'),
    Preset('swin_base_patch244_window877_kinetics400_1k',
           arch='base', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-1K', origin='official',
           top1=80.6, top5=94.6,
           metrics_source=_OFFICIAL + '#kinetics-400'),
    Preset('swin_base_patch244_window877_kinetics400_22k',
           arch='base', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-22K', origin='official',
           top1=82.7, top5=95.5,
           metrics_source=_OFFICIAL + '#kinetics-400'),
    Preset('swin_base_patch244_window877_kinetics600_22k',
           arch='base', window_size=(8, 7, 7), dataset='kinetics600', num_classes=600,
           pretrain='ImageNet-22K', origin='official',
           top1=84.0, top5=96.5,
           metrics_source=_OFFICIAL + '#kinetics-600'),
    Preset('swin_base_patch244_window1677_kinetics400_22k',
           arch='base', window_size=(16, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-22K', origin='official',
           top1=None, top5=None,
           metrics_source=_OFFICIAL + '#something-something-v2'),
    Preset('swin_base_patch244_window1677_sthv2',
           arch='base', window_size=(16, 7, 7), dataset='sthv2', num_classes=174,
           pretrain='Kinetics-400', origin='official',
           top1=69.6, top5=92.7,
           metrics_source=_OFFICIAL + '#something-something-v2'),
    Preset('swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb',
           arch='tiny', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-1K', origin='mmaction2',
           top1=78.9, top5=93.77,
           metrics_source=_MMACTION2),
    Preset('swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb',
           arch='small', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-1K', origin='mmaction2',
           top1=80.54, top5=94.46,
           metrics_source=_MMACTION2),
    Preset('swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb',
           arch='base', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-1K', origin='mmaction2',
           top1=80.57, top5=94.49,
           metrics_source=_MMACTION2),
    Preset('swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb',
           arch='large', window_size=(8, 7, 7), dataset='kinetics400', num_classes=400,
           pretrain='ImageNet-22K', origin='mmaction2',
           top1=83.46, top5=95.91,
           metrics_source=_MMACTION2),
    Preset('swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb',
           arch='large', window_size=(8, 7, 7), dataset='kinetics700', num_classes=700,
           pretrain='ImageNet-22K', origin='mmaction2',
           top1=75.92, top5=92.72,
           metrics_source=_MMACTION2),
    Preset('swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb',
           arch='small', window_size=(8, 7, 7), dataset='kinetics710', num_classes=710,
           pretrain='ImageNet-1K', origin='mmaction2',
           top1=76.9, top5=92.96,
           metrics_source=_MMACTION2),
)}
