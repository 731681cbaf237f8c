"""`videoswin-zoo`: generate MODEL_ZOO.md from the configs and any conversion manifests.

Every figure in the file is computed or read, never typed: params and FLOPs from the
architecture (`videoswin.core.flops`, checked against Keras's `count_params()` by the tests),
published accuracy from each config's `metrics`, parity, exports and artifacts from the
`manifest.json` files `videoswin-convert` (and publishing) write: the Exports column lists the
formats whose export passed its check (`exports`), and each published model links every file
it published with its size and sha256 (`hub.files`, recorded by `videoswin-publish`). The
output has no timestamps, so `videoswin-zoo --check` can tell whether the committed file is
current.

Manifests of conversions made with `--random-weights` are ignored: they prove the weight
mapping, not a published checkpoint, so they must not show up as conversions.
"""

import difflib
import re
import sys
from pathlib import Path

import click

from converter.config import CONFIG_ROOT, list_configs, load_spec
from videoswin.core import naming
from videoswin.core.archs import LABELS as ARCH_LABELS
from videoswin.core.backends import BACKENDS
from videoswin.core.datasets import DATASETS
from videoswin.core.manifest import Manifest, ManifestError, write_text_atomic

ROOT = CONFIG_ROOT.parent
COMMITTED = ROOT / "MODEL_ZOO.md"          # the checkout's own copy
DEFAULT_OUTPUT = Path("MODEL_ZOO.md")      # in the current folder, as ./converted is
DEFAULT_MANIFESTS = Path("converted")     # where videoswin-convert writes by default
ORIGIN_LABELS = {"official": "official 0.x", "mmaction2": "mmaction2 1.x"}
EXPORT_LABELS = {"onnx": "ONNX", "saved_model": "SavedModel", "litert": "LiteRT",
                 "openvino": "OpenVINO"}
CHECK_DIFF_LINES = 40


class ZooError(ValueError):
    """A manifest or config the zoo cannot use; the message names the file at fault."""


# -- manifests -----------------------------------------------------------------------------

def find_manifests(dirs):
    """Every `manifest.json` under `dirs` (a folder's own one included), sorted, deduplicated."""
    found = set()
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise ZooError(f"manifest folder {d} does not exist")
        # Hidden folders are a conversion's work in progress or a dead run's leftovers.
        found.update(p.resolve() for p in d.rglob(naming.MANIFEST) if p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(d).parts))
    return sorted(found)


def read_manifest(path):
    try:
        return Manifest.read(Path(path).parent)
    except ManifestError as e:
        raise ZooError(str(e)) from None


def match_manifests(paths, specs, log=lambda message: None):
    """{config name: manifest}: the usable manifest of each config.

    Synthetic (random-weights) manifests and manifests of configs not in the zoo are left out,
    with a note. A manifest whose params differ from the config's model is an error: it was
    made from another architecture or by an older model. Of several real manifests for one
    config, a published one wins, then a passing one, then the first path.
    """
    by_name = {s.name: s for s in specs}
    chosen = {}
    for path in paths:
        manifest = read_manifest(path)
        name = manifest.name
        if manifest.is_random:
            log(f"note: {path}: random weights (seed {manifest.random_seed}), a synthetic "
                "check only; not listed as a conversion")
            continue
        spec = by_name.get(name)
        if spec is None:
            log(f"note: {path}: config {name!r} is not one of the zoo's configs; ignored")
            continue
        with_head = manifest.with_head
        expected = spec.params(with_head)
        if manifest["params"] != expected:
            recorded = manifest["params"]
            recorded = f"{recorded:,}" if isinstance(recorded, int) else repr(recorded)
            raise ZooError(f"{path}: records {recorded} params but config {name} "
                           f"builds {expected:,} ({'classifier' if with_head else 'backbone'}); "
                           "re-run videoswin-convert or remove the stale manifest")
        if name in chosen:
            kept = min(chosen[name], (manifest, path), key=_preference)
            log(f"note: several manifests for {name}; using {kept[1]}")
            chosen[name] = kept
        else:
            chosen[name] = (manifest, path)
    return {name: manifest for name, (manifest, _) in chosen.items()}


def _preference(manifest_and_path):
    manifest, path = manifest_and_path
    return (not manifest.get("hub"), manifest["parity"].get("status") != "passed", str(path))


# -- cells ---------------------------------------------------------------------------------

def _model_cell(spec):
    arch = ARCH_LABELS.get(spec.arch_name) or (
        f"Swin (C={spec.embed_dim}, depths {'-'.join(map(str, spec.depths))})")
    origin = ORIGIN_LABELS.get(spec.origin, spec.origin)
    return f"{arch} ({origin})<br>[`{spec.name}`]({_config_path(spec)})"


def _config_path(spec):
    path = Path(spec.path).resolve()
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _views(spec):
    p = spec.pipeline
    return f"{p.clip_len}x{p.num_clips}x{p.num_crops}"


