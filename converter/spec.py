"""What a config says about one published model: the data the rest of the converter uses.

`converter.config.load_spec(path)` builds a `ModelSpec` from an mmengine config file.
"""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TestPipeline:
    """The official test-time sampling and preprocessing facts."""

    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 4
    uniform_sampling: bool = False      # SSv2: UniformSample instead of SampleFrames
    short_side: int = 224               # Resize scale=(-1, 224)
    crop_size: int = 224
    num_crops: int = 3                  # ThreeCrop=3, CenterCrop=1
    mean: tuple = (123.675, 116.28, 103.53)
    std: tuple = (58.395, 57.12, 57.375)
    average_clips: str = "prob"


@dataclass(frozen=True)
class Checkpoint:
    filename: str | None = None
    url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Metrics:
    top1: float | None = None
    top5: float | None = None
    source: str | None = None           # URL of the page the figures come from
    views: str | None = None            # e.g. "32x4x3" (frames x clips x crops)


@dataclass(frozen=True)
class ModelSpec:
    name: str                           # config stem, e.g. swin_tiny_patch244_window877_kinetics400_1k
    path: str                           # the config file
    embed_dim: int = 96
    depths: tuple = (2, 2, 6, 2)
    num_heads: tuple = (3, 6, 12, 24)
    patch_size: tuple = (2, 4, 4)
    window_size: tuple = (8, 7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_path_rate: float = 0.1
    patch_norm: bool = True
    in_channels: int = 3
    num_classes: int | None = 400       # None: backbone-only config
    head_dropout: float = 0.5
    dataset: str | None = None          # kinetics400 | kinetics600 | kinetics700 | sthv2 | ...
    pretrain: str | None = None         # e.g. "ImageNet-1K", "ImageNet-22K"
    arch_name: str | None = None        # tiny | small | base | large | None (custom)
    origin: str = "official"            # official (0.x) | mmaction2 (1.x)
    pipeline: TestPipeline = field(default_factory=TestPipeline)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    metrics: Metrics = field(default_factory=Metrics)

    def backbone_kwargs(self):
        """Keyword arguments for `videoswin.VideoSwinBackbone` (without input_shape)."""
        return dict(embed_dim=self.embed_dim, depths=tuple(self.depths),
                    num_heads=tuple(self.num_heads), patch_size=tuple(self.patch_size),
                    window_size=tuple(self.window_size), mlp_ratio=self.mlp_ratio,
                    qkv_bias=self.qkv_bias, qk_scale=self.qk_scale,
                    drop_path_rate=self.drop_path_rate, patch_norm=self.patch_norm,
                    input_shape=(None, None, None, self.in_channels))

    @property
    def clip_shape(self):
        """(T, H, W) of one test view."""
        return (self.pipeline.clip_len, self.pipeline.crop_size, self.pipeline.crop_size)

    def to_dict(self):
        return asdict(self)


def spec_from_dict(data):
    """Inverse of `ModelSpec.to_dict` (e.g. the `spec` recorded in a manifest)."""
    data = dict(data)
    nested = {"pipeline": TestPipeline, "checkpoint": Checkpoint, "metrics": Metrics}
    for key, kind in nested.items():
        data[key] = kind(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in (data.get(key) or {}).items()})
    for key in ("depths", "num_heads", "patch_size", "window_size"):
        data[key] = tuple(data[key])
    return ModelSpec(**data)
