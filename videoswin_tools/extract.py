"""`videoswin-extract`: backbone features of videos, written as `.npy` files with an index.

    videoswin-extract LIST_OR_VIDEOS... --model M --output OUT [--stage last|all]
        [--pool mean|none] [--data-root DIR] [--views CxK] [--origin ...] [--batch-size N]
        [--workers N] [--per-file N] [--resume] [--engine local|ray] [--ray-address ADDR]
        [--shard I/N]
    videoswin-extract --merge OUT1 OUT2 ... --output OUT

Each view's backbone output is averaged over T', H', W' (what the classification head sees);
`--stage all` concatenates every stage's average (stage 0 first; `features.json` gives the
slices). `--pool mean` (default) averages the views: one vector per video; `--pool none`
keeps them: `(views, D)` per video.

Output: `features-00000.npy`, ... (float32; file k holds the readable videos among entries
k*N .. k*N+N-1 of the job, in order: `(videos, D)` or `(videos, views, D)`), `index.jsonl`
(one row per entry: `line`, `video`, `label`, `file`, `row`, `error`), `features.json` (model,
protocol, stage, pool, dimension, layout) once the job is complete. Exit status 3 when any
video could not be read.
"""

import os
import sys
import time

import click
import numpy as np

from videoswin.core.manifest import sha256
from videoswin_tools import datalist, jobs, results
from videoswin_tools.evaluate import job_options

INDEX = "index.jsonl"
SUMMARY = "features.json"
EXIT_FAILED_VIDEOS = 3


def file_name(number):
    return f"features-{number:05d}.npy"


