"""The oracle: mmaction2 1.2.0's own `SwinTransformer3D`, which we did not write.

mmaction2's package `__init__` chain breaks here (its `models` package imports a missing
`localizers/drn`), so `load_swin_module()` execs `mmaction/models/backbones/swin.py` by
file path (`converter.upstream.swin_module`).

`make_oracle` wraps the backbone with an I3D-style head and randomises every parameter;
the exporters give its weights in the official 0.x, mmaction2 1.x and torchvision layouts.
"""

import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from converter import layouts, upstream
from converter.synthetic import random_value


def randomize_(module, seed):
    """Overwrite every parameter of `module` in place (buffers untouched) with distinct
    seeded values (`converter.synthetic.random_value`); returns it."""
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(random_value(name, param.shape, generator))
    return module


def swin_source_path():
    """Path of mmaction2's `models/backbones/swin.py`."""
    path = upstream.source_path()
    if path is None:
        raise ImportError("mmaction2 is not installed (needed for the oracle)")
    return Path(path)


def load_swin_module():
    """mmaction2's swin.py as a standalone module (cached; see `converter.upstream`)."""
    return upstream.swin_module()


class _Head(nn.Module):
    """I3DHead at inference: mean over T, H, W (AdaptiveAvgPool3d), dropout, Linear."""

    def __init__(self, in_features, num_classes, dropout=0.5):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(in_features, num_classes)

    def forward(self, x_ncthw):
        return self.fc_cls(self.dropout(self.avg_pool(x_ncthw).flatten(1)))


class OracleModel(nn.Module):
    """mmaction2 `SwinTransformer3D` (`backbone`) + I3D head (`cls_head`), eval mode."""

    def __init__(self, backbone, num_classes, num_features):
        super().__init__()
        self.backbone = backbone
        self.cls_head = _Head(num_features, num_classes) if num_classes is not None else None
        self.num_stages = len(backbone.depths)
        self.eval()

    @property
    def final_norm(self):
        """Name of the backbone's final norm in mmaction2 1.x (`norm3` for 4 stages)."""
        return f"norm{self.num_stages - 1}"

    def forward(self, x_ncthw):
        """(B, C, T, H, W) -> (features NCTHW, logits or None)."""
        features = self.backbone(x_ncthw)
        logits = self.cls_head(features) if self.cls_head is not None else None
        return features, logits


def make_oracle(embed_dim, depths, num_heads, patch_size=(2, 4, 4), window_size=(8, 7, 7),
                num_classes=400, seed=0, mlp_ratio=4.0, qkv_bias=True, patch_norm=True,
                qk_scale=None, in_channels=3, randomize=True):
    """The real mmaction2 model with every parameter randomised (seeded), float32, eval mode."""
    swin = load_swin_module()
    with warnings.catch_warnings():     # its torch.meshgrid call lacks `indexing=`
        warnings.filterwarnings("ignore", message=".*meshgrid.*", category=UserWarning)
        backbone = swin.SwinTransformer3D(
            arch=dict(embed_dims=embed_dim, depths=list(depths), num_heads=list(num_heads)),
            pretrained=None, pretrained2d=False, patch_size=tuple(patch_size),
            in_channels=in_channels, window_size=tuple(window_size), mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, qk_scale=qk_scale, drop_path_rate=0.0, patch_norm=patch_norm,
            out_indices=(len(depths) - 1,))
    oracle = OracleModel(backbone, num_classes, embed_dim * 2 ** (len(depths) - 1)).float()
    if randomize:
        randomize_(oracle, seed)
    return oracle.eval()


def _to_ncthw(clips, channels_last):
    x = torch.as_tensor(np.asarray(clips, dtype=np.float32))
    if x.ndim != 5:
        raise ValueError(f"clips must be 5-D (B, T, H, W, C) or (B, C, T, H, W), got {tuple(x.shape)}")
    return x.permute(0, 4, 1, 2, 3).contiguous() if channels_last else x


def oracle_outputs(oracle, clips, channels_last=True):
    """(features (B, T', H', W', C) numpy, logits (B, classes) numpy or None)."""
    with torch.no_grad():
        features, logits = oracle(_to_ncthw(clips, channels_last))
    features = features.permute(0, 2, 3, 4, 1).numpy()
    return features, (logits.numpy() if logits is not None else None)


def oracle_logits(oracle, clips, channels_last=True):
    """Logits (B, classes) as numpy; `clips` are (B, T, H, W, C), or NCTHW with channels_last=False."""
    return oracle_outputs(oracle, clips, channels_last)[1]


def oracle_features(oracle, clips, channels_last=True):
    """Backbone features, channels-last numpy (B, T', H', W', C)."""
    return oracle_outputs(oracle, clips, channels_last)[0]


def export_state_dict(oracle, layout):
    """The oracle's weights in a layout of `converter.layouts` (a `Layout` or its name).

    The oracle's own state dict is in mmaction2 1.x layout (final norm `norm{n-1}`); it is
    read through that layout to canonical keys, then written out in `layout`.
    """
    canonical = layouts.canonicalize(oracle.state_dict(), layouts.MMACTION2)
    return OrderedDict((key, value.detach().clone().contiguous()) for key, value in
                       layouts.export(canonical, layout, oracle.num_stages).items())


def mmaction_state_dict(oracle):
    """mmaction2 1.x layout: `backbone.*` with final norm `backbone.norm{n-1}`, `cls_head.fc_cls`."""
    return export_state_dict(oracle, layouts.MMACTION2)


def official_state_dict(oracle):
    """Official 0.x layout: as mmaction2 1.x but the final norm is `backbone.norm`."""
    return export_state_dict(oracle, layouts.OFFICIAL)


def torchvision_state_dict(oracle):
    """torchvision swin3d layout (bare keys, `features.{2i}.{j}`, `mlp.0/3`, `norm`, `head`).

    torchvision keeps the 3-D `relative_position_index` unflattened, (N, N), as the official.
    """
    return export_state_dict(oracle, layouts.TORCHVISION)


def save_checkpoint(state_dict, path, wrapper="official"):
    """torch.save a state dict as an official 0.x, mmaction2 1.x or bare checkpoint."""
    if wrapper == "bare":
        obj = state_dict
    elif wrapper == "official":
        obj = {"meta": {"epoch": 30, "iter": 0, "mmcv_version": "1.3.1"},
               "state_dict": state_dict}
    elif wrapper == "mmaction":
        obj = {"meta": {"epoch": 30, "iter": 0, "mmengine_version": "0.10.7",
                        "dataset_meta": None},
               "state_dict": state_dict}
    else:
        raise ValueError(f"wrapper must be 'official', 'mmaction' or 'bare', got {wrapper!r}")
    torch.save(obj, path)
    return path
