"""`videoswin-predict`: the top-k classes of video files under the official test protocol.

Keras is imported only after the backend is chosen.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import click

from videoswin.core import datasets, naming
from videoswin.core.backends import select_backend
from videoswin.core.manifest import Manifest, ManifestError
from videoswin.core.pipelines import ORIGINS
from videoswin_tools.progress import Counter, Status, duration, rate_and_eta


def _parse_views(ctx, param, text):
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) not in (1, 3):
        raise click.BadParameter(f"{text!r}: expected CLIPSxCROPS with crops 1 or 3, e.g. 4x3",
                                 param_hint="--views")
    return int(match[1]), int(match[2])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("videos", nargs=-1, required=True, metavar="VIDEO...")
@click.option("--model", "model_ref", required=True, metavar="PATH_OR_PRESET",
              help="A classifier .keras file, a videoswin-convert output directory (holding "
                   "<name>.keras and manifest.json), a preset name, or an exported "
                   "<name>.onnx in its conversion folder (run by onnxruntime, no Keras).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many classes to print per video.")
@click.option("--views", metavar="CLIPSxCROPS", callback=_parse_views,
              help="Test views, e.g. 4x3 (Kinetics) or 1x3 (SSv2); crops are 1 or 3. "
                   "Default: the manifest's pipeline, else the dataset's official one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False),
              help="Class names, one per line in class-index order ('#' lines skipped), or a "
                   "JSON list / {index: name} object, for class lists videoswin does not ship.")
@click.option("--dataset", metavar="NAME",
              help="Label map and test pipeline: kinetics400, kinetics600, kinetics700, "
                   "kinetics710, sthv2. Default: the manifest's, else guessed from the class "
                   "count.")
@click.option("--origin", type=click.Choice(ORIGINS),
              help="Clip sampling rule: 'official' (Video Swin repository, the published "
                   "numbers) or 'mmaction2' (1.x). Default: the manifest's, else official.")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1),
              help="Views per forward pass.")
def main(videos, model_ref, top_k, views, as_json, labels_file, dataset, origin, batch_size):
    """Print the top-k classes of each VIDEO with their probabilities.

    Each video is decoded, sampled into clips x crops views, normalised as in the official
    test pipeline; softmax per view, probabilities averaged.

    \b
    Example:
      videoswin-predict a.mp4 b.mp4 --top-k 3 \\
          --model converted/swin_tiny_patch244_window877_kinetics400_1k
    """
    select_backend()
    from videoswin import video
    from videoswin.core import labels as label_maps

    if dataset is not None:
        try:
            dataset = datasets.canonical(dataset)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--dataset") from None
    status = Status()
    started = time.perf_counter()
    status.line(f"loading {model_ref}...")
    model, manifest, source = _load_model(model_ref)
    status.line(f"loaded in {duration(time.perf_counter() - started)}")
    if manifest is not None and manifest.is_random:
        click.echo(f"warning: {source} holds RANDOM weights (a --random-weights "
                   f"{manifest.random_seed} conversion, made to test the pipeline): its "
                   "predictions mean nothing", err=True)
    num_classes = _num_classes(model, source)
    spec = manifest.spec if manifest is not None else None
    dataset = dataset or _manifest_dataset(spec, source) or \
        datasets.for_num_classes(num_classes)
    names = _labels(label_maps, labels_file, dataset, num_classes)

    test = spec.pipeline if spec is not None else datasets.pipeline_for(dataset)
    pipeline = test.sampling()
    if views:
        pipeline["num_clips"], pipeline["num_crops"] = views
    average = test.average_clips
    origin = origin or (spec.origin if spec is not None else "official")
    if origin not in ORIGINS:
        raise click.ClickException(f"{source}: manifest origin {origin!r} is not one of "
                                   f"{ORIGINS}")

    results, failed = [], 0
    for number, path in enumerate(videos, 1):
        where = f"[{number}/{len(videos)}] {path}" if len(videos) > 1 else path
        tracker = _ViewProgress(status, where)
        try:
            probs = video.video_probabilities(model, path, batch_size=batch_size, origin=origin,
                                              average_clips=average, progress=tracker,
                                              **pipeline)
        except video.VideoReadError as err:
            failed += 1
            status.line(f"{where}: error: {err}")
            results.append({"video": path, "error": str(err)})
            continue
        except (ImportError, ValueError) as err:
            raise click.ClickException(str(err)) from None
        status.line(tracker.summary())
        ranked = video.top_classes(probs, None, min(top_k, num_classes))
        results.append({"video": path, "predictions": [
            {"index": index, "label": names[index] if names else None, "probability": round(p, 6)}
            for index, p in ranked]})
        if not as_json:
            _print_text(results[-1])
    if as_json:
        click.echo(json.dumps({"model": source, "dataset": dataset, "origin": origin,
                               "views": f"{pipeline['num_clips']}x{pipeline['num_crops']}",
                               "results": results}, indent=2))
    if failed:
        click.echo(f"{failed} of {len(videos)} video(s) could not be read", err=True)
        sys.exit(1)


class _ViewProgress:
    """`video_probabilities`' progress callback: decoding, then views done with rate and ETA
    (live on a terminal), and a one-line summary per video."""

    def __init__(self, status, where):
        self.status, self.where = status, where
        self.started = time.perf_counter()
        self.decoded = self.counter = None
        status.live(f"{where}: decoding...")

    def __call__(self, done, total):
        if self.counter is None:
            self.decoded = time.perf_counter() - self.started
            self.counter = Counter(self.status, f"{self.where}: views", total, "views")
        else:
            self.counter.advance(done - self.counter.done)

    def summary(self):
        total = time.perf_counter() - self.started
        if self.counter is None:
            return f"{self.where}: done in {duration(total)}"
        rate = rate_and_eta(self.counter.done, None, self.counter.elapsed, "views")
        return (f"{self.where}: {self.counter.done} views in {duration(total)} "
                f"(decoding {duration(self.decoded)}, {rate})")


def _print_text(result):
    click.echo(result["video"])
    for item in result["predictions"]:
        label = item["label"] if item["label"] is not None else f"class {item['index']}"
        click.echo(f"  {item['probability']:.4f}  {label}")


def _labels(label_maps, labels_file, dataset, num_classes):
    if labels_file:
        try:
            names = label_maps.read_label_file(labels_file)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--labels") from None
        source = labels_file
    elif dataset is not None and label_maps.has_labels(dataset):
        names, source = label_maps.load_labels(dataset), f"the {dataset} label map"
    else:
        what = f"{dataset} has no label map in videoswin" if dataset else \
            f"no known dataset has {num_classes} classes"
        click.echo(f"note: {what}; printing class indices (pass --labels FILE for names)",
                   err=True)
        return None
    if len(names) != num_classes:
        raise click.ClickException(f"{source} has {len(names)} names but the model has "
                                   f"{num_classes} classes")
    return names


def _load_model(ref):
    """(model, manifest or None, description) for a .keras file, a directory or a preset."""
    if ref.endswith(".onnx"):                # onnxruntime, no Keras
        from videoswin_tools import onnx_runtime

        return onnx_runtime.load(ref)
    import keras

    import videoswin.model  # noqa: F401  (registers the classes .keras files name)

    if ref.startswith("hf://"):
        return _load_preset(ref), None, ref
    path = Path(ref)
    if path.is_dir():
        manifest = _read_manifest(path)
        keras_file = _keras_file_in(path, manifest)
        if keras_file is None:
            return _load_preset(str(path)), manifest, str(path)
        _verify(manifest, path, keras_file.name)
        path = keras_file
    elif path.is_file():
        if path.suffix != ".keras":
            raise click.BadParameter(f"{ref}: expected a .keras file, a conversion output "
                                     "directory or a preset name", param_hint="--model")
        manifest = _read_manifest(path.parent)
        _verify(manifest, path.parent, path.name)
    elif path.suffix == ".keras" or os.sep in ref:
        raise click.BadParameter(f"{ref}: no such file or directory", param_hint="--model")
    else:
        return _load_preset(ref), None, ref
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for a bad archive
        raise click.ClickException(f"{path}: cannot be loaded as a Keras model ({err})") from None
    return model, manifest, str(path)


def _load_preset(name):
    from videoswin.model import VideoSwinClassifier

    try:
        return VideoSwinClassifier.from_preset(name)
    except ImportError as err:
        raise click.ClickException(f"{name}: not a file or directory, and loading it as a preset "
                                   f"needs a module this install lacks ({err})") from None
    except (ValueError, OSError) as err:
        raise click.ClickException(f"{name}: {err}") from None


def _read_manifest(folder):
    """The manifest of `folder`, or None where it has none."""
    if not (folder / naming.MANIFEST).is_file():
        return None
    try:
        return Manifest.read(folder)
    except ManifestError as err:
        raise click.ClickException(str(err)) from None


def _verify(manifest, folder, name):
    """Refuse a model file that differs from what its folder's manifest recorded."""
    if manifest is None or name not in manifest["artifacts"]:
        return
    try:
        manifest.verify(folder, [name])
    except ManifestError as err:
        raise click.ClickException(f"{err}; re-run videoswin-convert") from None


