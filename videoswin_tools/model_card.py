"""The Hub model card (README.md) of a published conversion, built from its manifest.

The YAML metadata is written through huggingface_hub's `ModelCardData`, so the Hub's own
parsers read it back: library, license, pipeline tag, tags, datasets and a `model-index`
with the published accuracy. The text is a pure function of the manifest (no dates), so
re-publishing unchanged artifacts yields the same card and no commit.
"""

from huggingface_hub import EvalResult, ModelCardData

from converter.parity import BF16_MEANING, bf16_table
from videoswin.core.archs import LABELS as VARIANTS
from videoswin.core.backends import BACKENDS
from videoswin.core.datasets import DATASETS
from videoswin.core.pipelines import MEAN, STD, TestPipeline

UPSTREAM = {
    "official": ("SwinTransformer/Video-Swin-Transformer",
                 "https://github.com/SwinTransformer/Video-Swin-Transformer"),
    "mmaction2": ("open-mmlab/mmaction2", "https://github.com/open-mmlab/mmaction2"),
}
PARITY_COLUMNS = {
    "max_abs_logits": "max abs logits", "max_abs_features": "max abs features",
    "top1_agreement": "top-1 agree", "top5_agreement": "top-5 agree",
    "weights_h5_identical": ".weights.h5 == .keras", "passed": "result",
}
CITATION = """\
@article{liu2021videoswin,
  title   = {Video Swin Transformer},
  author  = {Liu, Ze and Ning, Jia and Cao, Yue and Wei, Yixuan and Zhang, Zheng and
             Lin, Stephen and Hu, Han},
  journal = {arXiv preprint arXiv:2106.13230},
  year    = {2021}
}"""


def _slug(text):
    return "-".join("".join(c if c.isalnum() else " " for c in str(text).lower()).split())


def _dataset(spec):
    key = spec.get("dataset")
    if not key:
        return None, None
    known = DATASETS.get(key)
    return (known.title, known.hub_tag) if known else (key, _slug(key))


def _not_published(manifest):
    """Whether the source checkpoint is known to differ from the config's published one."""
    return (manifest.get("source_checkpoint") or {}).get("is_published") is False


def _is_random(manifest):
    return (manifest.get("source_checkpoint") or {}).get("random_weights_seed") is not None


def metadata(manifest, repo_id):
    """The card's `ModelCardData`."""
    spec = manifest["spec"]
    with_head = manifest.get("with_head", spec.get("num_classes") is not None)
    name, tag = _dataset(spec)
    datasets = [t for t in (tag, _slug(spec["pretrain"]) if spec.get("pretrain") else None) if t]
    tags = ["keras", "video-swin", "swin-transformer", "video-classification",
            "action-recognition", "tensorflow", "jax", "pytorch"] + ([tag] if tag else [])
    results = []
    metrics = spec.get("metrics") or {}
    if with_head and tag and not _is_random(manifest) and not _not_published(manifest):
        source = {"source_name": "published by the upstream authors",
                  "source_url": metrics["source"]} if metrics.get("source") else {}
        for key, metric_type, label in (("top1", "accuracy", "Top-1 accuracy"),
                                        ("top5", "top-5-accuracy", "Top-5 accuracy")):
            if metrics.get(key) is not None:
                results.append(EvalResult(
                    task_type="video-classification", task_name="Video Classification",
                    dataset_type=tag, dataset_name=name, dataset_split="validation",
                    metric_type=metric_type, metric_name=label,
                    metric_value=float(metrics[key]), **source))
    return ModelCardData(
        library_name="keras", license="apache-2.0",
        pipeline_tag="video-classification" if with_head else "feature-extraction",
        tags=tags, datasets=datasets or None, model_name=repo_id if results else None,
        eval_results=results or None)


def render(manifest, repo_id, include_preprocessing=False):
    """README.md text: YAML metadata, then the card."""
    card_yaml = metadata(manifest, repo_id).to_yaml()
    return f"---\n{card_yaml}\n---\n\n{body(manifest, repo_id, include_preprocessing)}"


