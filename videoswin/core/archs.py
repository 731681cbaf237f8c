"""Architectures of the published Video Swin variants, as data."""

ARCHS = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
    "large": {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48)},
}
# Short names used by mmaction2 1.x configs (`arch='t'`).
ALIASES = {"t": "tiny", "s": "small", "b": "base", "l": "large"}
LABELS = {"tiny": "Swin-T", "small": "Swin-S", "base": "Swin-B", "large": "Swin-L"}


def arch(name):
    """The settings of a named variant ('tiny', 'small', 'base', 'large', or t/s/b/l)."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    try:
        return dict(ARCHS[key])
    except KeyError:
        raise ValueError(f"unknown arch {name!r}; expected one of {sorted(ARCHS)}") from None


def arch_name(embed_dim, depths, num_heads):
    """The name of the variant with these settings, or None for a custom architecture."""
    for name, a in ARCHS.items():
        if (a["embed_dim"], tuple(a["depths"]), tuple(a["num_heads"])) == (
                embed_dim, tuple(depths), tuple(num_heads)):
            return name
    return None


def check_stages(embed_dim, depths, num_heads):
    """Raise `ValueError` unless the stages describe a buildable model."""
    depths, num_heads = tuple(depths), tuple(num_heads)
    if not isinstance(embed_dim, int) or isinstance(embed_dim, bool) or embed_dim < 1:
        raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
    if not depths or len(depths) != len(num_heads):
        raise ValueError(f"depths {depths} and num_heads {num_heads} must be non-empty and "
                         "of the same length")
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"stage {i}: depth must be a positive int, got {depth!r}")
        width = embed_dim * 2 ** i
        if not isinstance(heads, int) or heads < 1 or width % heads:
            raise ValueError(f"stage {i}: width {width} is not divisible by num_heads "
                             f"{heads!r}")
