"""videoswin-zoo: MODEL_ZOO.md is generated from the configs and manifests, and --check
guards the committed file."""

import json
import re

import pytest
from click.testing import CliRunner

from converter.config import CONFIG_ROOT, list_configs, load_spec
from videoswin.core.spec import ModelSpec
from videoswin_tools.zoo import COMMITTED, generate, main

pytestmark = pytest.mark.backend_independent  # the zoo never imports keras

TINY = "swin_tiny_patch244_window877_kinetics400_1k"
TINY_PARAMS = 28_158_070
SSV2 = "swin_base_patch244_window1677_sthv2"


def _row(text, name):
    rows = [line for line in text.splitlines() if line.startswith("| ") and f"[`{name}`]" in line]
    assert len(rows) == 1, f"expected one row for {name}, found {len(rows)}"
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", rows[0])[1:-1]]


def _manifest(folder, config=TINY, params=TINY_PARAMS, seed=None, hub=None, status="passed",
              backends=None):
    backends = backends or {
        "torch": {"max_abs_logits": 1.9e-6, "max_abs_features": 9.5e-7, "passed": True},
        "jax": {"max_abs_logits": 3.8e-6, "max_abs_features": 4.1e-6, "passed": True},
        "tensorflow": {"max_abs_logits": 5.7e-6, "max_abs_features": 2.0e-6, "passed": True}}
    known = CONFIG_ROOT / "recognition" / "swin" / f"{config}.py"
    spec = load_spec(known) if known.is_file() else ModelSpec(name=config, path=f"{config}.py")
    manifest = {
        "config": config, "spec": spec.to_dict(), "params": params, "with_head": True,
        "parity": {"status": status, "tolerance": 1e-4, "backends": backends},
        "source_checkpoint": {"name": f"{config}.pth", "sha256": "ab" * 32,
                              "url": None, "random_weights_seed": seed},
        "artifacts": {f"{config}.weights.h5": {"size": 112_640_000, "sha256": "cd" * 32},
                      f"{config}.keras": {"size": 112_700_000, "sha256": "ef" * 32}}}
    if hub:
        manifest["hub"] = hub
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.fixture(scope="module")
def specs():
    return [load_spec(c) for c in list_configs()]


@pytest.fixture(scope="module")
def plain(specs):
    return generate((), specs)


def test_one_table_per_dataset_one_row_per_config(plain):
    headings = [line for line in plain.splitlines() if line.startswith("## ")]
    assert headings == ["## Kinetics-400", "## Kinetics-600", "## Kinetics-700",
                        "## Kinetics-710", "## Something-Something V2"]
    rows = [line for line in plain.splitlines() if line.startswith("| Swin-")]
    assert len(rows) == len(list_configs()) == 13
    assert plain.count("not converted yet") == 13


def test_rows_carry_computed_figures(plain):
    tiny = _row(plain, TINY)
    assert tiny[1:5] == ["ImageNet-1K", "8x7x7", "32x4x3",
                         "[78.8 / 93.6](https://github.com/SwinTransformer/"
                         "Video-Swin-Transformer/blob/master/README.md#kinetics-400)"]
    assert tiny[5:7] == ["28,158,070", "87.8"]
    ssv2 = _row(plain, SSV2)
    assert (ssv2[2], ssv2[3], ssv2[5], ssv2[6]) == ("16x7x7", "32x1x3", "88,834,038", "320.4")
    large = "swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb"
    assert _row(plain, large)[4:7] == [
        "[75.92 / 92.72](https://github.com/open-mmlab/mmaction2/blob/main/configs/"
        "recognition/swin/metafile.yml)", "197,415,016", "603.3"]
    assert _row(plain, "swin_base_patch244_window1677_kinetics400_22k")[4] == "not published"


def test_preamble_states_protocol_flops_and_reproduction(plain, specs):
    preamble = plain.split("## Kinetics-400")[0]
    for phrase in ("frames x clips x crops", "every 2nd frame", "probabilities",
                   "multiply-accumulates of one view",
                   "videoswin-convert --config configs/recognition/swin/<config>.py"):
        assert phrase in preamble
    assert not re.search(r"20\d\d-\d\d-\d\d", plain)   # no dates: the output is deterministic
    assert generate((), specs) == plain


