"""scripts/convert_zoo.py: the whole zoo in one command, offline from --checkpoint-dir.

Three tiny synthetic configs: one whose checkpoint is there and matches the sha256 the config
records, one whose checkpoint has another sha256, one whose checkpoint is missing. The first
run converts one and fails two (exit 1, a table saying so, the zoo regenerated); the rerun
skips the verified conversion; a selection of the good one exits 0.
"""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.converter.support import write_config

# The script spawns its own processes (one conversion each); nothing here uses a backend.
pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "convert_zoo.py"
ARCH = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 3, 3))


def load_script():
    spec = importlib.util.spec_from_file_location("convert_zoo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """(root, {name: checkpoint sha256}): three configs and the checkpoints of two of them."""
    from converter.config import load_spec
    from converter.synthetic import random_checkpoint

    root = tmp_path_factory.mktemp("zoo")
    configs, checkpoints = root / "configs", root / "checkpoints"
    configs.mkdir()
    checkpoints.mkdir()
    digests = {}
    for seed, name in enumerate(("zoo_a", "zoo_b", "zoo_c")):
        path = write_config(configs / f"{name}.py", **ARCH)
        spec = load_spec(path)
        if name != "zoo_c":                              # zoo_c's checkpoint is missing
            ckpt = random_checkpoint(spec, seed, str(checkpoints / f"{name}_weights.pth"))
            digests[name] = hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()
        recorded = {"zoo_a": digests.get("zoo_a"), "zoo_b": "0" * 64, "zoo_c": "1" * 64}[name]
        with open(path, "a") as handle:
            handle.write(f"checkpoint = dict(filename='{name}_weights.pth', "
                         f"sha256='{recorded}')\n")
    return root, digests


def run(root, *extra, env=None):
    env = dict(os.environ, KERAS_BACKEND="torch", GITHUB_STEP_SUMMARY=str(root / "step.md"),
               **(env or {}))
    cmd = [sys.executable, str(SCRIPT), "--configs", str(root / "configs"),
           "--checkpoint-dir", str(root / "checkpoints"), "--output-root", str(root / "out"),
           "--backends", "torch", "--parity-clip", "2", "32", "32", "--parity-clips", "1",
           "--reference", "videoswin-reference", "--zoo-output", str(root / "zoo.md"), "-q",
           *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=root)


def rows(stdout):
    """{config: [result, parity, exports, published, time, note]} from the final table."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"\| \d+ \| (\S+) \| (.*) \|$", line)
        if match:
            found[match[1]] = [c.strip() for c in re.split(r"(?<!\\)\|", match[2])]
    return found


def test_zoo_conversion_offline_resumes_and_reports(zoo):
    root, digests = zoo
    first = run(root)
    assert first.returncode == 1, first.stderr[-3000:]
    table = rows(first.stdout)
    assert list(table) == ["zoo_a", "zoo_b", "zoo_c"]
    assert table["zoo_a"][0] == "converted" and table["zoo_a"][1].startswith("torch ")
    assert table["zoo_b"][0] == "failed"
    assert re.search(r"zoo_b_weights\.pth: sha256 [0-9a-f]{64} is not the config's 0{64}",
                     table["zoo_b"][5])
    assert table["zoo_c"][0] == "failed"
    assert "checkpoint zoo_c_weights.pth not found in --checkpoint-dir" in table["zoo_c"][5]
    assert "1 converted, 2 failed" in first.stdout
    # progress across configs, with an ETA once a conversion has finished
    assert "[1/3] zoo_a (elapsed 0:00, ETA unknown" in first.stderr
    assert re.search(r"\[2/3\] zoo_b \(elapsed \d+:\d\d, ETA ~\d+:\d\d\)", first.stderr)
    manifest = json.loads((root / "out" / "zoo_a" / "manifest.json").read_text())
    assert manifest["source_checkpoint"]["sha256"] == digests["zoo_a"]
    assert manifest["parity"]["status"] == "passed" and list(manifest["parity"]["backends"]) \
        == ["torch"]
    assert not (root / "out" / "zoo_b").exists() and not (root / "out" / "zoo_c").exists()
    zoo_text = (root / "zoo.md").read_text()
    assert re.search(r"\[`zoo_a`\].*\| torch \d\.\de-\d\d \| none \| not published \|", zoo_text)
    assert zoo_text.count("not converted yet") == 2
    assert "### Zoo conversion" in (root / "step.md").read_text()

    # Rerun: the verified conversion of the same checkpoint is skipped, untouched.
    folder = root / "out" / "zoo_a"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    log = (root / "out" / ".zoo-logs" / "zoo_a.log").read_text()
    second = run(root)
    assert second.returncode == 1
    table = rows(second.stdout)
    assert [table[n][0] for n in table] == ["up to date", "failed", "failed"]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert (root / "out" / ".zoo-logs" / "zoo_a.log").read_text() == log   # nothing ran
    assert (root / "zoo.md").read_text() == zoo_text

    # Only the good one: exit 0.
    third = run(root, "--select", "zoo_a")
    assert third.returncode == 0, third.stdout + third.stderr[-2000:]
    assert list(rows(third.stdout)) == ["zoo_a"] and "1 up to date" in third.stdout

    # --publish ORG: each conversion to ORG/<config>, its links recorded; then skipped.
    from tests.videoswin_tools.hub_server import HubServer

    (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(7)))
    with HubServer(root / "hub", tokens=["hf_zoo"], lifetime=300) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_zoo", "HF_HUB_DISABLE_XET": "1",
               "HF_HOME": str(root / "hf-home")}
        published = run(root, "--select", "zoo_a", "--publish", "zooorg", env=env)
        assert published.returncode == 0, published.stdout + published.stderr[-3000:]
        commit = hub.commits("zooorg/zoo_a")[-1].oid
        assert rows(published.stdout)["zoo_a"][3] == f"zooorg/zoo_a @ {commit[:10]}"
        record = json.loads((folder / "manifest.json").read_text())["hub"]
        assert record["repo_id"] == "zooorg/zoo_a" and record["commit"] == commit
        again = run(root, "--select", "zoo_a", "--publish", "zooorg", env=env)
        assert rows(again.stdout)["zoo_a"][3] == "zooorg/zoo_a (up to date)"
        assert len(hub.commits("zooorg/zoo_a")) == 2
    assert "[zooorg/zoo_a]" in (root / "zoo.md").read_text()

    # What counts as "the same conversion".
    script = load_script()
    good = script.up_to_date(folder, digests["zoo_a"], ["torch"], [])
    assert good[0] is not None and good[1] == ""
    assert script.up_to_date(folder, "f" * 64, ["torch"], [])[1] == \
        "converted from another checkpoint"
    assert script.up_to_date(folder, digests["zoo_a"], ["torch", "jax"], [])[1] == \
        "parity not passed on every chosen backend"
    assert script.up_to_date(folder, digests["zoo_a"], ["torch"], ["onnx"])[1] == \
        "export onnx not passed"
    older = root / "older"
    older.mkdir()
    for path in folder.iterdir():
        (older / path.name).write_bytes(path.read_bytes())
    manifest["versions"]["videoswin"] = "0.0.1"
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert script.up_to_date(older, digests["zoo_a"], ["torch"], [])[1].startswith(
        "converted by videoswin 0.0.1")
    (older / "manifest.json").write_text((folder / "manifest.json").read_text())
    with open(older / "zoo_a.weights.h5", "ab") as handle:
        handle.write(b"\0")
    assert script.up_to_date(older, digests["zoo_a"], ["torch"], [])[1].startswith(
        "artifacts do not verify")


