"""`Manifest`: the versioned record of one conversion folder (`manifest.json`).

Every reader and writer goes through this module: the converter writes it, parity rewrites
its parity part, publishing adds `hub`, and the zoo, the predictor and `from_preset` read it.

Keys (schema version 1; manifests written before versioning carry no `schema_version` and
are read as version 1):
- `schema_version`, `config` (the model name, a plain file-name stem), `config_path`;
- `spec` (`ModelSpec.to_dict()`), `layout`, `with_head`, `coverage`;
- `source_checkpoint`: `name`, `sha256`, `size`, `random_weights_seed`, `url`, and since
  the integrity checks `published_sha256`, `is_published` (null when unknown), `crc32`
  (verified | not recorded | not applicable) and `upcast_to_float32` ({key: stored dtype});
  for a backbone inflated from a 2D (image) checkpoint (`--inflate-2d`), also
  `inflated_from_2d` (true) and `layout_2d` (swin2d-official | swin2d-timm), the sha256
  and name being the 2D file's;
- `inflation` (inflated backbones only): `layout_2d`, `tensors_used`, `tensors_dropped`
  ({reason: count}: head, relative_position_index, attn_mask), `bias_tables_resized`,
  `bias_table_resize` (e.g. ["23x23 -> 13x13"]), `patch_kernel_repeated` (temporal patch),
  `bias_tables_tiled` (2Wd-1);
- `params`, `backbone_params`, `flops` (`macs_per_view`, `gmacs_per_view`, `view`), `versions`;
- `parity`: `status` (passed | failed | skipped), `reference`, `tolerance`, `clips`, `backends`;
  for inflated backbones also `inflation_check` (`reference`, `status`, `max_abs_diff`,
  `tensors`): the inflated weights against mmaction2's own `inflate_weights`;
- `artifacts`: file name -> `{size, sha256}`; an export's files are listed by their path
  relative to the folder (`/`-separated, `naming.check_relative_name`), e.g. `NAME.onnx`,
  `NAME_saved_model/saved_model.pb`, `NAME_saved_model/variables/variables.index`,
  `NAME_openvino/NAME.xml`;
- `exports` (after `videoswin-export` or `videoswin-convert --export`): FORMAT (one of
  `naming.EXPORT_FORMATS`: onnx, saved_model, litert, openvino) -> `status` (passed |
  failed), `files` (relative paths, each listed in `artifacts`), `route` (how it was made),
  `clip` ([T, H, W] the graph takes), `batch` ("dynamic" or an int), `max_abs_diff` (logits,
  against `reference`, on the parity clips; null only for a failed export that produced no
  output), `top1_agreement`, `tolerance`, `reference`, `runtime` ("name version" of the
  runtime that ran it, in a fresh process). A failed export keeps its files, still listed
  and hashed, so that the failure can be inspected; consumers use `passed` ones only;
- `hub` (after publishing; the latest publish): `repo_id`, `url` (the repository page),
  `revision` (the branch), and since the published links `commit` (40 hex digits: the head
  after the publish) and `files`: repository path (relative, `/`-separated, e.g. `backbone/config.json`) ->
  `{url, size, sha256}` of every file published, the URL pinned to `commit`. Publishing
  rewrites only this key; publishing unchanged files again leaves the file byte-identical.
"""

import hashlib
import json
import math
import os
import re
import tempfile

from videoswin.core import naming
from videoswin.core.spec import ModelSpec

