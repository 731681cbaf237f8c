"""Video lists in mmaction2's format (`relative/path label`, one video a line), read safely.

- Blank lines and lines starting with `#` are skipped; every other line is one entry, and
  keeps its 1-based line number (`Entry.line`), which results refer to.
- The label is the last whitespace-separated field, so a path may hold spaces. Lists for
  evaluation need one integer label per line; lists for feature extraction may omit it.
- Each path is relative and stays under the data root once normalised: an absolute path, or
  one that climbs out with `..`, is an error naming the list file and the line. (The check is
  on the text of the path; symbolic links inside the data root are the user's own layout.)
"""

import os
from dataclasses import dataclass

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".wmv", ".mpg",
                  ".mpeg", ".3gp", ".ogv", ".ts", ".mts")


class ListError(ValueError):
    """A list file that cannot be used; the message names the file (and the line)."""


@dataclass(frozen=True)
class Entry:
    """One video of a job: `line` (1-based, in the list file), `video` as written there, the
    file to read (`path`) and the label (None when the list gives none)."""

    line: int
    video: str
    path: str
    label: int = None


def read_list(list_file, data_root=None, labels="required", num_classes=None):
    """The entries of `list_file`, in file order.

    `data_root`: the folder the paths are relative to (default: the list file's folder).
    `labels`: "required" (evaluation: one integer per line), "optional" (a trailing integer is
    a label when the line has two fields or more) or "none" (the whole line is the path).
    `num_classes`: labels must lie in 0 .. num_classes - 1.
    """
    list_file = os.fspath(list_file)
    root = os.path.dirname(os.path.abspath(list_file)) if data_root is None else \
        os.fspath(data_root)
    if data_root is not None and not os.path.isdir(root):
        raise ListError(f"--data-root {root}: no such folder")
    try:
        with open(list_file, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError as err:
        raise ListError(f"{list_file}: not UTF-8 text ({err.reason} at byte {err.start})") \
            from None
    except OSError as err:
        raise ListError(f"{list_file}: cannot be read ({err.strerror or err})") from None
    entries = []
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        video, label = _split(stripped, labels, f"{list_file}:{number}")
        if label is not None and num_classes is not None and not 0 <= label < num_classes:
            raise ListError(f"{list_file}:{number}: label {label} is outside the model's "
                            f"{num_classes} classes (0..{num_classes - 1})")
        entries.append(Entry(number, video, confined(root, video, f"{list_file}:{number}"),
                             label))
    if not entries:
        raise ListError(f"{list_file}: lists no videos")
    return entries


def from_paths(paths):
    """Entries for video files named on the command line (used as given, numbered from 1)."""
    return [Entry(i, os.fspath(p), os.fspath(p), None) for i, p in enumerate(paths, 1)]


def looks_like_video(path):
    return os.fspath(path).lower().endswith(VIDEO_SUFFIXES)


def confined(root, relative, where):
    """`root/relative`, refusing a path that is absolute or leaves `root`."""
    if os.path.isabs(relative) or (os.altsep and relative.startswith(os.altsep)):
        raise ListError(f"{where}: {relative!r} is an absolute path; list paths are relative "
                        "to the data root (--data-root)")
    if "\x00" in relative:
        raise ListError(f"{where}: the path holds a NUL character")
    normal = os.path.normpath(relative)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep) or normal == os.curdir:
        raise ListError(f"{where}: {relative!r} is outside the data root (--data-root)")
    return os.path.join(root, normal)


def _split(text, labels, where):
    if labels == "none":
        return text, None
    fields = text.rsplit(None, 1)
    if labels == "optional":
        if len(fields) == 2 and _is_int(fields[1]):
            return fields[0], int(fields[1])
        return text, None
    if len(fields) != 2:
        raise ListError(f"{where}: expected 'relative/path label', found {text!r}")
    if not _is_int(fields[1]):
        raise ListError(f"{where}: the label {fields[1]!r} is not a class index (one integer "
                        "per line; multi-label lists are not supported)")
    return fields[0], int(fields[1])


def _is_int(text):
    return text.isascii() and text.lstrip("-").isdigit() and text.count("-") <= 1 and \
        not text.endswith("-")


def shard(entries, spec):
    """The entries of shard `spec` = (index, count): every count-th entry from index."""
    if spec is None:
        return list(entries)
    index, count = spec
    return list(entries)[index::count]


def parse_shard(text):
    """'I/N' -> (I, N) with 0 <= I < N; raises ValueError."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"{text!r}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"{text!r}: need 0 <= I < N")
    return index, count
