"""`videoswin-publish` against the loopback stand-in Hub (tests/videoswin_tools/hub_server.py).

The real Hub cannot be reached from the tests: every upload here goes through huggingface_hub's
own client (create repo, validate-yaml, preupload, LFS batch, commit, tree listing) to the
stand-in on 127.0.0.1.
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.repocard_data import model_index_to_eval_results

from videoswin_tools import model_card
from videoswin_tools.publish import PublishError, cli, publish
from tests.videoswin_tools import fake_conversion as fake
from tests.videoswin_tools.hub_server import HubServer, validate_card_metadata

TOKEN = "hf_write_token"
REPO = f"videoswin/{fake.STEM}"
STEM = fake.STEM
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def hub_client_env(monkeypatch, tmp_path):
    """No Xet (the stand-in speaks the LFS batch API), no saved token, no real endpoint."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub", tokens=[TOKEN], lifetime=300) as server:
        yield server


@pytest.fixture(scope="module")
def conversion(tmp_path_factory):
    """(output dir, labels file) of a tiny fabricated conversion, this module's own copy:
    publishing records what it published in the folder's manifest."""
    labels = fake.write_labels(tmp_path_factory.mktemp("labels") / "labels.txt")
    return copy_conversion(Path(fake.shared_conversion()),
                           tmp_path_factory.mktemp("conversion") / "out"), labels


def snapshot(folder):
    """Everything that could change in a folder: path -> (size, mtime, sha256)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns,
                                               hashlib.sha256(p.read_bytes()).hexdigest())
            for p in Path(folder).rglob("*")}


def expected_files(with_head=True):
    files = {f"{STEM}_backbone.weights.h5", f"{STEM}_backbone.keras", f"{STEM}.parity.json",
             f"{STEM}.parity.md", "manifest.json", "README.md", "config.json", "metadata.json",
             "model.weights.h5"}
    if with_head:
        files |= {f"{STEM}.weights.h5", f"{STEM}.keras", "label_map.json",
                  "backbone/config.json", "backbone/metadata.json", "backbone/model.weights.h5"}
    return files


def keras_member(path, name):
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def test_publish_uploads_the_exact_folder(hub, conversion):
    out, labels = conversion
    result = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    assert result.committed and len(result.commit) == 40
    assert [c.title for c in hub.commits(REPO)] == ["initial commit", f"Publish {STEM}"]
    assert hub.commits(REPO)[-1].oid == result.commit
    files = hub.files(REPO)
    assert set(files) == expected_files() | {".gitattributes"}
    for name in json.loads((out / "manifest.json").read_text())["artifacts"]:
        assert files[name] == (out / name).read_bytes(), name
    # the local manifest less its `hub` record, in canonical form
    uploaded = json.loads(files["manifest.json"])
    local = json.loads((out / "manifest.json").read_text())
    assert "hub" not in uploaded and local.pop("hub")["commit"] == result.commit
    assert uploaded == {"schema_version": 1, **local}
    # Keras's Hub layout: config/metadata from the .keras archive, weights = the .weights.h5
    assert files["config.json"] == keras_member(out / f"{STEM}.keras", "config.json")
    assert files["metadata.json"] == keras_member(out / f"{STEM}.keras", "metadata.json")
    assert files["model.weights.h5"] == (out / f"{STEM}.weights.h5").read_bytes()
    assert files["backbone/config.json"] == keras_member(out / f"{STEM}_backbone.keras",
                                                         "config.json")
    assert files["backbone/model.weights.h5"] == (out / f"{STEM}_backbone.weights.h5").read_bytes()
    assert json.loads(files["label_map.json"]) == {str(i): n for i, n in enumerate(fake.LABELS)}
    # binary files went through the LFS batch API, text files inline in the commit
    blobs = hub.commits(REPO)[-1].files
    assert blobs[f"{STEM}.keras"].lfs and blobs["model.weights.h5"].lfs
    assert not blobs["README.md"].lfs and not blobs["manifest.json"].lfs
    assert ("POST", "/api/validate-yaml") in hub.requests


def test_model_card_metadata_parses_with_huggingface_hub(hub, conversion):
    out, labels = conversion
    publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    text = hub.files(REPO)["README.md"].decode()
    card = ModelCard(text)
    data = card.data
    assert data.library_name == "keras"
    assert data.license == "apache-2.0"
    assert data.pipeline_tag == "video-classification"
    assert {"keras", "video-classification", "kinetics-400"} <= set(data.tags)
    assert data.datasets == ["kinetics-400", "imagenet-1k"]
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == REPO
    values = {r.metric_type: r.metric_value for r in results}
    assert values == {"accuracy": 78.8, "top-5-accuracy": 93.6}
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results} == \
        {("video-classification", "kinetics-400", "validation")}
    assert validate_card_metadata(text) == ([], [])
    manifest = json.loads((out / "manifest.json").read_text())
    body = card.text
    assert manifest["source_checkpoint"]["sha256"] in body
    assert manifest["spec"]["checkpoint"]["url"] in body
    assert f"{manifest['params']:,}" in body and "1.23 G (MACs) per 32x224x224 view" in body
    for backend, row in manifest["parity"]["backends"].items():
        assert re.search(rf"\| {backend} \| {row['max_abs_logits']:.2e} \| "
                         rf"{row['max_abs_features']:.2e} \|", body), backend
    assert "arXiv:2106.13230" in body
    for backend in ("TensorFlow", "JAX", "PyTorch"):
        assert body.count(f"{backend}:") == 2, backend          # inference and fine-tuning
    snippets = re.findall(r"```python\n(.*?)```", body, re.S)
    assert len(snippets) == 8
    for code in snippets:
        compile(code, "<model card snippet>", "exec")
        assert f'"hf://{REPO}"' in code or f'"{REPO}"' in code


def test_stand_in_rejects_malformed_metadata():
    """The stand-in's validate-yaml can fail, so the accepted card above means something."""
    assert validate_card_metadata("---\nlicense: [1, 2]\n---\n")[0]
    assert validate_card_metadata("---\nmodel-index:\n- name: x\n  results: [{}]\n---\n")[0]
    assert validate_card_metadata("---\nkey: [unclosed\n---\n")[0]
    assert validate_card_metadata("no metadata")[1]