def test_usage_errors_exit_2(tmp_path):
    run_ = subprocess.run([sys.executable, str(SCRIPT), "--select", "no_such_config*",
                           "--dry-run"], capture_output=True, text=True, timeout=120)
    assert run_.returncode != 0 and "matches none of the" in run_.stderr
    bad = subprocess.run([sys.executable, str(SCRIPT), "--export", "gif", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--export: unknown export format(s) gif" in bad.stderr
    missing = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint-dir",
                              str(tmp_path / "nope")], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2 and "--checkpoint-dir" in missing.stderr


def test_without_checkpoint_dir_a_known_conversion_needs_no_download(zoo, tmp_path,
                                                                     monkeypatch):
    """Without --checkpoint-dir: the cached copy is used; without one, a folder converted from
    the config's URL (its manifest records it) is known by its recorded sha256."""
    import dataclasses

    from converter import checkpoint as ckpt
    from converter.config import load_spec
    from videoswin.core.spec import CheckpointSource

    root, digests = zoo
    script = load_script()
    url = "https://example.invalid/zoo/zoo_a_weights.pth"
    spec = dataclasses.replace(load_spec(root / "configs" / "zoo_a.py"),
                               checkpoint=CheckpointSource("zoo_a_weights.pth", url))
    monkeypatch.setenv("VIDEOSWIN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "zoo_a"
    folder.mkdir()
    source = root / "out" / "zoo_a"
    if not (source / "manifest.json").is_file():
        pytest.skip("needs the conversion of test_zoo_conversion_offline_resumes_and_reports")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["source_checkpoint"]["url"] = url
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert script.known_checkpoint(spec, folder, print) == (None, digests["zoo_a"])
    manifest["source_checkpoint"]["url"] = url + "?other"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert script.known_checkpoint(spec, folder, print) == (None, None)
    cached = Path(ckpt.cache_dir()) / ckpt.cached_name(url, "zoo_a_weights.pth")
    cached.parent.mkdir(parents=True)
    cached.write_bytes((root / "checkpoints" / "zoo_a_weights.pth").read_bytes())
    assert script.known_checkpoint(spec, folder, print) == (str(cached), digests["zoo_a"])
