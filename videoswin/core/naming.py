"""File names in a conversion folder, and the rule that keeps names from data in their folder."""

import os

MANIFEST = "manifest.json"
BACKBONE_SUFFIX = "_backbone"

# Serving exports (`videoswin-export`), in the order they are built and listed.
EXPORT_FORMATS = ("onnx", "saved_model", "litert", "openvino")
EXPORT_STATUSES = ("passed", "failed")
EXPORT_INPUT = "video"          # the exported graphs' input name (B, T, H, W, 3) float32
EXPORT_OUTPUT = "logits"        # and output name (B, classes)


def check_plain_name(name, what="name"):
    """`name` if it is a plain file name (no separator, not '.', '..' or absolute), else a
    `ValueError` naming `what`. Every name read from data that becomes a path goes through
    this, so it cannot leave its folder."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name
            or "\\" in name or "\0" in name or os.path.isabs(name)):
        raise ValueError(f"{what} {name!r} is not a plain file name")
    return name


def check_relative_name(name, what="name"):
    """`name` if it is a relative path inside a folder: '/'-separated plain components
    (`check_plain_name`: no '.', '..', empty part or backslash), not absolute; else a
    `ValueError` naming `what`. Export folders list their files this way."""
    if not isinstance(name, str) or not name or name.startswith("/") or os.path.isabs(name):
        raise ValueError(f"{what} {name!r} is not a relative path inside the folder")
    try:
        for part in name.split("/"):
            check_plain_name(part, what)
    except ValueError:
        raise ValueError(f"{what} {name!r} is not a relative path inside the folder") from None
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


def inside(folder, name, what="name", relative=False):
    """The path of the plain file `name` inside `folder`, checked to stay there.

    `relative=True` also takes a relative path (`check_relative_name`, e.g. an export's
    `NAME_saved_model/variables/variables.index`): resolved, symlinks included, it must
    still lie under `folder`."""
    if not relative:
        check_plain_name(name, what)
        root = os.path.realpath(folder)
        path = os.path.realpath(os.path.join(root, name))
        if os.path.dirname(path) != root:
            raise ValueError(f"{what} {name!r} resolves outside {folder}")
        return os.path.join(folder, name)
    parts = check_relative_name(name, what).split("/")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, *parts))
    if path == root or os.path.commonpath([root, path]) != root:
        raise ValueError(f"{what} {name!r} resolves outside {folder}")
    return os.path.join(folder, *parts)


def export_entry(stem, fmt):
    """The top-level entry an export occupies in a conversion folder: a file (`NAME.onnx`,
    `NAME.tflite`) or a folder (`NAME_saved_model`, `NAME_openvino`)."""
    check_plain_name(stem, "model name")
    entries = {"onnx": f"{stem}.onnx", "saved_model": f"{stem}_saved_model",
               "litert": f"{stem}.tflite", "openvino": f"{stem}_openvino"}
    if fmt not in entries:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    return entries[fmt]


def export_main_file(stem, fmt):
    """The file a runtime opens, relative to the conversion folder: `NAME.onnx`,
    `NAME_saved_model/saved_model.pb`, `NAME.tflite`, `NAME_openvino/NAME.xml`."""
    entry = export_entry(stem, fmt)
    return {"saved_model": f"{entry}/saved_model.pb",
            "openvino": f"{entry}/{stem}.xml"}.get(fmt, entry)


def parse_export_formats(text):
    """'onnx,litert' (or a list) -> the formats in `EXPORT_FORMATS` order, each once;
    'all' means every format. `ValueError` listing the known ones for anything else."""
    names = text if isinstance(text, (list, tuple)) else str(text or "").split(",")
    names = [n.strip().lower().replace("-", "_") for n in names if n and n.strip()]
    if names == ["all"]:
        return list(EXPORT_FORMATS)
    aliases = {"savedmodel": "saved_model", "tf_saved_model": "saved_model",
               "tflite": "litert"}
    names = [aliases.get(n, n) for n in names]
    unknown = [n for n in names if n not in EXPORT_FORMATS]
    if unknown or not names:
        what = f"unknown export format(s) {', '.join(unknown)}" if unknown else "no format"
        raise ValueError(f"{what}; choose from {', '.join(EXPORT_FORMATS)} (comma-separated), "
                         "or 'all'")
    return [f for f in EXPORT_FORMATS if f in names]
