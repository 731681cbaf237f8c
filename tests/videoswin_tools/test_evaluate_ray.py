"""`--engine ray`: the same job as a Ray Data pipeline gives the local engine's files.

One local Ray instance (`ray.init(num_cpus=2, include_dashboard=False)`) serves the module;
the commands run in this process and find it running. Backend-independent: the Ray actors
run the model on the torch backend (the torch pass sets KERAS_BACKEND for them).
"""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tests.videoswin_tools import dataset_support as data
from videoswin_tools import evaluate, extract

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray (the 'ray' extra) is not installed")
    pytest.importorskip("ray.data", reason="Ray Data (the 'ray' extra) is not installed")
    pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"KERAS_BACKEND": os.environ["KERAS_BACKEND"]}})
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def shared():
    pytest.importorskip("torch", reason="the tiny model is converted from a torch checkpoint")
    return data.shared()


def _invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def _bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_ray_engine_equals_local(ray_session, shared, tmp_path):
    common = [shared["list"], "--model", shared["model"], "--data-root", shared["videos"],
              "--views", "2x3", "--batch-size", 4, "--save-probabilities"]
    local = _invoke(evaluate.main, *common, "--output", tmp_path / "local", "--workers", 0)
    assert local.exit_code == 3, local.output
    remote = _invoke(evaluate.main, *common, "--output", tmp_path / "ray", "--engine", "ray")
    assert remote.exit_code == 3, remote.output
    assert _bytes(tmp_path / "ray" / "predictions.jsonl") == \
        _bytes(tmp_path / "local" / "predictions.jsonl")
    metrics = [json.loads(_bytes(tmp_path / o / "metrics.json")) for o in ("local", "ray")]
    assert metrics[1]["engine"] == "ray"
    for m in metrics:
        for key in ("wall_seconds", "engine"):
            m.pop(key)
    assert metrics[0] == metrics[1] and metrics[0]["failed"] == 1


def test_ray_extraction_equals_local(ray_session, shared, tmp_path):
    common = [shared["list"], "--model", shared["model"], "--data-root", shared["videos"],
              "--views", "1x1", "--batch-size", 2, "--stage", "all", "--per-file", 4]
    local = _invoke(extract.main, *common, "--output", tmp_path / "local", "--workers", 0)
    remote = _invoke(extract.main, *common, "--output", tmp_path / "ray", "--engine", "ray",
                     "--ray-actors", 1)
    assert local.exit_code == remote.exit_code == 3, remote.output
    assert _bytes(tmp_path / "ray" / "index.jsonl") == _bytes(tmp_path / "local" / "index.jsonl")
    names = sorted(n for n in os.listdir(tmp_path / "local") if n.endswith(".npy"))
    assert names == sorted(n for n in os.listdir(tmp_path / "ray") if n.endswith(".npy"))
    for name in names:
        np.testing.assert_array_equal(np.load(tmp_path / "ray" / name),
                                      np.load(tmp_path / "local" / name))
