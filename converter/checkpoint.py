"""Load an official Video Swin checkpoint safely and bring it to the canonical layout.

Keys are brought to the canonical layout by `converter.layouts`.
"""

import os
import pickle
import zipfile
from dataclasses import dataclass, field

import numpy as np

from converter import layouts


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def _keep(array):
    pass


@dataclass
class LoadedCheckpoint:
    """A canonical state dict (NumPy arrays) and where it came from.

    `release(array)` tells that a tensor of `state` (unmodified since loading) has been
    consumed: for a memory-mapped checkpoint its pages leave this process's resident
    memory (read back from the file if used again); otherwise it does nothing.
    """

    path: str
    state: dict
    layout: str
    has_head: bool
    release: object = field(default=_keep, repr=False, compare=False)


class MappedPages:
    """Drops the resident pages of a memory-mapped file from this process, range by range.

    Tensors of a `torch.load(..., mmap=True)` checkpoint live in a private, read-only-used
    mapping of the file: every page read stays in the resident set until unmapped, so a
    fully read checkpoint costs its whole size in RSS on top of the model built from it.
    `madvise(MADV_DONTNEED)` on such pages only unmaps them; the data stays in the file
    and the page cache. Only addresses inside this file's own mappings (found in
    /proc/self/maps by device and inode) are ever advised, never anonymous memory.
    """

    def __init__(self, path):
        import ctypes
        import mmap

        stat, real = os.stat(path), os.path.realpath(path)
        device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}"
        self.ranges = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[4] == str(stat.st_ino) and (
                        fields[3] == device or fields[5].rstrip("\n") == real):
                    start, end = (int(a, 16) for a in fields[0].split("-"))
                    self.ranges.append((start, end))
        self.page = mmap.PAGESIZE
        self.advice = mmap.MADV_DONTNEED
        self.madvise = ctypes.CDLL(None, use_errno=True).madvise
        self.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)

    @classmethod
    def of(cls, path):
        """A `MappedPages` for `path`, or None where /proc or madvise is unavailable."""
        try:
            pages = cls(path)
        except (OSError, AttributeError):
            return None
        return pages if pages.ranges else None

    def __call__(self, array):
        if not isinstance(array, np.ndarray) or array.size == 0 or min(array.strides,
                                                                       default=0) < 0:
            return
        low = array.__array_interface__["data"][0]   # first byte of a view, then its last
        high = low + sum((n - 1) * s for n, s in zip(array.shape, array.strides)) \
            + array.itemsize
        start, stop = low - low % self.page, -(-high // self.page) * self.page
        for first, last in self.ranges:
            if first <= start and stop <= last:
                self.madvise(start, stop - start, self.advice)
                return


def read_state(path, trust_pickle=False):
    """Read a `.pth`/`.pt`/`.ckpt` or `.safetensors` file into a flat dict of NumPy arrays.

    PyTorch files are loaded with `weights_only=True`: a file whose unpickling would run
    arbitrary code is refused unless `trust_pickle=True` (only for files you trust).
    """
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist.")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} is not a file.")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    obj = _torch_load(path, trust_pickle)
    return _flatten(path, _unwrap(path, obj))


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return dict(load_file(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path!r} is not a readable safetensors file "
                              f"(truncated or corrupt?): {err}") from None