def _manifest_dataset(spec, source):
    if spec is None or spec.dataset is None:
        return None
    try:
        return datasets.canonical(spec.dataset)
    except ValueError:
        click.echo(f"note: {source}: manifest dataset {spec.dataset!r} is not one videoswin "
                   "knows", err=True)
        return None


def _keras_file_in(directory, manifest):
    """The classifier .keras in a conversion directory; None for a Keras Hub-layout folder."""
    if manifest is not None and (directory / manifest.keras_file()).is_file():
        return directory / manifest.keras_file()
    found = sorted(p for p in directory.glob("*.keras") if not p.stem.endswith("_backbone"))
    if len(found) == 1:
        return found[0]
    if not found:
        if (directory / "config.json").is_file():
            return None
        raise click.BadParameter(f"{directory}: holds no classifier .keras file",
                                 param_hint="--model")
    raise click.BadParameter(f"{directory}: holds several .keras files "
                             f"({', '.join(p.name for p in found)}); pass one of them",
                             param_hint="--model")


def _num_classes(model, source):
    shape = model.output_shape
    if not isinstance(shape, tuple) or len(shape) != 2:
        raise click.ClickException(f"{source}: the model outputs {shape}, not class scores; "
                                   "pass the classifier (not the backbone-only) .keras")
    return int(shape[-1])


if __name__ == "__main__":
    main()
