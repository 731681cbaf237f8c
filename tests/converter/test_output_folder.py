"""One output folder, one conversion, all or nothing (`converter.artifacts.Output`).

Each test converts a tiny model (random weights, parity off or torch on a tiny clip) and
checks the exit status, the message and the folder's files and hashes afterwards.
"""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from converter import artifacts
from converter.convert import convert
from tests.converter.support import write_config
from videoswin.core.manifest import Manifest, sha256

# Folder, lock and process handling, whose conversions run on torch (see `_env`) in every
# pass: no Keras backend changes them, so they run once, in the torch pass.
pytestmark = pytest.mark.backend_independent

CLASSIFIER = {"swin_t.weights.h5", "swin_t.keras", "swin_t_backbone.weights.h5",
              "swin_t_backbone.keras", "manifest.json"}
BACKBONE = {"swin_t_backbone.weights.h5", "swin_t_backbone.keras", "manifest.json"}
REPORTS = {"swin_t.parity.json", "swin_t.parity.md"}
CLIP = ("2", "32", "32")


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path / "swin_t.py")


@pytest.fixture
def backbone_config(tmp_path):
    (tmp_path / "bb").mkdir()
    return write_config(tmp_path / "bb" / "swin_t.py", head=False)


def _convert(config, out, seed=1, **kwargs):
    return convert(config, output_dir=str(out), backends=[], random_weights=seed, quiet=True,
                   **kwargs)


def _snapshot(folder):
    """{name: sha256} of a folder holding only files."""
    names = sorted(os.listdir(folder))
    assert all(os.path.isfile(folder / n) for n in names), names
    return {n: sha256(folder / n) for n in names}


def _assert_complete(folder, names):
    """`folder` holds exactly `names`, each with its manifest's size and hash."""
    assert set(os.listdir(folder)) == set(names)
    Manifest.read(folder).verify(folder)


def _leftovers(out):
    """What runs left beside `out` (its lock file is kept on purpose) and inside it."""
    beside = [n for n in os.listdir(out.parent)
              if n.startswith(f".{out.name}.") and n != f".{out.name}.videoswin.lock"]
    inside = [n for n in os.listdir(out) if n.startswith(".")] if out.is_dir() else []
    return beside + inside


def _argv(args, prelude):
    if prelude is None:
        return [sys.executable, "-m", "videoswin_tools.convert", *args]
    code = f"{prelude}\nfrom videoswin_tools.convert import main\nmain()"
    return [sys.executable, "-c", code, *args]


def _env():
    return dict(os.environ, KERAS_BACKEND="torch")


def _cli(*args, prelude=None, timeout=300):
    return subprocess.run(_argv(args, prelude), capture_output=True, text=True, env=_env(),
                          timeout=timeout)


def _popen(*args, prelude=None):
    return subprocess.Popen(_argv(args, prelude), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _convert_args(config, out, seed, *more):
    return ("--config", config, "--random-weights", str(seed), "--output-dir", str(out),
            "--backends", "none", "-q", *more)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid):
    """Running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid, needle):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == pid and needle in cmdline:
            found.append(int(entry))
    return found


@contextlib.contextmanager
def _tmpfs(path, size):
    """A tmpfs of `size` mounted at `path`; skips where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# -- replaced as a whole -------------------------------------------------------------------

def test_backbone_only_over_a_classifier_leaves_no_classifier_files(tmp_path, config,
                                                                    backbone_config):
    out = tmp_path / "out"
    assert _convert(config, out)["with_head"]
    _assert_complete(out, CLASSIFIER)
    manifest = _convert(backbone_config, out, seed=2)
    assert not manifest["with_head"]
    _assert_complete(out, BACKBONE)
    assert _leftovers(out) == []


def test_an_error_between_the_renames_restores_the_old_set(tmp_path, config, monkeypatch):
    out = tmp_path / "out"
    _convert(config, out)
    before = _snapshot(out)

    def fail():
        assert not out.exists()               # the only instant without a folder...
        raise RuntimeError("injected between the renames")

    monkeypatch.setattr(artifacts, "_between_renames", fail)
    with pytest.raises(RuntimeError, match="injected"):
        _convert(config, out, seed=2)
    assert _snapshot(out) == before            # ...rolled back at once
    assert _leftovers(out) == []


def test_killed_between_the_renames_the_next_run_restores_and_cleans(tmp_path, config):
    out = tmp_path / "out"
    _convert(config, out)
    before = _snapshot(out)
    kill = ("import os, signal\nfrom converter import artifacts\n"
            "artifacts._between_renames = lambda: os.kill(os.getpid(), signal.SIGKILL)")
    proc = _cli(*_convert_args(config, out, 2), prelude=kill)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()                    # never a mix: no folder at all
    backup = tmp_path / ".out.videoswin-old"
    assert _snapshot(backup) == before

    with artifacts.Output(out):                # the next run, once it holds the lock
        assert _snapshot(out) == before
    assert _leftovers(out) == []

    proc = _cli(*_convert_args(config, out, 3))
    assert proc.returncode == 0, proc.stderr
    _assert_complete(out, CLASSIFIER)
    assert Manifest.read(out).random_seed == 3
    assert _leftovers(out) == []


