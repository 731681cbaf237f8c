"""CI-native parity reports: JUnit XML (variant x backend test cases) and the Markdown summary,
appended to $GITHUB_STEP_SUMMARY; from `converter.reports`, `videoswin-parity` and
`scripts/parity_report.py`."""

import types
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from converter import reports

pytestmark = pytest.mark.backend_independent      # no Keras backend is touched


def row(logits, features, passed=None, tolerance=1e-4, seconds=2.5, identical=True):
    passed = (max(logits, features) <= tolerance and identical) if passed is None else passed
    return {"max_abs_logits": logits, "max_abs_features": features, "top1_agreement": 1.0,
            "top5_agreement": 1.0, "weights_h5_identical": identical, "seconds": seconds,
            "passed": passed, "detail": {}}


def report(backends, tolerance=1e-4):
    status = "passed" if all(r["passed"] for r in backends.values()) else "failed"
    return {"reference": "mmaction2 SwinTransformer3D",
            "clips": {"count": 2, "shape": [10, 72, 100], "seed": 0},
            "tolerance": {"max_abs": tolerance, "dtype": "float32"}, "logits_scale": 3.0,
            "backends": backends, "status": status}


BACKENDS = ["torch", "jax", "tensorflow"]


@pytest.fixture
def results():
    return [
        reports.result("tiny", report({b: row(2e-6, 1e-6) for b in BACKENDS})),
        reports.result("base", report({"torch": row(3e-6, 1e-6),
                                       "jax": row(3.2e-2, 1e-3),
                                       "tensorflow": row(5e-6, 2e-6, identical=False)})),
        reports.result("large", error="conversion failed: out of memory\nTraceback...",
                       backends=BACKENDS),
    ]


def test_junit_counts_and_failure_messages(results):
    root = ET.fromstring(reports.junit_xml(results))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("9", "2", "3", "0")
    assert root.get("tests") == "9" and root.get("failures") == "2"
    testcases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in testcases] == [
        (f"parity.{v}", b) for v in ("tiny", "base", "large") for b in BACKENDS]
    by_id = {(c.get("classname"), c.get("name")): c for c in testcases}
    assert by_id[("parity.tiny", "jax")].find("failure") is None
    failure = by_id[("parity.base", "jax")].find("failure")
    assert failure.get("message") == ("max |diff| 3.20e-02 (logits 3.20e-02, features "
                                      "1.00e-03); tolerance 0.0001")
    mixed = by_id[("parity.base", "tensorflow")].find("failure").get("message")
    assert "tolerance 0.0001 (within it)" in mixed and ".weights.h5 and .keras" in mixed
    error = by_id[("parity.large", "torch")].find("error")
    assert error.get("message") == "conversion failed: out of memory Traceback..."
    assert float(by_id[("parity.base", "torch")].get("time")) == 2.5


def test_a_backend_that_was_not_checked_is_skipped():
    item = reports.result("tiny", report({"torch": row(1e-6, 1e-6)}), backends=["torch", "jax"])
    suite = ET.fromstring(reports.junit_xml([item])).find("testsuite")
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures")) == ("2", "1", "0")
    assert suite.findall("testcase")[1].find("skipped") is not None


def test_markdown_summary(results):
    text = reports.markdown_summary(results, title="Parity report")
    assert text.startswith("### Parity report\n")
    assert "| variant | torch | jax | tensorflow | result |" in text
    assert "| tiny | 2.00e-06 pass | 2.00e-06 pass | 2.00e-06 pass | passed |" in text
    assert "| base | 3.00e-06 pass | 3.20e-02 **FAIL** | 5.00e-06 **FAIL** | failed |" in text
    assert "| large | **error** | **error** | **error** | error |" in text
    assert "- large: conversion failed: out of memory Traceback..." in text
    assert "tolerance 0.0001" in text and "**4 of 9 checks passed**, 5 failed." in text


