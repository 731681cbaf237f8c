"""Serving exports (ONNX, TF SavedModel, LiteRT, OpenVINO): built, proven in a fresh process
by their own runtime against mmaction2, recorded under the folder's integrity rules.

One tiny random-weights conversion (shifted windows in its first stage) with every export,
at an odd clip (5x35x35, from the config's test pipeline), is shared by the module; the CLI
re-exports LiteRT at 3x33x47 with a fixed batch on a copy. Exports do not depend on the Keras
backend the suite runs with: they run once, in the torch pass.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from converter import export as exports
from converter.convert import convert
from tests.converter.support import write_config
from videoswin.core import naming
from videoswin.core.manifest import Manifest, ManifestError

pytestmark = [pytest.mark.backend_independent,
              pytest.mark.skipif(bool(exports.missing(naming.EXPORT_FORMATS)),
                                 reason="the export extra is not installed")]

STEM = "swin_export"
CLIP = (5, 35, 35)
PIPELINE = """
test_pipeline = [
    dict(type='SampleFrames', clip_len=5, frame_interval=1, num_clips=2, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 40)),
    dict(type='CenterCrop', crop_size=35),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
"""
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(folder):
    # Two blocks in the first stage: the second one shifts its windows (the mask path).
    path = write_config(folder / f"{STEM}.py", depths=(2, 1, 1, 1), num_heads=(1, 1, 1, 1),
                        num_classes=7)
    with open(path, "a") as handle:
        handle.write(PIPELINE)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`videoswin-convert --random-weights 0 --backends torch --export all` of a tiny model."""
    root = tmp_path_factory.mktemp("export")
    out = root / "out"
    manifest = convert(_config(root), output_dir=str(out), random_weights=0,
                       backends=["torch"], quiet=True, export=list(naming.EXPORT_FORMATS))
    return {"root": root, "out": out, "manifest": manifest}


def _copy(exported, tmp_path):
    target = tmp_path / "out"
    shutil.copytree(exported["out"], target)
    return target


def test_every_format_is_proven_against_mmaction2(exported):
    out, manifest = exported["out"], Manifest.read(exported["out"])
    assert manifest["parity"]["status"] == "passed"
    assert list(manifest["exports"]) == list(naming.EXPORT_FORMATS)
    for fmt, record in manifest["exports"].items():
        assert record["status"] == "passed", (fmt, record)
        assert record["max_abs_diff"] < 1e-5, (fmt, record)
        assert record["top1_agreement"] == 1.0
        assert record["clip"] == list(CLIP) and record["batch"] == "dynamic"
        assert record["tolerance"] == 1e-4
        assert record["reference"] == "mmaction2 SwinTransformer3D"
        assert record["route"] and record["runtime"].split()[0] in (
            "onnxruntime", "tensorflow", "ai-edge-litert", "openvino")
        for name in record["files"]:
            assert name in manifest["artifacts"]
            assert os.path.isfile(out / name)
        assert naming.export_main_file(STEM, fmt) in record["files"]
    assert "NAME" not in json.dumps(manifest["exports"])
    assert manifest["exports"]["saved_model"]["files"][0].startswith(f"{STEM}_saved_model/")
    assert f"{STEM}_openvino/{STEM}.bin" in manifest["exports"]["openvino"]["files"]
    manifest.verify(out)                                   # every export file hashed
    report = json.loads((out / f"{STEM}.parity.json").read_text())
    assert report["exports"] == manifest["exports"]
    text = (out / f"{STEM}.parity.md").read_text()
    assert "#### Exports" in text and text.count("| pass |") >= 4


