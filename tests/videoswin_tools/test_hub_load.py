"""Loading published models back: `from_preset` and `keras.saving.load_model("hf://...")`.

A tiny fabricated conversion is published to the loopback stand-in Hub once per module; then a
fresh process on this session's Keras backend (HF_ENDPOINT pointed at the stand-in, HF_HOME in
a temporary folder) loads it every way a user would and must reproduce the logits and features
computed before publishing. The suite runs once per backend, so each backend gets its fresh
process. Local presets (folders, `.keras` files) are tested in-process.
"""

import ast
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
from videoswin_tools.publish import publish
from tests.videoswin_tools import fake_conversion as fake
from tests.videoswin_tools.hub_server import HubServer
from videoswin.model import presets

TOKEN = "hf_write_token"
REPO = f"videoswin/{fake.STEM}"          # the zoo preset name fake.STEM maps to this repo
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(hub, conversion dir, staged dir, work dir): a tiny conversion, published once."""
    root = tmp_path_factory.mktemp("hub-load")
    out = Path(fake.shared_conversion())
    labels = fake.write_labels(root / "labels.txt")
    np.save(root / "clips.npy", fake.clips(count=2))
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


# The outputs before publishing come from the conversion's own files on disk; the published
# model is then loaded every way a user would, the last time with the network switched off.
CHILD = textwrap.dedent("""
    import sys, numpy as np, keras, videoswin.model
    from huggingface_hub import constants
    clips_path, result, out, stem, repo = sys.argv[1:6]
    clips = np.load(clips_path)
    run = lambda model: keras.ops.convert_to_numpy(model(clips, training=False))
    logits = run(keras.saving.load_model(f"{out}/{stem}.keras"))
    features = run(keras.saving.load_model(f"{out}/{stem}_backbone.keras"))
    by_preset = videoswin.VideoSwinClassifier.from_preset(stem)
    by_keras = keras.saving.load_model("hf://" + repo)
    backbone = videoswin.VideoSwinBackbone.from_preset("hf://" + repo)
    constants.HF_HUB_OFFLINE = True           # from now on any HTTP request raises
    cached = videoswin.VideoSwinClassifier.from_preset(stem)
    offline_same = all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
                       for a, b in zip(cached.weights, by_preset.weights, strict=True))
    np.savez(result, logits=logits, features=features, preset=run(by_preset),
             keras=run(by_keras), backbone=run(backbone),
             types=np.array([type(m).__name__ for m in (by_preset, by_keras, backbone)]),
             backend=np.array(keras.backend.backend()), offline_same=offline_same)
""")


def child_env(hub, home, backend, **extra):
    env = dict(os.environ, KERAS_BACKEND=backend, HF_ENDPOINT=hub.url, HF_HOME=str(home),
               HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(ROOT), **extra)
    env.pop("HF_TOKEN", None)
    return env


def test_published_model_loads_in_a_fresh_process(published, tmp_path):
    hub, out, _, root = published
    backend = BACKEND
    start = len(hub.requests)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(root / "clips.npy"), str(tmp_path / "out.npz"),
         str(out), fake.STEM, REPO],
        env=child_env(hub, tmp_path / "hf-home", backend), capture_output=True, text=True,
        timeout=400)
    assert run.returncode == 0, run.stderr[-4000:]
    got = np.load(tmp_path / "out.npz")
    assert str(got["backend"]) == backend
    assert list(got["types"]) == ["VideoSwinClassifier", "VideoSwinClassifier",
                                  "VideoSwinBackbone"]
    assert np.abs(got["logits"]).max() > 0.5 and got["logits"].shape == (2, fake.NUM_CLASSES)
    for key in ("preset", "keras"):
        np.testing.assert_allclose(got[key], got["logits"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got["backbone"], got["features"], rtol=0, atol=TOLERANCE)
    # Four loads, one download: each distinct content fetched once (the .weights.h5 files
    # and their model.weights.h5 twins share one cached blob), later loads read the cache,
    # the last one in offline mode.
    assert bool(got["offline_same"])
    downloads = [path for method, path in hub.requests[start:]
                 if method == "GET" and "/resolve/" in path]
    assert len(downloads) == len(set(downloads))
    contents = {blob.sha256 for blob in hub.commits(REPO)[-1].files.values()}
    assert len(downloads) == len(contents)


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


def test_a_conversion_folder_is_verified_before_loading(tmp_path):
    from videoswin.core.manifest import ManifestError

    src = Path(fake.shared_conversion(with_head=True))
    out = tmp_path / "out"
    out.mkdir()
    for path in src.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    data = bytearray((out / f"{fake.STEM}.keras").read_bytes())
    data[-100] ^= 0xFF                               # one byte of the archive changed
    (out / f"{fake.STEM}.keras").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=rf"{fake.STEM}\.keras differs from the manifest"):
        videoswin.VideoSwinClassifier.from_preset(out)
    # the backbone file is intact, and it is the only one read for a backbone
    assert isinstance(videoswin.VideoSwinBackbone.from_preset(out), videoswin.VideoSwinBackbone)


def test_backbone_only_preset():
    out = fake.shared_conversion(with_head=False)
    backbone = videoswin.VideoSwinBackbone.from_preset(out)
    assert isinstance(backbone, videoswin.VideoSwinBackbone)
    with pytest.raises(ValueError, match="holds a backbone only"):
        videoswin.VideoSwinClassifier.from_preset(out)


def test_bad_presets(published, tmp_path):
    _, out, _, _ = published
    with pytest.raises(ValueError, match="not a preset name.*Presets: swin_tiny"):
        videoswin.VideoSwinClassifier.from_preset("swin_nano")
    with pytest.raises(ValueError, match="write 'hf://org/model'"):
        videoswin.VideoSwinClassifier.from_preset("org/model")
    with pytest.raises(ValueError, match="takes 'hf://ORG/NAME' only"):
        videoswin.VideoSwinBackbone.from_preset(f"hf://{REPO}/backbone")
    with pytest.raises(ValueError, match="must be a .keras archive"):
        videoswin.VideoSwinClassifier.from_preset(out / f"{fake.STEM}.weights.h5")
    with pytest.raises(ValueError, match="holds neither a Keras model folder"):
        videoswin.VideoSwinClassifier.from_preset(tmp_path)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['num_classes'\\]"):
        videoswin.VideoSwinBackbone.from_preset(out, num_classes=3)


def test_presets_name_every_zoo_config():
    from videoswin.core.presets import PRESETS

    stems = {p.stem for p in (ROOT / "configs" / "recognition" / "swin").glob("*.py")}
    assert set(PRESETS) == stems
    for name, preset in PRESETS.items():
        uri = preset.hub_handle
        assert uri == f"hf://videoswin/{name}" and len(uri) - 5 <= 96
        assert presets.resolve(name) == uri


def test_model_library_does_not_import_huggingface_hub():
    tree = ast.parse((ROOT / "videoswin" / "model" / "presets.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert "huggingface_hub" not in imported and "converter" not in imported
    assert imported <= {"os", "keras", "videoswin"}