def test_write_files_and_append_to_the_step_summary(results, tmp_path):
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n")
    junit, summary = tmp_path / "out" / "parity.xml", tmp_path / "out" / "parity.md"
    written = reports.write(results, junit=junit, summary=summary,
                            environ={"GITHUB_STEP_SUMMARY": str(step)})
    assert written == [str(junit), str(summary), str(step)]
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "9"
    assert step.read_text() == "earlier step\n" + summary.read_text() + "\n"
    reports.write(results, environ={"GITHUB_STEP_SUMMARY": str(step)})     # appended again
    assert step.read_text().count("### Parity") == 2
    assert reports.write(results, environ={}) == []
    with pytest.raises(OSError, match="GITHUB_STEP_SUMMARY .*cannot append"):
        reports.write(results, environ={"GITHUB_STEP_SUMMARY": str(tmp_path)})


def test_videoswin_parity_writes_the_reports(tmp_path, monkeypatch):
    """`videoswin-parity --junit --summary` on a re-check (the check itself stubbed)."""
    from converter import convert
    from videoswin_tools.convert import parity_main

    failing = report({"torch": row(1e-6, 1e-6), "jax": row(5e-3, 1e-6)})
    manifest = types.SimpleNamespace(name="swin_tiny")
    monkeypatch.setattr(convert, "rerun_parity", lambda *a, **k: (manifest, failing))
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    junit, summary = tmp_path / "parity.xml", tmp_path / "parity.md"
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(parity_main, [str(tmp_path / "out"), "--junit", str(junit),
                                              "--summary", str(summary)])
    assert result.exit_code == 1 and "parity check failed" in result.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert "max |diff| 5.00e-03" in suite.find("testcase[@name='jax']/failure").get("message")
    assert "| swin_tiny | 1.00e-06 pass | 5.00e-03 **FAIL** | failed |" in summary.read_text()
    assert step.read_text() == summary.read_text() + "\n"

    def crash(*args, **kwargs):
        raise RuntimeError("parity worker on backend 'torch' failed (exit -9)")

    monkeypatch.setattr(convert, "rerun_parity", crash)
    # torch: the one backend every test environment has (the minimum-versions one has no jax)
    result = CliRunner().invoke(parity_main, [str(tmp_path / "out"), "--backends", "torch",
                                              "--junit", str(junit)])
    assert result.exit_code == 1
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert "exit -9" in error.get("message")


def test_parity_report_script_writes_junit_and_summary(tmp_path, monkeypatch):
    """scripts/parity_report.py --junit --summary, its conversions stubbed: one variant
    fails parity on one backend, one fails to convert."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "parity_report.py"
    spec = importlib.util.spec_from_file_location("parity_report", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    class Converted(dict):
        pass

    def convert(config, **kwargs):
        if "large" in config:
            raise RuntimeError("parity worker on backend 'jax' failed (exit -9)")
        rows = {"torch": row(1e-6, 1e-6), "jax": row(2e-3 if "base" in config else 1e-6, 1e-6)}
        made = Converted(parity={"status": report(rows)["status"], "backends": rows})
        made.report = report(rows)
        return made

    monkeypatch.setattr(script, "convert", convert)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    junit, summary = tmp_path / "parity.xml", tmp_path / "parity.md"
    monkeypatch.setattr(sys, "argv", ["parity_report.py", "--variants", "tiny,base,large",
                                      "--backends", "torch,jax", "--junit", str(junit),
                                      "--summary", str(summary)])
    assert script.main() == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("6", "1", "2")
    failure = suite.find("testcase[@classname='parity.base'][@name='jax']/failure")
    assert failure.get("message").startswith("max |diff| 2.00e-03")
    assert "tolerance 0.0001" in failure.get("message")
    assert "| large | **error** | **error** | error |" in summary.read_text()
    monkeypatch.setattr(sys, "argv", ["parity_report.py", "--variants", "tiny,huge"])
    with pytest.raises(SystemExit):
        script.main()