def save_npy(path, array):
    """np.save through a temporary file, fsync and a rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array, dtype=np.float32))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, metavar="LIST | VIDEO... | --merge OUT...")
@click.option("--model", "model_ref", metavar="PATH_OR_PRESET",
              help="A .keras file (classifier or backbone), a videoswin-convert output folder "
                   "or a preset.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Folder for the .npy files, index.jsonl and features.json.")
@job_options
@click.option("--stage", type=click.Choice(["last", "all"]), default="last", show_default=True,
              help="The last stage's features, or every stage's, concatenated.")
@click.option("--pool", type=click.Choice(["mean", "none"]), default="mean", show_default=True,
              help="Average the views of a video, or keep each view.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Views per forward pass.")
@click.option("--per-file", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Videos per .npy file.")
def main(inputs, model_ref, output, stage, pool, data_root, views, origin, batch_size, workers,
         per_file, resume, engine, ray_address, ray_actors, shard, merge):
    """Write backbone features of the videos of a LIST (or of the VIDEO files given).

    \b
    Example:
      videoswin-extract train.txt --data-root videos/ --output features/ \\
          --model converted/swin_base_patch244_window877_kinetics400_22k --stage all
    """
    if merge:
        if model_ref or resume or shard:
            raise click.UsageError("--merge takes only the OUT folders and --output")
        sys.exit(merge_outputs(inputs, output))
    if not inputs:
        raise click.UsageError("expected a LIST or video files (or --merge OUT1 OUT2 ...)")
    if not model_ref:
        raise click.UsageError("Missing option '--model'.")
    if engine == "local" and ray_address:
        raise click.UsageError("--ray-address needs --engine ray")
    sys.exit(extract(inputs, model_ref, output, stage, pool, data_root, views, origin,
                     batch_size, jobs.default_workers() if workers is None else workers,
                     per_file, resume, engine, ray_address, ray_actors, shard))


def _entries(inputs, data_root):
    if len(inputs) == 1 and not datalist.looks_like_video(inputs[0]):
        try:
            return datalist.read_list(inputs[0], data_root, "optional"), inputs[0]
        except datalist.ListError as err:
            raise click.BadParameter(str(err), param_hint="LIST") from None
    if data_root:
        raise click.UsageError("--data-root applies to a LIST, not to video files")
    return datalist.from_paths(inputs), None


def _load(model_ref):
    """(model, manifest or None, source)."""
    from pathlib import Path

    from videoswin.model import presets
    from videoswin_tools.predict import _read_manifest

    path = Path(model_ref)
    manifest = None
    if path.is_dir():
        manifest = _read_manifest(path)
    elif path.is_file():
        manifest = _read_manifest(path.parent)
    try:
        model = presets.load(model_ref, prefer_backbone=True)
    except (ValueError, OSError) as err:
        raise click.BadParameter(f"{model_ref}: {err}", param_hint="--model") from None
    except ImportError as err:
        raise click.ClickException(f"{model_ref}: loading it needs a module this install "
                                   f"lacks ({err})") from None
    except Exception as err:  # Keras raises many types for a bad archive
        raise click.ClickException(f"{model_ref}: cannot be loaded as a Keras model "
                                   f"({err})") from None
    return model, manifest, os.path.abspath(model_ref) if path.exists() else model_ref


def extract(inputs, model_ref, output, stage="last", pool="mean", data_root=None, views=None,
            origin=None, batch_size=8, workers=1, per_file=1000, resume=False, engine="local",
            ray_address=None, ray_actors=1, shard=None):
    """The job behind the command; returns the exit status."""
    from videoswin.core.backends import select_backend

    started = time.perf_counter()
    backend = select_backend()
    import keras

    from videoswin import video
    from videoswin.core import datasets

    entries, list_file = _entries(inputs, data_root)
    model, manifest, source = _load(model_ref)
    spec = manifest.spec if manifest is not None else None
    dataset = None
    if spec is not None and spec.dataset:
        try:
            dataset = datasets.canonical(spec.dataset)
        except ValueError:
            dataset = None
    try:
        protocol = jobs.resolve_protocol(spec, dataset, views, origin)
        video._check_input_shape(model, protocol.pipeline)
        layout = jobs.feature_layout(model, stage)
        backbone = jobs.feature_backbone(keras, model, stage)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--model/--views") from None
    total_entries = len(entries)
    entries = datalist.shard(entries, shard)
    job = {"kind": "extract",
           "inputs": ([os.path.abspath(list_file)] if list_file
                      else [os.path.abspath(p) for p in inputs]),
           "list_sha256": sha256(list_file) if list_file else None,
           "list_entries": total_entries,
           "data_root": (os.path.abspath(data_root or os.path.dirname(
               os.path.abspath(list_file))) if list_file else None),
           "model": source, "protocol": protocol.to_dict(), "batch_size": batch_size,
           "stage": stage, "pool": pool, "per_file": per_file,
           "shard": f"{shard[0]}/{shard[1]}" if shard else None}
    try:
        with results.FolderLock(output):
            return _run(job, entries, protocol, backbone, model_ref, source, output, backend,
                        layout, workers, resume, engine, ray_address, ray_actors, started)
    except results.JobError as err:
        raise click.ClickException(str(err)) from None


def _run(job, entries, protocol, backbone, model_ref, source, output, backend, layout,
         workers, resume, engine, ray_address, ray_actors, started):
    from videoswin_tools.progress import VideoProgress as Progress

    results.start(output, job, resume, [INDEX, SUMMARY])
    if os.path.exists(os.path.join(output, SUMMARY)):
        os.remove(os.path.join(output, SUMMARY))
    per_file = job["per_file"]
    chunks = [entries[i:i + per_file] for i in range(0, len(entries), per_file)]
    chunk_of = {e.line: k for k, chunk in enumerate(chunks) for e in chunk}
    writer = results.JsonLines(os.path.join(output, INDEX))
    rows = writer.resumed(entries) if resume else {}
    complete = {k for k, chunk in enumerate(chunks) if all(e.line in rows for e in chunk)}
    if len(rows) != sum(len(chunks[k]) for k in complete):   # a chunk cut short: redo it
        rows = {line: row for line, row in rows.items() if chunk_of[line] in complete}
        writer.finish(rows)
    spec = jobs.ModelSpec("features", model_ref, protocol, job["batch_size"],
                          stage=job["stage"], pool=job["pool"], backend=backend)
    group = jobs.group_size(protocol.views_per_video, job["batch_size"])
    skip = set(rows)
    progress = Progress(sum(e.line not in skip for e in entries), done=len(rows))
    pending = {}
    try:
        stream, _ = jobs.run_engine(engine, entries, skip, protocol, spec, group, backbone,
                                    source, workers, ray_address, ray_actors)
        for entry, features, error in stream:
            k = chunk_of[entry.line]
            pending.setdefault(k, {})[entry.line] = (entry, features, error)
            progress.update(entry.video, error)
            if len(pending[k]) == len(chunks[k]):
                _flush(output, k, chunks[k], pending.pop(k), writer, rows)
    except (ImportError, RuntimeError) as err:      # no Ray; engine_local.WorkerDied
        raise click.ClickException(str(err)) from None
    finally:
        writer.close()
        progress.close()
    writer.finish(rows)
    ordered = [rows[line] for line in sorted(rows)]
    failed = sum(row["error"] is not None for row in ordered)
    summary = {"videos": len(ordered), "failed": failed, "model": source,
               "protocol": job["protocol"], "stage": job["stage"], "pool": job["pool"],
               "dimension": sum(width for _, width in layout),
               "layout": [{"stage": name, "start": start, "width": width}
                          for (name, width), start in zip(
                              layout, np.cumsum([0] + [w for _, w in layout[:-1]]).tolist())],
               "views": protocol.views_per_video, "per_file": per_file,
               "files": sorted({row["file"] for row in ordered if row["file"]}),
               "shard": job["shard"], "engine": engine,
               "wall_seconds": round(time.perf_counter() - started, 3)}
    results.write_json(os.path.join(output, SUMMARY), summary)
    click.echo(f"{len(ordered) - failed} of {len(ordered)} videos: {summary['dimension']} "
               f"features each, in {len(summary['files'])} file(s) under {output}")
    return EXIT_FAILED_VIDEOS if failed else 0


def _flush(output, k, chunk, done, writer, rows):
    """Write chunk k's file, then its index rows (one write)."""
    name = file_name(k)
    kept = [done[e.line] for e in chunk if done[e.line][2] is None]
    if kept:
        save_npy(os.path.join(output, name), np.stack([f for _, f, _ in kept]))
    new, position = [], 0
    for e in chunk:
        _, _, error = done[e.line]
        row = {"line": e.line, "video": e.video, "label": e.label,
               "file": name if error is None else None,
               "row": position if error is None else None, "error": error}
        position += error is None
        new.append(row)
        rows[e.line] = row
    writer.append(new)


