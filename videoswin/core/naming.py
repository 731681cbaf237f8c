"""File names in a conversion folder, and the rule that keeps names from data in their folder."""

import os

MANIFEST = "manifest.json"
BACKBONE_SUFFIX = "_backbone"


def check_plain_name(name, what="name"):
    """`name` if it is a plain file name (no separator, not '.', '..' or absolute), else a
    `ValueError` naming `what`. Every name read from data that becomes a path goes through
    this, so it cannot leave its folder."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
            or "\\" in name or "\0" in name or os.path.isabs(name)):
        raise ValueError(f"{what} {name!r} is not a plain file name")
    return name


def model_files(stem, with_head=True):
    """The model artifact file names of a conversion, in a stable order."""
    check_plain_name(stem, "model name")
    files = [f"{stem}{BACKBONE_SUFFIX}.weights.h5", f"{stem}{BACKBONE_SUFFIX}.keras"]
    if with_head:
        files = [f"{stem}.weights.h5", f"{stem}.keras"] + files
    return files


def keras_file(stem, backbone=False):
    return f"{stem}{BACKBONE_SUFFIX if backbone else ''}.keras"


def weights_file(stem, backbone=False):
    return f"{stem}{BACKBONE_SUFFIX if backbone else ''}.weights.h5"


def parity_files(stem):
    """(JSON report, Markdown report) of a conversion."""
    check_plain_name(stem, "model name")
    return f"{stem}.parity.json", f"{stem}.parity.md"


def inside(folder, name, what="name"):
    """The path of the plain file `name` inside `folder`, checked to stay there."""
    check_plain_name(name, what)
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.dirname(path) != root:
        raise ValueError(f"{what} {name!r} resolves outside {folder}")
    return os.path.join(folder, name)
