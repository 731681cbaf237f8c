"""Serving exports of a conversion (ONNX, TF SavedModel, LiteRT, OpenVINO), each proven.

`export_folder(DIR, formats)` (`videoswin-export`) and `convert(..., export=formats)`
(`videoswin-convert --export`) both come down to `export_into(stage, ...)`:

1. Build. `converter.export_worker` runs in a subprocess on the Keras backend each route
   needs: torch for ONNX, TensorFlow for the SavedModel, LiteRT and OpenVINO (both made
   from the SavedModel). The graph takes clips of one (T, H, W), channels-last float32,
   normalised as the classifier expects, input `video`, output `logits`, batch dynamic or
   fixed. Any build failure raises `ExportError`: nothing is committed.
2. Prove. For each format, `converter.export_check` runs the file in its own runtime in a
   fresh process that loads no Keras (onnxruntime, TensorFlow, the LiteRT interpreter,
   OpenVINO at f32), on the conversion's parity clips (the same count and seed, at the
   export's clip shape), and the logits are compared with the reference: the original
   model (mmaction2's module when installed, else `converter.reference`) when the checkpoint
   is at hand, else the converted `.keras` (which parity proved against the original).
   Passed: max |diff| within the parity tolerance and top-1 agreement 100%.
3. Record. Each export's files go into `artifacts` (relative paths, size and sha256) and
   its proof into `exports` (see `videoswin.core.manifest`). A failed proof keeps the files,
   listed and hashed, with status `failed`; the caller exits 1.

File names: `videoswin.core.naming.export_entry` / `export_main_file`.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from videoswin.core import naming
from videoswin.core.manifest import Manifest, ManifestError, describe, sha256

EXTRA = "pip install 'videoswin[export]'"
MAX_CLIP = 4096
# Modules each format needs to be built, then to be run (its runtime).
BUILD_NEEDS = {"onnx": ("torch", "onnx", "onnxscript"), "saved_model": ("tensorflow",),
               "litert": ("tensorflow",), "openvino": ("tensorflow", "openvino")}
RUN_NEEDS = {"onnx": ("onnx", "onnxruntime"), "saved_model": ("tensorflow",),
             "litert": ("ai_edge_litert",), "openvino": ("openvino",)}


class ExportError(ValueError):
    """The exports cannot be made; the folder is unchanged."""


def parse_formats(text):
    try:
        return naming.parse_export_formats(text)
    except ValueError as err:
        raise ExportError(str(err)) from None


def check_clip(clip):
    """(T, H, W) as a tuple of ints in 1..MAX_CLIP; `ExportError` otherwise. Any size in that
    range works: the model pads to patch and window multiples itself."""
    clip = tuple(clip)
    if len(clip) != 3 or not all(isinstance(n, int) and not isinstance(n, bool)
                                 and 0 < n <= MAX_CLIP for n in clip):
        raise ExportError(f"export clip {' '.join(map(str, clip))}: T H W must be three ints "
                          f"in 1..{MAX_CLIP}")
    return clip


def check_batch(batch):
    """'dynamic' (any batch size at run time) or a positive int."""
    if batch in (None, "dynamic"):
        return "dynamic"
    try:
        value = int(batch)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(batch).strip() not in (str(value), f"+{value}"):
        raise ExportError(f"--batch {batch!r}: give a positive int or 'dynamic'")
    return value


def missing(formats):
    """{format: [missing modules]} for the formats this install cannot build or run."""
    found = {}
    for fmt in formats:
        absent = [m for m in BUILD_NEEDS[fmt] + RUN_NEEDS[fmt]
                  if importlib.util.find_spec(m) is None]
        if absent:
            found[fmt] = sorted(set(absent))
    return found


def check_installed(formats):
    absent = missing(formats)
    if absent:
        which = "; ".join(f"{fmt} needs {', '.join(mods)}" for fmt, mods in absent.items())
        raise ExportError(f"missing export runtime: {which}. Install the export extra: {EXTRA}")


# -- build -----------------------------------------------------------------------------------

def _worker(backend, keras_file, stem, stage, scratch, formats, clip, batch, timeout):
    """Run `converter.export_worker` for `formats` on `backend`; returns its info dict."""
    info = os.path.join(scratch, f"export-{backend}.json")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               VIDEOSWIN_PARENT_PID=str(os.getpid()))
    cmd = [sys.executable, "-m", "converter.export_worker",
           *worker_argv(keras_file, stem, stage, scratch, info, formats, clip, batch)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=_root())
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ExportError(f"building the {', '.join(formats)} export failed on the {backend} "
                          f"backend (exit {proc.returncode}):\n{tail}")
    with open(info, encoding="utf-8") as handle:
        return json.load(handle)


def worker_argv(keras_file, stem, stage, scratch, info, formats, clip, batch):
    """The arguments of `converter.export_worker` (its `main(argv)`) for one build."""
    return [keras_file, stem, stage, scratch, info, "--formats", ",".join(formats),
            "--clip", *map(str, clip), "--batch", str(batch)]


def _root():
    """The folder holding the `converter` package, so `-m converter....` finds it."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(stage, stem, formats, clip, batch, scratch, log=print, timeout=3600):
    """Write the exports of `stage/<stem>.keras` into `stage`; returns (routes, notes).

    The torch worker (ONNX) and the TensorFlow worker (the other formats) run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    keras_file = os.path.join(stage, naming.keras_file(stem))
    groups = [(backend, group) for backend, group in (
        ("torch", [f for f in formats if f == "onnx"]),
        ("tensorflow", [f for f in formats if f != "onnx"])) if group]

    def one(backend, group):
        start = time.perf_counter()
        info = _worker(backend, keras_file, stem, stage, scratch, group, clip, batch, timeout)
        log(f"  built {', '.join(group)} on the {backend} backend in "
            f"{time.perf_counter() - start:.1f}s")
        return info

    log(f"  building {', '.join(formats)} at {'x'.join(map(str, clip))}, batch {batch}, "
        f"in {len(groups)} process(es)...")
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        futures = [pool.submit(one, backend, group) for backend, group in groups]
        infos = [future.result() for future in futures]
    routes, notes = {}, []
    for info in infos:
        routes.update(info["routes"])
        notes += [n for n in info["notes"] if n not in notes]
    for note in notes:
        log(f"  note: {note}")
    return routes, notes


def files_of(stage, stem, fmt):
    """The files of one export, relative to `stage`, sorted."""
    entry = naming.export_entry(stem, fmt)
    path = os.path.join(stage, entry)
    if os.path.isfile(path):
        return [entry]
    found = []
    for root, _, files in os.walk(path):
        found += [os.path.relpath(os.path.join(root, f), stage).replace(os.sep, "/")
                  for f in files]
    return sorted(found)


# -- prove -----------------------------------------------------------------------------------

def run_check(fmt, path, clips_path, batch, timeout=3600):
    """Run `converter.export_check` on one export; returns (logits or None, runtime,
    problems, modules loaded)."""
    with tempfile.TemporaryDirectory(prefix="videoswin-export-check-") as tmp:
        out = os.path.join(tmp, "out.npz")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", VIDEOSWIN_PARENT_PID=str(os.getpid()))
        env.pop("KERAS_BACKEND", None)
        cmd = [sys.executable, "-m", "converter.export_check", fmt, path, clips_path, out,
               "--batch", str(batch)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=_root())
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            return None, None, [f"the runtime failed (exit {proc.returncode}): {tail}"], []
        with np.load(out) as data:
            logits = data["logits"] if data["logits"].size else None
            return (logits, str(data["runtime"]), [str(p) for p in data["problems"]],
                    [str(m) for m in data["modules"]])


def prove(stage, stem, formats, clips, reference_name, reference_logits, tolerance, clip,
          batch, routes, log=print):
    """Run each export in a fresh process and compare; returns {format: record}."""
    from converter.parity import compare

    records = {}
    with tempfile.TemporaryDirectory(prefix="videoswin-export-clips-") as tmp:
        clips_path = os.path.join(tmp, "clips.npy")
        np.save(clips_path, clips)
        for fmt in formats:
            start = time.perf_counter()
            path = os.path.join(stage, naming.export_main_file(stem, fmt))
            if fmt == "saved_model":
                path = os.path.dirname(path)
            logits, runtime, problems, modules = run_check(fmt, path, clips_path, batch)
            if "keras" in modules and fmt != "saved_model":   # TensorFlow imports Keras itself
                problems.append("the runtime's process loaded keras")
            result = {}
            if logits is not None:
                if logits.shape != reference_logits.shape:
                    problems.append(f"logits of shape {logits.shape}, expected "
                                    f"{reference_logits.shape}")
                else:
                    result = compare(reference_logits, logits)
            diff, top1 = result.get("max_abs"), result.get("top1_agreement")
            passed = (not problems and diff is not None and diff <= tolerance
                      and top1 == 1.0)
            records[fmt] = {
                "status": "passed" if passed else "failed",
                "files": files_of(stage, stem, fmt),
                "route": routes.get(fmt, "unknown"),
                "clip": list(clip), "batch": batch,
                "max_abs_diff": diff, "top1_agreement": top1, "tolerance": tolerance,
                "reference": reference_name,
                "runtime": runtime or f"{RUN_NEEDS[fmt][-1]} (failed to run)",
            }
            if problems:
                records[fmt]["problems"] = problems
            shown = "n/a" if diff is None else f"{diff:.2e}"
            log(f"  {fmt}: max |diff| logits {shown}, top-1 agreement "
                f"{'n/a' if top1 is None else f'{top1:.0%}'} in {runtime or 'its runtime'} "
                f"({'ok' if passed else 'FAILED'}, {time.perf_counter() - start:.1f}s)"
                + "".join(f"\n    problem: {p}" for p in problems))
    return records


def export_into(stage, stem, formats, clip, batch, tolerance, parity_clips, reference,
                scratch, log=print):
    """Build and prove `formats` for the classifier in `stage` (see the module docstring).

    `reference(clips) -> (name, logits)` gives the reference logits; `parity_clips` is the
    manifest's `parity.clips` (`count`, `seed`). Returns (records, {file: describe}).
    """
    from converter.parity import make_clips

    formats, clip, batch = parse_formats(formats), check_clip(clip), check_batch(batch)
    check_installed(formats)
    routes, _ = build(stage, stem, formats, clip, batch, scratch, log)
    parity_clips = parity_clips or {}
    clips = make_clips(int(parity_clips.get("count") or 2), clip,
                       int(parity_clips.get("seed") or 0))
    start = time.perf_counter()
    reference_name, reference_logits = reference(clips)
    log(f"  reference ({reference_name}) on {len(clips)} clip(s) of "
        f"{'x'.join(map(str, clip))} in {time.perf_counter() - start:.1f}s")
    records = prove(stage, stem, formats, clips, reference_name,
                    np.asarray(reference_logits), tolerance, clip, batch, routes, log)
    described = {}
    for record in records.values():
        for name in record["files"]:
            described[name] = describe(naming.inside(stage, name, "export file", relative=True))
    return records, described


# -- an existing conversion folder -----------------------------------------------------------

def _keras_reference(folder, stem, backend):
    """Reference logits from the converted `.keras` run by the parity worker on `backend`."""
    from converter.parity import run_backend

    def reference(clips):
        with tempfile.TemporaryDirectory(prefix="videoswin-export-ref-") as tmp:
            path = os.path.join(tmp, "clips.npy")
            np.save(path, clips)
            outputs = run_backend(backend, folder, stem, path)
        return f"the converted {stem}.keras on {backend} (no checkpoint given)", \
            outputs["logits/keras"]

    return reference


def _checkpoint_reference(spec, state, reference):
    from converter.parity import reference_outputs

    def run(clips):
        name, _, logits = reference_outputs(spec, state, clips, reference)
        return name, logits

    return run


def export_folder(folder, formats, clip=None, batch="dynamic", tolerance=None,
                  checkpoint=None, reference="auto", trust_checkpoint=False, log=print):
    """Export the conversion in `folder` (`videoswin-export`); returns the new manifest.

    The folder is checked against its manifest first (`ManifestError`). The exports, the
    manifest and the parity reports are written as one new set that replaces the folder
    under its lock (`converter.artifacts.Output`), exports of other formats and files that
    no conversion wrote being kept; a failure while building changes nothing
    (`ExportError`). The reference is the original model when `checkpoint` is given (or,
    for a `--random-weights` conversion, fabricated again from its seed), else the
    converted `.keras` on the torch backend.
    """
    from converter import artifacts, parity
    from converter import checkpoint as ckpt
    from converter.convert import _refabricate

    manifest = Manifest.read(folder)
    formats = parse_formats(formats)
    if not manifest.with_head:
        raise ExportError(f"{folder} holds a backbone-only conversion; exports serve the "
                          "classifier (logits), so they need a conversion with its head")
    clip = check_clip(clip or manifest.spec.clip_shape)
    batch = check_batch(batch)
    check_installed(formats)
    stem = manifest.name
    if tolerance is None:
        tolerance = manifest["parity"].get("tolerance")
        tolerance = parity.DEFAULT_TOLERANCE if tolerance is None else tolerance
    with tempfile.TemporaryDirectory(prefix="videoswin-random-") as tmp, \
            artifacts.Output(folder, force=True) as out:
        manifest = Manifest.read(folder)
        manifest.verify(folder)
        if checkpoint is None and manifest.is_random:
            checkpoint = _refabricate(manifest, tmp)
        if checkpoint is not None:
            loaded = ckpt.load(checkpoint, trust_pickle=trust_checkpoint)
            digest = manifest["source_checkpoint"].get("sha256")
            if digest and sha256(checkpoint) != digest:
                raise ManifestError(f"{checkpoint} is not the checkpoint {folder} was "
                                    f"converted from (the manifest records sha256 {digest})")
            reference_fn = _checkpoint_reference(manifest.spec, loaded.state, reference)
        else:
            backends = parity.installed_backends()
            reference_fn = _keras_reference(folder, stem,
                                            "torch" if "torch" in backends else backends[0])
        entries = [naming.export_entry(stem, f) for f in formats]
        json_name, md_name = naming.parity_files(stem)
        stage = out.stage(from_existing=True, skip=(naming.MANIFEST, json_name, md_name,
                                                    *entries))
        for name in list(manifest["artifacts"]):
            if any(name == e or name.startswith(e + "/") for e in entries):
                del manifest["artifacts"][name]
        records, described = export_into(
            stage, stem, formats, clip, batch, tolerance, manifest["parity"].get("clips"),
            reference_fn, out.scratch(), log)
        manifest["artifacts"].update(described)
        merged = {**(manifest.get("exports") or {}), **records}
        manifest["exports"] = {f: merged[f] for f in naming.EXPORT_FORMATS if f in merged}
        manifest["artifacts"].update(update_reports(folder, stage, stem, manifest["exports"]))
        manifest.write(stage)
        out.commit()
    manifest.source = os.path.join(folder, naming.MANIFEST)
    manifest.output_dir = folder
    manifest.export_records = records
    return manifest


def update_reports(source, stage, stem, exports):
    """Rewrite the parity reports of `source` into `stage` with an `exports` section; {} when
    the conversion has no parity report (parity skipped)."""
    from converter import parity

    json_name, _ = naming.parity_files(stem)
    path = os.path.join(source, json_name)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        report = json.load(handle)
    report["exports"] = exports
    return parity.write_reports(stage, stem, report)


def markdown_lines(exports):
    """The Exports section of a parity report (Markdown lines)."""
    if not exports:
        return []
    lines = ["", "#### Exports", "",
             "Each export run in its own runtime in a fresh process (no Keras), on the parity "
             "clips at the export's clip size, against the reference.", "",
             "| format | file | clip | batch | runtime | max abs logits | top-1 agree | result |",
             "|---|---|---|---|---|---|---|---|"]
    for fmt, record in exports.items():
        diff = record.get("max_abs_diff")
        top1 = record.get("top1_agreement")
        lines.append(
            f"| {fmt} | `{shown_file(fmt, record['files'])}` | "
            f"{'x'.join(map(str, record['clip']))} | {record['batch']} | {record['runtime']} "
            f"| {'n/a' if diff is None else f'{diff:.2e}'} | "
            f"{'n/a' if top1 is None else f'{top1:.0%}'} | "
            f"{'pass' if record['status'] == 'passed' else 'FAIL'} |")
    references = sorted({r["reference"] for r in exports.values()})
    tolerances = sorted({r["tolerance"] for r in exports.values()})
    lines += ["", f"Reference: {'; '.join(references)}; tolerance "
              f"{', '.join(f'{t:g}' for t in tolerances)} max |diff|, and top-1 agreement."]
    return lines


def shown_file(fmt, files):
    """The file (or folder) to name for an export in a table."""
    if fmt == "openvino":
        return next((f for f in files if f.endswith(".xml")), files[0])
    if fmt == "saved_model":
        return files[0].split("/")[0] + "/"
    return files[0]


# -- inside a conversion ---------------------------------------------------------------------

def plan(formats, clip, batch, spec=None):
    """Check an export request before any work: (formats, clip, batch); `ExportError`
    for an unknown format, a bad clip or batch, a missing runtime or a headless config."""
    formats, clip, batch = parse_formats(formats), check_clip(clip), check_batch(batch)
    if spec is not None and not spec.num_classes:
        raise ExportError("exports serve the classifier (logits), but the config defines no "
                          "classification head")
    check_installed(formats)
    return formats, clip, batch


def export_new_conversion(stage, spec, state, manifest, report, described, planned,
                          parity_count, tolerance, reference, scratch, log=print):
    """`videoswin-convert --export`: build and prove `planned` (from `plan`) in the staging
    folder of a conversion, against the checkpoint's reference; adds the files to
    `described`, the records to `manifest["exports"]` and to the parity reports."""
    from converter import parity

    formats, clip, batch = planned
    if not manifest["with_head"]:
        raise ExportError("exports serve the classifier (logits), but the checkpoint has no "
                          "classification head")
    tolerance = parity.DEFAULT_TOLERANCE if tolerance is None else tolerance
    clips = report["clips"] if report else {"count": parity_count, "seed": 0}
    records, files = export_into(stage, spec.name, formats, clip, batch, tolerance, clips,
                                 _checkpoint_reference(spec, state, reference), scratch, log)
    described.update(files)
    manifest["exports"] = records
    if report is not None:
        report["exports"] = records
        described.update(parity.write_reports(stage, spec.name, report))
    return records