def load_features(folder):
    """(features as one array in index order, index rows of the readable videos): a reader
    for `videoswin-extract` output."""
    rows = [r for _, r in sorted(results.read_rows(os.path.join(folder, INDEX)).items())
            if r["error"] is None]
    cache = {}
    parts = []
    for row in rows:
        if row["file"] not in cache:
            cache[row["file"]] = np.load(os.path.join(folder, row["file"]))
        parts.append(cache[row["file"]][row["row"]])
    return (np.stack(parts) if parts else np.zeros((0,), np.float32)), rows


def merge_outputs(folders, output):
    """Merge finished extraction folders (the shards of one job) into `output`: the files are
    copied and renumbered, the index rows point at the copies."""
    import json
    import shutil

    if not folders:
        raise click.UsageError("--merge needs the OUT folders to merge")
    parts = []
    for folder in folders:
        try:
            with open(os.path.join(folder, results.JOB_FILE), encoding="utf-8") as handle:
                job = json.load(handle)
            with open(os.path.join(folder, SUMMARY), encoding="utf-8") as handle:
                summary = json.load(handle)
        except (OSError, ValueError) as err:
            raise click.ClickException(f"--merge {folder}: not a finished extraction ({err}); "
                                       "run it (or --resume it) to the end first") from None
        parts.append((folder, job, summary, results.read_rows(os.path.join(folder, INDEX))))
    first = parts[0][1]
    same = ("kind", "list_sha256", "list_entries", "model", "protocol", "stage", "pool",
            "batch_size")
    lines = set()
    for folder, job, _, rows in parts:
        differ = [key for key in same if job.get(key) != first.get(key)]
        if differ:
            raise click.ClickException(f"--merge {folder}: not the same job as {folders[0]} "
                                       f"({', '.join(differ)} differ)")
        if lines & set(rows):
            raise click.ClickException(f"--merge {folder}: holds list lines another folder "
                                       "holds (the same shard twice?)")
        lines |= set(rows)
    if len(lines) != first["list_entries"]:
        raise click.ClickException(f"--merge: the folders hold {len(lines)} of the "
                                   f"{first['list_entries']} videos; merge every shard")
    try:
        with results.FolderLock(output):
            results.start(output, dict(first, shard=None), False, [INDEX, SUMMARY])
            merged, number = {}, 0
            for folder, _, summary, rows in parts:
                renamed = {}
                for name in summary["files"]:
                    renamed[name] = file_name(number)
                    shutil.copyfile(os.path.join(folder, name),
                                    os.path.join(output, f"{renamed[name]}.tmp"))
                    os.replace(os.path.join(output, f"{renamed[name]}.tmp"),
                               os.path.join(output, renamed[name]))
                    number += 1
                for line, row in rows.items():
                    merged[line] = dict(row, file=renamed.get(row["file"]))
            results.JsonLines(os.path.join(output, INDEX)).finish(merged)
            summary = dict(parts[0][2], videos=len(merged),
                           failed=sum(r["error"] is not None for r in merged.values()),
                           files=[file_name(i) for i in range(number)], shard=None,
                           merged=[str(f) for f in folders],
                           wall_seconds=round(sum(p[2]["wall_seconds"] for p in parts), 3))
            results.write_json(os.path.join(output, SUMMARY), summary)
    except results.JobError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"merged {len(folders)} folders: {len(merged)} videos, {number} file(s)")
    return EXIT_FAILED_VIDEOS if summary["failed"] else 0


if __name__ == "__main__":
    main()
