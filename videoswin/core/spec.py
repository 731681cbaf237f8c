"""`ModelSpec`: what a config says about one published model.

`converter.config.load_spec(path)` builds one from a config file; a manifest records it
(`Manifest.spec`). Pure data plus the figures derived from it (parameters, MACs).
"""

from dataclasses import asdict, dataclass, field

from videoswin.core import flops
from videoswin.core.pipelines import TestPipeline


@dataclass(frozen=True)
class CheckpointSource:
    """Where the published checkpoint of a config comes from."""

    filename: str | None = None
    url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Metrics:
    """Published accuracy of a config (percent)."""

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
    dataset: str | None = None          # a key of videoswin.core.datasets.DATASETS, or None
    pretrain: str | None = None         # e.g. "ImageNet-1K", "ImageNet-22K"
    arch_name: str | None = None        # tiny | small | base | large | None (custom)
    origin: str = "official"            # official (0.x) | mmaction2 (1.x)
    pipeline: TestPipeline = field(default_factory=TestPipeline)
    checkpoint: CheckpointSource = field(default_factory=CheckpointSource)
    metrics: Metrics = field(default_factory=Metrics)

    def architecture(self):
        """The settings shared by the Keras backbone and the cost model."""
        return dict(embed_dim=self.embed_dim, depths=tuple(self.depths),
                    num_heads=tuple(self.num_heads), patch_size=tuple(self.patch_size),
                    window_size=tuple(self.window_size), mlp_ratio=self.mlp_ratio)

    def backbone_kwargs(self):
        """Keyword arguments for `videoswin.VideoSwinBackbone`."""
        return dict(self.architecture(), qkv_bias=self.qkv_bias, qk_scale=self.qk_scale,
                    drop_path_rate=self.drop_path_rate, patch_norm=self.patch_norm,
                    input_shape=(None, None, None, self.in_channels))

    @property
    def clip_shape(self):
        """(T, H, W) of one test view."""
        return (self.pipeline.clip_len, self.pipeline.crop_size, self.pipeline.crop_size)

    def params(self, with_head=True):
        """Parameters of the Keras classifier (or of the backbone alone)."""
        return flops.count_params(**self.architecture(), qkv_bias=self.qkv_bias,
                                  patch_norm=self.patch_norm, in_channels=self.in_channels,
                                  num_classes=self.num_classes if with_head else None)

    def macs(self, with_head=True):
        """`flops.MacCount` of one test view (the config's clip)."""
        return flops.count_macs(self.clip_shape, **self.architecture(),
                                in_channels=self.in_channels,
                                num_classes=self.num_classes if with_head else None)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Inverse of `to_dict` (e.g. the `spec` recorded in a manifest)."""
        data = dict(data)
        data["pipeline"] = TestPipeline.from_dict(data.get("pipeline"))
        for key, kind in (("checkpoint", CheckpointSource), ("metrics", Metrics)):
            data[key] = kind(**(data.get(key) or {}))
        for key in ("depths", "num_heads", "patch_size", "window_size"):
            data[key] = tuple(data[key])
        return cls(**data)
