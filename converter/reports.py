"""Parity results as CI reports: JUnit XML (one test case per variant x backend) and a
Markdown summary, appended to `$GITHUB_STEP_SUMMARY` when that variable is set.

A result is one variant's outcome, built with `result(...)`:
`{"name", "report": the parity report (`converter.parity.check`) or None, "error": why the
variant produced no report (a conversion that failed) or None, "backends": the backends it
was meant to run on, "seconds"}`. A failed parity check becomes a `<failure>` whose message
gives max |diff| and the tolerance; a variant that never reached parity becomes one
`<error>` per backend it was meant to run on, so the counts stay variant x backend.
A `--bf16` run's numbers (`bf16_*` keys of a row) are reported, never a failure: in each
test case's `<properties>` and `<system-out>`, and in a table of their own in the summary.
"""

import os
import xml.etree.ElementTree as ET

from converter.parity import BF16_HEADER, BF16_MEANING, bf16_cells, bf16_row, bf16_text
from videoswin.core.manifest import write_text_atomic

SUITE = "videoswin parity"
SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


def result(name, report=None, error=None, backends=(), seconds=None):
    """One variant's outcome (see the module docstring)."""
    backends = list(backends) or list((report or {}).get("backends") or {})
    return {"name": str(name), "report": report, "error": None if error is None else str(error),
            "backends": backends, "seconds": seconds}


def _fmt(value):
    return "n/a" if value is None else f"{value:.2e}"


def _largest(row):
    values = [row.get(k) for k in ("max_abs_logits", "max_abs_features")]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def failure_message(row, tolerance):
    """Why a backend's row failed: max |diff| against the tolerance, and any other cause."""
    largest = _largest(row)
    parts = [f"max |diff| {_fmt(largest)} (logits {_fmt(row.get('max_abs_logits'))}, "
             f"features {_fmt(row.get('max_abs_features'))}); tolerance {tolerance:g}"]
    if largest is not None and largest <= tolerance:
        parts[0] += " (within it)"
    if row.get("weights_h5_identical") is False:
        parts.append(".weights.h5 and .keras gave different outputs")
    return "; ".join(parts)


BF16_KEYS = tuple(bf16_row({}, None))


def _row(item, backend):
    return ((item.get("report") or {}).get("backends") or {}).get(backend) or {}


def _bf16_note(row):
    if "bf16_max_abs_logits" not in row:
        return None
    return f"bf16 (reported, not held to the tolerance): {bf16_text(row)}"


def cases(results):
    """Test cases: (classname, name, seconds, outcome, message) with outcome one of
    passed, failure, error, skipped."""
    out = []
    for item in results:
        classname = f"parity.{item['name']}"
        report = item.get("report")
        if report is None:
            why = item.get("error") or "no parity report"
            for backend in item["backends"] or ["(conversion)"]:
                out.append((classname, backend, 0.0, "error", why))
            continue
        rows = report.get("backends") or {}
        tolerance = (report.get("tolerance") or {}).get("max_abs")
        for backend in item["backends"] or list(rows):
            row = rows.get(backend)
            if row is None:
                out.append((classname, backend, 0.0, "skipped",
                            f"backend {backend} was not checked"))
                continue
            seconds = float(row.get("seconds") or 0.0)
            if row.get("passed"):
                out.append((classname, backend, seconds, "passed",
                            f"max |diff| {_fmt(_largest(row))} <= tolerance {tolerance:g}"))
            else:
                out.append((classname, backend, seconds, "failure",
                            failure_message(row, tolerance)))
    return out


