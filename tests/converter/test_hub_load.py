"""Loading published models back: `from_preset` and `keras.saving.load_model("hf://...")`.

A tiny fabricated conversion is published to the loopback stand-in Hub once per module; then a
fresh process per Keras backend (HF_ENDPOINT pointed at the stand-in, HF_HOME in a temporary
folder) loads it every way a user would and must reproduce the logits and features computed
here before publishing. Local presets (folders, `.keras` files) are tested in-process.
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from huggingface_hub import constants

import videoswin
from converter.publish import publish
from tests.converter import fake_conversion as fake
from tests.converter.hub_server import HubServer
from videoswin import hub as presets

TOKEN = "hf_write_token"
REPO = f"videoswin/{fake.STEM}"          # the zoo preset name fake.STEM maps to this repo
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5
FRAMEWORK = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(hub, conversion dir, staged dir, clips, logits, features), published once."""
    root = tmp_path_factory.mktemp("hub-load")
    out = root / "out"
    fake.make_conversion(out)
    labels = fake.write_labels(root / "labels.txt")
    clips = fake.clips(count=2)
    classifier = keras.saving.load_model(out / f"{fake.STEM}.keras")
    backbone = keras.saving.load_model(out / f"{fake.STEM}_backbone.keras")
    logits = keras.ops.convert_to_numpy(classifier(clips, training=False))
    features = keras.ops.convert_to_numpy(backbone(clips, training=False))
    np.savez(root / "expected.npz", clips=clips, logits=logits, features=features)
    xet = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True      # the stand-in speaks the LFS batch API, not Xet
    try:
        with HubServer(root / "hub", tokens=[TOKEN], lifetime=900) as hub:
            publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
            publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels, dry_run=True,
                    stage_dir=root / "staged")
            yield hub, out, root / "staged", root
    finally:
        constants.HF_HUB_DISABLE_XET = xet


CHILD = textwrap.dedent("""
    import sys, numpy as np, keras, videoswin
    expected, result, repo, preset = sys.argv[1:5]
    clips = np.load(expected)["clips"]
    run = lambda model: keras.ops.convert_to_numpy(model(clips, training=False))
    by_preset = videoswin.VideoSwinClassifier.from_preset(preset)
    by_keras = keras.saving.load_model("hf://" + repo)
    backbone = videoswin.VideoSwinBackbone.from_preset("hf://" + repo)
    np.savez(result, preset=run(by_preset), keras=run(by_keras), backbone=run(backbone),
             types=np.array([type(m).__name__ for m in (by_preset, by_keras, backbone)]),
             backend=np.array(keras.backend.backend()))
""")


def child_env(hub, home, backend, **extra):
    env = dict(os.environ, KERAS_BACKEND=backend, HF_ENDPOINT=hub.url, HF_HOME=str(home),
               HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(ROOT), **extra)
    env.pop("HF_TOKEN", None)
    return env


@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_published_model_loads_in_a_fresh_process(published, backend, tmp_path):
    if importlib.util.find_spec(FRAMEWORK[backend]) is None:
        pytest.skip(f"{backend} is not installed, so the {backend} backend cannot run")
    hub, _, _, root = published
    start = len(hub.requests)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(root / "expected.npz"), str(tmp_path / "out.npz"),
         REPO, fake.STEM],
        env=child_env(hub, tmp_path / "hf-home", backend), capture_output=True, text=True,
        timeout=400)
    assert run.returncode == 0, run.stderr[-4000:]
    got, expected = np.load(tmp_path / "out.npz"), np.load(root / "expected.npz")
    assert str(got["backend"]) == backend
    assert list(got["types"]) == ["VideoSwinClassifier", "VideoSwinClassifier",
                                  "VideoSwinBackbone"]
    assert np.abs(expected["logits"]).max() > 0.5          # non-trivial outputs
    for key in ("preset", "keras"):
        np.testing.assert_allclose(got[key], expected["logits"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got["backbone"], expected["features"], rtol=0, atol=TOLERANCE)
    # Three loads, one download: each distinct content fetched once (the .weights.h5 files
    # and their model.weights.h5 twins share one cached blob), later loads read the cache.
    downloads = [path for method, path in hub.requests[start:]
                 if method == "GET" and "/resolve/" in path]
    assert len(downloads) == len(set(downloads))
    contents = {blob.sha256 for blob in hub.commits(REPO)[-1].files.values()}
    assert len(downloads) == len(contents)


def test_cached_preset_loads_offline(published, tmp_path):
    hub, _, _, root = published
    code = ("import sys, videoswin; "
            "m = videoswin.VideoSwinClassifier.from_preset(sys.argv[1]); print(m.num_classes)")
    home = tmp_path / "hf-home"
    online = subprocess.run([sys.executable, "-c", code, fake.STEM],
                            env=child_env(hub, home, "torch"), capture_output=True, text=True,
                            timeout=300)
    assert online.returncode == 0, online.stderr[-4000:]
    start = len(hub.requests)
    offline = subprocess.run([sys.executable, "-c", code, fake.STEM],
                             env=child_env(hub, home, "torch", HF_HUB_OFFLINE="1"),
                             capture_output=True, text=True, timeout=300)
    assert offline.returncode == 0, offline.stderr[-4000:]
    assert offline.stdout.split()[-1] == str(fake.NUM_CLASSES)
    assert hub.requests[start:] == []


# ------------------------------------------------------------------ local presets, in-process

def weights_equal(a, b):
    return all(np.array_equal(keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))
               for x, y in zip(a.weights, b.weights, strict=True))