def _accuracy_cell(spec):
    m = spec.metrics
    if m.top1 is None:
        return "not published"
    values = [v for v in (m.top1, m.top5) if v is not None]
    # The published precision: one decimal (84.0) unless a figure has two (78.90 / 93.77).
    digits = 1 if all(round(v, 1) == v for v in values) else 2
    text = " / ".join(f"{v:.{digits}f}" for v in values)
    return f"[{text}]({m.source})" if m.source else text


def _parity_cell(manifest):
    if manifest is None:
        return "not converted yet"
    parity = manifest["parity"]
    status = parity.get("status")
    backends = parity.get("backends") or {}
    if status == "skipped" or not backends:
        return "converted, parity not checked"
    order = [b for b in BACKENDS if b in backends] + sorted(set(backends) - set(BACKENDS))
    parts = []
    for backend in order:
        diffs = [backends[backend].get(k) for k in ("max_abs_logits", "max_abs_features")]
        diffs = [d for d in diffs if d is not None]
        parts.append(f"{backend} {max(diffs):.1e}" if diffs else f"{backend} n/a")
    text = " · ".join(parts)
    if (manifest.get("source_checkpoint") or {}).get("is_published") is False:
        text = f"**not the published checkpoint**: {text}"
    return text if status == "passed" else f"**{status}**: {text}"


def _exports_cell(manifest):
    """The export formats that passed their check; failed ones flagged."""
    if manifest is None:
        return "—"
    exports = manifest.get("exports")
    if not isinstance(exports, dict) or not exports:
        return "none"
    order = [f for f in EXPORT_LABELS if f in exports] + sorted(set(exports) - set(EXPORT_LABELS))
    parts = []
    for fmt in order:
        record = exports[fmt] if isinstance(exports[fmt], dict) else {}
        label = EXPORT_LABELS.get(fmt, str(fmt).replace("|", "\\|"))
        status = record.get("status")
        parts.append(label if status == "passed" else f"~~{label}~~ ({status or 'unknown'})")
    return " · ".join(parts)


def _anchor(text):
    """GitHub's heading anchor for `text`."""
    return re.sub(r"[^a-z0-9 _-]", "", text.lower()).replace(" ", "-")


def _artifacts_cell(manifest):
    if manifest is None:
        return "—"
    hub = manifest.get("hub")
    if not hub:
        return "not published"
    return f"[{hub['repo_id']}]({hub['url']}) ([sha256](#{_anchor(manifest['config'])}))"


def _artifact_section(manifest):
    hub, name = manifest["hub"], manifest["config"]
    revision = hub.get("revision") or "main"
    base = hub["url"].rstrip("/")
    commit = f" (commit `{hub['commit']}`)" if hub.get("commit") else ""
    lines = [f"### {name}", "",
             f"[{hub['repo_id']}]({base}) at revision `{revision}`{commit}; source checkpoint "
             f"`{manifest['source_checkpoint'].get('name')}` (sha256 "
             f"`{manifest['source_checkpoint'].get('sha256')}`).", "",
             "| file | bytes | sha256 |", "|---|---:|---|"]
    # The files the publish recorded (every file uploaded, each URL pinned to its commit);
    # a manifest from before those records: its artifacts, at the revision.
    files = hub.get("files") or {
        file: dict(record, url=f"{base}/blob/{revision}/{file}")
        for file, record in manifest.get("artifacts", {}).items()}
    for file, record in sorted(files.items()):
        lines.append(f"| [{file}]({record['url']}) | {record['size']:,} "
                     f"| `{record['sha256']}` |")
    return lines + [""]


# -- document ------------------------------------------------------------------------------

PREAMBLE = """\
# Model zoo

Generated by `videoswin-zoo` from `configs/recognition/swin/` and the conversion manifests;
do not edit by hand (`videoswin-zoo --check` fails when this file is out of date).

- **Views** are frames x clips x crops. Kinetics models are tested on 4 clips of 32 frames
  taken every 2nd frame, short side resized to 224, three 224x224 crops per clip (12 views);
  the class probabilities (softmax) of the views are averaged.
- **Top-1 / Top-5** are the published figures, each linked to its source; this project has
  not re-evaluated them.
- **Params** count every weight of the Keras classifier the config builds (backbone and
  `fc_cls`); a test checks the count against Keras's `count_params()`.
- **FLOPs** are multiply-accumulates of one view (the config's clip, e.g. 32x224x224),
  counted analytically from the layer shapes by `videoswin.core.flops`, as in the papers: the
  patch-embedding Conv3d, attention (qkv, q @ k^T, attn @ v, proj, window padding included),
  MLP, patch merging and head; no norms, softmax, GELU or adds. Multiply by clips x crops
  for a whole video.
- **Parity** is the largest |difference| of logits and features between the converted Keras
  model and the official PyTorch model on each Keras backend (float32, random clips), read
  from the conversion's `manifest.json`. Conversions of random weights
  (`--random-weights`) only test the mapping and are not listed.
- **Exports** are the formats (ONNX, SavedModel, LiteRT, OpenVINO) whose export of the
  converted model was checked against it; a struck-through format failed its check.
- **Artifacts** link the published Hub repository; its section under "Published artifacts"
  lists every published file with its size and sha256.
- **Reproduce** a row's conversion, parity check and artifacts with one command, using the
  config named in the row:

  ```
  videoswin-convert --config configs/recognition/swin/<config>.py
  ```

  or every row (converted one after another, resumable, then this file regenerated) with
  `python scripts/convert_zoo.py` (`--publish ORG` also publishes each to `ORG/<config>`).
"""