def junit_xml(results, suite=SUITE):
    """The JUnit XML text of `results`: one <testsuite>, one <testcase> per variant x backend."""
    found = cases(results)
    by_name = {item["name"]: item for item in results}
    counts = {k: sum(1 for c in found if c[3] == k) for k in ("failure", "error", "skipped")}
    total = sum(c[2] for c in found)
    root = ET.Element("testsuites", name=suite, tests=str(len(found)),
                      failures=str(counts["failure"]), errors=str(counts["error"]),
                      skipped=str(counts["skipped"]), time=f"{total:.1f}")
    suite_element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(found)),
                                  failures=str(counts["failure"]), errors=str(counts["error"]),
                                  skipped=str(counts["skipped"]), time=f"{total:.1f}")
    for classname, name, seconds, outcome, message in found:
        case = ET.SubElement(suite_element, "testcase", classname=classname, name=name,
                             time=f"{seconds:.1f}")
        row = _row(by_name[classname.split(".", 1)[1]], name)
        note = _bf16_note(row)
        if note:
            properties = ET.SubElement(case, "properties")
            for key in BF16_KEYS:
                if row.get(key) is not None:
                    ET.SubElement(properties, "property", name=key, value=f"{row[key]:g}")
        if outcome == "failure":
            ET.SubElement(case, "failure", message=message, type="ParityMismatch").text = message
        elif outcome == "error":
            ET.SubElement(case, "error", message=_one_line(message),
                          type="ConversionError").text = message
        elif outcome == "skipped":
            ET.SubElement(case, "skipped", message=message)
        if outcome == "passed" or note:
            out = [message] if outcome == "passed" else []
            ET.SubElement(case, "system-out").text = "\n".join(out + [note] if note else out)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _one_line(text, limit=500):
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def markdown_summary(results, title="Parity"):
    """A variant x backend table of max |diff| with pass / FAIL / error, and the totals."""
    backends = []
    for item in results:
        backends += [b for b in item["backends"] or list((item.get("report") or {})
                                                         .get("backends") or {})
                     if b not in backends]
    found = cases(results)
    by_cell = {(c[0].split(".", 1)[1], c[1]): c for c in found}
    failed = sum(1 for c in found if c[3] in ("failure", "error"))
    lines = [f"### {title}", ""]
    tolerances = {(item.get("report") or {}).get("tolerance", {}).get("max_abs")
                  for item in results if item.get("report")}
    tolerances.discard(None)
    if tolerances:
        lines += ["max |diff| of logits and features against the PyTorch original, float32; "
                  f"tolerance {', '.join(f'{t:g}' for t in sorted(tolerances))}.", ""]
    lines += ["| variant | " + " | ".join(backends) + " | result |",
              "|---|" + "---|" * len(backends) + "---|"]
    notes = []
    for item in results:
        cells = []
        for backend in backends:
            case = by_cell.get((item["name"], backend))
            if case is None:
                cells.append("—")
                continue
            row = _row(item, backend)
            cells.append({"passed": f"{_fmt(_largest(row))} pass",
                          "failure": f"{_fmt(_largest(row))} **FAIL**",
                          "error": "**error**", "skipped": "not checked"}[case[3]])
        status = (item["report"] or {}).get("status") if item.get("report") else "error"
        lines.append(f"| {item['name']} | " + " | ".join(cells) + f" | {status} |")
        if item.get("error"):
            notes.append(f"- {item['name']}: {_one_line(item['error'], 300)}")
    lines += [""] + (notes + [""] if notes else [])
    lines.append(f"**{len(found) - failed} of {len(found)} checks passed**"
                 + (f", {failed} failed." if failed else "."))
    return "\n".join(lines + _bf16_lines(results, backends)) + "\n"


def _bf16_lines(results, backends):
    """The bf16 table: variant x backend rows of the `--bf16` numbers, when any."""
    rows = [(item["name"], backend, _row(item, backend)) for item in results
            for backend in backends if _bf16_note(_row(item, backend))]
    if not rows:
        return []
    lines = ["", "bfloat16 (`mixed_bfloat16`) against the same float32 reference, on the same "
             f"clips. {BF16_MEANING}", "",
             "| variant | backend | " + " | ".join(BF16_HEADER) + " |",
             "|---" * (len(BF16_HEADER) + 2) + "|"]
    for name, backend, row in rows:
        lines.append(f"| {name} | {backend} | " + " | ".join(bf16_cells(row)) + " |")
    return lines


def write(results, junit=None, summary=None, title="Parity", environ=None):
    """Write the JUnit XML to `junit` and the Markdown summary to `summary` (each atomically,
    when given), and append the summary to `$GITHUB_STEP_SUMMARY` when it is set. Returns
    the paths written. `OSError` names the file at fault."""
    environ = os.environ if environ is None else environ
    written = []
    text = markdown_summary(results, title)
    for path, content in ((junit, junit_xml(results) if junit else None), (summary, text)):
        if path:
            _write(path, content)
            written.append(str(path))
    step_summary = environ.get(SUMMARY_VARIABLE)
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except OSError as err:
            raise OSError(f"${SUMMARY_VARIABLE} ({step_summary}): cannot append the parity "
                          f"summary ({err.strerror or err})") from None
        written.append(str(step_summary))
    return written


def _write(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as err:
        raise OSError(f"{path}: cannot write the report ({err.strerror or err})") from None
