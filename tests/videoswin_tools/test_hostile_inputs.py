"""Hostile or absurd inputs to the command lines: names from data that would leave their
folder, and numbers outside their domain. Each case checks the exit status, the message, and
that no file or folder appeared (or changed) anywhere."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.converter.support import write_config

pytestmark = pytest.mark.backend_independent     # every case fails before Keras runs


def _run(module, *args, cwd=None):
    env = dict(os.environ, KERAS_BACKEND="torch")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def _tree(root):
    """Every file under `root` with its sha256."""
    return {os.path.relpath(os.path.join(d, f), root):
            hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, files in os.walk(root) for f in files}


@pytest.mark.parametrize("option, values, message", [
    ("--tolerance", ["-1"], "--tolerance must be a number >= 0"),
    ("--tolerance", ["nan"], "--tolerance must be a number >= 0"),
    ("--parity-clip", ["0", "64", "64"], "each of T H W must be in 1..4096"),
    ("--parity-clip", ["8", "-64", "64"], "each of T H W must be in 1..4096"),
    ("--parity-clip", ["8", "64", "100000"], "each of T H W must be in 1..4096"),
])
def test_bad_numbers_are_usage_errors_before_any_work(tmp_path, option, values, message):
    config = write_config(tmp_path / "tiny.py")
    before = _tree(tmp_path)
    proc = _run("videoswin_tools.convert", "--config", config, "--random-weights", "0",
                "--output-dir", tmp_path / "out", option, *values, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert _tree(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, key", [
    (dict(window_size=(0, 3, 3)), "window_size"),
    (dict(patch_size=(2, -4, 4)), "patch_size"),
    (dict(embed_dim=0), "embed_dim"),
    (dict(depths=(2, -1, 2, 2)), "depths"),
])
def test_bad_model_sizes_in_a_config_are_one_line_errors(tmp_path, override, key):
    config = write_config(tmp_path / "bad.py", **override)
    proc = _run("videoswin_tools.convert", "--config", config, "--random-weights", "0",
                "--output-dir", tmp_path / "out", "--backends", "none", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config ") and key in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def _manifest(folder, **changes):
    from videoswin.core.spec import ModelSpec

    data = {"config": "tiny", "spec": ModelSpec(name="tiny", path="tiny.py").to_dict(),
            "params": 1, "with_head": False, "source_checkpoint": {"name": "x.pth"},
            "parity": {"status": "passed"}, "artifacts": {}}
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(data))


def test_publish_refuses_an_artifact_name_that_leaves_the_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "a" / "b" / "out"
    _manifest(out, artifacts={"../../../victim.txt": {"size": 8, "sha256": "0" * 64}})
    stage = tmp_path / "a" / "stage"
    before = _tree(tmp_path)
    proc = _run("videoswin_tools.publish", out, "--repo-id", "org/name", "--dry-run",
                "--stage-dir", stage)
    assert proc.returncode == 1, proc.stderr
    assert "artifact '../../../victim.txt' is not a relative path inside the folder" in proc.stderr
    assert _tree(tmp_path) == before and victim.read_text() == "precious"
    assert not stage.exists() or not os.listdir(stage)


def test_parity_refuses_a_model_name_that_leaves_the_folder(tmp_path):
    out = tmp_path / "out"
    _manifest(out, config="../escaped")
    before = _tree(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "from videoswin_tools.convert import "
                           "parity_main; parity_main()", str(out), "--checkpoint",
                           str(tmp_path / "none.pth"), "--backends", "none"],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="torch"))
    assert proc.returncode == 2, proc.stderr
    assert "config name '../escaped' is not a plain file name" in proc.stderr
    assert _tree(tmp_path) == before and not (tmp_path / "escaped.parity.json").exists()


def test_a_manifest_with_nan_is_refused(tmp_path):
    out = tmp_path / "out"
    _manifest(out)
    text = (out / "manifest.json").read_text().replace('"params": 1', '"params": NaN')
    (out / "manifest.json").write_text(text)
    proc = _run("videoswin_tools.publish", out, "--repo-id", "org/name", "--dry-run")
    assert proc.returncode == 1
    assert "NaN is not valid JSON" in proc.stderr
