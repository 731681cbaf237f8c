"""A `.keras` file saved before the re-layering (videoswin.backbone / videoswin.classifier
modules, torch backend) still loads, on every backend, and gives the same outputs.

The classes are found by their registered names (`videoswin>VideoSwinClassifier`), which
`import videoswin.model` registers; the modules named in the file no longer exist.
"""

import contextlib
import json
import pathlib
import zipfile

import keras
import numpy as np
import pytest

import videoswin.model  # noqa: F401  (registers the classes)
from videoswin.model.backbone import VideoSwinBackbone
from videoswin.model.classifier import VideoSwinClassifier

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures"
MODEL = FIXTURES / "legacy_classifier.keras"
IO = FIXTURES / "legacy_classifier_io.npz"
BACKEND = keras.backend.backend()


def _inference():
    if BACKEND == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def _run(model, clip):
    with _inference():
        return keras.ops.convert_to_numpy(model(clip))


@pytest.fixture(scope="module")
def expected():
    with np.load(IO) as data:
        return {name: data[name] for name in ("clip", "logits", "features")}


def _assert_close(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, saved {want.shape}"
    scale = max(1.0, float(np.abs(want).max()))
    error = float(np.abs(got - want).max())
    assert error <= 1e-5 * scale, f"{what}: max |difference| {error:.3g} on scale {scale:.3g}"


def test_fixture_predates_the_relayering():
    # The point of this file: the archive names the old modules, not videoswin.model.
    with zipfile.ZipFile(MODEL) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["module"] == "videoswin.classifier"
    assert config["config"]["backbone"]["module"] == "videoswin.backbone"
    assert config["registered_name"] == "videoswin>VideoSwinClassifier"


def test_legacy_file_loads_and_gives_the_saved_outputs(expected):
    model = keras.saving.load_model(MODEL)
    assert type(model) is VideoSwinClassifier
    assert type(model.backbone) is VideoSwinBackbone
    assert model.num_classes == expected["logits"].shape[-1]
    _assert_close(_run(model, expected["clip"]), expected["logits"], "logits")
    _assert_close(_run(model.backbone, expected["clip"]), expected["features"],
                  "backbone features")


def test_legacy_file_loads_as_a_preset(expected):
    model = VideoSwinClassifier.from_preset(str(MODEL))
    assert type(model) is VideoSwinClassifier
    _assert_close(_run(model, expected["clip"]), expected["logits"], "logits")
    backbone = VideoSwinBackbone.from_preset(str(MODEL))
    assert type(backbone) is VideoSwinBackbone
    _assert_close(_run(backbone, expected["clip"]), expected["features"], "backbone features")
