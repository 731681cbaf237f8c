"""A tiny, complete `videoswin-convert` output folder for publishing and loading tests.

`make_conversion(folder)` writes what the converter writes (classifier and backbone
`.weights.h5` / `.keras`, `<stem>.parity.json`, `<stem>.parity.md`, `manifest.json`) for a tiny
randomly initialised model, so Hub tests run without a checkpoint or a parity run. A real
conversion (`converter.cli.convert(..., random_weights=SEED)`) can replace it: the tests only
rely on the folder's files and manifest. `shared_conversion()` builds one per test process
(read-only: copy it before changing anything).
"""

import atexit
import hashlib
import json
import os
import shutil
import tempfile

import keras
import numpy as np

import videoswin
from videoswin.core.spec import CheckpointSource, Metrics, ModelSpec

STEM = "swin_tiny_patch244_window877_kinetics400_1k"
NUM_CLASSES = 5
LABELS = ["abseiling", "air drumming", "answering questions", "applauding", "applying cream"]
CLIP = (4, 32, 32, 3)
ARCH = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 3, 3))


def _describe(path):
    data = open(path, "rb").read()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def make_models(seed=0, with_head=True):
    """(classifier or None, backbone): the tiny model, every weight drawn from `seed`."""
    backbone = videoswin.VideoSwinBackbone(**ARCH, input_shape=(None, None, None, 3),
                                           name="video_swin_backbone")
    model = (videoswin.VideoSwinClassifier(backbone, NUM_CLASSES, name="video_swin")
             if with_head else backbone)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.path.endswith("gamma"):
            value = 1 + 0.2 * rng.standard_normal(shape)
        else:
            value = (0.5 if len(shape) < 2 else 1 / np.sqrt(np.prod(shape[:-1])))
            value = value * rng.standard_normal(shape)
        variable.assign(value.astype("float32"))
    return (model if with_head else None), backbone


def clips(count=1, seed=1):
    return np.random.default_rng(seed).standard_normal((count, *CLIP)).astype("float32")


def make_conversion(folder, seed=0, with_head=True, parity_status="passed"):
    """Write the conversion of a tiny model into `folder`; return the manifest dict."""
    os.makedirs(folder, exist_ok=True)
    classifier, backbone = make_models(seed, with_head)
    files = []
    if classifier is not None:
        classifier.save_weights(os.path.join(folder, f"{STEM}.weights.h5"))
        classifier.save(os.path.join(folder, f"{STEM}.keras"))
        files += [f"{STEM}.weights.h5", f"{STEM}.keras"]
    backbone.save_weights(os.path.join(folder, f"{STEM}_backbone.weights.h5"))
    backbone.save(os.path.join(folder, f"{STEM}_backbone.keras"))
    files += [f"{STEM}_backbone.weights.h5", f"{STEM}_backbone.keras"]

    spec = ModelSpec(
        name=STEM, path=f"configs/recognition/swin/{STEM}.py",
        embed_dim=ARCH["embed_dim"], depths=ARCH["depths"], num_heads=ARCH["num_heads"],
        window_size=ARCH["window_size"], num_classes=NUM_CLASSES if with_head else None,
        dataset="kinetics400", pretrain="ImageNet-1K", arch_name=None, origin="official",
        checkpoint=CheckpointSource(
            filename=f"{STEM}.pth",
            url=f"https://github.com/SwinTransformer/storage/releases/download/v1.0.4/{STEM}.pth"),
        metrics=Metrics(top1=78.8, top5=93.6, views="32x4x3",
                        source="https://github.com/SwinTransformer/Video-Swin-Transformer"))
    backends = {
        backend: {"max_abs_logits": 1.9e-6 * (i + 1) if with_head else None,
                  "max_abs_features": 9.5e-7 * (i + 1),
                  "top1_agreement": 1.0 if with_head else None,
                  "top5_agreement": 1.0 if with_head else None,
                  "weights_h5_identical": True, "seconds": 3.0, "passed": True}
        for i, backend in enumerate(("torch", "jax", "tensorflow"))}
    report = {"reference": "mmaction2", "clips": {"count": 2, "shape": [8, 64, 64], "seed": 0},
              "tolerance": {"max_abs": 1e-4, "dtype": "float32"}, "logits_scale": 3.1,
              "backends": backends, "status": parity_status}
    with open(os.path.join(folder, f"{STEM}.parity.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(folder, f"{STEM}.parity.md"), "w") as handle:
        handle.write(f"### {STEM}\n\n| backend | max abs logits |\n|---|---|\n"
                     + "".join(f"| {b} | {r['max_abs_logits']} |\n" for b, r in backends.items())
                     + f"\nStatus: **{parity_status}**\n")
    files += [f"{STEM}.parity.json", f"{STEM}.parity.md"]
    model = classifier or backbone
    manifest = {
        "config": STEM,
        "config_path": spec.path,
        "spec": spec.to_dict(),
        "source_checkpoint": {"name": f"{STEM}.pth", "sha256": "ab" * 32, "size": 123456,
                              "random_weights_seed": None, "url": spec.checkpoint.url},
        "layout": "official",
        "with_head": with_head,
        "params": int(model.count_params()),
        "backbone_params": int(backbone.count_params()),
        "flops": {"macs_per_view": 1_230_000_000, "gmacs_per_view": 1.23,
                  "view": [32, 224, 224]},
        "versions": {"videoswin": videoswin.__version__, "keras": keras.__version__},
        "parity": {"status": parity_status, "reference": "mmaction2",
                   "tolerance": 1e-4, "clips": report["clips"], "backends": backends},
        "artifacts": {name: _describe(os.path.join(folder, name)) for name in files},
    }
    with open(os.path.join(folder, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)
    return manifest


def write_labels(path, names=LABELS):
    with open(path, "w") as handle:
        handle.write("# test labels\n" + "\n".join(names) + "\n")
    return path


_SHARED = {}


def shared_conversion(with_head=True):
    """A conversion folder built once per process (do not modify it)."""
    if with_head not in _SHARED:
        root = tempfile.mkdtemp(prefix="videoswin-fake-conversion-")
        atexit.register(shutil.rmtree, root, True)
        make_conversion(os.path.join(root, "out"), with_head=with_head)
        _SHARED[with_head] = os.path.join(root, "out")
    return _SHARED[with_head]