def test_the_onnx_file_keeps_the_contract(exported):
    import onnx

    model = onnx.load(exported["out"] / f"{STEM}.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] >= 17
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert [i.name for i in model.graph.input] == ["video"]
    assert [o.name for o in model.graph.output] == ["logits"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [*CLIP, 3]


def test_the_proof_runs_in_a_fresh_process_without_keras(exported, tmp_path):
    clips = np.random.default_rng(3).standard_normal((3, *CLIP, 3)).astype("float32")
    np.save(tmp_path / "clips.npy", clips)
    results = {}
    for fmt in ("onnx", "litert", "openvino"):
        path = str(exported["out"] / naming.export_main_file(STEM, fmt))
        logits, runtime, problems, modules = exports.run_check(
            fmt, path, str(tmp_path / "clips.npy"), "dynamic")
        assert problems == [] and logits.shape == (3, 7), (fmt, problems)
        assert not {"keras", "torch", "jax"} & set(modules), (fmt, modules)
        results[fmt] = logits
    np.testing.assert_allclose(results["litert"], results["onnx"], atol=1e-5)
    np.testing.assert_allclose(results["openvino"], results["onnx"], atol=1e-5)


def test_a_forced_mismatch_fails_the_proof(exported, tmp_path, monkeypatch):
    """The CLI with the build stubbed (the fixture's .tflite copied in) and a reference that
    is off by 1: the export is kept, listed and marked failed; exit 1."""
    from videoswin_tools import export as cli

    out = _copy(exported, tmp_path)
    built = exported["out"] / f"{STEM}.tflite"

    def build(stage, stem, formats, clip, batch, scratch, log=print, timeout=3600):
        shutil.copy(built, os.path.join(stage, f"{stem}.tflite"))
        return {"litert": "copied by the test"}, []

    real = exports._checkpoint_reference

    def off_by_one(spec, state, reference):
        run = real(spec, state, reference)
        return lambda clips: (lambda name, logits: (name, logits + 1.0))(*run(clips))

    monkeypatch.setattr(exports, "build", build)
    monkeypatch.setattr(exports, "_checkpoint_reference", off_by_one)
    result = CliRunner().invoke(cli.main, [str(out), "--format", "litert", "--clip", *map(
        str, CLIP)])
    assert result.exit_code == 1, result.output
    assert "export proof failed for litert" in result.output
    manifest = Manifest.read(out)
    record = manifest["exports"]["litert"]
    assert record["status"] == "failed" and record["route"] == "copied by the test"
    assert abs(record["max_abs_diff"] - 1.0) < 1e-4
    assert manifest["exports"]["onnx"]["status"] == "passed"      # the others are kept
    manifest.verify(out)
    assert "| FAIL |" in (out / f"{STEM}.parity.md").read_text()


def test_cli_reexports_litert_at_another_clip_with_a_fixed_batch(exported, tmp_path):
    """`videoswin-export DIR --format litert --clip 3 33 47 --batch 3` in a subprocess (whose
    own KERAS_BACKEND does not matter): the 2 parity clips go in one zero-padded batch of 3;
    the other exports are kept; the reference is mmaction2 again (the random checkpoint is
    made again from its seed)."""
    out = _copy(exported, tmp_path)
    before = Manifest.read(out)
    env = dict(os.environ, KERAS_BACKEND="jax")     # the route picks its own backend
    done = subprocess.run([sys.executable, "-m", "videoswin_tools.export", str(out),
                           "--format", "tflite", "--clip", "3", "33", "47", "--batch", "3"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "litert" in done.stdout and "all proven" in done.stdout
    manifest = Manifest.read(out)
    record = manifest["exports"]["litert"]
    assert record["clip"] == [3, 33, 47] and record["batch"] == 3
    assert record["status"] == "passed" and record["max_abs_diff"] < 1e-5
    assert record["reference"] == "mmaction2 SwinTransformer3D"
    assert manifest["artifacts"][f"{STEM}.tflite"] != before["artifacts"][f"{STEM}.tflite"]
    for fmt in ("onnx", "saved_model", "openvino"):
        assert manifest["exports"][fmt] == before["exports"][fmt]
    assert list(manifest["exports"]) == list(naming.EXPORT_FORMATS)
    manifest.verify(out)
    from ai_edge_litert.interpreter import Interpreter

    shape = Interpreter(model_path=str(out / f"{STEM}.tflite")).get_input_details()[0]["shape"]
    assert list(shape) == [3, 3, 33, 47, 3]


def test_the_model_card_has_an_exports_table(exported):
    from videoswin_tools import model_card

    card = model_card.render(Manifest.read(exported["out"]), "org/swin-export")
    section = card[card.index("## Exports"):card.index("## Files")]
    assert section.count("| pass |") == 4
    for name in (f"{STEM}.onnx", f"{STEM}_saved_model/", f"{STEM}.tflite",
                 f"{STEM}_openvino/{STEM}.xml"):
        assert f"`{name}`" in section and f"| `{name}` |" in card[card.index("## Files"):]
    assert "onnxruntime" in section and "5x35x35" in section


def test_predict_runs_the_onnx_export_without_keras(exported, tmp_path):
    from tests.videoswin.test_video import numbered_frames, write_video

    path = write_video(tmp_path / "clip.mp4", numbered_frames(12, 48, 64), 25)
    onnx_file = str(exported["out"] / f"{STEM}.onnx")
    code = ("import json, sys\n"
            "from videoswin_tools import predict\n"
            "try:\n"
            f"    predict.main([{str(path)!r}, '--model', {onnx_file!r}, '--json',"
            " '--top-k', '7'])\n"
            "except SystemExit as end:\n"
            "    assert not end.code, end.code\n"
            "print(json.dumps(sorted(m for m in ('keras', 'torch', 'tensorflow', 'jax')"
            " if m in sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    *document, loaded = done.stdout.strip().splitlines()
    assert json.loads(loaded) == []
    result = json.loads("\n".join(document))
    got = {p["index"]: p["probability"] for p in result["results"][0]["predictions"]}
    assert len(got) == 7

    import keras

    from videoswin import video

    model = keras.saving.load_model(exported["out"] / f"{STEM}.keras")
    manifest = Manifest.read(exported["out"])
    expected = video.video_probabilities(model, str(path), origin=manifest.spec.origin,
                                         **manifest.spec.pipeline.sampling())
    np.testing.assert_allclose([got[i] for i in range(7)], expected, atol=1e-5)


def test_a_changed_export_is_refused(exported, tmp_path):
    from videoswin_tools import export as cli
    from videoswin_tools import predict

    out = _copy(exported, tmp_path)
    onnx_file = out / f"{STEM}.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 1
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="differs from the manifest"):
        Manifest.read(out).verify(out)
    result = CliRunner().invoke(predict.main, ["x.mp4", "--model", str(onnx_file)])
    assert result.exit_code != 0 and "differs from the manifest" in result.output
    result = CliRunner().invoke(cli.main, [str(out), "--format", "litert"])
    assert result.exit_code == 2 and "differs from the manifest" in result.output
    # the saved model folder is ours: a new conversion need not --force it away
    from converter.artifacts import Output

    fresh = _copy(exported, tmp_path / "again")
    with Output(str(fresh)) as output:
        assert output.foreign_files() == []
    (fresh / f"{STEM}_saved_model" / "stray.txt").write_text("x")
    with Output(str(fresh), force=True) as output:
        assert output.foreign_files() == [f"{STEM}_saved_model"]


# -- bad input (nothing is built) -------------------------------------------------------------

@pytest.mark.parametrize("args,code,message", [
    (["--format", "onnx,pdf"], 2, "unknown export format(s) pdf; choose from onnx, "
                                  "saved_model, litert, openvino"),
    (["--format", ""], 2, "no format"),
    (["--format", "onnx", "--clip", "0", "35", "35"], 2, "T H W must be three ints"),
    (["--format", "onnx", "--clip", "5", "35", "5000"], 2, "in 1..4096"),
    (["--format", "onnx", "--batch", "0"], 2, "positive int or 'dynamic'"),
    (["--format", "onnx", "--batch", "two"], 2, "positive int or 'dynamic'"),
    (["--format", "onnx", "--tolerance", "-1"], 2, "--tolerance must be"),
])
def test_bad_requests_are_refused(exported, args, code, message):
    from videoswin_tools import export as cli

    before = sorted(os.listdir(exported["out"]))
    result = CliRunner().invoke(cli.main, [str(exported["out"]), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert sorted(os.listdir(exported["out"])) == before


def test_a_missing_runtime_names_the_extra(exported, monkeypatch):
    import importlib.util

    from videoswin_tools import export as cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    result = CliRunner().invoke(cli.main, [str(exported["out"]), "--format", "onnx,openvino"])
    assert result.exit_code == 1
    assert "openvino needs openvino" in result.output
    assert "pip install 'videoswin[export]'" in result.output
    assert "onnx needs" not in result.output


def test_a_backbone_only_conversion_is_refused(exported, tmp_path):
    from videoswin_tools import export as cli

    out = _copy(exported, tmp_path)
    data = json.loads((out / naming.MANIFEST).read_text())
    data["with_head"] = False
    (out / naming.MANIFEST).write_text(json.dumps(data))
    result = CliRunner().invoke(cli.main, [str(out), "--format", "onnx"])
    assert result.exit_code == 1 and "backbone-only" in result.output


def test_a_mixed_precision_model_is_exported_as_float32(tmp_path):
    import keras

    import videoswin
    from converter.export_worker import float32_model

    backbone = videoswin.VideoSwinBackbone(embed_dim=16, depths=(1, 1, 1, 1),
                                           num_heads=(1, 1, 1, 1), window_size=(2, 3, 3),
                                           dtype="mixed_bfloat16")
    model = videoswin.VideoSwinClassifier(backbone, 3)
    model.save(tmp_path / "mixed.keras")
    notes = []
    fresh, channels = float32_model(str(tmp_path / "mixed.keras"), (3, 33, 47), notes)
    assert channels == 3 and fresh.input_shape == (None, 3, 33, 47, 3)
    assert notes and "mixed_bfloat16" in notes[0] and "exported as float32" in notes[0]
    assert {layer.dtype_policy.compute_dtype for layer in fresh._flatten_layers()} == {"float32"}
    for a, b in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b).astype("float32"))


# -- names and schema (pure) -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["m.onnx", "m_saved_model/saved_model.pb",
                                  "m_saved_model/variables/variables.index", "m_openvino/m.xml"])
def test_relative_names_pass(name, tmp_path):
    assert naming.check_relative_name(name) is name
    assert naming.inside(str(tmp_path), name, relative=True) == os.path.join(
        str(tmp_path), *name.split("/"))


@pytest.mark.parametrize("name", ["", "/abs/x", "a/../b", "../x", "a//b", "a/", "./a",
                                  "a\\b", "a/\0", None])
def test_bad_relative_names_are_refused(name, tmp_path):
    with pytest.raises(ValueError, match="is not a relative path inside the folder"):
        naming.check_relative_name(name, "artifact")
    with pytest.raises(ValueError):
        naming.inside(str(tmp_path), name, "artifact", relative=True)


def test_a_symlinked_export_folder_leading_out_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "saved_model.pb").write_bytes(b"x")
    folder = tmp_path / "conversion"
    folder.mkdir()
    os.symlink(outside, folder / "m_saved_model")
    with pytest.raises(ValueError, match="resolves outside"):
        naming.inside(str(folder), "m_saved_model/saved_model.pb", relative=True)


def test_format_names():
    assert naming.parse_export_formats("openvino, ONNX,tflite") == ["onnx", "litert",
                                                                    "openvino"]
    assert naming.parse_export_formats("all") == list(naming.EXPORT_FORMATS)
    assert [naming.export_main_file("m", f) for f in naming.EXPORT_FORMATS] == [
        "m.onnx", "m_saved_model/saved_model.pb", "m.tflite", "m_openvino/m.xml"]


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(status="maybe"), "status must be one of"),
    (lambda r: r.update(files=["missing.onnx"]), "which `artifacts` does not list"),
    (lambda r: r.update(clip=[5, 0, 35]), "clip must be"),
    (lambda r: r.update(batch="any"), "batch must be"),
    (lambda r: r.update(max_abs_diff=None), "max_abs_diff must be a number"),
    (lambda r: r.update(runtime=3), "runtime must be a string"),
])
def test_the_manifest_validates_exports(exported, change, message):
    data = json.loads((exported["out"] / naming.MANIFEST).read_text())
    change(data["exports"]["onnx"])
    with pytest.raises(ManifestError, match=message):
        Manifest.parse(data)
    data = json.loads((exported["out"] / naming.MANIFEST).read_text())
    data["exports"]["pdf"] = data["exports"].pop("onnx")
    with pytest.raises(ManifestError, match="format 'pdf'"):
        Manifest.parse(data)