def test_card_for_random_weights_claims_no_accuracy(conversion):
    manifest = json.loads((conversion[0] / "manifest.json").read_text())
    manifest["source_checkpoint"]["random_weights_seed"] = 3
    card = ModelCard(model_card.render(manifest, REPO))
    assert "model-index" not in card.data.to_dict()
    assert "**Random weights.**" in card.text and "seed 3" in card.text
    assert "The weights are the published checkpoint" not in card.text
    assert "## Accuracy" not in card.text


def test_card_for_a_checkpoint_that_is_not_the_published_one(conversion):
    manifest = json.loads((conversion[0] / "manifest.json").read_text())
    manifest["source_checkpoint"].update(is_published=False, published_sha256="12" * 32)
    card = ModelCard(model_card.render(manifest, REPO))
    assert "model-index" not in card.data.to_dict()
    assert "**Not the published checkpoint.**" in card.text and "12" * 32 in card.text
    assert "| Published checkpoint | **no**" in card.text
    assert "## Accuracy" not in card.text
    manifest["source_checkpoint"].update(is_published=True)
    card = ModelCard(model_card.render(manifest, REPO))
    assert "| Published checkpoint | yes" in card.text and "## Accuracy" in card.text


def test_republishing_unchanged_artifacts_makes_no_commit(hub, conversion, tmp_path):
    out, labels = conversion
    first = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    second = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    assert not second.committed and second.commit == first.commit
    assert len(hub.commits(REPO)) == 2
    assert not [r for r in hub.requests if "/commit/" in r[1]][1:]
    # ...while a real change makes exactly one commit touching exactly that file
    renamed = fake.write_labels(tmp_path / "renamed.txt", [n.upper() for n in fake.LABELS])
    third = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=renamed)
    assert third.committed and len(hub.commits(REPO)) == 3
    before, after = hub.commits(REPO)[-2].files, hub.commits(REPO)[-1].files
    assert {p for p in after if before.get(p) != after[p]} == {"label_map.json"}


