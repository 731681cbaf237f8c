"""`--bf16` parity: max |diff| of logits, top-1 and top-5 agreement against the float32
reference, in the report JSON, the Markdown, the CI reports and the model card; never a
failure."""

import json
import types
import xml.etree.ElementTree as ET

import keras
import numpy as np
import pytest

from converter import parity, reports
from converter.convert import convert
from tests.converter.support import write_config
from videoswin_tools import model_card

BACKEND = keras.backend.backend()


def numpy_metrics(reference, candidate):
    """max |diff|, top-1 and top-5 agreement, computed here independently of `parity`."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    k = min(5, reference.shape[1])
    top = [{tuple(sorted(np.argpartition(-row, k - 1)[:k])) for row in (r, c)}
           for r, c in zip(reference, candidate)]
    return {"max_abs": np.abs(reference - candidate).max(),
            "top1": np.mean([r.argmax() == c.argmax() for r, c in zip(reference, candidate)]),
            "top5": np.mean([len(pair) == 1 for pair in top])}


def assert_row_matches(row, reference, bf16_logits, count):
    expected = numpy_metrics(reference, bf16_logits)
    assert row["bf16_max_abs_logits"] == pytest.approx(expected["max_abs"], rel=1e-12)
    assert row["bf16_top1_agreement"] == pytest.approx(expected["top1"])
    assert row["bf16_top5_agreement"] == pytest.approx(expected["top5"])
    assert row["bf16_clips"] == count
    return expected


@pytest.mark.backend_independent
def test_metrics_on_stored_outputs_equal_numpy_and_never_fail(tmp_path, monkeypatch):
    """Worker outputs stored as the worker writes them; bf16 far off the tolerance, with
    top-1 and top-5 disagreements, still passes."""
    count, classes = 32, 400
    rng = np.random.default_rng(3)
    reference = rng.standard_normal((count, classes)).astype(np.float32)
    features = rng.standard_normal((count, 8)).astype(np.float32)
    bf16 = reference + rng.normal(0, 1e-3, reference.shape).astype(np.float32)
    order = np.argsort(-reference, axis=1)
    for clip in range(3):                       # ranks 1 and 2 trade places: top-1 differs
        a, b = order[clip, :2]
        bf16[clip, [a, b]] = bf16[clip, [b, a]]
    for clip in range(3, 8):                    # ranks 5 and 6: only the top-5 set differs
        a, b = order[clip, 4:6]
        bf16[clip, [a, b]] = bf16[clip, [b, a]]
    stored = tmp_path / "out.npz"
    np.savez(stored, **{"logits/keras": reference + 1e-7, "backbone/keras": features,
                        "logits/bf16": bf16, "backbone/bf16": features + 0.01,
                        "logits/weights_h5_identical": np.float32(1),
                        "backbone/weights_h5_identical": np.float32(1),
                        "seconds:logits/keras": np.float64(1.0), "backend": np.array("torch")})

    def stored_outputs(*args, **kwargs):
        with np.load(stored) as data:
            return {k: data[k] for k in data.files}

    monkeypatch.setattr(parity, "reference_outputs", lambda *a, **k: ("stub", features, reference))
    monkeypatch.setattr(parity, "run_backend", stored_outputs)
    spec = types.SimpleNamespace(in_channels=3, clip_shape=(2, 8, 8))
    report = parity.check(spec, {}, str(tmp_path), "stem", backends=["torch", "jax"],
                          count=count, bf16=True, log=lambda message: None)

    assert report["status"] == "passed"
    assert report["bf16"]["held_to_tolerance"] is False and report["bf16"]["clips"] == count
    row = report["backends"]["torch"]
    expected = assert_row_matches(row, reference, bf16, count)
    assert (expected["top1"], expected["top5"]) == (29 / 32, 27 / 32)
    assert row["bf16_max_abs_features"] == pytest.approx(0.01, rel=1e-4)
    assert row["max_abs_logits"] < 1e-6 and row["passed"]

    text = parity.markdown(report)
    assert "| torch | " in text and "| 90.6% (29/32) | 84.4% (27/32) | 32 |" in text
    assert "never fails the check" in text
    manifest = parity.summary(report)
    assert manifest["bf16"]["clips"] == count
    assert manifest["backends"]["jax"]["bf16_top5_agreement"] == row["bf16_top5_agreement"]

    item = reports.result("tiny", report)
    suite = ET.fromstring(reports.junit_xml([item])).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    case = suite.find("testcase[@name='torch']")
    properties = {p.get("name"): float(p.get("value"))
                  for p in case.findall("properties/property")}
    assert properties["bf16_top1_agreement"] == pytest.approx(29 / 32, rel=1e-5)
    assert properties["bf16_clips"] == count
    assert "top-1 agreement 90.6% (29/32)" in case.find("system-out").text
    summary = reports.markdown_summary([item])
    assert "| tiny | torch | " in summary and "| 90.6% (29/32) | 84.4% (27/32) | 32 |" in summary
    assert "**2 of 2 checks passed**." in summary


@pytest.mark.backend_independent
def test_a_float32_failure_keeps_its_message_and_adds_bf16_output():
    row = {"max_abs_logits": 5e-3, "max_abs_features": 1e-6, "top1_agreement": 1.0,
           "top5_agreement": 1.0, "weights_h5_identical": True, "seconds": 1.0,
           "passed": False, "bf16_max_abs_logits": 0.1, "bf16_max_abs_features": 0.05,
           "bf16_top1_agreement": 1.0, "bf16_top5_agreement": 0.5, "bf16_clips": 2}
    item = reports.result("tiny", {"reference": "r", "status": "failed",
                                   "clips": {"count": 2, "shape": [2, 8, 8], "seed": 0},
                                   "tolerance": {"max_abs": 1e-4}, "backends": {"jax": row}})
    case = ET.fromstring(reports.junit_xml([item])).find("testsuite/testcase")
    assert case.find("failure").get("message") == reports.failure_message(row, 1e-4)
    assert "top-5 agreement 50% (1/2)" in case.find("system-out").text


def test_real_conversion_reports_bf16(tmp_path, monkeypatch):
    """A tiny random-weights conversion with bf16 on this backend: the numbers in the JSON,
    the Markdown, the manifest and the model card equal NumPy's on the stored outputs."""
    seen = {}
    run_backend, reference_outputs = parity.run_backend, parity.reference_outputs

    def keep_outputs(backend, *args, **kwargs):
        seen[backend] = run_backend(backend, *args, **kwargs)
        return seen[backend]

    def keep_reference(*args, **kwargs):
        seen["reference"] = reference_outputs(*args, **kwargs)
        return seen["reference"]

    monkeypatch.setattr(parity, "run_backend", keep_outputs)
    monkeypatch.setattr(parity, "reference_outputs", keep_reference)
    # Several heads in the last stage, as published: one head over a 1-token window compiles
    # on JAX only in the explicit attention form (tests/videoswin/model/
    # test_attention_fallback.py).
    config = write_config(tmp_path / "swin_bf16.py", depths=(1, 1, 1, 1), num_classes=10)
    out = tmp_path / "out"
    count = 4
    manifest = convert(config, random_weights=0, output_dir=str(out), backends=[BACKEND],
                       parity_clip=(2, 32, 32), parity_clips=count, bf16=True, quiet=True)

    report = json.loads((out / "swin_bf16.parity.json").read_text())
    row = report["backends"][BACKEND]
    expected = assert_row_matches(row, seen["reference"][2], seen[BACKEND]["logits/bf16"], count)
    # Far outside the float32 tolerance, and still a pass.
    assert expected["max_abs"] > report["tolerance"]["max_abs"]
    assert manifest["parity"]["status"] == "passed" and row["passed"]
    assert manifest["parity"]["backends"][BACKEND]["bf16_top5_agreement"] == pytest.approx(
        expected["top5"])

    cells = (f"| {parity.agreement(expected['top1'], count)} | "
             f"{parity.agreement(expected['top5'], count)} | {count} |")
    assert f"({round(expected['top1'] * count)}/{count})" in cells
    text = (out / "swin_bf16.parity.md").read_text()
    assert f"| {BACKEND} | {expected['max_abs']:.2e} | " in text and cells in text
    card = model_card.body(manifest, "ORG/NAME")
    assert "### bfloat16" in card and "not held to the tolerance" in card
    assert f"| {BACKEND} | {expected['max_abs']:.2e} | " in card and cells in card