def body(manifest, repo_id, include_preprocessing=False):
    spec = manifest["spec"]
    stem = manifest["config"]
    with_head = manifest.get("with_head", spec.get("num_classes") is not None)
    dataset, _ = _dataset(spec)
    variant = VARIANTS.get(spec.get("arch_name"), "Video Swin")
    origin, origin_url = UPSTREAM.get(spec.get("origin"), UPSTREAM["official"])
    what = (" ".join(x for x in (f"{spec['num_classes']}-class", dataset, "classifier") if x)
            if with_head else "backbone (no classification head)")
    head = (f"I3D head: mean over T, H, W, dropout, Linear to {spec['num_classes']} classes"
            if with_head else "none (backbone only)")
    title = " ".join(x for x in (variant, dataset) if x)
    out = [f"# {title}: `{stem}`", ""]
    if _is_random(manifest):
        seed = manifest["source_checkpoint"]["random_weights_seed"]
        out += [f"> **Random weights.** A test artifact: every tensor of the checkpoint it was "
                f"converted from was drawn at random (seed {seed}). It computes nothing useful "
                "and no published accuracy applies.", ""]
        weights = ("random (see above); the conversion was still checked against the original "
                   "PyTorch model holding the same weights")
    elif _not_published(manifest):
        published = manifest["source_checkpoint"].get("published_sha256")
        out += ["> **Not the published checkpoint.** The file it was converted from has a "
                f"different sha256 than the one the config publishes (`{published}`): a "
                "fine-tuned or otherwise changed model. No published accuracy applies.", ""]
        weights = ("a checkpoint that is not the published one (see above), converted tensor "
                   "by tensor and checked against the original PyTorch model holding the "
                   "same weights")
    else:
        weights = (f"the published checkpoint of [{origin}]({origin_url}), converted tensor by "
                   "tensor with the videoswin converter and checked against the original "
                   "PyTorch model")
    out += [
        f"Video Swin Transformer (Liu et al., 2021) {what} for **Keras 3**, running on "
        f"TensorFlow, JAX and PyTorch. The weights are {weights}, on every backend (see "
        "Parity).", "",
        "## Model", "",
        "| | |", "|---|---|",
        f"| Architecture | {variant}: embed dim {spec['embed_dim']}, depths "
        f"{tuple(spec['depths'])}, heads {tuple(spec['num_heads'])}, patch "
        f"{_x(spec['patch_size'])}, window {_x(spec['window_size'])} |",
        f"| Head | {head} |",
        f"| Trained on | {dataset or 'n/a'}"
        f"{', pretrained on ' + spec['pretrain'] if spec.get('pretrain') else ''} |",
        f"| Parameters | {_params(manifest)} |",
        f"| FLOPs | {_flops(manifest.get('flops'), spec)} |",
        f"| Input | `(batch, T, H, W, 3)` float32, channels last; test views of "
        f"{_x(_clip(spec))} |", "",
    ]
    out += _accuracy(manifest, with_head)
    out += _source(manifest)
    out += _parity(manifest)
    out += _exports(manifest)
    out += _files(stem, with_head, manifest.get("exports"))
    out += _usage(manifest, repo_id, with_head, include_preprocessing)
    out += [
        "## License", "",
        "The conversion code and this card: Apache-2.0. The weights are the upstream "
        f"authors' checkpoint ([{origin}]({origin_url}), released under Apache-2.0 with its "
        "code); check the upstream license before reuse. The training data "
        f"({', '.join(x for x in (dataset, spec.get('pretrain')) if x) or 'see upstream'}) "
        "comes with its own terms of use.", "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(out)


def _x(values):
    return "x".join(str(v) for v in values)


def _clip(spec):
    pipeline = spec.get("pipeline") or {}
    size = pipeline.get("crop_size", 224)
    return (pipeline.get("clip_len", 32), size, size)


def _params(manifest):
    params = manifest.get("params")
    if params is None:
        return "n/a"
    text = f"{params:,} ({params / 1e6:.1f} M)"
    if manifest.get("backbone_params") not in (None, params):
        text += f"; backbone {manifest['backbone_params']:,}"
    return text


def _flops(flops, spec):
    """FLOPs as the official tables give them: multiply-accumulates (MACs) of one view."""
    if flops is None:
        return "not measured for this conversion"
    if isinstance(flops, dict) and "macs_per_view" in flops:
        view = flops.get("view") or _clip(spec)
        return f"{flops['macs_per_view'] / 1e9:.2f} G (MACs) per {_x(view)} view"
    if isinstance(flops, dict):
        return "; ".join(f"{k}: {_number(v)}" for k, v in flops.items())
    return f"{_number(flops)} per {_x(_clip(spec))} view"


def _number(value):
    if isinstance(value, (int, float)) and abs(value) >= 1e6:
        return f"{value / 1e9:.2f} G"
    return str(value)


def _accuracy(manifest, with_head):
    metrics = manifest["spec"].get("metrics") or {}
    if (not with_head or metrics.get("top1") is None or _is_random(manifest)
            or _not_published(manifest)):
        return []
    views = f", {metrics['views']} views (frames x clips x crops)" if metrics.get("views") else ""
    source = f" ([source]({metrics['source']}))" if metrics.get("source") else ""
    return ["## Accuracy", "",
            f"Top-1 **{metrics['top1']}**, top-5 **{metrics.get('top5', 'n/a')}** on the "
            f"{_dataset(manifest['spec'])[0]} validation set{views}, as published "
            f"upstream{source}. Not re-measured here: the parity check below shows that the "
            "converted model computes the same function as the original.", ""]


def _source(manifest):
    spec = manifest["spec"]
    ckpt = spec.get("checkpoint") or {}
    src = manifest.get("source_checkpoint") or {}
    url = src.get("url") or ckpt.get("url")
    lines = ["## Source checkpoint", "",
             "| | |", "|---|---|",
             f"| File | `{src.get('name') or ckpt.get('filename')}` |"]
    if url:
        lines.append(f"| URL | {url} |")
    if src.get("sha256"):
        lines.append(f"| sha256 | `{src['sha256']}` |")
    if src.get("is_published") is not None:
        lines.append("| Published checkpoint | "
                     + ("yes: its sha256 is the config's" if src["is_published"] else
                        f"**no**: the config publishes `{src.get('published_sha256')}`") + " |")
    if manifest.get("layout"):
        lines.append(f"| Layout | {manifest['layout']} |")
    path = f" (`{manifest['config_path']}`)" if manifest.get("config_path") else ""
    lines.append(f"| Config | `{manifest['config']}`{path} |")
    versions = manifest.get("versions") or {}
    if versions:
        lines.append("| Converted with | "
                     + ", ".join(f"{k} {v}" for k, v in versions.items()) + " |")
    return lines + [""]


def _cell(key, value):
    if value is None:
        return "n/a"
    if key == "passed":
        return "pass" if value else "FAIL"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("agreement") and isinstance(value, (int, float)):
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:.2e}"
    return str(value)