def test_republishing_removes_stale_artifacts_and_keeps_other_files(hub, conversion):
    out, labels = conversion
    publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.upload_file(path_or_fileobj=b"old", path_in_repo="old_name.keras", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"mine", path_in_repo="notes.txt", repo_id=REPO)
    publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    files = hub.files(REPO)
    assert "old_name.keras" not in files and files["notes.txt"] == b"mine"
    assert set(files) == expected_files() | {".gitattributes", "notes.txt"}


def test_private_repository_on_a_branch(hub, conversion):
    out, labels = conversion
    result = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels, private=True,
                     revision="v1")
    repo = hub.repos[REPO]
    assert repo.private and result.revision == "v1"
    assert [c.title for c in hub.commits(REPO, "main")] == ["initial commit"]
    assert hub.commits(REPO, "v1")[-1].oid == result.commit
    assert "README.md" in hub.files(REPO, "v1")
    with pytest.raises(Exception, match="401"):
        HfApi(endpoint=hub.url, token=False).model_info(REPO)


def test_dry_run_prints_the_staged_tree_and_uploads_nothing(hub, conversion, tmp_path):
    out, labels = conversion
    stage = tmp_path / "staged"
    result = CliRunner().invoke(cli, [str(out), "--repo-id", REPO, "--dry-run", "--labels",
                                      str(labels), "--stage-dir", str(stage)],
                                env={"HF_ENDPOINT": hub.url})
    assert result.exit_code == 0, result.output
    assert hub.requests == []
    for name in expected_files():
        assert Path(name).name in result.output, name
    assert "15 files" in result.output and "nothing uploaded" in result.output
    staged = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()}
    assert staged == expected_files()
    assert (stage / "model.weights.h5").read_bytes() == (out / f"{STEM}.weights.h5").read_bytes()
    # Staged without copying: the large files are hard links to the conversion's, not links
    # that could point anywhere.
    for staged_name, original in (("model.weights.h5", f"{STEM}.weights.h5"),
                                  (f"{STEM}.keras", f"{STEM}.keras")):
        assert not (stage / staged_name).is_symlink()
        assert (stage / staged_name).stat().st_ino == (out / original).stat().st_ino


def test_backbone_only_conversion(tmp_path):
    out = fake.shared_conversion(with_head=False)
    stage = tmp_path / "staged"
    result = publish(out, REPO, dry_run=True, stage_dir=stage)
    assert set(result.files) == expected_files(with_head=False)
    config = json.loads((stage / "config.json").read_text())
    assert config["registered_name"] == "videoswin>VideoSwinBackbone"
    card = ModelCard((stage / "README.md").read_text())
    assert card.data.pipeline_tag == "feature-extraction"
    assert "model-index" not in card.data.to_dict()
    assert 'allow_patterns=["config.json", "metadata.json", "model.weights.h5"]' in card.text


@pytest.mark.parametrize("failure", ["unauthorized", "server error", "connection refused"])
def test_failed_upload_is_a_clear_error_and_leaves_local_files_alone(
        hub, conversion, tmp_path, monkeypatch, failure):
    out, labels = conversion
    before = snapshot(out)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    token, endpoint = TOKEN, hub.url
    if failure == "unauthorized":
        token = "hf_not_a_valid_token"
    elif failure == "server error":
        hub.fail("POST /api/models/*/commit/*", status=500)
    else:
        with socket.socket() as sock:                  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(PublishError) as info:
        publish(out, REPO, token=token, endpoint=endpoint, labels=labels)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"Publishing {out} to {REPO} failed")
    assert f"local artifacts in {out} are unchanged" in message
    expected = {"unauthorized": "refused the token (HTTP 401",
                "server error": "HTTP 500, a server error",
                "connection refused": "could not reach the Hub"}[failure]
    assert expected in message and endpoint in message
    assert snapshot(out) == before
    assert list(scratch.iterdir()) == []               # the staging folder is gone too
    if REPO in hub.repos:
        assert [c.title for c in hub.commits(REPO)] == ["initial commit"]


