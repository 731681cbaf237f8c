"""videoswin-predict (videoswin_tools.predict): end to end in a subprocess on the session's backend,
and its option handling in process (model loading cached, scoring stubbed where marked)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")

import keras  # noqa: E402

from videoswin_tools import predict  # noqa: E402
from tests.videoswin.test_video import (TINY_PIPELINE, numbered_frames,  # noqa: E402
                                        tiny_classifier, write_video)
from videoswin.core import labels as label_maps  # noqa: E402
from videoswin import video  # noqa: E402
from videoswin.core.pipelines import TestPipeline  # noqa: E402

K400 = label_maps.load_labels("kinetics400")


def write_manifest(folder, name, seed=None, **spec_fields):
    """A valid manifest for the model files `name*` already in `folder`."""
    from videoswin.core import naming
    from videoswin.core.manifest import Manifest, describe
    from videoswin.core.spec import ModelSpec

    spec = ModelSpec(name=name, path=f"{name}.py", **spec_fields)
    Manifest({"config": name, "spec": spec.to_dict(), "params": 1, "with_head": True,
              "source_checkpoint": {"name": f"{name}.pth", "random_weights_seed": seed},
              "parity": {"status": "passed"},
              "artifacts": {f: describe(folder / f) for f in naming.model_files(name)}}
             ).write(folder)


def placeholder_conversion(setup, out, name, seed=None, **spec_fields):
    """A conversion folder of placeholder files whose classifier loads (from the cache) as
    the fixture's model."""
    from videoswin.core import naming

    for file in naming.model_files(name):
        (out / file).write_bytes(b"placeholder")
    setup["cache"][str(out / f"{name}.keras")] = setup["model"]
    write_manifest(out, name, seed=seed, **spec_fields)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A conversion-style directory (tiny.keras, tiny_backbone.keras, manifest.json), a bare
    .keras file elsewhere, and two videos (one shorter than a 4x2 clip)."""
    root = tmp_path_factory.mktemp("predict")
    model = tiny_classifier()
    out = root / "converted"
    out.mkdir()
    model.save(out / "tiny.keras")
    for placeholder in ("tiny_backbone.keras", "tiny.weights.h5", "tiny_backbone.weights.h5"):
        (out / placeholder).write_bytes(b"placeholder")  # served by the cached loader
    write_manifest(out, "tiny", dataset="kinetics400", origin="mmaction2",
                   pipeline=TestPipeline(**TINY_PIPELINE))
    bare = root / "bare"
    bare.mkdir()
    (bare / "model.keras").write_bytes((out / "tiny.keras").read_bytes())
    clips = [write_video(root / "long.mp4", numbered_frames(30, 48, 64), 25),
             write_video(root / "short.mp4", numbered_frames(5, 40, 40), 30)]
    cache = {str(out / "tiny.keras"): model, str(bare / "model.keras"): model,
             str(out / "tiny_backbone.keras"): model.backbone}
    return {"model": model, "dir": out, "bare": bare / "model.keras", "videos": clips,
            "cache": cache, "root": root}


@pytest.fixture
def cli(setup, monkeypatch):
    """Run the CLI in process; `.keras` files of the fixture load from memory."""
    real = keras.saving.load_model

    def load_model(path, *args, **kwargs):
        found = setup["cache"].get(str(path))
        return found if found is not None else real(path, *args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", load_model)

    def run(*args):
        return CliRunner().invoke(predict.main, [str(a) for a in args])

    return run


@pytest.fixture
def scores(monkeypatch):
    """Stub the scoring: record its arguments, check the file is a video, return fixed
    probabilities peaked at classes 7 > 399 > 0."""
    calls = []

    def video_probabilities(model, path, **kwargs):
        calls.append(kwargs)
        video.count_frames(path)  # raises VideoReadError for non-videos
        probs = np.full(model.output_shape[-1], 0.001)
        probs[[7, 399, 0]] = [0.5, 0.3, 0.1]
        return probs

    monkeypatch.setattr(video, "video_probabilities", video_probabilities)
    return calls


def test_module_imports_no_keras():
    done = subprocess.run([sys.executable, "-c", "import sys, videoswin_tools.predict; "
                           "print(sorted(m for m in ('keras', 'videoswin.model') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_end_to_end_in_a_subprocess(setup):
    """Two videos, the conversion directory: its manifest sets the labels, pipeline and origin."""
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-m", "videoswin_tools.predict", *setup["videos"],
                           "--model", str(setup["dir"]), "--top-k", "3"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "[1/2]" in done.stderr and "[2/2]" in done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 8
    for block, path in zip((lines[:4], lines[4:]), setup["videos"]):
        assert block[0] == path
        printed = [line.split(None, 1) for line in block[1:]]
        assert all(label in K400 for _, label in printed)
        expected = video.predict_video(setup["model"], path, K400, top_k=3, origin="mmaction2",
                                       **TINY_PIPELINE)
        assert [label for _, label in printed] == [label for label, _ in expected]
        np.testing.assert_allclose([float(p) for p, _ in printed], [p for _, p in expected],
                                   atol=1e-4)


def test_manifest_sets_pipeline_labels_and_origin(setup, cli, scores):
    result = cli(setup["videos"][0], "--model", setup["dir"], "--top-k", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [setup["videos"][0], f"  0.5000  {K400[7]}",
                                          f"  0.3000  {K400[399]}", f"  0.1000  {K400[0]}"]
    assert "[1/" not in result.stderr  # progress only for several videos
    (call,) = scores
    assert call["origin"] == "mmaction2" and call["average_clips"] == "prob"
    assert {k: call[k] for k in TINY_PIPELINE} == TINY_PIPELINE


def test_flags_override_the_manifest(setup, cli, scores):
    result = cli(setup["videos"][0], "--model", setup["dir"] / "tiny.keras", "--views", "1x1",
                 "--origin", "official", "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert scores[0]["num_clips"] == 1 and scores[0]["num_crops"] == 1
    assert scores[0]["origin"] == "official" and scores[0]["clip_len"] == 4
    assert result.stdout.splitlines()[1:] == [f"  0.5000  {K400[7]}"]


def test_json_output_and_unreadable_files(setup, cli, scores, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    result = cli(setup["videos"][1], notes, "--model", setup["dir"], "--json", "--top-k", "2")
    assert result.exit_code == 1
    assert "[1/2]" in result.stderr and "[2/2]" in result.stderr
    assert f"error: {notes}: not a readable video file" in result.stderr
    doc = json.loads(result.stdout)
    assert (doc["dataset"], doc["origin"], doc["views"]) == ("kinetics400", "mmaction2", "2x3")
    ok, bad = doc["results"]
    assert ok["video"] == setup["videos"][1]
    assert ok["predictions"] == [{"index": 7, "label": K400[7], "probability": 0.5},
                                 {"index": 399, "label": K400[399], "probability": 0.3}]
    assert bad["video"] == str(notes) and "not a readable video" in bad["error"]


def test_dataset_and_label_file(setup, cli, scores, tmp_path):
    names = tmp_path / "mine.txt"
    names.write_text("# my 400 classes\n" + "\n".join(f"c{i}" for i in range(400)))
    # a bare .keras (no manifest): --dataset picks SSv2's pipeline, --labels the names
    result = cli(setup["videos"][0], "--model", setup["bare"], "--dataset", "ssv2",
                 "--labels", names, "--top-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["  0.5000  c7", "  0.3000  c399"]
    assert scores[0]["uniform_sampling"] is True and scores[0]["num_clips"] == 1
    assert scores[0]["clip_len"] == 32 and scores[0]["origin"] == "official"
    # SSv2's own map has 174 names: a 400-class model cannot use it
    result = cli(setup["videos"][0], "--model", setup["bare"], "--dataset", "sthv2")
    assert result.exit_code == 1
    assert "the sthv2 label map has 174 names but the model has 400 classes" in result.output
    # the packaged Kinetics-600 map has 600 names: refused for a 400-class model too
    result = cli(setup["videos"][0], "--model", setup["bare"], "--dataset", "k600",
                 "--top-k", "1")
    assert result.exit_code == 1
    assert "the kinetics600 label map has 600 names but the model has 400 classes" in \
        result.output


def test_unknown_manifest_dataset_falls_back_to_the_class_count(setup, cli, scores, tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    placeholder_conversion(setup, out, "other", dataset="ucf101")
    result = cli(setup["videos"][0], "--model", out, "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert "manifest dataset 'ucf101' is not one videoswin knows" in result.stderr
    assert result.stdout.splitlines()[1:] == [f"  0.5000  {K400[7]}"]
    assert scores[0]["num_clips"] == 4 and scores[0]["origin"] == "official"


def test_presets(setup, cli, scores, monkeypatch):
    import videoswin

    asked = []

    def from_preset(name, **kwargs):
        asked.append(name)
        return setup["model"]

    monkeypatch.setattr(videoswin.VideoSwinClassifier, "from_preset", from_preset)
    result = cli(setup["videos"][0], "--model", "videoswin_tiny_k400", "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert asked == ["videoswin_tiny_k400"]
    assert result.stdout.splitlines()[1:] == [f"  0.5000  {K400[7]}"]
    # a folder in Keras's Hub layout (config.json, no .keras) also goes through from_preset
    hub_folder = setup["root"] / "hub_layout"
    hub_folder.mkdir(exist_ok=True)
    (hub_folder / "config.json").write_text("{}")
    result = cli(setup["videos"][0], "--model", hub_folder, "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert asked[-1] == str(hub_folder)

    def no_hub(name, **kwargs):
        raise ModuleNotFoundError("No module named 'videoswin.hub'", name="videoswin.hub")

    monkeypatch.setattr(videoswin.VideoSwinClassifier, "from_preset", no_hub)
    result = cli(setup["videos"][0], "--model", "videoswin_tiny_k400")
    assert result.exit_code == 1
    assert "videoswin_tiny_k400: not a file or directory" in result.output
    assert "videoswin.hub" in result.output


def test_unknown_preset_is_named(setup, cli):
    result = cli(setup["videos"][0], "--model", "no_such_preset")
    assert result.exit_code == 1
    assert "no_such_preset" in result.output and "not a preset name" in result.output


@pytest.mark.parametrize("case", ["missing", "no_keras", "several", "not_keras", "backbone",
                                  "corrupt", "bad_manifest"])
def test_bad_models_are_named(setup, cli, tmp_path, case):
    target = tmp_path / case
    if case == "missing":
        target = tmp_path / "nowhere.keras"
        expected = "nowhere.keras: no such file or directory"
    elif case == "no_keras":
        target.mkdir()
        expected = "holds no classifier .keras file"
    elif case == "several":
        target.mkdir()
        for name in ("a.keras", "b.keras"):
            (target / name).write_bytes(b"x")
        expected = "holds several .keras files (a.keras, b.keras)"
    elif case == "not_keras":
        target = tmp_path / "weights.h5"
        target.write_bytes(b"x")
        expected = "expected a .keras file"
    elif case == "backbone":
        target = setup["dir"] / "tiny_backbone.keras"
        expected = "not class scores; pass the classifier"
    elif case == "corrupt":
        target = tmp_path / "broken.keras"
        target.write_bytes(b"not a zip archive")
        expected = "broken.keras: cannot be loaded as a Keras model"
    else:
        target.mkdir()
        (target / "manifest.json").write_text("{not json")
        expected = "manifest.json: not a readable JSON manifest"
    result = cli(setup["videos"][0], "--model", target)
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split())


@pytest.mark.parametrize("args,expected", [
    (["--views", "4by3"], "'4by3': expected CLIPSxCROPS"),
    (["--views", "4x2"], "crops 1 or 3"),
    (["--dataset", "ucf101"], "unknown dataset 'ucf101'"),
    (["--top-k", "0"], "--top-k"),
    (["--origin", "0.x"], "--origin"),
])
def test_bad_options(setup, cli, args, expected):
    result = cli(setup["videos"][0], "--model", setup["dir"], *args)
    assert result.exit_code == 2
    assert expected in result.output


def test_bad_label_file(setup, cli, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n")
    result = cli(setup["videos"][0], "--model", setup["dir"], "--labels", empty)
    assert result.exit_code == 2
    assert "empty.txt holds no class names" in result.output


def test_random_weights_are_announced(setup, cli, scores, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    placeholder_conversion(setup, out, "demo", seed=0, dataset="kinetics400")
    result = cli(setup["videos"][0], "--model", out, "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert "holds RANDOM weights (a --random-weights 0 conversion" in result.stderr
    quiet = cli(setup["videos"][0], "--model", setup["dir"], "--top-k", "1")
    assert "RANDOM" not in quiet.stderr
