"""Load an official Video Swin checkpoint safely and bring it to the canonical layout.

Keys are brought to the canonical layout by `converter.layouts`. A zip checkpoint's bytes
are checked against the CRC-32 of each of its records; `fetch` downloads only over https
into a cache it names itself, checking a published sha256.
"""

import os
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from converter import layouts
from videoswin.core import naming


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
    `upcast`: canonical key -> original dtype ('bfloat16', 'float16') of tensors read as
    float32. `crc32`: 'verified' (every zip record matched its CRC-32), 'not recorded' (a
    zip saved without CRCs) or 'not applicable' (safetensors, legacy torch format).
    """

    path: str
    state: dict
    layout: str
    has_head: bool
    release: object = field(default=_keep, repr=False, compare=False)
    upcast: dict = field(default_factory=dict)
    crc32: str = "not applicable"


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
    bfloat16 and float16 tensors are read as float32.
    """
    return _read(path, trust_pickle)[0]


def _read(path, trust_pickle):
    """(arrays, {key: original dtype} of upcast tensors, crc32 status) of a checkpoint."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist.")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} is not a file.")
    if path.endswith(".safetensors"):
        return (*_flatten(path, _read_safetensors(path)), "not applicable")
    crc = check_records(path) if zipfile.is_zipfile(path) else "not applicable"
    obj = _torch_load(path, trust_pickle)
    return (*_flatten(path, _unwrap(path, obj)), crc)


def check_records(path, chunk=1 << 22):
    """Check every record of a zip checkpoint against its CRC-32; returns 'verified', or
    'not recorded' for a file saved without CRCs (`torch.serialization.set_crc32_options`).

    `torch.load` does not check them, so flipped bytes inside a tensor would load silently.
    Each record is streamed once (`ZipFile` compares the CRC at its end); a mismatch is a
    `CheckpointError` naming the file and the record.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            if not any(record.CRC for record in records):
                return "not recorded"
            for record in records:
                try:
                    with archive.open(record) as stream:
                        while stream.read(chunk):
                            pass
                except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError,
                        zlib.error) as err:
                    reason = ("its bytes do not match the CRC-32 recorded when it was saved"
                              if "CRC" in str(err) else f"it cannot be read: {err}")
                    raise CheckpointError(
                        f"checkpoint {path!r} is damaged: record {record.filename!r} fails "
                        f"its integrity check ({reason}). Download or copy the file again."
                    ) from None
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"checkpoint {path!r} could not be read; it looks truncated "
                              f"or corrupt ({_first_line(str(err))}).") from None
    return "verified"


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
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
    """(arrays, upcast) of a dict of tensors: NumPy arrays keyed without `module.`, and
    {key: dtype} of the bfloat16/float16 tensors read as float32."""
    import torch

    arrays, origin, upcast = {}, {}, {}
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
        if value.dtype in (torch.bfloat16, torch.float16):
            upcast[bare] = str(value.dtype).removeprefix("torch.")
            value = value.float()
        try:
            arrays[bare] = value.detach().cpu().numpy()
        except (TypeError, RuntimeError):
            raise CheckpointError(f"checkpoint {path!r}: entry {key!r} has dtype "
                                  f"{value.dtype}, which cannot be converted") from None
        origin[bare] = key
    if not arrays:
        raise CheckpointError(f"checkpoint {path!r} holds no tensors.")
    return arrays, upcast


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
    raw, upcast, crc = _read(path, trust_pickle)
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
                            release=release, crc32=crc,
                            upcast={layout.to_canonical(k): v for k, v in upcast.items()})


