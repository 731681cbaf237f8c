"""Architectures of the published Video Swin variants, as data."""

ARCHS = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
    "large": {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48)},
}


def arch(name):
    """The settings of a named variant ('tiny', 'small', 'base', 'large')."""
    try:
        return dict(ARCHS[name.lower()])
    except KeyError:
        raise ValueError(f"unknown arch {name!r}; expected one of {sorted(ARCHS)}") from None