def test_cli_failure_exits_non_zero_with_one_paragraph(hub, conversion):
    out, labels = conversion
    result = CliRunner().invoke(cli, [str(out), "--repo-id", REPO, "--labels", str(labels),
                                      "--token", "hf_bad"], env={"HF_ENDPOINT": hub.url})
    assert result.exit_code == 1
    assert result.output.startswith("Staging")
    error = result.output.split("Error: ", 1)[1]
    assert error.count("\n") == 1 and "HTTP 401" in error and "Traceback" not in result.output


def test_missing_token_is_reported_before_any_request(hub, conversion):
    out, labels = conversion
    with pytest.raises(PublishError, match="no Hugging Face token: set HF_TOKEN"):
        publish(out, REPO, endpoint=hub.url, labels=labels)
    assert hub.requests == []


def test_token_from_hf_token(hub, conversion, monkeypatch):
    out, labels = conversion
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert publish(out, REPO, endpoint=hub.url, labels=labels).committed


def copy_conversion(src, dst):
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
    return dst


def test_refuses_unverified_conversions(conversion, tmp_path):
    out = copy_conversion(conversion[0], tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["parity"]["status"] = "failed"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PublishError, match="parity status .* is 'failed'"):
        publish(out, REPO, dry_run=True, labels=conversion[1])
    assert publish(out, REPO, dry_run=True, labels=conversion[1], allow_unverified=True).files


def test_refuses_artifacts_changed_after_conversion(conversion, tmp_path):
    out = copy_conversion(conversion[0], tmp_path / "out")
    with open(out / f"{STEM}.weights.h5", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(PublishError, match=rf"{STEM}\.weights\.h5 differs from the manifest"):
        publish(out, REPO, dry_run=True, labels=conversion[1])


def test_label_map_must_match_the_head(conversion):
    # the fabricated model has 5 classes; the packaged Kinetics-400 map has 400
    with pytest.raises(PublishError, match="400 class names but .* has 5 classes"):
        publish(conversion[0], REPO, dry_run=True)


def test_bad_inputs(tmp_path, conversion):
    with pytest.raises(PublishError, match="manifest.json not found"):
        publish(tmp_path, REPO, dry_run=True)
    with pytest.raises(PublishError, match="must be ORG/NAME"):
        publish(conversion[0], "just-a-name", dry_run=True)
    with pytest.raises(PublishError, match="not a valid repository id"):
        publish(conversion[0], "org/bad name", dry_run=True)
    with pytest.raises(PublishError, match="is inside .*never written to"):
        publish(conversion[0], REPO, dry_run=True, stage_dir=conversion[0] / "stage")
    assert not (conversion[0] / "stage").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(PublishError, match="--stage-dir .* is not empty"):
        publish(conversion[0], REPO, dry_run=True, stage_dir=tmp_path / "busy")


def test_console_entry_point_runs_as_a_process():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("KERAS_BACKEND", None)
    code = ("import sys; from videoswin_tools.publish import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as exit:\n"
            "    import os; print('backend', os.environ['KERAS_BACKEND'], 'keras' in sys.modules)\n"
            "    raise")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Usage: videoswin-publish [OPTIONS] OUTPUT_DIR")
    for option in ("--repo-id", "--private", "--revision", "--dry-run", "--token", "--labels",
                   "--allow-unverified", "--stage-dir", "HF_ENDPOINT"):
        assert option in run.stdout, option
    assert run.stdout.rstrip().endswith("backend torch False")   # keras not imported for --help


# -- published links in the local manifest ------------------------------------------------

def test_publish_records_links_and_republishing_leaves_the_manifest_as_it_was(hub, conversion,
                                                                            tmp_path):
    import urllib.request

    from videoswin.core.manifest import Manifest

    out = copy_conversion(conversion[0], tmp_path / "out")
    labels = conversion[1]
    local = out / "manifest.json"
    local.write_text(json.dumps({k: v for k, v in json.loads(local.read_text()).items()
                                 if k != "hub"}))          # never published from here
    result = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    assert result.recorded
    manifest = Manifest.read(out)
    manifest.verify(out)                                   # the artifacts are untouched
    record = manifest["hub"]
    assert {k: record[k] for k in ("repo_id", "url", "revision", "commit")} == {
        "repo_id": REPO, "url": f"{hub.url}/{REPO}", "revision": "main",
        "commit": result.commit}
    files = hub.files(REPO)
    assert set(record["files"]) == set(files) - {".gitattributes"} == expected_files()
    for path, link in record["files"].items():
        assert link["size"] == len(files[path]), path
        assert link["sha256"] == hashlib.sha256(files[path]).hexdigest(), path
        assert link["url"] == f"{hub.url}/{REPO}/resolve/{result.commit}/{path}"
    for path in ("manifest.json", "backbone/config.json", f"{STEM}.keras"):
        with urllib.request.urlopen(record["files"][path]["url"], timeout=30) as response:
            assert response.read() == files[path], path
    assert record["files"][f"{STEM}.keras"]["sha256"] == \
        manifest["artifacts"][f"{STEM}.keras"]["sha256"]
    # Republishing unchanged files: no commit, and the manifest stays byte for byte (not
    # even rewritten).
    before = local.read_bytes(), local.stat().st_mtime_ns, local.stat().st_ino
    again = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=labels)
    assert not again.committed and not again.recorded
    assert (local.read_bytes(), local.stat().st_mtime_ns, local.stat().st_ino) == before
    assert len(hub.commits(REPO)) == 2
    # A changed file makes a commit, and the record follows it.
    renamed = fake.write_labels(tmp_path / "renamed.txt", [n.upper() for n in fake.LABELS])
    third = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=renamed)
    assert third.committed and third.recorded
    record = json.loads(local.read_text())["hub"]
    assert record["commit"] == third.commit != result.commit
    assert record["files"]["label_map.json"]["sha256"] == \
        hashlib.sha256(hub.files(REPO)["label_map.json"]).hexdigest()
    assert not list(tmp_path.glob(".*.tmp")) and not list(out.glob(".*"))


