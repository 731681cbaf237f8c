"""A small, readable PyTorch re-implementation of the official Video Swin Transformer.

`VideoSwinReference` reproduces the official (Video-Swin-Transformer 0.x / mmaction2 1.x)
inference numerics exactly, and its `state_dict()` keys are the canonical official keys
(`backbone.*`, `cls_head.fc_cls.*`, with `relative_position_index` buffers). It is what
parity runs against when mmaction2 is not installed, so it must not import mmaction, mmcv
or mmengine. Inputs and features are channels-last: (B, T, H, W, C).

Inference only: no dropout, no stochastic depth; the module is put in eval mode.
"""

from collections.abc import Mapping
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from videoswin.core.geometry import clamp_window

LN_EPS = 1e-5
MASK_VALUE = -100.0      # the official shift mask uses -100, not -inf

SPEC_FIELDS = ("embed_dim", "depths", "num_heads", "patch_size", "window_size", "mlp_ratio",
               "qkv_bias", "qk_scale", "patch_norm", "in_channels", "num_classes",
               "head_dropout")


def spec_kwargs(spec):
    """The `VideoSwinReference` keyword arguments held by a `ModelSpec` or a mapping.

    Fields a mapping leaves out take the constructor defaults; other entries are ignored.
    """
    if isinstance(spec, Mapping):
        items = {k: spec[k] for k in SPEC_FIELDS if k in spec}
    else:
        items = {k: getattr(spec, k) for k in SPEC_FIELDS}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in items.items()}


def relative_position_index(window):
    """(N, N) int64 index into the (2Wd-1)(2Wh-1)(2Ww-1)-row bias table, N = Wd*Wh*Ww."""
    wd, wh, ww = window
    grid = torch.stack(torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww),
                                      indexing="ij")).flatten(1)          # 3, N
    delta = grid[:, :, None] - grid[:, None, :]                           # 3, N, N
    delta += torch.tensor([wd - 1, wh - 1, ww - 1])[:, None, None]
    strides = torch.tensor([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1])
    return (delta * strides[:, None, None]).sum(0)