def _parity(manifest):
    parity = manifest.get("parity") or {}
    lines = ["## Parity", ""]
    backends = parity.get("backends") or {}
    if not backends:
        return lines + [f"Status: **{parity.get('status', 'not run')}** (no per-backend "
                        "results in the manifest).", ""]
    clips = parity.get("clips") or {}
    detail = []
    if parity.get("reference"):
        detail.append(f"reference: {parity['reference']}")
    if clips:
        detail.append(f"{clips.get('count')} random clips of {_x(clips.get('shape', []))}")
    if parity.get("tolerance") is not None:
        detail.append(f"tolerance {parity['tolerance']:g} max |diff| on logits and features, "
                      "float32")
    lines += ["Outputs of the converted `.keras` and `.weights.h5`, each backend in its own "
              f"process, against the original PyTorch model ({'; '.join(detail)}).", ""]
    keys = [k for k in PARITY_COLUMNS if any(k in row for row in backends.values())]
    lines.append("| backend | " + " | ".join(PARITY_COLUMNS[k] for k in keys) + " |")
    lines.append("|---" * (len(keys) + 1) + "|")
    for backend, row in backends.items():
        lines.append(f"| {backend} | " + " | ".join(_cell(k, row.get(k)) for k in keys) + " |")
    return lines + ["", f"Status: **{parity.get('status')}**. Full report: "
                    f"`{manifest['config']}.parity.json`.", ""] + _bf16(backends)


def _bf16(backends):
    """The bfloat16 table (conversions checked with `--bf16`)."""
    table = bf16_table(backends)
    if not table:
        return []
    return ["### bfloat16", "",
            "The same weights under Keras's `mixed_bfloat16` policy (bfloat16 compute, float32 "
            "variables and logits), against the same float32 reference on the same clips. "
            f"{BF16_MEANING}", ""] + table + [""]


