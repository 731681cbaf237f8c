"""Inflate a 2D (image) Swin checkpoint into a Video Swin backbone, in NumPy.

The semantics are those of mmaction2 1.2.0's `SwinTransformer3D.inflate_weights`:
- the patch-embedding kernel (C, 3, ph, pw) is repeated over the temporal patch size pt
  and divided by it: (C, 3, pt, ph, pw);
- each relative-position bias table ((2W-1)^2, heads) is resized by bicubic interpolation
  to (2Wh-1) x (2Ww-1) when that differs from the 2D table (same head count only), then
  tiled over the 2Wd-1 temporal offsets;
- `relative_position_index` and `attn_mask` buffers are dropped (the 3D model computes
  its own), and so is the 2D classifier `head`;
- the final `norm` becomes the backbone's final norm; everything else is copied.
The bicubic resize reproduces torch's `interpolate(mode='bicubic', align_corners=False)`
in float32 (to a few ulps). Torch is used only to read the file (`converter.checkpoint`)
and, as the reference, in `check_against_mmaction2`.

One difference on purpose: mmaction2 moves `norm` to the final norm only when the model has
a `norm3`, i.e. four stages; with fewer it leaves that norm at its initial ones and zeros.
Here the 2D `norm` is the final norm for any number of stages (the published models all
have four, where both agree), so `check_against_mmaction2` reports that norm for others.
The 3D state also holds each block's `relative_position_index`, computed for the 3D
window as mmaction2 does (not read from the file), for the parity references.
"""

import math
import re
from dataclasses import dataclass, field

import numpy as np

from converter import checkpoint as ckpt
from converter import layouts2d
from converter.layouts import LayoutError

CUBIC_A = -0.75                       # torch's cubic convolution coefficient

_TABLE = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table")
_DROPPED = (("relative_position_index", re.compile(r".*\.relative_position_index")),
            ("attn_mask", re.compile(r".*\.attn_mask")),
            ("head", re.compile(r"head\..+")))


# -- the math -------------------------------------------------------------------------------

def _fma(a, b, c):
    """a * b + c rounded once to float32, as a fused multiply-add (exact in float64)."""
    return (np.asarray(a, np.float64) * b + np.asarray(c, np.float64)).astype(np.float32)


def _cubic_taps(in_size, out_size):
    """(taps, weights), each (out_size, 4): the source rows and float32 weights of torch's
    bicubic kernel (align_corners=False) along one axis.

    Float32 as torch computes them on CPU, fused multiply-adds where its compiled kernel
    fuses them: the weights come from a cubic with large cancelling terms, so plain float32
    Horner evaluation alone drifts several ulps from torch's."""
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    real = _fma(scale, np.arange(out_size, dtype=f32) + f32(0.5), f32(-0.5))  # no clamp at 0
    index = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    t = np.clip(real - index.astype(f32), f32(0), f32(1))
    a = f32(CUBIC_A)

    def near(x):                                     # |x| <= 1
        return ((a + f32(2)) * x - (a + f32(3))) * x * x + f32(1)

    def far(x):                                      # 1 < |x| < 2
        return _fma(_fma(_fma(a, x, -f32(5) * a), x, f32(8) * a), x, -f32(4) * a)

    weights = np.stack([far(t + f32(1)), near(t), near(f32(1) - t), far(f32(2) - t)], axis=1)
    taps = np.clip(index[:, None] + np.arange(-1, 3), 0, in_size - 1)   # border: clamp
    return taps, weights.astype(f32)


def bicubic_resize(grid, size):
    """Resize the last two axes of `grid` (..., H, W) to `size` (h, w) as torch's
    `interpolate(mode='bicubic', align_corners=False)` does, in float32."""
    grid = np.asarray(grid, dtype=np.float32)
    (rows, row_w), (cols, col_w) = (_cubic_taps(n, m) for n, m in zip(grid.shape[-2:], size))
    # Inner sum over columns, then over rows, each accumulated tap by tap (torch's order).
    across = None
    for j in range(4):
        term = grid[..., cols[:, j]] * col_w[:, j]
        across = term if across is None else across + term
    out = None
    for i in range(4):
        term = across[..., rows[:, i], :] * row_w[:, i][:, None]
        out = term if out is None else out + term
    return out.astype(np.float32)