def test_rerunning_parity_keeps_the_exports(exported, tmp_path):
    from converter.convert import rerun_parity

    out = _copy(exported, tmp_path)
    before = Manifest.read(out)
    manifest, report = rerun_parity(str(out), backends=["torch"])
    assert report["status"] == "passed"
    assert manifest["exports"] == before["exports"] == report["exports"]
    assert "#### Exports" in (out / f"{STEM}.parity.md").read_text()
    Manifest.read(out).verify(out)
    assert os.path.isfile(out / f"{STEM}_saved_model" / "saved_model.pb")


@pytest.mark.parametrize("args,message", [
    (["--export", "onnx,pdf"], "unknown export format(s) pdf"),
    (["--export", "onnx", "--export-clip", "0", "35", "35"], "T H W must be three ints"),
    (["--export", "onnx", "--export-batch", "-2"], "positive int or 'dynamic'"),
])
def test_convert_refuses_a_bad_export_request_before_converting(tmp_path, args, message):
    from videoswin_tools import convert as convert_cli

    result = CliRunner().invoke(convert_cli.main, [
        "--config", _config(tmp_path), "--random-weights", "0", "--output-dir",
        str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_without_a_checkpoint_the_converted_keras_is_the_reference(exported):
    """A real conversion exported without --checkpoint: the parity-proven `.keras` (run by the
    parity worker) stands in for the original, and agrees with it."""
    from converter.parity import make_clips

    clips = make_clips(1, CLIP, 0)
    name, logits = exports._keras_reference(str(exported["out"]), STEM, "torch")(clips)
    assert name.startswith(f"the converted {STEM}.keras on torch")
    manifest = Manifest.read(exported["out"])
    assert manifest.is_random
    from converter.convert import _refabricate
    from converter import checkpoint as ckpt

    original = _refabricate(manifest, str(exported["root"]))
    reference = exports._checkpoint_reference(manifest.spec, ckpt.load(original).state, "auto")
    ref_name, ref_logits = reference(clips)
    assert ref_name == "mmaction2 SwinTransformer3D"
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