EXPORT_TITLES = {"onnx": "ONNX", "saved_model": "TF SavedModel", "litert": "LiteRT (TFLite)",
                 "openvino": "OpenVINO IR"}


def _export_file(fmt, files):
    if fmt == "openvino":
        return next((f for f in files if f.endswith(".xml")), files[0])
    if fmt == "saved_model":
        return files[0].split("/")[0] + "/"
    return files[0]


def _exports(manifest):
    """The per-format table of serving exports and their proof."""
    exports = manifest.get("exports") or {}
    if not exports:
        return []
    lines = ["## Exports", "",
             "Serving exports of the classifier: input `video` `(batch, T, H, W, 3)` float32, "
             "channels last, normalised as above (mean/std on 0-255 RGB); output `logits`. "
             "Each was run by its own runtime in a fresh process (no Keras) on the parity "
             "clips at its clip size and compared with the original model.", "",
             "| format | file | clip (T x H x W) | batch | runtime | max abs logits | "
             "top-1 agree | tolerance | result |",
             "|---|---|---|---|---|---|---|---|---|"]
    for fmt, record in exports.items():
        diff, top1 = record.get("max_abs_diff"), record.get("top1_agreement")
        lines.append(
            f"| {EXPORT_TITLES.get(fmt, fmt)} | `{_export_file(fmt, record.get('files') or ['?'])}`"
            f" | {_x(record.get('clip') or [])} | {record.get('batch')} | "
            f"{record.get('runtime')} | {'n/a' if diff is None else f'{diff:.2e}'} | "
            f"{'n/a' if top1 is None else f'{top1:.0%}'} | {record.get('tolerance'):g} | "
            f"{'pass' if record.get('status') == 'passed' else 'FAIL'} |")
    references = sorted({str(r.get("reference")) for r in exports.values()})
    lines += ["", f"Reference: {'; '.join(references)}. Routes: "
              + "; ".join(f"{fmt}: {r.get('route')}" for fmt, r in exports.items()) + ".", ""]
    failed = [fmt for fmt, r in exports.items() if r.get("status") != "passed"]
    if failed:
        lines += [f"**Failed its proof, do not use:** {', '.join(failed)}.", ""]
    return lines


def _files(stem, with_head, exports=None):
    rows = []
    if with_head:
        rows += [("config.json, metadata.json, model.weights.h5",
                  "Keras Hub layout of the classifier: `keras.saving.load_model(\"hf://...\")`"),
                 (f"{stem}.keras", "classifier, single-file Keras archive"),
                 (f"{stem}.weights.h5", "classifier weights (same bytes as model.weights.h5)")]
        rows.append(("backbone/", "Keras layout of the backbone alone"))
    else:
        rows.append(("config.json, metadata.json, model.weights.h5",
                     "Keras Hub layout of the backbone"))
    rows += [(f"{stem}_backbone.keras", "backbone, single-file Keras archive"),
             (f"{stem}_backbone.weights.h5", "backbone weights"),
             ("manifest.json", "conversion record: source sha256, artifact hashes, versions"),
             (f"{stem}.parity.json, {stem}.parity.md", "parity report")]
    for fmt, record in (exports or {}).items():
        if record.get("status") == "passed":
            rows.append((_export_file(fmt, record.get("files") or ["?"]),
                         f"{EXPORT_TITLES.get(fmt, fmt)} export (see Exports)"))
    if with_head:
        rows.append(("label_map.json", "class index -> name"))
    return (["## Files", "", "| file | content |", "|---|---|"]
            + [f"| `{name}` | {what} |" for name, what in rows] + [""])


def _pipeline_args(spec):
    pipeline = spec.get("pipeline") or {}
    defaults = TestPipeline().sampling()
    del defaults["mean"], defaults["std"]
    args = [f"{k}={pipeline[k]!r}" for k in defaults if pipeline.get(k, defaults[k]) != defaults[k]]
    return "".join(f", {a}" for a in args)