def inflate_patch_kernel(kernel, temporal):
    """(C, in, ph, pw) -> (C, in, temporal, ph, pw), repeated and divided by `temporal`."""
    kernel = np.asarray(kernel)
    return np.repeat(kernel[:, :, None], temporal, axis=2) / np.asarray(temporal, kernel.dtype)


def inflate_bias_table(table, window_size):
    """A 2D bias table ((2W-1)^2, heads) as the 3D table of `window_size` (Wd, Wh, Ww):
    bicubic-resized to (2Wh-1)(2Ww-1) rows when that differs, tiled 2Wd-1 times.
    Returns (table, (from_side, (to_h, to_w)) or None when not resized)."""
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(f"a bias table must be 2-D (rows, heads), not {table.shape}")
    depth, height, width = window_size
    rows, heads = table.shape
    target = (2 * height - 1, 2 * width - 1)
    resized = None
    if rows != target[0] * target[1]:
        side = math.isqrt(rows)
        if side * side != rows:
            raise ValueError(f"a 2D bias table of {rows} rows is not a square window's "
                             "(2W-1)^2")
        grid = table.T.reshape(heads, side, side)
        table = bicubic_resize(grid, target).reshape(heads, -1).T
        resized = (side, target)
    return np.tile(table, (2 * depth - 1, 1)), resized


# -- the account ----------------------------------------------------------------------------

@dataclass
class Inflation:
    """What inflation did with each tensor of the 2D file (by its key in the file)."""

    layout: str
    used: dict = field(default_factory=dict)        # 2D key -> canonical 3D key
    dropped: dict = field(default_factory=dict)     # 2D key -> reason
    resized: dict = field(default_factory=dict)     # 2D key -> "23x23 -> 13x13"
    temporal_patch: int = 1
    temporal_offsets: int = 1

    def summary(self):
        reasons = {}
        for reason in self.dropped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        return {"layout_2d": self.layout, "tensors_used": len(self.used),
                "tensors_dropped": dict(sorted(reasons.items())),
                "bias_tables_resized": len(self.resized),
                "bias_table_resize": sorted(set(self.resized.values())),
                "patch_kernel_repeated": self.temporal_patch,
                "bias_tables_tiled": self.temporal_offsets}


def _drop_reason(key):
    return next((reason for reason, pattern in _DROPPED if pattern.fullmatch(key)), None)


def inflate(state2d, window_size, patch_size, origin=None, layout="swin2d-official"):
    """(canonical 3D backbone state, `Inflation`) from a canonical 2D state dict.

    `origin` maps canonical 2D keys to the file's own keys (for the account). The 3D state
    holds `backbone.*` keys only, plus the `relative_position_index` of `window_size` for
    each block (the 3D model's own buffers, which the parity references load)."""
    from videoswin.model import windows

    origin = origin or {}
    account = Inflation(layout, temporal_patch=int(patch_size[0]),
                        temporal_offsets=2 * int(window_size[0]) - 1)
    index = windows.relative_position_index(tuple(window_size)).astype(np.int64)
    out = {}
    for key, value in state2d.items():
        theirs = origin.get(key, key)
        reason = _drop_reason(key)
        if reason:
            account.dropped[theirs] = reason
            continue
        target = "backbone." + key
        if key == "patch_embed.proj.weight":
            if np.ndim(value) != 4:
                raise LayoutError(f"{theirs} is {np.ndim(value)}-D, not a 2D patch kernel "
                                  "(C, in, ph, pw)")
            value = inflate_patch_kernel(value, patch_size[0])
        elif match := _TABLE.fullmatch(key):
            try:
                value, resized = inflate_bias_table(value, window_size)
            except ValueError as err:
                raise LayoutError(f"{theirs}: {err}") from None
            if resized:
                side, (h, w) = resized
                account.resized[theirs] = f"{side}x{side} -> {h}x{w}"
            out[f"backbone.layers.{match[1]}.blocks.{match[2]}.attn.relative_position_index"] \
                = index
        out[target] = value
        account.used[theirs] = target
    return out, account


# -- from a file ----------------------------------------------------------------------------

@dataclass
class Inflated2D:
    """A 2D checkpoint read and inflated: `loaded` is a `checkpoint.LoadedCheckpoint` of
    the canonical 3D backbone state; `state2d` the canonical 2D state; `account` the
    `Inflation`."""

    loaded: object
    state2d: dict
    account: Inflation


