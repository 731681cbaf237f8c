"""`videoswin-evaluate`: a labelled video list through a classifier, with mmaction2's metrics.

    videoswin-evaluate LIST --model M --output OUT [--data-root DIR] [--views CxK]
        [--origin official|mmaction2] [--batch-size N] [--workers N] [--save-probabilities]
        [--resume] [--engine local|ray] [--ray-address ADDR] [--shard I/N]
    videoswin-evaluate --merge OUT1 OUT2 ... --output OUT

The protocol is `videoswin-predict`'s: the manifest's test pipeline and origin unless
overridden; softmax per view, probabilities averaged. Writes `OUT/predictions.jsonl` (one row
per list line, in list order) and `OUT/metrics.json`. Exit status: 0, or 3 when any video
could not be read (its row holds the reason; it is left out of the metrics); 1 or 2 for
errors. Keras is imported only after the backend is chosen.
"""

import os
import sys
import time

import click
import numpy as np

from videoswin.core.manifest import sha256
from videoswin.core.pipelines import ORIGINS
from videoswin_tools import datalist, jobs, results

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
EXIT_FAILED_VIDEOS = 3


# ------------------------------------------------------------------------------- metrics

def ranking(scores, k=5):
    """Class indices by descending score `(videos, min(k, classes))`; ties: lower index first."""
    scores = np.asarray(scores)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top_k_accuracy(ranked, labels, ks=(1, 5)):
    """Fraction of videos whose label is among their first k classes, for each k in `ks`.

    `ranked`: class indices by descending score, one row per video (at least max(ks) columns,
    or every class); the same fractions as mmaction2's `top_k_accuracy` on the scores."""
    ranked = np.asarray(ranked)
    labels = np.asarray(labels)[:, None]
    return [float(np.mean(np.any(ranked[:, :k] == labels, axis=1))) for k in ks]