def _torch_load(path, trust_pickle):
    import torch

    try:
        if zipfile.is_zipfile(path):
            # mmap keeps the peak memory near one copy of the weights.
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle,
                              mmap=True)
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        text = str(err)
        # An allow-list refusal names the global it would have had to import.
        if "Weights only load failed" in text and "global" in text.lower():
            raise CheckpointError(
                f"checkpoint {path!r} needs arbitrary unpickling (it stores Python objects "
                "beyond tensors), which could execute code, so it was refused. If you trust "
                "this file, pass --trust-checkpoint to load it with weights_only=False."
            ) from None
        raise CheckpointError(f"checkpoint {path!r} is not a PyTorch checkpoint "
                              f"(unpickling failed: {_first_line(text)}).") from None
    except Exception as err:  # torch raises many types for damaged or foreign files
        with open(path, "rb") as handle:
            zip_magic = handle.read(4) == b"PK\x03\x04"
        if zip_magic or isinstance(err, EOFError):
            raise CheckpointError(f"checkpoint {path!r} could not be read; it looks truncated "
                                  f"or corrupt ({_first_line(str(err))}).") from None
        raise CheckpointError(f"checkpoint {path!r} is not a PyTorch checkpoint, or it is "
                              f"truncated ({type(err).__name__}: {_first_line(str(err))})."
                              ) from None


def _first_line(text):
    return text.strip().splitlines()[0] if text.strip() else "no details"


def _unwrap(path, obj):
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(obj).__name__}, not a state "
                              "dict (expected a dict of tensors, or one under 'state_dict' "
                              "or 'model').")
    for key in ("state_dict", "model", "module"):
        if key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj


def _flatten(path, state):
    import torch

    arrays, origin = {}, {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {path!r}: entry {key!r} is a "
                                  f"{type(value).__name__}, not a tensor; is this a state "
                                  "dict of a Video Swin model?")
        bare = key[len("module."):] if key.startswith("module.") else key
        if bare in arrays:
            raise CheckpointError(f"checkpoint {path!r}: entries {origin[bare]!r} and {key!r} "
                                  "are the same tensor once the DataParallel `module.` prefix "
                                  "is removed")
        arrays[bare], origin[bare] = value.detach().cpu().numpy(), key
    if not arrays:
        raise CheckpointError(f"checkpoint {path!r} holds no tensors.")
    return arrays


def check_finite(path, state, release=_keep):
    """Refuse tensors holding NaN or Inf, naming them."""
    bad = []
    for key, value in state.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad.append(key)
        release(value)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"checkpoint {path!r} has NaN or Inf values in {shown}; "
                              "the file is damaged or was saved from a diverged run.")


def load(path, trust_pickle=False):
    """Read, canonicalise and validate a checkpoint."""
    raw = read_state(path, trust_pickle=trust_pickle)
    release = (zipfile.is_zipfile(path) and MappedPages.of(path)) or _keep
    layout = layouts.detect(raw)
    try:
        state = layouts.canonicalize(raw, layout)
    except layouts.LayoutError as err:
        raise CheckpointError(f"checkpoint {path!r}: {err}") from None
    if not any(k.startswith("backbone.patch_embed.") for k in state):
        sample = ", ".join(list(raw)[:5])
        raise CheckpointError(f"checkpoint {path!r} does not look like a Video Swin model: "
                              f"no patch_embed weights (first keys: {sample}).")
    check_finite(path, state, release)
    has_head = any(k.startswith("cls_head.") for k in state)
    return LoadedCheckpoint(path=path, state=state, layout=layout.name, has_head=has_head,
                      release=release)


def cache_dir():
    """Where downloaded checkpoints are kept (VIDEOSWIN_CACHE or ~/.cache/videoswin)."""
    root = os.environ.get("VIDEOSWIN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "videoswin")
    return os.path.join(root, "checkpoints")


def fetch(url, filename=None, timeout=30, log=print):
    """Download `url` into the cache once (atomically) and return the local path."""
    import urllib.error
    import urllib.request

    filename = filename or url.rsplit("/", 1)[-1]
    target = os.path.join(cache_dir(), filename)
    if os.path.exists(target):
        return target
    os.makedirs(cache_dir(), exist_ok=True)
    partial = f"{target}.partial"
    log(f"  downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        if os.path.exists(partial):
            os.remove(partial)
        reason = getattr(err, "reason", err)
        raise CheckpointError(f"could not download the checkpoint from {url} ({reason}). If "
                              "this machine is offline, download it elsewhere and pass "
                              "--checkpoint PATH.") from None
    os.replace(partial, target)
    return target
