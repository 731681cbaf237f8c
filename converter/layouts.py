"""Checkpoint key layouts, declared once: detect, rename to canonical keys, and back.

Canonical keys are the official 0.x release's: `backbone.patch_embed.*`,
`backbone.layers.{i}.blocks.{j}.*`, `backbone.layers.{i}.downsample.*`, final norm
`backbone.norm.*`, head `cls_head.fc_cls.*`. A new layout is one `Layout` object here (and a
test); canonicalisation, the mmaction2 loader and the tests' checkpoint exporters all use
these objects.
"""

import re
from dataclasses import dataclass
from typing import Callable


class LayoutError(ValueError):
    """Keys that cannot be brought to one canonical state dict."""


@dataclass(frozen=True)
class Layout:
    """One checkpoint layout.

    `detect(keys)`: whether a state dict's keys are in this layout.
    `to_canonical(key)`: the canonical key of one of its keys.
    `from_canonical(key, num_stages)`: the key this layout uses for a canonical key.
    """

    name: str
    detect: Callable
    to_canonical: Callable
    from_canonical: Callable


def _prefixed(key):
    # A bare backbone state dict (no `backbone.` prefix) is read as the backbone's.
    return key if key.startswith(("backbone.", "cls_head.")) else "backbone." + key


OFFICIAL = Layout("official", detect=lambda keys: True, to_canonical=_prefixed,
                  from_canonical=lambda key, num_stages: key)

# mmaction2 1.x names the final norm after the stage it follows: `norm3` for four stages.
_MM_NORM = re.compile(r"backbone\.norm(\d+)\.(.+)")


def _mm_to_canonical(key):
    key = _prefixed(key)
    match = _MM_NORM.fullmatch(key)
    return f"backbone.norm.{match[2]}" if match else key


def _mm_from_canonical(key, num_stages):
    if key.startswith("backbone.norm."):
        return f"backbone.norm{num_stages - 1}." + key[len("backbone.norm."):]
    return key


MMACTION2 = Layout(
    "mmaction2",
    detect=lambda keys: any(_MM_NORM.fullmatch(_prefixed(k)) for k in keys),
    to_canonical=_mm_to_canonical, from_canonical=_mm_from_canonical)

# torchvision swin3d_*: `features.{2i}.{j}` blocks, `features.{2i+1}` patch merging,
# `mlp.0` / `mlp.3` for fc1 / fc2, bare `patch_embed` and `norm`, `head`.
_TV_BLOCK = re.compile(r"features\.(\d*[02468])\.(\d+)\.(.+)")
_TV_MERGE = re.compile(r"features\.(\d*[13579])\.(.+)")
_CANON_BLOCK = re.compile(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.(.+)")
_CANON_MERGE = re.compile(r"backbone\.layers\.(\d+)\.downsample\.(.+)")
_TV_MLP = (("mlp.0.", "mlp.fc1."), ("mlp.3.", "mlp.fc2."))


def _tv_to_canonical(key):
    if match := _TV_BLOCK.fullmatch(key):
        rest = match[3]
        for theirs, ours in _TV_MLP:
            rest = rest.replace(theirs, ours)
        return f"backbone.layers.{int(match[1]) // 2}.blocks.{match[2]}.{rest}"
    if match := _TV_MERGE.fullmatch(key):
        return f"backbone.layers.{int(match[1]) // 2}.downsample.{match[2]}"
    if key.startswith("head."):
        return "cls_head.fc_cls." + key[len("head."):]
    return "backbone." + key


def _tv_from_canonical(key, num_stages):
    if match := _CANON_BLOCK.fullmatch(key):
        rest = match[3]
        for theirs, ours in _TV_MLP:
            rest = rest.replace(ours, theirs)
        return f"features.{2 * int(match[1])}.{match[2]}.{rest}"
    if match := _CANON_MERGE.fullmatch(key):
        return f"features.{2 * int(match[1]) + 1}.{match[2]}"
    if key.startswith("cls_head.fc_cls."):
        return "head." + key[len("cls_head.fc_cls."):]
    return key[len("backbone."):]


TORCHVISION = Layout("torchvision", detect=lambda keys: any(k.startswith("features.")
                                                            for k in keys),
                     to_canonical=_tv_to_canonical, from_canonical=_tv_from_canonical)

# In detection order: the first whose `detect` accepts the keys wins (official: the rest).
LAYOUTS = (TORCHVISION, MMACTION2, OFFICIAL)
BY_NAME = {layout.name: layout for layout in LAYOUTS}


def get(name):
    try:
        return BY_NAME[name]
    except KeyError:
        raise LayoutError(f"unknown layout {name!r}; expected one of {sorted(BY_NAME)}") \
            from None


def detect(keys):
    """The `Layout` of a state dict's keys."""
    keys = list(keys)
    return next(layout for layout in LAYOUTS if layout.detect(keys))


def canonicalize(state, layout=None):
    """`state` with canonical keys (values untouched); `LayoutError` naming two keys that
    land on one."""
    layout = get(layout) if isinstance(layout, str) else (layout or detect(state))
    out, origin = {}, {}
    for key, value in state.items():
        canonical = layout.to_canonical(key)
        if canonical in out:
            raise LayoutError(f"checkpoint keys {origin[canonical]!r} and {key!r} both map to "
                              f"{canonical!r} ({layout.name} layout)")
        out[canonical], origin[canonical] = value, key
    return out


def export(canonical, layout, num_stages):
    """A canonical state dict renamed into `layout` (a `Layout` or its name)."""
    layout = get(layout) if isinstance(layout, str) else layout
    return {layout.from_canonical(key, num_stages): value for key, value in canonical.items()}