def load(path, spec, trust_pickle=False):
    """Read a 2D Swin checkpoint (`.pth` `{'model': ...}` or bare, `.safetensors`; official
    or timm keys) with the 3D loader's safety and integrity rules, and inflate it for
    `spec`. Raises `CheckpointError` naming the file."""
    raw, upcast, crc = ckpt._read(path, trust_pickle)
    if any(k.startswith(("backbone.", "cls_head.", "features.")) for k in raw):
        raise ckpt.CheckpointError(
            f"checkpoint {path!r} looks like a Video Swin (3D) checkpoint, not a 2D image "
            "Swin; pass it with --checkpoint instead of --inflate-2d.")
    try:
        state2d, origin, layout = layouts2d.to_canonical(raw)
    except LayoutError as err:
        raise ckpt.CheckpointError(f"checkpoint {path!r}: {err}") from None
    kernel = state2d.get("patch_embed.proj.weight")
    if kernel is None or np.ndim(kernel) != 4:
        sample = ", ".join(list(raw)[:5])
        raise ckpt.CheckpointError(
            f"checkpoint {path!r} does not look like a 2D Swin Transformer: no 4-D "
            f"patch_embed.proj.weight (first keys: {sample}).")
    ckpt.check_finite(path, state2d)
    try:
        state3d, account = inflate(state2d, spec.window_size, spec.patch_size, origin,
                                   layout.name)
    except LayoutError as err:
        raise ckpt.CheckpointError(f"checkpoint {path!r}: {err}") from None
    loaded = ckpt.LoadedCheckpoint(
        path=path, state=state3d, layout=layout.name, has_head=False, crc32=crc,
        upcast={"backbone." + layout.to_canonical(k): v for k, v in upcast.items()})
    return Inflated2D(loaded, state2d, account)


# -- the check against mmaction2 --------------------------------------------------------------

def check_against_mmaction2(spec, state2d, state3d):
    """Compare `state3d` with what mmaction2's own `SwinTransformer3D(pretrained=...,
    pretrained2d=True).init_weights()` makes of the same 2D weights (written to a
    temporary `{'model': ...}` file). Returns {reference, max_abs_diff, tensors, status};
    status 'skipped' when mmaction2 is not installed."""
    import os
    import tempfile
    import warnings

    from converter import layouts, upstream

    name = "mmaction2 SwinTransformer3D.init_weights (inflate_weights)"
    if not upstream.available():
        return {"reference": name, "status": "skipped", "max_abs_diff": None, "tensors": 0}
    import torch

    module = upstream.swin_module()
    with tempfile.TemporaryDirectory(prefix="videoswin-inflate-") as folder:
        path = os.path.join(folder, "swin2d.pth")
        torch.save({"model": {k: torch.from_numpy(np.array(v)) for k, v in state2d.items()}},
                   path)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*meshgrid.*", category=UserWarning)
            backbone = module.SwinTransformer3D(
                arch=dict(embed_dims=spec.embed_dim, depths=list(spec.depths),
                          num_heads=list(spec.num_heads)),
                pretrained=path, pretrained2d=True, patch_size=tuple(spec.patch_size),
                in_channels=spec.in_channels, window_size=tuple(spec.window_size),
                mlp_ratio=spec.mlp_ratio, qkv_bias=spec.qkv_bias, qk_scale=spec.qk_scale,
                drop_path_rate=0.0, patch_norm=spec.patch_norm,
                out_indices=(len(spec.depths) - 1,))
        _quietly(backbone.init_weights)
    theirs = layouts.canonicalize({"backbone." + k: v.detach().numpy()
                                   for k, v in backbone.state_dict().items()},
                                  layouts.MMACTION2)
    worst, missing = 0.0, sorted(set(theirs) ^ set(state3d))
    for key, value in theirs.items():
        if key in state3d and np.shape(state3d[key]) == value.shape:
            diff = np.abs(np.asarray(state3d[key], np.float64) - value).max(initial=0.0)
            worst = max(worst, float(diff))
        elif key in state3d:
            missing.append(key)
    return {"reference": name, "max_abs_diff": worst, "tensors": len(theirs),
            "status": "passed" if not missing and worst <= 1e-6 else "failed",
            **({"mismatched_keys": missing[:12]} if missing else {})}


def _quietly(call):
    """Run `call` with mmengine's logger and its `print` of the file name silenced."""
    import contextlib
    import io
    import logging

    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    saved = [(item, item.level) for item in (logger, *logger.handlers)]
    for item, _ in saved:
        item.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            call()
    finally:
        for item, level in saved:
            item.setLevel(level)