COLUMNS = ("Model", "Pretrain", "Window", "Views", "Top-1 / Top-5", "Params", "FLOPs (G)",
           "Parity (max \\|diff\\|)", "Exports", "Artifacts")


def _sort_key(spec):
    arch_rank = list(ARCH_LABELS).index(spec.arch_name) if spec.arch_name in ARCH_LABELS \
        else len(ARCH_LABELS)
    return (arch_rank, spec.embed_dim, tuple(spec.depths), tuple(spec.window_size),
            spec.pretrain or "", spec.origin != "official", spec.name)


def render(specs, manifests):
    """The MODEL_ZOO.md text for `specs` (ModelSpec list) and `manifests` ({name: manifest})."""
    groups = {}
    for spec in specs:
        groups.setdefault(spec.dataset or "other", []).append(spec)
    order = [d for d in DATASETS if d in groups] + sorted(set(groups) - set(DATASETS))
    lines = [PREAMBLE]
    for dataset in order:
        known = DATASETS.get(dataset)
        lines += [f"## {known.title if known else dataset}", ""]
        if known and known.note:
            lines += [known.note, ""]
        lines += ["| " + " | ".join(COLUMNS) + " |",
                  "|" + "|".join(["---"] * 4 + ["---", "---:", "---:", "---", "---", "---"])
                  + "|"]
        for spec in sorted(groups[dataset], key=_sort_key):
            manifest = manifests.get(spec.name)
            cells = [_model_cell(spec), spec.pretrain or "—",
                     "x".join(map(str, spec.window_size)), _views(spec), _accuracy_cell(spec),
                     f"{spec.params():,}", f"{spec.macs().gmacs:.1f}",
                     _parity_cell(manifest), _exports_cell(manifest),
                     _artifacts_cell(manifest)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    published = [manifests[s.name] for s in sorted(specs, key=lambda s: s.name)
                 if s.name in manifests and manifests[s.name].get("hub")]
    if published:
        lines += ["## Published artifacts", ""]
        for manifest in published:
            lines += _artifact_section(manifest)
    return "\n".join(lines).rstrip("\n") + "\n"


def generate(manifest_dirs=(), specs=None, log=lambda message: None):
    """MODEL_ZOO.md text for `specs` (default: all of our configs) and the manifests under
    `manifest_dirs`."""
    specs = specs if specs is not None else [load_spec(c) for c in list_configs()]
    manifests = match_manifests(find_manifests(manifest_dirs), specs, log)
    return render(specs, manifests)


def check(expected, output):
    """(ok, message): whether the file at `output` equals `expected`, with a short diff."""
    output = Path(output)
    if not output.is_file():
        return False, f"{output} does not exist; run `videoswin-zoo` to generate it."
    current = output.read_text("utf-8")
    if current == expected:
        return True, f"{output} is up to date."
    diff = list(difflib.unified_diff(current.splitlines(), expected.splitlines(),
                                     f"{output} (committed)", f"{output} (generated)",
                                     lineterm="", n=1))
    shown = diff[:CHECK_DIFF_LINES]
    if len(diff) > len(shown):
        shown.append(f"... ({len(diff) - len(shown)} more diff lines)")
    return False, "\n".join([f"{output} is out of date; run `videoswin-zoo` to regenerate it.",
                             *shown])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--check", "check_only", is_flag=True,
              help="Write nothing; exit 1 with a diff when OUTPUT differs from what would be "
                   "generated.")
@click.option("--manifests", "manifest_dirs", multiple=True,
              type=click.Path(file_okay=False, exists=True),
              help="Folder searched (recursively) for videoswin-convert's manifest.json; "
                   "repeatable. Default: ./converted if it exists.")
@click.option("--output", type=click.Path(dir_okay=False), default=str(DEFAULT_OUTPUT),
              show_default=True, help="The Markdown file to write or check (relative to the "
              "current folder).")
def main(check_only, manifest_dirs, output):
    """Generate MODEL_ZOO.md: one table per dataset, one row per config, with params, FLOPs,
    published accuracy, parity and published artifacts."""
    from videoswin.core.backends import select_backend

    select_backend()  # nothing here imports keras; keep the project's default if anything does
    if not manifest_dirs and DEFAULT_MANIFESTS.is_dir():
        manifest_dirs = (str(DEFAULT_MANIFESTS),)
    try:
        text = generate(manifest_dirs, log=lambda message: click.echo(message, err=True))
    except ZooError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if check_only:
        ok, message = check(text, output)
        click.echo(message, err=not ok)
        sys.exit(0 if ok else 1)
    write_text_atomic(output, text)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