# -- one run at a time; a killed run leaves nothing running or lying about ------------------

HOLD = """
import os, time
from converter import artifacts
save = artifacts.save_models
def held(stage, *args):
    described = save(stage, *args)
    open({flag!r}, "w").close()
    time.sleep(120)
    return described
artifacts.save_models = held
"""


def test_a_second_run_fails_at_once_naming_the_holder_then_a_kill_is_recovered(tmp_path,
                                                                               config):
    out = tmp_path / "out"
    _convert(config, out)
    before = _snapshot(out)
    flag = tmp_path / "saved"
    first = _popen(*_convert_args(config, out, 2), prelude=HOLD.format(flag=str(flag)))
    try:
        _wait_for(flag.exists, 120, "the first run to write its artifacts")
        started = time.monotonic()
        second = _cli(*_convert_args(config, out, 3))
        assert time.monotonic() - started < 30
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert _snapshot(out) == before
    finally:
        first.send_signal(signal.SIGKILL)      # killed during the save
        first.communicate(timeout=30)
    assert _snapshot(out) == before
    assert _leftovers(out) == [".out.videoswin-work"]   # hundreds of MB with a real model

    proc = _cli(*_convert_args(config, out, 4))
    assert proc.returncode == 0, proc.stderr
    _assert_complete(out, CLASSIFIER)
    assert _leftovers(out) == []


def test_a_killed_conversion_takes_its_parity_worker_with_it(tmp_path, config):
    out = tmp_path / "out"
    _convert(config, out)
    before = _snapshot(out)
    converter = _popen("--config", config, "--random-weights", "2", "--output-dir", str(out),
                       "--backends", "torch", "--parity-clip", *CLIP, "--parity-clips", "1")
    try:
        workers = _wait_for(lambda: _children(converter.pid, "converter.parity_worker"), 180,
                            "the parity worker")
    finally:
        converter.send_signal(signal.SIGKILL)
        converter.communicate(timeout=30)
    _wait_for(lambda: not any(_alive(pid) for pid in workers), 5,
              f"parity worker {workers} to die with its converter")
    assert _snapshot(out) == before

    proc = _cli(*_convert_args(config, out, 3))
    assert proc.returncode == 0, proc.stderr
    _assert_complete(out, CLASSIFIER)
    assert _leftovers(out) == []