SCHEMA_VERSION = 1
REQUIRED = ("config", "spec", "source_checkpoint", "params", "parity", "artifacts")
PARITY_STATUSES = ("passed", "failed", "skipped")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the reason."""


def sha256(path, chunk=1 << 20):
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(path, digest=None):
    """`{size, sha256}` of a file; `digest` if already computed from its final bytes."""
    return {"size": os.path.getsize(path), "sha256": digest or sha256(path)}


class Manifest(dict):
    """A conversion manifest: the JSON object, validated, with typed accessors."""

    source = "manifest"                 # where it was read from, for messages

    @classmethod
    def read(cls, folder):
        """The manifest of a conversion folder; `ManifestError` if missing or invalid."""
        path = os.path.join(folder, naming.MANIFEST)
        if not os.path.isfile(path):
            raise ManifestError(f"{path} not found: {folder} is not a videoswin-convert "
                                "output folder")
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle, parse_constant=_refuse_constant)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise ManifestError(f"{path}: not a readable JSON manifest ({err})") from None
        return cls.parse(data, source=path)

    @classmethod
    def parse(cls, data, source="manifest"):
        manifest = cls(data) if isinstance(data, dict) else None
        if manifest is None:
            raise ManifestError(f"{source}: a manifest must be a JSON object")
        manifest.source = str(source)
        manifest.validate()
        return manifest

    def _fail(self, problem):
        raise ManifestError(f"{self.source}: {problem}")

    def validate(self):
        """Check the schema; raises `ManifestError` naming the key at fault."""
        version = self.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            self._fail(f"schema_version {version!r} is not a positive int")
        if version > SCHEMA_VERSION:
            self._fail(f"schema_version {version} is newer than this videoswin reads "
                       f"({SCHEMA_VERSION}); upgrade videoswin")
        missing = [k for k in REQUIRED if k not in self]
        if missing:
            self._fail(f"lacks {', '.join(missing)}; it was not written by videoswin-convert")
        try:
            naming.check_plain_name(self["config"], "config name")
        except ValueError as err:
            self._fail(str(err))
        if not isinstance(self["spec"], dict):
            self._fail("`spec` is not an object")
        try:
            self._spec = ModelSpec.from_dict(self["spec"])
        except (TypeError, ValueError, KeyError) as err:
            self._fail(f"`spec` is not a model spec ({err})")
        if not _count(self["params"]):
            self._fail(f"`params` {self['params']!r} is not an int")
        parity = self["parity"]
        if not isinstance(parity, dict) or parity.get("status") not in PARITY_STATUSES:
            self._fail(f"`parity.status` must be one of {PARITY_STATUSES}")
        if not isinstance(self["source_checkpoint"], dict):
            self._fail("`source_checkpoint` is not an object")
        artifacts = self["artifacts"]
        if not isinstance(artifacts, dict):
            self._fail("`artifacts` is not an object")
        for name, record in artifacts.items():
            try:
                naming.check_relative_name(name, "artifact")
            except ValueError as err:
                self._fail(str(err))
            if (not isinstance(record, dict) or not _count(record.get("size"))
                    or not _SHA256.fullmatch(str(record.get("sha256")))):
                self._fail(f"artifact {name!r} needs an int `size` and a hex `sha256`")
        hub = self.get("hub")
        if hub is not None and not (isinstance(hub, dict) and isinstance(hub.get("repo_id"), str)
                                    and isinstance(hub.get("url"), str)):
            self._fail("`hub` needs `repo_id` and `url` strings")
        if hub is not None:
            self._validate_hub_links(hub)
        if self.get("exports") is not None:
            self._validate_exports(self["exports"])

    def _validate_exports(self, exports):
        """`exports`: FORMAT -> the record of one proven export (see the module docstring)."""
        if not isinstance(exports, dict):
            self._fail("`exports` is not an object")
        for fmt, record in exports.items():
            where = f"`exports.{fmt}`"
            if fmt not in naming.EXPORT_FORMATS:
                self._fail(f"`exports` format {fmt!r} is not one of {naming.EXPORT_FORMATS}")
            if not isinstance(record, dict):
                self._fail(f"{where} is not an object")
            if record.get("status") not in naming.EXPORT_STATUSES:
                self._fail(f"{where}.status must be one of {naming.EXPORT_STATUSES}")
            files = record.get("files")
            if not isinstance(files, list) or not files:
                self._fail(f"{where}.files must be a non-empty list of paths")
            for path in files:
                if path not in self["artifacts"]:
                    self._fail(f"{where}.files names {path!r}, which `artifacts` does not list")
            clip = record.get("clip")
            if not (isinstance(clip, list) and len(clip) == 3
                    and all(_count(n) and n > 0 for n in clip)):
                self._fail(f"{where}.clip must be [T, H, W] of positive ints")
            batch = record.get("batch")
            if batch != "dynamic" and not (_count(batch) and batch > 0):
                self._fail(f"{where}.batch must be 'dynamic' or a positive int")
            for key in ("route", "reference", "runtime"):
                if not isinstance(record.get(key), str):
                    self._fail(f"{where}.{key} must be a string")
            for key in ("max_abs_diff", "top1_agreement", "tolerance"):
                value = record.get(key)
                missing_ok = key != "tolerance" and record["status"] == "failed"
                if not (_number(value) or (value is None and missing_ok)):
                    self._fail(f"{where}.{key} must be a number")

    def _validate_hub_links(self, hub):
        """`hub.commit` and `hub.files` (the published links), when present."""
        commit = hub.get("commit")
        if commit is not None and not (isinstance(commit, str) and _COMMIT.fullmatch(commit)):
            self._fail(f"`hub.commit` {commit!r} is not a 40-digit hex commit id")
        files = hub.get("files")
        if files is None:
            return
        if not isinstance(files, dict):
            self._fail("`hub.files` is not an object")
        for path, record in files.items():
            try:
                naming.check_relative_name(path, "published file")
            except ValueError:
                self._fail(f"`hub.files` path {path!r} is not a relative repository path")
            if (not isinstance(record, dict) or not isinstance(record.get("url"), str)
                    or not _count(record.get("size"))
                    or not _SHA256.fullmatch(str(record.get("sha256")))):
                self._fail(f"`hub.files` {path!r} needs a `url` string, an int `size` and a "
                           "hex `sha256`")

    # -- accessors --------------------------------------------------------------------------

    @property
    def name(self):
        """The model name (config stem) that prefixes every artifact."""
        return self["config"]

    @property
    def spec(self):
        return self._spec

    @property
    def with_head(self):
        return bool(self.get("with_head", naming.keras_file(self.name) in self["artifacts"]))

    @property
    def parity_status(self):
        return self["parity"]["status"]

    @property
    def random_seed(self):
        """The seed of a `--random-weights` conversion, or None for a real checkpoint."""
        return self["source_checkpoint"].get("random_weights_seed")

    @property
    def is_random(self):
        return self.random_seed is not None

    @property
    def hub(self):
        return self.get("hub")

    def keras_file(self, backbone=False):
        """File name of the classifier (or backbone) `.keras` archive."""
        return naming.keras_file(self.name, backbone)

    def required_files(self):
        """The model files a complete conversion of this kind holds."""
        return naming.model_files(self.name, self.with_head)

    def verify(self, folder, names=None):
        """Check that the listed artifacts (default: all) in `folder` have the recorded size
        and sha256; `ManifestError` naming the first file that differs or is missing."""
        for name in self.required_files():
            if name not in self["artifacts"]:
                self._fail(f"does not list {name}; the conversion is incomplete")
        for name in self["artifacts"] if names is None else names:
            record = self["artifacts"].get(name)
            if record is None:
                self._fail(f"does not list {name}")
            try:
                path = naming.inside(folder, name, "artifact", relative=True)
            except ValueError as err:
                self._fail(str(err))
            if not os.path.isfile(path):
                self._fail(f"lists {name}, but {path} is missing")
            if os.path.getsize(path) != record["size"] or sha256(path) != record["sha256"]:
                self._fail(f"{path} differs from the manifest (recorded size {record['size']}, "
                           f"sha256 {record['sha256'][:12]}...): it changed after conversion")

    # -- writing ----------------------------------------------------------------------------

    def to_json(self):
        """Strict JSON text (no NaN or Infinity; non-finite numbers become null)."""
        data = {"schema_version": SCHEMA_VERSION, **self}
        return json.dumps(_strict(data), indent=2, allow_nan=False) + "\n"

    def write(self, folder):
        """Validate, then write `folder/manifest.json` atomically; returns its path."""
        self.source = os.path.join(folder, naming.MANIFEST)
        self.validate()
        write_text_atomic(self.source, self.to_json())
        return self.source


def write_text_atomic(path, text):
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.",
                                   suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, data):
    """Strict JSON (non-finite numbers as null), written atomically."""
    write_text_atomic(path, json.dumps(_strict(data), indent=2, allow_nan=False) + "\n")


def _strict(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_strict(v) for v in value]
    if hasattr(value, "tolist"):                 # NumPy scalars and arrays
        return _strict(value.tolist())
    return value


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")