def mean_class_accuracy(predicted, labels):
    """mmaction2's `mean_class_accuracy` from the top-1 classes `predicted`: per class, the
    fraction of its videos predicted right, averaged over every class that occurs as a label
    or as a prediction (a class only ever predicted counts as 0, as mmaction2 counts it)."""
    predicted = np.asarray(predicted, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.union1d(predicted, labels)
    accuracies = []
    for c in classes:
        mine = labels == c
        accuracies.append(float(np.mean(predicted[mine] == c)) if mine.any() else 0.0)
    return float(np.mean(accuracies))


def metrics_of(rows):
    """top1, top5, mean_class_accuracy, videos, failed from prediction rows."""
    ok = [row for row in rows if row.get("error") is None]
    out = {"top1": None, "top5": None, "mean_class_accuracy": None,
           "videos": len(rows), "failed": len(rows) - len(ok)}
    if ok:
        ranked = np.array([[index for index, _ in row["top5"]] for row in ok])
        labels = np.array([row["label"] for row in ok])
        out["top1"], out["top5"] = top_k_accuracy(ranked, labels, (1, 5))
        out["mean_class_accuracy"] = mean_class_accuracy(ranked[:, 0], labels)
    return out


def _f32(value):
    """A float32 as the shortest decimal that reads back as the same float32."""
    return float(str(np.float32(value)))


def prediction_row(entry, probabilities, error, save_probabilities):
    row = {"line": entry.line, "video": entry.video, "label": entry.label, "top5": None,
           "error": error}
    if probabilities is not None:
        order = ranking(probabilities[None], 5)[0]
        row["top5"] = [[int(i), _f32(probabilities[i])] for i in order]
    if save_probabilities:
        row["probabilities"] = (None if probabilities is None
                                else [_f32(p) for p in probabilities])
    return row


# ----------------------------------------------------------------------------------- CLI

def _parse_views(ctx, param, text):
    from videoswin_tools.predict import _parse_views as parse

    return parse(ctx, param, text)


def _parse_shard(ctx, param, text):
    if text is None:
        return None
    try:
        return datalist.parse_shard(text)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--shard") from None


def job_options(command):
    """The options `videoswin-evaluate` and `videoswin-extract` share."""
    options = [
        click.option("--data-root", type=click.Path(file_okay=False),
                     help="Folder the list's paths are relative to (default: the list's "
                          "folder)."),
        click.option("--views", metavar="CLIPSxCROPS", callback=_parse_views,
                     help="Test views, e.g. 4x3; default: the manifest's (or dataset's) "
                          "pipeline."),
        click.option("--origin", type=click.Choice(ORIGINS),
                     help="Clip sampling rule; default: the manifest's, else official."),
        click.option("--workers", default=None, type=click.IntRange(min=0),
                     help="Decoding processes (local engine; 0: decode in the main process). "
                          "Default: CPUs - 1, at most 4."),
        click.option("--resume", is_flag=True, help="Keep what OUT already holds; do the rest."),
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True),
        click.option("--ray-address", metavar="ADDR",
                     help="Join this Ray cluster (default: start Ray on this machine)."),
        click.option("--ray-actors", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Model actors in the Ray pipeline."),
        click.option("--shard", callback=_parse_shard, metavar="I/N",
                     help="Take every N-th video from the I-th (0-based), for job arrays."),
        click.option("--merge", is_flag=True,
                     help="Merge the finished OUT folders given as arguments into --output."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, metavar="LIST | --merge OUT...")
@click.option("--model", "model_ref", metavar="PATH_OR_PRESET",
              help="A classifier .keras file, a videoswin-convert output folder or a preset.")
@click.option("--output", "output", required=True, type=click.Path(file_okay=False),
              help="Folder for predictions.jsonl and metrics.json.")
@job_options
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Views per forward pass (views of several videos share a pass).")
@click.option("--save-probabilities", is_flag=True,
              help="Write every class's probability in each row.")
def main(inputs, model_ref, output, data_root, views, origin, batch_size, workers,
         save_probabilities, resume, engine, ray_address, ray_actors, shard, merge):
    """Evaluate a classifier on the labelled videos of LIST (`relative/path label` lines).

    \b
    Example:
      videoswin-evaluate val.txt --data-root videos/ --output eval/ \\
          --model converted/swin_tiny_patch244_window877_kinetics400_1k
    """
    if merge:
        if model_ref or resume or shard:
            raise click.UsageError("--merge takes only the OUT folders and --output")
        sys.exit(merge_outputs(inputs, output))
    if len(inputs) != 1:
        raise click.UsageError("expected one LIST (or --merge OUT1 OUT2 ...)")
    if not model_ref:
        raise click.UsageError("Missing option '--model'.")
    if engine == "local" and ray_address:
        raise click.UsageError("--ray-address needs --engine ray")
    sys.exit(evaluate(inputs[0], model_ref, output, data_root, views, origin, batch_size,
                      jobs.default_workers() if workers is None else workers,
                      save_probabilities, resume, engine, ray_address, ray_actors, shard))


def evaluate(list_file, model_ref, output, data_root=None, views=None, origin=None,
             batch_size=8, workers=1, save_probabilities=False, resume=False, engine="local",
             ray_address=None, ray_actors=1, shard=None):
    """The job behind the command; returns the exit status."""
    from videoswin.core.backends import select_backend

    started = time.perf_counter()
    backend = select_backend()
    from videoswin import video
    from videoswin.core import datasets
    from videoswin_tools.predict import _load_model, _manifest_dataset, _num_classes

    model, manifest, source = _load_model(model_ref)
    num_classes = _num_classes(model, source)
    spec = manifest.spec if manifest is not None else None
    dataset = _manifest_dataset(spec, source) or datasets.for_num_classes(num_classes)
    try:
        protocol = jobs.resolve_protocol(spec, dataset, views, origin)
        video._check_input_shape(model, protocol.pipeline)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--views/--origin or the model") \
            from None
    try:
        entries = datalist.read_list(list_file, data_root, "required", num_classes)
    except datalist.ListError as err:
        raise click.BadParameter(str(err), param_hint="LIST") from None
    total_entries = len(entries)
    entries = datalist.shard(entries, shard)
    job = {"kind": "evaluate", "list": os.path.abspath(list_file),
           "list_sha256": sha256(list_file), "list_entries": total_entries,
           "data_root": os.path.abspath(data_root or os.path.dirname(
               os.path.abspath(list_file))),
           "model": source, "protocol": protocol.to_dict(), "batch_size": batch_size,
           "shard": f"{shard[0]}/{shard[1]}" if shard else None,
           "save_probabilities": save_probabilities}
    try:
        with results.FolderLock(output):
            return _run(job, entries, protocol, model, model_ref, source, output, backend,
                        batch_size, workers, save_probabilities, resume, engine, ray_address,
                        ray_actors, started)
    except results.JobError as err:
        raise click.ClickException(str(err)) from None


def _run(job, entries, protocol, model, model_ref, source, output, backend, batch_size,
         workers, save_probabilities, resume, engine, ray_address, ray_actors, started):
    from videoswin_tools.progress import VideoProgress as Progress

    results.start(output, job, resume, [PREDICTIONS, METRICS])
    if os.path.exists(os.path.join(output, METRICS)):
        os.remove(os.path.join(output, METRICS))           # stale until this run ends
    writer = results.JsonLines(os.path.join(output, PREDICTIONS))
    rows = writer.resumed(entries) if resume else {}
    spec = jobs.ModelSpec("classify", model_ref, protocol, batch_size, backend=backend)
    group = jobs.group_size(protocol.views_per_video, batch_size)
    skip = set(rows)
    remaining = sum(e.line not in skip for e in entries)
    progress = Progress(remaining, done=len(rows))
    if rows:
        click.echo(f"resuming: {len(rows)} of {len(entries)} videos already done", err=True)
    runner = None
    try:
        stream, runner = jobs.run_engine(engine, entries, skip, protocol, spec, group, model,
                                         source, workers, ray_address, ray_actors)
        for entry, probabilities, error in stream:
            row = prediction_row(entry, probabilities, error, save_probabilities)
            writer.append([row])
            rows[entry.line] = row
            progress.update(entry.video, error)
    except (ImportError, RuntimeError) as err:      # no Ray; engine_local.WorkerDied
        raise click.ClickException(str(err)) from None
    finally:
        writer.close()
        progress.close()
    writer.finish(rows)
    summary = metrics_of([rows[line] for line in sorted(rows)])
    wall = time.perf_counter() - started
    summary.update(model=source, protocol=job["protocol"], list=job["list"],
                   shard=job["shard"], engine=engine, wall_seconds=round(wall, 3))
    results.write_json(os.path.join(output, METRICS), summary)
    _report(summary, runner, wall)
    return EXIT_FAILED_VIDEOS if summary["failed"] else 0


def _report(summary, runner, wall):
    def pct(value):
        return "n/a" if value is None else f"{100 * value:.2f}%"

    click.echo(f"top1 {pct(summary['top1'])}  top5 {pct(summary['top5'])}  mean class "
               f"accuracy {pct(summary['mean_class_accuracy'])}  ({summary['videos']} videos, "
               f"{summary['failed']} failed, {wall:.1f}s)")
    if runner is not None and runner.forward_views:
        click.echo(f"forward passes: {runner.forward_seconds:.1f}s for "
                   f"{runner.forward_views} views", err=True)


# --------------------------------------------------------------------------------- merge

def merge_outputs(folders, output):
    """Merge finished evaluation folders (e.g. the shards of one job) into `output`."""
    import json

    if len(folders) < 1:
        raise click.UsageError("--merge needs the OUT folders to merge")
    started = time.perf_counter()
    jobs_seen, rows, wall = [], {}, 0.0
    for folder in folders:
        try:
            with open(os.path.join(folder, results.JOB_FILE), encoding="utf-8") as handle:
                job = json.load(handle)
            with open(os.path.join(folder, METRICS), encoding="utf-8") as handle:
                wall += float(json.load(handle).get("wall_seconds") or 0.0)
        except (OSError, ValueError) as err:
            raise click.ClickException(f"--merge {folder}: not a finished evaluation ({err}); "
                                       "run it (or --resume it) to the end first") from None
        part = results.read_rows(os.path.join(folder, PREDICTIONS))
        clash = sorted(set(part) & set(rows))
        if clash:
            raise click.ClickException(f"--merge {folder}: list line {clash[0]} is also in an "
                                       "earlier folder (the same shard twice?)")
        rows.update(part)
        jobs_seen.append((folder, job))
    first = jobs_seen[0][1]
    same = ("kind", "list_sha256", "list_entries", "model", "protocol", "batch_size",
            "save_probabilities")
    for folder, job in jobs_seen[1:]:
        differ = [key for key in same if job.get(key) != first.get(key)]
        if differ:
            raise click.ClickException(f"--merge {folder}: not the same job as {folders[0]} "
                                       f"({', '.join(differ)} differ)")
    if len(rows) != first["list_entries"]:
        raise click.ClickException(
            f"--merge: the folders hold {len(rows)} of the list's {first['list_entries']} "
            f"videos (shards {', '.join(str(j['shard']) for _, j in jobs_seen)}); merge "
            "every shard")
    merged_job = dict(first, shard=None)
    try:
        with results.FolderLock(output):
            results.start(output, merged_job, False, [PREDICTIONS, METRICS])
            writer = results.JsonLines(os.path.join(output, PREDICTIONS))
            writer.finish(rows)
            summary = metrics_of([rows[line] for line in sorted(rows)])
            summary.update(model=first["model"], protocol=first["protocol"],
                           list=first["list"], shard=None,
                           merged=[str(folder) for folder in folders],
                           wall_seconds=round(wall, 3),
                           merge_seconds=round(time.perf_counter() - started, 3))
            results.write_json(os.path.join(output, METRICS), summary)
    except results.JobError as err:
        raise click.ClickException(str(err)) from None
    _report(summary, None, wall)
    return EXIT_FAILED_VIDEOS if summary["failed"] else 0


if __name__ == "__main__":
    main()