def _usage(manifest, repo_id, with_head, include_preprocessing):
    spec = manifest["spec"]
    uri = f"hf://{repo_id}"
    t, h, w = _clip(spec)
    pipeline = spec.get("pipeline") or {}
    mean = tuple(pipeline.get("mean", MEAN))
    std = tuple(pipeline.get("std", STD))
    prep = [f"frames = np.random.uniform(0, 255, (1, {t}, {h}, {w}, 3)).astype(\"float32\")"
            "  # your RGB frames, 0-255"]
    if include_preprocessing:
        prep.append("clip = frames  # the model normalises inside")
    else:
        prep += [f"mean, std = np.array({mean}), np.array({std})",
                 "clip = ((frames - mean) / std).astype(\"float32\")"]
    lines = ["## Usage", "",
             "Install the videoswin package (Keras 3) and one backend (`tensorflow`, `jax` or "
             "`torch`). Keras imports the videoswin model classes these files name by "
             "itself. Loading from the Hub downloads the repository once into the "
             "Hugging Face cache; later loads (also offline) read the cache.", ""]
    if with_head:
        lines += ["### Inference", ""]
        imports = {"tensorflow": [], "jax": [], "torch": ["import torch"]}
        call = {
            "tensorflow": ["logits = model.predict(clip)"],
            "jax": ["logits = model.predict(clip)  # compiled with XLA; eager JAX is much slower"],
            "torch": ["with torch.no_grad():",
                      "    logits = keras.ops.convert_to_numpy(model(clip, training=False))"],
        }
        for backend in BACKENDS:
            lines += [f"{_backend_name(backend)}:", "", "```python", "import os", "",
                      f'os.environ["KERAS_BACKEND"] = "{backend}"  # before importing keras', "",
                      "import keras", "import numpy as np", *imports[backend], "",
                      "import videoswin", "",
                      f'model = videoswin.VideoSwinClassifier.from_preset("{uri}")',
                      f'# or: model = keras.saving.load_model("{uri}")',
                      *prep, *call[backend],
                      "print(np.argsort(-logits[0])[:5])  # top-5 class indices", "```", ""]
        lines += ["A video file, with the published test protocol "
                  f"({pipeline.get('num_clips', 4)} clips x {pipeline.get('num_crops', 3)} "
                  "crops, softmax per view, mean), on any backend:", "", "```python",
                  "from huggingface_hub import hf_hub_download", "",
                  "import videoswin",
                  "from videoswin.core.labels import read_label_file",
                  "from videoswin.video import predict_video", "",
                  f'model = videoswin.VideoSwinClassifier.from_preset("{uri}")',
                  f'labels = read_label_file(hf_hub_download("{repo_id}", "label_map.json"))',
                  "print(predict_video(model, \"video.mp4\", labels=labels, "
                  f"origin=\"{spec.get('origin', 'official')}\"{_pipeline_args(spec)}))", "```",
                  "", "or from a shell: "
                  f"`videoswin-predict video.mp4 --model {uri} --top-k 5`.", ""]
    lines += ["### Fine-tuning", ""]
    fit = {
        "tensorflow": "model.fit(train_ds, validation_data=val_ds, epochs=10)  "
                      "# e.g. tf.data.Dataset of (clips, labels)",
        "jax": "model.fit(train_ds, validation_data=val_ds, epochs=10)  "
               "# the train step is jit-compiled",
        "torch": "model.fit(train_loader, validation_data=val_loader, epochs=10)  "
                 "# a torch DataLoader works",
    }
    for backend in BACKENDS:
        lines += [f"{_backend_name(backend)}:", "", "```python", "import os", "",
                  f'os.environ["KERAS_BACKEND"] = "{backend}"', "", "import keras", "",
                  "import videoswin", "",
                  f'backbone = videoswin.VideoSwinBackbone.from_preset("{uri}")',
                  "model = videoswin.VideoSwinClassifier(backbone, num_classes=10)  "
                  "# new head",
                  "model.compile(",
                  "    optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.05),",
                  "    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),",
                  '    metrics=["accuracy"],', ")", fit[backend], "```", ""]
    patterns = ('["backbone/*"]' if with_head
                else '["config.json", "metadata.json", "model.weights.h5"]')
    folder = 'path + "/backbone"' if with_head else "path"
    lines += ["The backbone alone, without downloading the whole repository:", "",
              "```python", "import keras", "from huggingface_hub import snapshot_download", "",
              "import videoswin.model  # noqa: F401  (registers the classes)", "",
              f'path = snapshot_download("{repo_id}", allow_patterns={patterns})',
              f"backbone = keras.saving.load_model({folder})",
              "```", ""]
    return lines


def _backend_name(backend):
    return {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}[backend]
