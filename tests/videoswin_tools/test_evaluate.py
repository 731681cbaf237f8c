"""videoswin-evaluate: list reading, metrics, the local engine against mmaction2, resume after
SIGKILL, sharding and merging, refusals.

The oracle: mmaction2's own test pipeline and `SwinTransformer3D` with the weights the tiny
model was converted from (tests/videoswin_tools/dataset_support.py), and mmaction2's
`top_k_accuracy` / `mean_class_accuracy`. Comparisons of two runs of the same job read
`predictions.jsonl` byte for byte and `metrics.json` without `wall_seconds` (and `engine`).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from tests.videoswin_tools import dataset_support as data
from videoswin_tools import datalist, evaluate, results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMING = ("wall_seconds", "engine", "merged", "merge_seconds")


@pytest.fixture(scope="module")
def shared():
    pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")
    pytest.importorskip("torch", reason="the tiny model is converted from a torch checkpoint")
    return data.shared()


def run_cli(*args):
    result = CliRunner().invoke(evaluate.main, [str(a) for a in args], catch_exceptions=False)
    return result


def read(folder):
    with open(os.path.join(folder, "predictions.jsonl"), "rb") as handle:
        raw = handle.read()
    with open(os.path.join(folder, "metrics.json")) as handle:
        metrics = json.load(handle)
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    return raw, rows, metrics


def comparable(metrics):
    return {k: v for k, v in metrics.items() if k not in TIMING}


# ------------------------------------------------------------------------------ the list

@pytest.mark.backend_independent
def test_list_reading_is_confined_and_names_the_line(tmp_path):
    (tmp_path / "v").mkdir()
    good = tmp_path / "good.txt"
    good.write_text("# a comment\n\na/b c.mp4 3\nx.mp4   0\n")
    entries = datalist.read_list(good, tmp_path / "v", num_classes=4)
    assert [(e.line, e.video, e.label) for e in entries] == [(3, "a/b c.mp4", 3),
                                                             (4, "x.mp4", 0)]
    assert entries[0].path == os.path.join(str(tmp_path / "v"), "a/b c.mp4")
    assert datalist.read_list(good)[1].path == os.path.join(str(tmp_path), "x.mp4")
    for text, message in [("ok.mp4 1\n../up.mp4 1\n", r"bad.txt:2: '../up.mp4' is outside"),
                          ("a/../../up.mp4 1\n", r"bad.txt:1: .* outside the data root"),
                          ("/etc/passwd 1\n", r"bad.txt:1: '/etc/passwd' is an absolute path"),
                          ("ok.mp4\n", r"bad.txt:1: expected 'relative/path label'"),
                          ("ok.mp4 cat\n", r"bad.txt:1: the label 'cat' is not a class index"),
                          ("ok.mp4 1\nok.mp4 4\n", r"bad.txt:2: label 4 is outside the "
                                                   r"model's 4 classes"),
                          ("ok.mp4 -1\n", r"bad.txt:1: label -1 is outside"),
                          ("# nothing\n", r"bad.txt: lists no videos")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(datalist.ListError, match=message):
            datalist.read_list(bad, tmp_path / "v", num_classes=4)
    with pytest.raises(datalist.ListError, match="cannot be read"):
        datalist.read_list(tmp_path / "absent.txt")
    with pytest.raises(datalist.ListError, match="--data-root .*: no such folder"):
        datalist.read_list(good, tmp_path / "nowhere")
    assert [e.label for e in datalist.read_list(good, labels="optional")] == [3, 0]
    assert datalist.shard(list(range(7)), (1, 3)) == [1, 4]
    with pytest.raises(ValueError, match="0 <= I < N"):
        datalist.parse_shard("3/3")


# ------------------------------------------------------------------------------- metrics

@pytest.mark.backend_independent
def test_metrics_equal_mmaction2s():
    pytest.importorskip("mmaction", reason="mmaction2 (the oracle) is not installed")
    from mmaction.evaluation.functional import mean_class_accuracy, top_k_accuracy

    rng = np.random.default_rng(0)
    for videos, classes in [(50, 10), (7, 3), (200, 400), (5, 7)]:
        scores = rng.random((videos, classes))
        labels = rng.integers(0, classes, videos)
        labels[: videos // 3] = scores[: videos // 3].argmax(1)      # some hits
        ranked = evaluate.ranking(scores, 5)
        ours = evaluate.top_k_accuracy(ranked, labels, (1, 5))
        assert ours == pytest.approx(top_k_accuracy(list(scores), list(labels), (1, 5)),
                                     abs=0, rel=1e-15)
        assert evaluate.mean_class_accuracy(ranked[:, 0], labels) == pytest.approx(
            mean_class_accuracy(list(scores), list(labels)), abs=0, rel=1e-15)
    # a class only ever predicted counts as 0 (mmaction2's rule)
    scores = np.eye(3)[[0, 0, 2]]
    assert evaluate.mean_class_accuracy([0, 0, 2], [0, 1, 1]) == pytest.approx(
        mean_class_accuracy(list(scores), [0, 1, 1])) == pytest.approx(1 / 3)


# ----------------------------------------------------------------- the oracle, end to end

def test_local_engine_equals_mmaction2(shared, tmp_path):
    """The manifest's protocol (4 clips x 3 crops), worker processes, several videos per
    forward pass: per-video probabilities and the metrics against mmaction2."""
    pytest.importorskip("mmaction", reason="mmaction2 (the oracle) is not installed")
    from mmaction.evaluation.functional import mean_class_accuracy, top_k_accuracy

    out = tmp_path / "out"
    result = run_cli(shared["list"], "--model", shared["model"], "--data-root",
                     shared["videos"], "--output", out, "--workers", 1, "--batch-size", 8,
                     "--save-probabilities")
    assert result.exit_code == 3, result.output          # the file that is not a video
    _, rows, metrics = read(out)
    listed = open(shared["list"]).read().split()[::2]
    assert [r["video"] for r in rows] == listed and [r["line"] for r in rows] == \
        list(range(1, len(listed) + 1))
    broken = rows[listed.index(data.BROKEN)]
    assert broken["top5"] is None and broken["probabilities"] is None
    assert "broken.mp4: not a readable video file" in broken["error"]
    ok = [r for r in rows if r["error"] is None]
    expected = np.stack([data.oracle_probabilities(shared["oracle"],
                                                   os.path.join(shared["videos"], r["video"]),
                                                   4, 3) for r in ok])
    ours = np.array([r["probabilities"] for r in ok])
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    for row, probs in zip(ok, ours):
        assert [i for i, _ in row["top5"]] == np.argsort(-probs, kind="stable")[:5].tolist()
        assert [p for _, p in row["top5"]] == probs[[i for i, _ in row["top5"]]].tolist()
    labels = [r["label"] for r in ok]
    top1, top5 = top_k_accuracy(list(expected), labels, (1, 5))
    assert (metrics["top1"], metrics["top5"]) == (top1, top5)
    assert metrics["mean_class_accuracy"] == pytest.approx(
        mean_class_accuracy(list(expected), labels), abs=1e-15)
    assert 0 < metrics["top1"] < 1 and metrics["mean_class_accuracy"] < metrics["top1"]
    assert (metrics["videos"], metrics["failed"]) == (len(rows), 1)
    assert metrics["protocol"]["views"] == "4x3" and metrics["protocol"]["origin"] == \
        "mmaction2"
    assert metrics["model"].endswith(".keras") and metrics["wall_seconds"] > 0
    assert "top1" in result.output

    # Groups of 2 videos (12 views, 8 per pass). Resume after line 1 with a torn line 2:
    # line 2 is recomputed beside zeros where line 1's views were, and gives the same bits.
    raw = open(out / "predictions.jsonl", "rb").read()
    first, second = raw.splitlines(keepends=True)[:2]
    (out / "predictions.jsonl").write_bytes(first + second[:20])
    again = run_cli(shared["list"], "--model", shared["model"], "--data-root",
                    shared["videos"], "--output", out, "--workers", 0, "--batch-size", 8,
                    "--save-probabilities", "--resume")
    assert again.exit_code == 3, again.output
    assert open(out / "predictions.jsonl", "rb").read() == raw


# ------------------------------------------------------------------------ resume, shards

def _cli_env():
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=ROOT)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _rows_in(path):
    try:
        with open(path) as handle:
            return handle.read().count("\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def long_list(shared, tmp_path_factory):
    """The set three times over: 21 lines."""
    path = tmp_path_factory.mktemp("long") / "long.txt"
    text = open(shared["list"]).read()
    path.write_text(text * 3)
    return str(path)


@pytest.fixture(scope="module")
def one_run(shared, long_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    result = run_cli(long_list, "--model", shared["model"], "--data-root", shared["videos"],
                     "--output", out, "--views", "1x1", "--workers", 1, "--batch-size", 3)
    assert result.exit_code == 3, result.output
    return out


@pytest.mark.backend_independent
def test_resume_after_sigkill_gives_the_same_files(shared, long_list, one_run, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "videoswin_tools.evaluate", long_list, "--model",
            shared["model"], "--data-root", shared["videos"], "--output", str(out),
            "--views", "1x1", "--workers", "1", "--batch-size", "3"]
    predictions = out / "predictions.jsonl"
    log = open(tmp_path / "stderr.txt", "w+")       # a file: no pipe a child could hold open
    process = subprocess.Popen(args, env=_cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=log)
    try:
        deadline = time.monotonic() + 240
        while _rows_in(predictions) < 5 and process.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no rows"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        log.seek(0)
        stderr = log.read()
        log.close()
    assert process.returncode == -signal.SIGKILL, stderr
    done = _rows_in(predictions)
    assert 5 <= done < 21 and not (out / "metrics.json").exists()
    with open(predictions, "a") as handle:                 # as if killed inside a write
        handle.write('{"line": 99, "video": "torn')
    again = subprocess.run(args + ["--resume"], env=_cli_env(), cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 3, again.stderr
    assert f"resuming: {done} of 21 videos already done" in again.stderr
    raw, _, metrics = read(out)
    raw_one, _, metrics_one = read(one_run)
    assert raw == raw_one
    assert comparable(metrics) == comparable(metrics_one)


@pytest.mark.backend_independent
def test_shards_merge_to_the_single_run(shared, long_list, one_run, tmp_path):
    parts = []
    for index in range(3):
        part = tmp_path / f"part{index}"
        result = run_cli(long_list, "--model", shared["model"], "--data-root",
                         shared["videos"], "--output", part, "--views", "1x1", "--workers", 0,
                         "--batch-size", 3, "--shard", f"{index}/3")
        assert result.exit_code == 3, result.output       # each shard holds a broken copy
        parts.append(part)
    _, rows, _ = read(parts[1])
    assert [r["line"] for r in rows] == list(range(2, 22, 3))
    incomplete = run_cli("--merge", parts[0], parts[1], "--output", tmp_path / "bad")
    assert incomplete.exit_code == 1 and "hold 14 of the list's 21 videos" in incomplete.output
    merged = tmp_path / "merged"
    result = run_cli("--merge", *parts, "--output", merged)
    assert result.exit_code == 3, result.output
    _, rows, metrics = read(merged)
    _, rows_one, metrics_one = read(one_run)
    assert comparable(metrics) == comparable(metrics_one)
    assert metrics["merged"] == [str(p) for p in parts]
    assert [(r["line"], r["error"] is None, [i for i, _ in r["top5"] or []]) for r in rows] == \
        [(r["line"], r["error"] is None, [i for i, _ in r["top5"] or []]) for r in rows_one]
    ours = np.array([[p for _, p in r["top5"]] for r in rows if r["top5"]])
    one = np.array([[p for _, p in r["top5"]] for r in rows_one if r["top5"]])
    np.testing.assert_allclose(ours, one, atol=1e-6)
    twice = run_cli("--merge", parts[0], parts[0], "--output", tmp_path / "twice")
    assert twice.exit_code == 1 and "the same shard twice" in twice.output


# ----------------------------------------------------------------------------- refusals

@pytest.mark.backend_independent
def test_refusals_name_the_problem(shared, one_run, tmp_path):
    common = ["--model", shared["model"], "--data-root", shared["videos"], "--views", "1x1",
              "--workers", 0]
    again = run_cli(shared["list"], *common, "--output", one_run)
    assert again.exit_code == 1 and "already holds" in again.output and "--resume" in \
        again.output
    other = run_cli(shared["list"], *common, "--output", one_run, "--resume")
    assert other.exit_code == 1 and "different job" in other.output
    busy = tmp_path / "busy"
    with results.FolderLock(busy):
        locked = run_cli(shared["list"], *common, "--output", busy)
    assert locked.exit_code == 1 and f"another run is writing there (pid {os.getpid()}" in \
        locked.output
    bad = tmp_path / "bad.txt"
    bad.write_text("a/landscape.mp4 4\n../../etc/passwd 1\n")
    listed = run_cli(bad, *common, "--output", tmp_path / "o1")
    assert listed.exit_code == 2 and "bad.txt:2" in listed.output and "outside" in \
        listed.output
    bad.write_text("a/landscape.mp4 9\n")
    ranged = run_cli(bad, *common, "--output", tmp_path / "o2")
    assert ranged.exit_code == 2 and "label 9 is outside the model's 7 classes" in \
        ranged.output
    missing = run_cli(shared["list"], "--model", tmp_path / "nope.keras", "--output",
                      tmp_path / "o3")
    assert missing.exit_code == 2 and "nope.keras: no such file" in missing.output
    shard = run_cli(shared["list"], *common, "--output", tmp_path / "o4", "--shard", "2/2")
    assert shard.exit_code == 2 and "--shard" in shard.output
    views = run_cli(shared["list"], *common[:-2], "--views", "2x2", "--output", tmp_path / "o5")
    assert views.exit_code == 2 and "--views" in views.output
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3", "o4", "o5"))
