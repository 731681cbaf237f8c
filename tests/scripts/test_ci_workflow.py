"""The GitHub Actions workflow parses, and runs the scripts .ci/run runs."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

yaml = pytest.importorskip("yaml")      # PyYAML: huggingface_hub's own dependency

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow):
    (job,) = workflow["jobs"].values()
    return job["steps"]


def script_calls(text):
    """The repository scripts a shell text runs, in order (comments left out)."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return re.findall(r"(scripts/[\w.]+\.(?:sh|py))", "\n".join(lines))


def test_triggers_and_pip_cache(workflow):
    triggers = workflow.get("on", workflow.get(True))      # YAML 1.1 reads `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    setup = [s for s in steps(workflow) if str(s.get("uses", "")).startswith(
        "actions/setup-python@")]
    assert len(setup) == 1 and setup[0]["with"]["cache"] == "pip"
    assert "pyproject.toml" in setup[0]["with"]["cache-dependency-path"]


def test_runs_what_ci_run_runs(workflow):
    run = "\n".join(s.get("run", "") for s in steps(workflow))
    ci_run = (ROOT / ".ci" / "run").read_text()
    # the same scripts, each once (.ci/run overlaps the minimum-versions run with the others)
    assert sorted(script_calls(run)) == sorted(script_calls(ci_run))
    assert len(set(script_calls(run))) == len(script_calls(run))
    assert "scripts/install.sh --test" in run and "python -m pip check" in run
    assert re.search(r"python scripts/parity_report\.py --junit reports/parity\.xml "
                     r"--summary reports/parity\.md", run)
    # every step after the install runs even when an earlier one failed, as in .ci/run
    later = [s for s in steps(workflow) if "run" in s][2:]
    assert later and all("!cancelled()" in s.get("if", "") for s in later)


def test_reports_are_uploaded(workflow):
    upload = [s for s in steps(workflow) if str(s.get("uses", "")).startswith(
        "actions/upload-artifact@")]
    assert len(upload) == 1
    assert upload[0]["with"]["path"].rstrip("/") == "reports"
    assert "always()" in upload[0]["if"]