def to_windows(x, window):
    """(B, D, H, W, C) -> (B * nW, Wd*Wh*Ww, C), windows in (d, h, w) raster order."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def from_windows(windows, window, b, d, h, w):
    """Inverse of `to_windows`."""
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


@lru_cache(maxsize=64)
def _shift_mask_cpu(padded, window, shift):
    region = torch.zeros(padded)
    for axis, (p, w, s) in enumerate(zip(padded, window, shift)):
        if s == 0:
            continue            # one region along an unshifted axis
        ids = torch.zeros(p)
        ids[p - w:p - s] = 1
        ids[p - s:] = 2
        view = [1, 1, 1]
        view[axis] = p
        region = region + ids.view(view) * 3 ** (2 - axis)
    ids = to_windows(region[None, ..., None], window)[..., 0]            # nW, N
    same = ids[:, None, :] == ids[:, :, None]
    return torch.where(same, 0.0, MASK_VALUE)


def shift_mask(padded, window, shift, device=None):
    """(nW, N, N) additive mask: 0 within a region, -100 between regions (27 regions)."""
    return _shift_mask_cpu(tuple(padded), tuple(window), tuple(shift)).to(device)


def _pad_end(x, multiples):
    """Zero-pad axes 1..3 of a channels-last (B, D, H, W, C) tensor at their ends."""
    pads = [(-s) % m for s, m in zip(x.shape[1:4], multiples)]
    if any(pads):
        x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    return x


class PatchEmbed3D(nn.Module):
    def __init__(self, patch_size, in_channels, embed_dim, patch_norm):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_channels, embed_dim, self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS) if patch_norm else None

    def forward(self, x):
        x = _pad_end(x, self.patch_size)
        x = self.proj(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        return self.norm(x) if self.norm is not None else x


class WindowAttention3D(nn.Module):
    def __init__(self, dim, window_size, num_heads, qkv_bias, qk_scale):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        rows = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) * (2 * window_size[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        """x: (B * nW, N, C); mask: (nW, N, N) or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q * self.scale) @ k.transpose(-2, -1)                  # B*nW, heads, N, N
        # Index built for the configured window, sliced for a clamped one (official quirk).
        index = self.relative_position_index[:n, :n].reshape(-1)
        bias = self.relative_position_bias_table[index].reshape(n, n, -1).permute(2, 0, 1)
        scores = scores + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            scores = scores.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            scores = scores.view(bw, self.num_heads, n, n)
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()            # exact (erf) GELU
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock3D(nn.Module):
    def __init__(self, dim, num_heads, window_size, shift_size, mlp_ratio, qkv_bias, qk_scale):
        super().__init__()
        self.window_size = tuple(window_size)
        self.shift_size = tuple(shift_size)
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = WindowAttention3D(dim, window_size, num_heads, qkv_bias, qk_scale)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _window_attention(self, x):
        b, d, h, w, _ = x.shape
        window, shift = clamp_window((d, h, w), self.window_size, self.shift_size)
        # Pad after norm1: padded tokens are zeros and, in unshifted windows, unmasked.
        x = _pad_end(x, window)
        padded = x.shape[1:4]
        shifted = any(shift)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        mask = shift_mask(padded, window, shift, x.device) if shifted else None
        x = self.attn(to_windows(x, window), mask)
        x = from_windows(x, window, b, *padded)
        if shifted:
            x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
        return x[:, :d, :h, :w].contiguous()

    def forward(self, x):
        x = x + self._window_attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=LN_EPS)

    def forward(self, x):
        _, _, h, w, _ = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2],
                       x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: `depth` blocks (odd ones shifted by window // 2), then optional merging."""

    def __init__(self, dim, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale,
                 downsample):
        super().__init__()
        half = tuple(w // 2 for w in window_size)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, window_size, half if j % 2 else (0, 0, 0), mlp_ratio,
                        qkv_bias, qk_scale)
            for j in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class Backbone(nn.Module):
    def __init__(self, embed_dim, depths, num_heads, patch_size, window_size, mlp_ratio,
                 qkv_bias, qk_scale, patch_norm, in_channels):
        super().__init__()
        self.patch_embed = PatchEmbed3D(patch_size, in_channels, embed_dim, patch_norm)
        last = len(depths) - 1
        self.layers = nn.ModuleList(
            BasicLayer(embed_dim * 2 ** i, depth, heads, window_size, mlp_ratio, qkv_bias,
                       qk_scale, downsample=i < last)
            for i, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.num_features = embed_dim * 2 ** last
        self.norm = nn.LayerNorm(self.num_features, eps=LN_EPS)

    def forward(self, x):
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class I3DHead(nn.Module):
    def __init__(self, in_features, num_classes, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(in_features, num_classes)

    def forward(self, features):
        # Pool channels-first like the official AdaptiveAvgPool3d: same summation order.
        pooled = F.adaptive_avg_pool3d(features.permute(0, 4, 1, 2, 3).contiguous(), 1)
        return self.fc_cls(self.dropout(pooled.flatten(1)))


class VideoSwinReference(nn.Module):
    """Official Video Swin Transformer (backbone + I3D head), channels-last, inference only.

    `num_classes=None` builds the backbone alone: `forward` then returns features.
    """

    def __init__(self, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 patch_size=(2, 4, 4), window_size=(8, 7, 7), mlp_ratio=4.0, qkv_bias=True,
                 qk_scale=None, patch_norm=True, in_channels=3, num_classes=400,
                 head_dropout=0.5):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} "
                             "must have the same length")
        self.config = dict(embed_dim=embed_dim, depths=tuple(depths),
                           num_heads=tuple(num_heads), patch_size=tuple(patch_size),
                           window_size=tuple(window_size), mlp_ratio=mlp_ratio,
                           qkv_bias=qkv_bias, qk_scale=qk_scale, patch_norm=patch_norm,
                           in_channels=in_channels, num_classes=num_classes,
                           head_dropout=head_dropout)
        self.backbone = Backbone(embed_dim, tuple(depths), tuple(num_heads), tuple(patch_size),
                                 tuple(window_size), mlp_ratio, qkv_bias, qk_scale, patch_norm,
                                 in_channels)
        self.cls_head = (I3DHead(self.backbone.num_features, num_classes, head_dropout)
                         if num_classes is not None else None)
        self.eval()

    @classmethod
    def from_spec(cls, spec, **overrides):
        """Build from a `converter.spec.ModelSpec` (or a mapping of its fields).

        `overrides` replace spec fields, e.g. `num_classes=None` for the backbone alone.
        """
        return cls(**{**spec_kwargs(spec), **overrides})

    def load_canonical(self, state_dict):
        """Load a canonical official-layout state dict strictly; returns self.

        Raises ValueError naming missing/unexpected keys, shape mismatches, or a
        `relative_position_index` that differs from the one this window size implies.
        """
        own = self.state_dict()
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise ValueError("state dict does not match the canonical official layout: "
                             f"missing keys {missing}; unexpected keys {unexpected}")
        wrong = [f"{k}: got {tuple(state_dict[k].shape)}, expected {tuple(v.shape)}"
                 for k, v in own.items() if tuple(state_dict[k].shape) != tuple(v.shape)]
        if wrong:
            raise ValueError("state dict shape mismatch: " + "; ".join(wrong))
        for k, v in own.items():
            if k.endswith("relative_position_index") and not torch.equal(
                    torch.as_tensor(state_dict[k]).to(v.dtype), v):
                raise ValueError(f"{k} differs from the index of window "
                                 f"{self.config['window_size']}: wrong window size?")
        self.load_state_dict(state_dict, strict=True)
        return self

    def forward_features(self, x):
        """(B, T, H, W, C) float32 -> channels-last features (B, T', H', W', C')."""
        return self.backbone(x)

    def forward(self, x):
        """(B, T, H, W, C) float32 -> logits (B, num_classes); features if no head."""
        features = self.forward_features(x)
        return self.cls_head(features) if self.cls_head is not None else features
