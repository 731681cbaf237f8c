#!/usr/bin/env python
"""CI parity report: convert synthetic (random, official-layout) checkpoints of every
published variant at a small clip size and print max |diff| per variant x backend.

Usage: python scripts/parity_report.py [--clip T H W] [--variants tiny,small,...]
                                       [--junit PATH] [--summary PATH]
`--junit` writes JUnit XML (one test case per variant x backend; a failing one gives max |diff|
and the tolerance), `--summary` a Markdown table; the table is also appended to
$GITHUB_STEP_SUMMARY when that variable is set (GitHub Actions).
Exits non-zero if any conversion or parity check fails, or a report cannot be written.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from converter import reports  # noqa: E402
from converter.convert import convert  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VARIANTS = {
    "tiny": "swin_tiny_patch244_window877_kinetics400_1k",
    "small": "swin_small_patch244_window877_kinetics400_1k",
    "base": "swin_base_patch244_window877_kinetics400_22k",
    "base-w1677": "swin_base_patch244_window1677_sthv2",
    "large": "swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", nargs=3, type=int, default=(10, 72, 100),
                        metavar=("T", "H", "W"), help="odd sizes exercise padding and clamping")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--backends", default="torch,jax,tensorflow")
    parser.add_argument("--jobs", type=int, default=3,
                        help="backend workers at once (each holds the model; default 3)")
    parser.add_argument("--junit", metavar="PATH", help="write JUnit XML here")
    parser.add_argument("--summary", metavar="PATH", help="write a Markdown summary here")
    args = parser.parse_args()
    backends = args.backends.split(",")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from "
                     f"{', '.join(VARIANTS)}")
    rows, results, failed = [], [], False
    for variant in args.variants.split(","):
        config = os.path.join(ROOT, "configs", "recognition", "swin", VARIANTS[variant] + ".py")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="videoswin-ci-") as out:
            try:
                manifest = convert(config, output_dir=out, backends=backends,
                                   parity_clip=tuple(args.clip), random_weights=0, quiet=True,
                                   parity_jobs=args.jobs)
            except Exception as err:  # report every variant, then fail
                print(f"{variant}: conversion failed: {err}", file=sys.stderr)
                rows.append((variant, {b: None for b in backends}, "error", 0.0))
                results.append(reports.result(variant, error=f"conversion failed: {err}",
                                              backends=backends))
                failed = True
                continue
        parity = manifest["parity"]
        diffs = {b: parity["backends"][b]["max_abs_logits"] for b in backends}
        failed |= parity["status"] != "passed"
        rows.append((variant, diffs, parity["status"], time.perf_counter() - start))
        results.append(reports.result(variant, report=manifest.report, backends=backends,
                                      seconds=rows[-1][3]))
        print(f"{variant}: {parity['status']} in {rows[-1][3]:.0f}s", flush=True)
    clip = "x".join(map(str, args.clip))
    print(f"\nmax |logits diff| vs mmaction2 (or the PyTorch reference), 2 random clips "
          f"{clip}, float32, tolerance 1e-4")
    print("| variant | " + " | ".join(backends) + " | result | seconds |")
    print("|---|" + "---|" * len(backends) + "---|---|")
    for variant, diffs, status, seconds in rows:
        cells = ["error" if d is None else f"{d:.2e}" for d in diffs.values()]
        print(f"| {variant} | " + " | ".join(cells) + f" | {status} | {seconds:.0f} |")
    try:
        written = reports.write(results, junit=args.junit, summary=args.summary,
                                title=f"Parity report ({clip}, synthetic checkpoints)")
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