def test_local_folders_and_files(published):
    _, out, staged, _ = published
    reference = keras.saving.load_model(out / f"{fake.STEM}.keras")
    reference_backbone = keras.saving.load_model(out / f"{fake.STEM}_backbone.keras")
    for source in (out, staged, out / f"{fake.STEM}.keras"):
        model = videoswin.VideoSwinClassifier.from_preset(source)
        assert isinstance(model, videoswin.VideoSwinClassifier), source
        assert weights_equal(model, reference), source
    for source in (out, staged, out / f"{fake.STEM}.keras", staged / "backbone"):
        backbone = videoswin.VideoSwinBackbone.from_preset(source)
        assert isinstance(backbone, videoswin.VideoSwinBackbone), source
        assert weights_equal(backbone, reference_backbone), source


def test_new_head_on_a_pretrained_backbone(published):
    _, out, _, _ = published
    reference = keras.saving.load_model(out / f"{fake.STEM}.keras")
    model = videoswin.VideoSwinClassifier.from_preset(out, num_classes=7)
    assert model.num_classes == 7 and model.output_shape == (None, 7)
    assert weights_equal(model.backbone, reference.backbone)
    same_head = videoswin.VideoSwinClassifier.from_preset(out, dropout=0.1)
    assert same_head.dropout == 0.1 and weights_equal(same_head, reference)


def test_backbone_only_preset(tmp_path):
    fake.make_conversion(tmp_path, with_head=False)
    assert isinstance(videoswin.VideoSwinBackbone.from_preset(tmp_path), videoswin.VideoSwinBackbone)
    with pytest.raises(ValueError, match="holds a backbone only"):
        videoswin.VideoSwinClassifier.from_preset(tmp_path)


def test_bad_presets(published, tmp_path):
    _, out, _, _ = published
    with pytest.raises(ValueError, match="not a preset name.*Presets: swin_tiny"):
        videoswin.VideoSwinClassifier.from_preset("swin_nano")
    with pytest.raises(ValueError, match="write 'hf://org/model'"):
        videoswin.VideoSwinClassifier.from_preset("org/model")
    with pytest.raises(ValueError, match="must be a .keras archive"):
        videoswin.VideoSwinClassifier.from_preset(out / f"{fake.STEM}.weights.h5")
    with pytest.raises(ValueError, match="holds neither a Keras model folder"):
        videoswin.VideoSwinClassifier.from_preset(tmp_path)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['num_classes'\\]"):
        videoswin.VideoSwinBackbone.from_preset(out, num_classes=3)


def test_presets_name_every_zoo_config():
    stems = {p.stem for p in (ROOT / "configs" / "recognition" / "swin").glob("*.py")}
    assert set(presets.PRESETS) == stems
    for name, uri in presets.PRESETS.items():
        assert uri == f"hf://videoswin/{name}" and len(uri) - 5 <= 96
        assert presets.resolve_preset(name) == uri


def test_model_library_does_not_import_huggingface_hub():
    tree = ast.parse((ROOT / "videoswin" / "hub.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in getattr(node, "names", [])} | \
        {node.module.split(".")[0] for node in ast.walk(tree)
         if isinstance(node, ast.ImportFrom) and node.module}
    assert "huggingface_hub" not in imported and "converter" not in imported
    assert imported <= {"json", "os", "keras", "videoswin"}