def cache_dir():
    """Where downloaded checkpoints are kept (VIDEOSWIN_CACHE or ~/.cache/videoswin)."""
    root = os.environ.get("VIDEOSWIN_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "videoswin")
    return os.path.join(root, "checkpoints")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_YOURSELF = "download it yourself and pass --checkpoint PATH."


def cached_name(url, filename=None):
    """The cache's file name for `url`: `filename` (the config's) if it is a plain name,
    else the URL's last path segment; sanitised to [A-Za-z0-9._-], no leading dot."""
    from urllib.parse import unquote, urlsplit

    try:
        name = naming.check_plain_name(filename) if filename else None
    except ValueError:
        name = None
    name = name or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", name))[-200:].lstrip(".")
    return name or "checkpoint.pth"


def _published(sha256, url):
    """`sha256` lower-cased, or None; a `CheckpointError` if it is not a SHA-256 hex digest."""
    if not sha256:
        return None
    digest = str(sha256).strip().lower()
    if not _HEX64.fullmatch(digest):
        raise CheckpointError(f"the published sha256 {sha256!r} of {url} is not a 64-digit "
                              "hex SHA-256 digest; fix the config's checkpoint.sha256.")
    return digest


def matches_published(path, sha256, digest=None):
    """Whether the file at `path` (or its hex `digest`, if already computed) is the
    published checkpoint: None when no sha256 is published, else True or False."""
    if not sha256:
        return None
    from videoswin.core.manifest import sha256 as file_sha256

    return (digest or file_sha256(path)).lower() == str(sha256).strip().lower()


def _opener():
    """A urllib opener that follows redirects only to other https:// URLs."""
    import urllib.request

    class HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if not newurl.lower().startswith("https://"):
                raise CheckpointError(f"{req.full_url} redirects to {newurl}, which is not "
                                      f"https://, so it was not followed; {_YOURSELF}")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(HttpsOnlyRedirects)


def fetch(url, filename=None, sha256=None, timeout=30, log=print):
    """Download `url` (https:// only) into the cache once, atomically, and return its path.

    The cached file is named by `cached_name` and stays inside `cache_dir()`. When `sha256`
    is given it is checked after the download and on every later use of the cached copy; a
    mismatch deletes the file and raises `CheckpointError`.
    """
    import hashlib
    import http.client
    import tempfile
    import urllib.error
    from urllib.parse import urlsplit

    parts = urlsplit(str(url))
    if parts.scheme.lower() != "https" or not parts.netloc:
        raise CheckpointError(f"refusing to download the checkpoint from {url!r}: only "
                              f"https:// URLs are fetched; {_YOURSELF}")
    expected = _published(sha256, url)
    folder = cache_dir()
    try:
        target = naming.inside(folder, cached_name(url, filename), "cached checkpoint name")
    except ValueError as err:
        raise CheckpointError(f"cannot cache the checkpoint of {url}: {err}") from None

    if os.path.lexists(target):
        if not os.path.isfile(target):
            raise CheckpointError(f"cached checkpoint {target!r} is not a file; remove it.")
        if expected:
            from videoswin.core.manifest import sha256 as file_sha256

            _check_digest(url, target, expected, file_sha256(target),
                          "the cached copy", "run again to download it afresh")
        log(f"  using the cached {target}" + (" (sha256 verified)" if expected else ""))
        return target

    os.makedirs(folder, exist_ok=True)
    log(f"  downloading {url}")
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{os.path.basename(target)}.",
                                         suffix=".partial", delete=False)
    digest = hashlib.sha256()
    try:
        with handle, _opener().open(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                handle.write(block)
                digest.update(block)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        os.remove(handle.name)
        reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
        raise CheckpointError(f"could not download the checkpoint from {url} ({reason}). If "
                              "this machine is offline, download it elsewhere and pass "
                              "--checkpoint PATH.") from None
    except BaseException:
        os.remove(handle.name)
        raise
    if expected:
        _check_digest(url, handle.name, expected, digest.hexdigest(), "the download",
                      "the server sent other bytes than the published file (or the config's "
                      "sha256 is wrong)")
    os.replace(handle.name, target)
    return target


def _check_digest(url, path, expected, actual, what, advice):
    """Delete `path` and raise unless its sha256 `actual` is the `expected` one."""
    if actual != expected:
        os.remove(path)
        raise CheckpointError(f"{what} of {url} does not have the published sha256 (expected "
                              f"{expected}, got {actual}), so it was deleted: {advice}; or "
                              f"{_YOURSELF}")