def test_check_passes_on_committed_file(tmp_path):
    result = CliRunner().invoke(main, ["--check", "--manifests", str(tmp_path),
                                       "--output", str(COMMITTED)])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_default_output_is_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "MODEL_ZOO.md").read_text() == COMMITTED.read_text()
    assert "wrote MODEL_ZOO.md" in result.output


def test_check_fails_on_modified_copy(tmp_path):
    copy = tmp_path / "MODEL_ZOO.md"
    copy.write_text(COMMITTED.read_text().replace("| 87.8 |", "| 88.0 |", 1))
    empty = tmp_path / "manifests"
    empty.mkdir()
    result = CliRunner().invoke(main, ["--check", "--manifests", str(empty),
                                       "--output", str(copy)])
    assert result.exit_code == 1
    assert "out of date; run `videoswin-zoo`" in result.output
    assert re.search(r"^-.*\| 88\.0 \|", result.output, re.M)
    assert re.search(r"^\+.*\| 87\.8 \|", result.output, re.M)
    assert len(result.output.splitlines()) < 15      # a short diff, not the whole file

    missing = CliRunner().invoke(main, ["--check", "--manifests", str(empty),
                                        "--output", str(tmp_path / "absent.md")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_writes_output_then_check_agrees(tmp_path):
    out = tmp_path / "zoo.md"
    runner = CliRunner()
    assert runner.invoke(main, ["--manifests", str(tmp_path), "--output", str(out)]).exit_code == 0
    assert out.read_text() == COMMITTED.read_text()
    assert runner.invoke(main, ["--check", "--manifests", str(tmp_path),
                                "--output", str(out)]).exit_code == 0


def test_manifest_parity_lands_in_its_row(tmp_path, specs):
    _manifest(tmp_path / "converted" / TINY)
    text = generate([tmp_path / "converted"], specs)
    row = _row(text, TINY)
    # Per backend: the larger of the logits and features differences.
    assert row[7] == "torch 1.9e-06 · jax 4.1e-06 · tensorflow 5.7e-06"
    assert row[8] == "none"                       # no exports recorded
    assert row[9] == "not published"
    assert text.count("not converted yet") == 12
    twin = "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb"
    assert _row(text, twin)[7] == "not converted yet"


def test_a_checkpoint_other_than_the_published_one_is_flagged(tmp_path, specs):
    manifest = _manifest(tmp_path / "converted" / TINY)
    manifest["source_checkpoint"]["is_published"] = False
    (tmp_path / "converted" / TINY / "manifest.json").write_text(json.dumps(manifest))
    row = _row(generate([tmp_path / "converted"], specs), TINY)
    assert row[7].startswith("**not the published checkpoint**: torch 1.9e-06")


def test_failed_parity_is_flagged(tmp_path, specs):
    _manifest(tmp_path, status="failed", backends={
        "torch": {"max_abs_logits": 3.2e-2, "max_abs_features": 1e-3, "passed": False}})
    assert _row(generate([tmp_path], specs), TINY)[7] == "**failed**: torch 3.2e-02"


def test_published_artifacts_are_linked_with_sha256(tmp_path, specs):
    hub = {"repo_id": "videoswin/swin-t-k400", "revision": "v1",
           "url": "https://huggingface.co/videoswin/swin-t-k400"}
    _manifest(tmp_path, hub=hub)
    text = generate([tmp_path], specs)
    assert _row(text, TINY)[9] == (f"[videoswin/swin-t-k400]({hub['url']}) "
                                   f"([sha256](#{TINY}))")
    section = text.split("## Published artifacts")[1]
    assert f"### {TINY}" in section
    assert (f"| [{TINY}.weights.h5]({hub['url']}/blob/v1/{TINY}.weights.h5) | 112,640,000 "
            f"| `{'cd' * 32}` |") in section


def test_published_links_recorded_by_publish_are_listed(tmp_path, specs):
    """`hub.files` (videoswin-publish's record): every published file, pinned to its commit,
    with its size and sha256; exports included."""
    base = "https://huggingface.co/videoswin/swin-t-k400"
    commit = "0123456789abcdef" * 2 + "01234567"
    files = {path: {"url": f"{base}/resolve/{commit}/{path}", "size": size, "sha256": digest}
             for path, size, digest in ((f"{TINY}.weights.h5", 112_640_000, "cd" * 32),
                                        ("backbone/config.json", 2_048, "12" * 32),
                                        (f"{TINY}_saved_model/saved_model.pb", 4_096, "34" * 32))}
    _manifest(tmp_path, hub={"repo_id": "videoswin/swin-t-k400", "revision": "main",
                             "url": base, "commit": commit, "files": files})
    section = generate([tmp_path], specs).split("## Published artifacts")[1]
    assert f"at revision `main` (commit `{commit}`)" in section
    for path, link in files.items():
        assert f"| [{path}]({link['url']}) | {link['size']:,} | `{link['sha256']}` |" in section
    assert section.count("| [") == 3                   # the record, not the artifact list


def test_exports_column_lists_the_formats_that_passed(tmp_path, specs):
    manifest = _manifest(tmp_path)

    def export(status, file):
        manifest["artifacts"][file] = {"size": 10, "sha256": "ab" * 32}
        return {"status": status, "files": [file], "route": "test", "clip": [32, 224, 224],
                "batch": "dynamic", "max_abs_diff": 1e-6 if status == "passed" else None,
                "top1_agreement": 1.0, "tolerance": 1e-4, "reference": "keras",
                "runtime": "test 1.0"}

    manifest["exports"] = {"openvino": export("failed", f"{TINY}_openvino/{TINY}.xml"),
                           "onnx": export("passed", f"{TINY}.onnx"),
                           "saved_model": export("passed", f"{TINY}_saved_model/saved_model.pb")}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    text = generate([tmp_path], specs)
    assert _row(text, TINY)[8] == "ONNX · SavedModel · ~~OpenVINO~~ (failed)"
    assert _row(text, SSV2)[8] == "—"                    # not converted


def test_random_weights_manifest_is_not_a_conversion(tmp_path):
    _manifest(tmp_path, seed=0)
    result = CliRunner().invoke(main, ["--manifests", str(tmp_path),
                                       "--output", str(tmp_path / "zoo.md")])
    assert result.exit_code == 0, result.output
    assert "random weights (seed 0), a synthetic check only" in result.output
    assert (tmp_path / "zoo.md").read_text() == COMMITTED.read_text()


def test_manifest_of_unknown_config_is_ignored(tmp_path, specs):
    _manifest(tmp_path, config="my_own_swin")
    messages = []
    assert generate([tmp_path], specs, log=messages.append) == generate((), specs)
    assert "config 'my_own_swin' is not one of the zoo's configs" in messages[0]


def test_stale_params_are_an_error(tmp_path):
    _manifest(tmp_path / "x", params=1234)
    result = CliRunner().invoke(main, ["--manifests", str(tmp_path),
                                       "--output", str(tmp_path / "zoo.md")])
    assert result.exit_code == 2
    assert "x/manifest.json: records 1,234 params but config " + TINY in result.output
    assert "builds 28,158,070" in result.output
    assert not (tmp_path / "zoo.md").exists()


def test_broken_manifest_names_the_file(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    result = CliRunner().invoke(main, ["--manifests", str(tmp_path), "--check"])
    assert result.exit_code == 2
    assert f"{tmp_path / 'manifest.json'}: not a readable JSON manifest" in result.output


def test_published_manifest_wins_over_local_one(tmp_path, specs):
    _manifest(tmp_path / "a")
    _manifest(tmp_path / "b", hub={"repo_id": "o/n", "revision": "main",
                                   "url": "https://huggingface.co/o/n"})
    row = _row(generate([tmp_path], specs), TINY)
    assert row[9].startswith("[o/n](https://huggingface.co/o/n)")


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    TINY, SSV2, "swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb",
    "swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb"])
def test_zoo_params_equal_keras_model_of_config(name):
    """The zoo's params are those of the Keras model each config builds (seconds per model;
    the variable set is the same on every backend, so it runs in the torch pass only)."""
    import videoswin

    spec = load_spec(CONFIG_ROOT / "recognition" / "swin" / f"{name}.py")
    backbone = videoswin.VideoSwinBackbone(**spec.backbone_kwargs())
    classifier = videoswin.VideoSwinClassifier(backbone, spec.num_classes)
    assert spec.params() == classifier.count_params()
    assert spec.params(with_head=False) == backbone.count_params()
