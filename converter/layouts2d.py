"""Key layouts of 2D (image) Swin checkpoints, brought to one canonical 2D layout.

Canonical 2D keys are those of the official release (microsoft/Swin-Transformer, files
saved as `{'model': ...}`): `patch_embed.{proj,norm}`, `layers.{i}.blocks.{j}.*`, patch
merging after stage i as `layers.{i}.downsample.*`, final `norm`, classifier `head`.

timm (0.9 and later, `swin_*_patch4_window*`) moves patch merging to the start of the next
stage (`layers.{i+1}.downsample.*` is the official `layers.{i}.downsample.*`) and names
the classifier `head.fc`; its merging concatenates the four 2x2 neighbours in the official
order, so the tensors themselves are the same. Older timm files use the official keys.
"""

import re

from converter.layouts import Layout, LayoutError, canonicalize

_DOWNSAMPLE = re.compile(r"layers\.(\d+)\.downsample\.(.+)")


def _identity(key, num_stages=None):
    return key


def _shift_stage(key, by):
    match = _DOWNSAMPLE.fullmatch(key)
    return f"layers.{int(match[1]) + by}.downsample.{match[2]}" if match else key


def _timm_to_canonical(key):
    if key.startswith("head.fc."):
        return "head." + key[len("head.fc."):]
    return _shift_stage(key, -1)


def _timm_from_canonical(key, num_stages=None):
    if key.startswith("head."):
        return "head.fc." + key[len("head."):]
    return _shift_stage(key, 1)


def _is_timm(keys):
    stages = {int(m[1]) for m in map(_DOWNSAMPLE.fullmatch, keys) if m}
    # Official merging follows stages 0..n-2, timm's precedes stages 1..n-1.
    return any(k.startswith("head.fc.") for k in keys) or (bool(stages) and min(stages) == 1)


OFFICIAL_2D = Layout("swin2d-official", detect=lambda keys: True, to_canonical=_identity,
                     from_canonical=_identity)
TIMM_2D = Layout("swin2d-timm", detect=_is_timm, to_canonical=_timm_to_canonical,
                 from_canonical=_timm_from_canonical)

LAYOUTS_2D = (TIMM_2D, OFFICIAL_2D)      # in detection order
BY_NAME = {layout.name: layout for layout in LAYOUTS_2D}


def detect(keys):
    """The 2D `Layout` of a state dict's keys."""
    keys = list(keys)
    return next(layout for layout in LAYOUTS_2D if layout.detect(keys))


def to_canonical(state, layout=None):
    """(canonical 2D state dict, {canonical key: original key}, layout)."""
    layout = BY_NAME[layout] if isinstance(layout, str) else (layout or detect(state))
    canonical = canonicalize(state, layout)
    origin = {layout.to_canonical(key): key for key in state}
    return canonical, origin, layout


def export(canonical, layout):
    """A canonical 2D state dict renamed into `layout` (a `Layout` or its name)."""
    layout = BY_NAME[layout] if isinstance(layout, str) else layout
    out = {}
    for key, value in canonical.items():
        theirs = layout.from_canonical(key)
        if theirs in out:
            raise LayoutError(f"two canonical keys map to {theirs!r} ({layout.name} layout)")
        out[theirs] = value
    return out