def test_no_record_dry_run_and_failures_leave_the_folder_alone(hub, conversion, tmp_path):
    out = copy_conversion(conversion[0], tmp_path / "out")
    before = snapshot(out)
    result = publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=conversion[1],
                     record_links=False)
    assert result.committed and not result.recorded and set(result.links) == expected_files()
    publish(out, REPO, dry_run=True, labels=conversion[1])
    cli_run = CliRunner().invoke(cli, [str(out), "--repo-id", REPO, "--labels",
                                       str(conversion[1]), "--token", TOKEN, "--no-record"],
                                 env={"HF_ENDPOINT": hub.url})
    assert cli_run.exit_code == 0, cli_run.output
    assert snapshot(out) == before


def test_recording_refuses_a_folder_converted_again_meanwhile(hub, conversion, tmp_path,
                                                              monkeypatch):
    from videoswin_tools import publish as module

    out = copy_conversion(conversion[0], tmp_path / "out")
    earlier = json.loads((out / "manifest.json").read_text()).get("hub")
    upload = module._upload

    def upload_then_reconvert(result, *args):
        done = upload(result, *args)
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["parity"]["tolerance"] = 1e-5              # another run rewrote the folder
        (out / "manifest.json").write_text(json.dumps(manifest))
        return done

    monkeypatch.setattr(module, "_upload", upload_then_reconvert)
    with pytest.raises(PublishError, match=r"Published .* \(commit [0-9a-f]{40}\), but .*out "
                                           r"changed while it was being published"):
        publish(out, REPO, token=TOKEN, endpoint=hub.url, labels=conversion[1])
    assert json.loads((out / "manifest.json").read_text())["parity"]["tolerance"] == 1e-5
    assert json.loads((out / "manifest.json").read_text()).get("hub") == earlier


def test_manifest_refuses_malformed_links(conversion):
    from videoswin.core.manifest import Manifest, ManifestError

    data = json.loads((conversion[0] / "manifest.json").read_text())
    link = {"url": "https://x/resolve/c/f", "size": 3, "sha256": "ab" * 32}
    good = {"repo_id": REPO, "url": "https://x", "revision": "main", "commit": "c" * 40,
            "files": {"backbone/config.json": link}}
    Manifest.parse(dict(data, hub=good))
    for bad, message in ((dict(good, commit="main"), "not a 40-digit hex commit"),
                         (dict(good, files={"../x": link}), "not a relative repository path"),
                         (dict(good, files={"/abs": link}), "not a relative repository path"),
                         (dict(good, files={"a": dict(link, sha256="xyz")}), "hex `sha256`"),
                         (dict(good, files=[]), "`hub.files` is not an object")):
        with pytest.raises(ManifestError, match=message):
            Manifest.parse(dict(data, hub=bad))