def test_a_worker_whose_parent_is_already_gone_exits(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "converter.parity_worker", "a", "b", "c", "d"],
                          env=dict(_env(), VIDEOSWIN_PARENT_PID="1"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr == ""


# -- files that no conversion wrote --------------------------------------------------------

def test_a_foreign_file_is_refused_without_force(tmp_path, config):
    out = tmp_path / "out"
    _convert(config, out)
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    proc = _cli(*_convert_args(config, out, 2))
    assert proc.returncode == 1
    assert "'notes.txt'" in proc.stderr and "--force" in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert _snapshot(out) == before
    assert _leftovers(out) == []

    proc = _cli(*_convert_args(config, out, 2, "--force"))
    assert proc.returncode == 0, proc.stderr
    _assert_complete(out, CLASSIFIER)          # replaced as a whole: notes.txt is gone
    assert _leftovers(out) == []


def test_a_folder_without_a_manifest_is_foreign(tmp_path, config):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(artifacts.ForeignFiles, match="'cat.jpg'.*--force"):
        _convert(config, out)
    assert _snapshot(out) == {"cat.jpg": sha256(out / "cat.jpg")}
    (tmp_path / "empty").mkdir()
    _convert(config, tmp_path / "empty")       # an empty folder is fine
    _assert_complete(tmp_path / "empty", CLASSIFIER)


# -- a full disk ---------------------------------------------------------------------------

def test_too_little_free_space_is_refused_before_writing(tmp_path, config, monkeypatch):
    out = tmp_path / "out"
    _convert(config, out)
    before = _snapshot(out)
    monkeypatch.setattr(artifacts, "free_bytes", lambda path: 1 << 20)
    with pytest.raises(artifacts.DiskFullError, match=r"disk full: .*needs about [\d.]+ MiB"):
        _convert(config, out, seed=2)
    assert _snapshot(out) == before
    assert _leftovers(out) == []


def test_enospc_while_writing_is_one_disk_full_error(tmp_path, config, monkeypatch):
    out = tmp_path / "out"
    _convert(config, out)
    before = _snapshot(out)

    def full(stage, *args):
        with open(os.path.join(stage, "swin_t.weights.h5"), "wb") as handle:
            handle.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(artifacts, "save_models", full)
    with pytest.raises(artifacts.DiskFullError, match="disk full: ran out of space.*needs"):
        _convert(config, out, seed=2)
    assert _snapshot(out) == before
    assert _leftovers(out) == []


def test_a_real_full_disk_exits_1_with_one_line(tmp_path, config):
    disk = tmp_path / "disk"
    with _tmpfs(disk, "13m"):
        out = disk / "out"
        fooled = "from converter import artifacts\nartifacts.free_bytes = lambda p: 1 << 40"
        first = _cli(*_convert_args(config, out, 1), prelude=fooled)   # 10 MiB written
        assert first.returncode == 0, first.stderr
        before = _snapshot(out)

        # The estimate (about 15 MiB) does not fit beside the old set: refused up front.
        proc = _cli(*_convert_args(config, out, 2))
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("error: disk full: ") and "needs about" in proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert _snapshot(out) == before and _leftovers(out) == []

        # With the estimate fooled, h5py meets ENOSPC itself: still one line, no crash.
        proc = _cli(*_convert_args(config, out, 2), prelude=fooled)
        assert proc.returncode == 1, (proc.returncode, proc.stderr)
        assert proc.stderr.startswith("error: disk full: ran out of space"), proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert _snapshot(out) == before and _leftovers(out) == []


# -- a folder that cannot be renamed: updated in place, rolled forward ----------------------

def test_a_mount_point_is_updated_in_place_and_rolled_forward(tmp_path, config,
                                                             backbone_config):
    out = tmp_path / "volume"
    with _tmpfs(out, "64m"):
        _convert(config, out)
        assert set(os.listdir(out)) == CLASSIFIER | {".videoswin.lock"}
        kill = ("import os, signal\nfrom converter import artifacts\n"
                "artifacts._between_renames = lambda: os.kill(os.getpid(), signal.SIGKILL)")
        proc = _cli(*_convert_args(backbone_config, out, 2), prelude=kill)
        assert proc.returncode == -signal.SIGKILL
        with artifacts.Output(out):            # the next run finishes the committed swap
            pass
        assert set(os.listdir(out)) == BACKBONE | {".videoswin.lock"}
        Manifest.read(out).verify(out)
        assert Manifest.read(out).random_seed == 2


# -- videoswin-parity ----------------------------------------------------------------------

def _parity(out, checkpoint, *more):
    code = "from videoswin_tools.convert import parity_main\nparity_main()"
    return subprocess.run([sys.executable, "-c", code, str(out), "--checkpoint",
                           str(checkpoint), *more], capture_output=True, text=True,
                          env=_env(), timeout=300)


def test_parity_verifies_the_artifacts_and_the_checkpoint_first(tmp_path, config):
    from converter.config import load_spec
    from converter.synthetic import random_checkpoint

    spec = load_spec(config)
    source = random_checkpoint(spec, 1, str(tmp_path / "source.pth"))
    other = random_checkpoint(spec, 2, str(tmp_path / "other.pth"))
    out = tmp_path / "out"
    convert(config, source, str(out), backends=[], quiet=True)
    assert Manifest.read(out).parity_status == "skipped"

    # A passing run: reports and manifest written as one new set.
    proc = _parity(out, source, "--backends", "torch", "--parity-clip", *CLIP,
                   "--parity-clips", "1")
    assert proc.returncode == 0, proc.stderr
    _assert_complete(out, CLASSIFIER | REPORTS)
    assert Manifest.read(out).parity_status == "passed"
    assert json.loads((out / "swin_t.parity.json").read_text())["status"] == "passed"
    assert _leftovers(out) == []
    before = _snapshot(out)

    # Another checkpoint is refused before anything runs, even with --tolerance inf.
    proc = _parity(out, other, "--backends", "torch", "--tolerance", "inf")
    assert proc.returncode == 2, proc.stderr
    assert sha256(other) in proc.stderr and sha256(source) in proc.stderr
    assert _snapshot(out) == before

    # An artifact changed after conversion is refused.
    with open(out / "swin_t_backbone.keras", "ab") as handle:
        handle.write(b"\0")
    proc = _parity(out, source, "--backends", "torch")
    assert proc.returncode == 2
    assert "swin_t_backbone.keras differs from the manifest" in proc.stderr
    assert _leftovers(out) == []


def test_output_lock_is_per_folder(tmp_path):
    """Two folders in one parent lock independently; one folder cannot be taken twice."""
    a, b = tmp_path / f"a-{uuid.uuid4().hex[:6]}", tmp_path / "b"
    with artifacts.Output(a), artifacts.Output(b):
        with pytest.raises(artifacts.OutputBusy, match=f"pid {os.getpid()}"):
            with artifacts.Output(a):
                pass
    with artifacts.Output(a):
        pass


def test_leftovers_of_dead_runs_are_removed_and_a_stale_backup_dropped(tmp_path, config):
    out = tmp_path / "out"
    _convert(config, out)
    before = _snapshot(out)
    # Killed after the second rename: a stale backup; killed while staging; and the
    # `.staging-*` folders that converters before the swap design left inside the folder.
    for junk in (tmp_path / ".out.videoswin-old", tmp_path / ".out.videoswin-work" / "new",
                 out / ".staging-1234abcd"):
        junk.mkdir(parents=True)
        (junk / "swin_t.weights.h5").write_bytes(b"x" * 1000)
    with artifacts.Output(out) as run:
        assert not run.foreign_files()
    assert _snapshot(out) == before
    assert _leftovers(out) == []
