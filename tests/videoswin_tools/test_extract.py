"""videoswin-extract: backbone features against mmaction2's backbone, the files and index,
resume, sharding and merging."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tests.videoswin_tools import dataset_support as data
from videoswin_tools import extract


@pytest.fixture(scope="module")
def shared():
    pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")
    pytest.importorskip("torch", reason="the tiny model is converted from a torch checkpoint")
    return data.shared()


def _invoke(*args):
    return CliRunner().invoke(extract.main, [str(a) for a in args], catch_exceptions=False)


def _bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def _folder_bytes(folder):
    return {name: _bytes(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if name.endswith((".npy", ".jsonl"))}


def test_features_equal_mmaction2s_backbone(shared, tmp_path):
    """Per view (`--pool none`), the last stage averaged over T', H', W', against the oracle
    backbone on mmaction2's pipeline; `--stage all` ends with the same vector."""
    pytest.importorskip("mmaction", reason="mmaction2 (the oracle) is not installed")
    common = [shared["list"], "--model", shared["model"], "--data-root", shared["videos"],
              "--views", "1x3", "--workers", 0, "--batch-size", 4, "--per-file", 4]
    result = _invoke(*common, "--pool", "none", "--output", tmp_path / "none")
    assert result.exit_code == 3, result.output
    features, rows = extract.load_features(tmp_path / "none")
    assert features.shape == (6, 3, 128) and len(rows) == 6
    index = [json.loads(line) for line in open(tmp_path / "none" / "index.jsonl")]
    assert [r["line"] for r in index] == list(range(1, 8))
    assert [(r["file"], r["row"]) for r in index] == [
        ("features-00000.npy", 0), ("features-00000.npy", 1), ("features-00000.npy", 2),
        (None, None), ("features-00001.npy", 0), ("features-00001.npy", 1),
        ("features-00001.npy", 2)]
    assert "not a readable video" in index[3]["error"]
    for row, ours in zip(rows, features):
        expected = data.oracle_features(shared["oracle"],
                                        os.path.join(shared["videos"], row["video"]), 1, 3)
        np.testing.assert_allclose(ours, expected, atol=2e-5, rtol=1e-5)
    summary = json.load(open(tmp_path / "none" / "features.json"))
    assert (summary["dimension"], summary["videos"], summary["failed"]) == (128, 7, 1)
    assert summary["files"] == ["features-00000.npy", "features-00001.npy"]

    result = _invoke(*common, "--stage", "all", "--output", tmp_path / "all")
    assert result.exit_code == 3, result.output
    stages, _ = extract.load_features(tmp_path / "all")
    layout = json.load(open(tmp_path / "all" / "features.json"))["layout"]
    assert [(s["stage"], s["start"], s["width"]) for s in layout] == [
        ("stage_0", 0, 16), ("stage_1", 16, 32), ("stage_2", 48, 64), ("stage_3", 112, 128)]
    assert stages.shape == (6, 240)
    np.testing.assert_allclose(stages[:, 112:], features.mean(axis=1), atol=1e-5, rtol=1e-5)


@pytest.mark.backend_independent
def test_resume_shards_and_video_arguments(shared, tmp_path):
    common = ["--model", shared["model"], "--views", "1x1", "--workers", 0, "--batch-size", 2,
              "--per-file", 2]
    listed = [shared["list"], "--data-root", shared["videos"]]
    one = tmp_path / "one"
    assert _invoke(*listed, *common, "--output", one).exit_code == 3
    expected = _folder_bytes(one)
    assert sorted(expected) == ["features-00000.npy", "features-00001.npy",
                                "features-00002.npy", "features-00003.npy", "index.jsonl"]

    # as if killed while writing the third file's rows: the file is there, its rows torn
    index = one / "index.jsonl"
    lines = _bytes(index).splitlines(keepends=True)
    index.write_bytes(b"".join(lines[:5]) + lines[5][:7])
    os.remove(one / "features-00003.npy")
    os.remove(one / "features.json")
    resumed = _invoke(*listed, *common, "--output", one, "--resume")
    assert resumed.exit_code == 3, resumed.output
    assert _folder_bytes(one) == expected

    parts = [tmp_path / "p0", tmp_path / "p1"]
    for i, part in enumerate(parts):               # the broken file is line 4: shard 1/2
        assert _invoke(*listed, *common, "--output", part, "--shard", f"{i}/2").exit_code == i * 3
    merged = tmp_path / "merged"
    assert _invoke("--merge", *parts, "--output", merged).exit_code == 3
    ours, rows = extract.load_features(merged)
    reference, rows_one = extract.load_features(one)
    assert [r["line"] for r in rows] == [r["line"] for r in rows_one]
    np.testing.assert_allclose(ours, reference, atol=1e-6)

    videos = [os.path.join(shared["videos"], name) for name in ("a/landscape.mp4", "short.mp4")]
    direct = tmp_path / "direct"
    assert _invoke(*videos, *common, "--output", direct).exit_code == 0
    features, rows = extract.load_features(direct)
    assert [r["video"] for r in rows] == videos and [r["label"] for r in rows] == [None, None]
    np.testing.assert_allclose(features, reference[[0, 4]], atol=1e-6)