# -- artifacts in subfolders (exports) -----------------------------------------------------

def _with_export_files(out, monkeypatch, extra):
    """Write the artifacts `extra` ({relative path: bytes}) into `out` and list them in its
    manifest, as an export step would. With `monkeypatch`, the manifest is only handed to
    the stager (`read_manifest` patched), so that entries its own checks would refuse
    reach the stager's."""
    from videoswin.core.manifest import Manifest, describe
    from videoswin_tools import publish as module

    manifest = Manifest.read(out)
    for name, data in extra.items():
        path = out.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        manifest["artifacts"][name] = describe(path)
    if monkeypatch is None:
        manifest.write(out)
    else:
        monkeypatch.setattr(module, "read_manifest", lambda folder: manifest)
    return manifest


def test_artifacts_in_subfolders_are_staged_as_hard_links(conversion, tmp_path, monkeypatch):
    out = copy_conversion(conversion[0], tmp_path / "out")
    exports = {f"{STEM}.onnx": b"onnx", f"{STEM}_saved_model/saved_model.pb": b"pb",
               f"{STEM}_saved_model/variables/variables.index": b"index",
               f"{STEM}_openvino/{STEM}.xml": b"<xml/>"}
    _with_export_files(out, None, exports)                 # a real manifest, verified
    stage = tmp_path / "staged"
    result = publish(out, REPO, dry_run=True, labels=conversion[1], stage_dir=stage)
    assert set(result.files) == expected_files() | set(exports)
    for name in exports:
        assert (stage / name).stat().st_ino == (out / name).stat().st_ino, name
        assert not (stage / name).is_symlink()
    # stale exports of an earlier publish are deleted from the repository
    from fnmatch import fnmatch

    from videoswin_tools.publish import MANAGED
    for name in exports:
        assert any(fnmatch(name, pattern) for pattern in MANAGED), name


def test_a_link_inside_the_folder_is_refused_too(conversion, tmp_path):
    """A symbolic link to another artifact passes the manifest's checks (it resolves inside
    the folder, to the same bytes), but staging takes regular files only."""
    out = copy_conversion(conversion[0], tmp_path / "out")
    manifest = _with_export_files(out, None, {})
    (out / f"{STEM}.onnx").symlink_to(f"{STEM}.parity.md")
    manifest["artifacts"][f"{STEM}.onnx"] = manifest["artifacts"][f"{STEM}.parity.md"]
    manifest.write(out)
    with pytest.raises(PublishError, match=rf"{STEM}\.onnx is a symbolic link"):
        publish(out, REPO, dry_run=True, labels=conversion[1], stage_dir=tmp_path / "staged")


@pytest.mark.parametrize("kind", ["linked folder", "linked file", "parent path"])
def test_no_link_or_path_leads_out_of_the_folder(conversion, tmp_path, monkeypatch, kind):
    out = copy_conversion(conversion[0], tmp_path / "out")
    outside = tmp_path / "outside"
    (outside / "variables").mkdir(parents=True)
    (outside / "saved_model.pb").write_bytes(b"secret")
    manifest = _with_export_files(out, monkeypatch, {})
    record = {"size": 6, "sha256": hashlib.sha256(b"secret").hexdigest()}
    if kind == "linked folder":
        (out / f"{STEM}_saved_model").symlink_to(outside, target_is_directory=True)
        name, match = f"{STEM}_saved_model/saved_model.pb", "is a symbolic link"
    elif kind == "linked file":
        (out / f"{STEM}.onnx").symlink_to(outside / "saved_model.pb")
        name, match = f"{STEM}.onnx", "is a symbolic link"
    else:
        name, match = "../outside/saved_model.pb", "not a relative path inside the folder"
    manifest["artifacts"][name] = record
    with pytest.raises(PublishError, match=match):
        publish(out, REPO, dry_run=True, labels=conversion[1], stage_dir=tmp_path / "staged")
