"""scripts/benchmark.py: allocator settings, targets per setting, machine classes, the
yardstick, and one real run of the export, runtime and bfloat16 workers."""

import json
import subprocess
import sys

import pytest

from scripts import benchmark

pytestmark = pytest.mark.backend_independent

# A child that allocates a 64 MiB block (above glibc's largest mmap threshold, 32 MiB) and
# reports how many blocks glibc is serving with mmap at that moment.
_PROBE = """
import ctypes, json
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
libc.malloc.restype = ctypes.c_void_p
libc.mallinfo2.restype = MallInfo2
block = libc.malloc(64 << 20)
print(json.dumps({"hblks": libc.mallinfo2().hblks}))
libc.free(ctypes.c_void_p(block))
"""


def _mmapped_blocks(malloc):
    env = benchmark._child_env(malloc=malloc)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["hblks"]


def test_heap_setting_keeps_large_blocks_out_of_mmap():
    try:
        default = _mmapped_blocks("default")
    except (subprocess.CalledProcessError, OSError) as err:   # no glibc, or no mallinfo2
        pytest.skip(f"glibc with mallinfo2 needed to observe the allocator: {err}")
    assert default >= 1          # glibc's default: the 64 MiB block is an mmap
    assert _mmapped_blocks("heap") == 0


def test_default_setting_drops_inherited_malloc_variables(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")
    env = benchmark._child_env("jax", malloc="default")
    assert "MALLOC_MMAP_MAX_" not in env and env["KERAS_BACKEND"] == "jax"
    assert benchmark._child_env(malloc="heap")["MALLOC_MMAP_MAX_"] == "0"


def test_unknown_malloc_setting_is_refused(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--malloc", "default,jemalloc"])
    assert "--malloc ['jemalloc']" in capsys.readouterr().err
    assert benchmark.parse_args(["--malloc", "heap,default"]).malloc == ["heap", "default"]


def _row(impl, malloc, median_s):
    return dict(impl=impl, malloc=malloc, model="tiny", clip=[32, 224, 224], batch=1,
                median_s=median_s, gflops=175.5 / median_s)


def test_targets_compare_each_setting_with_mmaction2_under_the_same_one():
    rows = [_row("mmaction2", "default", 4.0), _row("torch", "default", 2.5),
            _row("torch-compiled", "default", 2.0),
            _row("mmaction2", "heap", 2.5), _row("torch", "heap", 2.25),
            _row("torch-compiled", "heap", 1.75)]
    lines = benchmark.targets(rows, peak=130.0)
    assert lines == [
        "- tiny [default malloc]: keras-torch 1.60x mmaction2 (target >= 1.4x): met",
        "- tiny [default malloc]: fastest backend keras-torch-compiled 2.00x (target >= 1.8x): met",
        "- tiny [default malloc]: keras-torch-compiled at 68% of matmul GFLOP/s (target >= 75%): MISSED",
        "- tiny [heap malloc]: keras-torch 1.11x mmaction2 (target >= 1.4x): MISSED",
        "- tiny [heap malloc]: fastest backend keras-torch-compiled 1.43x (target >= 1.8x): MISSED",
        "- tiny [heap malloc]: keras-torch-compiled at 77% of matmul GFLOP/s (target >= 75%): met",
    ]
    # A run under one setting alone reads as before, without a tag.
    assert benchmark.targets(rows[:3], peak=130.0)[0].startswith("- tiny: keras-torch 1.60x")


def test_matmul_summary_keeps_a_median_per_setting():
    runs = [{"n": 2048, "gflops": g, "best_gflops": g + 1, "malloc": m}
            for g, m in ((100.0, "default"), (140.0, "heap"), (120.0, "default"),
                         (130.0, "heap"), (110.0, "default"))]
    summary = benchmark.summarise_matmul(runs)
    assert summary["gflops"] == 120.0 and summary["count"] == 5
    assert summary["by_malloc"] == {"default": 110.0, "heap": 135.0}


# ------------------------------------------------------------ machine class and sections

_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse2 avx fma avx2 bmi2 sha_ni

processor\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse2 avx fma avx2 bmi2 sha_ni
"""
_SAPPHIRE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: sse2 avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""


def test_cpu_info_reads_model_isa_flags_and_class():
    epyc = benchmark.cpu_info(_EPYC)
    assert epyc["model"] == "AMD EPYC 7B13 64-Core Processor"
    assert epyc["flags"] == ["avx2", "fma"]
    assert {"avx512f", "avx512_bf16", "amx_bf16"} <= set(epyc["absent"])
    assert "asimd" not in epyc["absent"]             # x86: the Arm flags are not missing
    assert epyc["class"] == "AMD EPYC, AVX2"
    xeon = benchmark.cpu_info(_SAPPHIRE)
    assert xeon["class"] == "Intel Xeon, AVX-512 + AVX512_BF16 + AMX"
    assert "avx512_bf16" in xeon["flags"] and "avx512_bf16" not in xeon["absent"]


def test_machine_class_of_other_cpus():
    zen4 = {"avx2", "avx512f", "avx512_bf16"}
    assert benchmark.machine_class("AMD EPYC 9654 96-Core Processor", zen4) == \
        "AMD EPYC, AVX-512 + AVX512_BF16"
    assert benchmark.machine_class("Intel(R) Core(TM) i7-6700 CPU @ 3.40GHz", {"sse2"}) == \
        "Intel Core, no AVX2"
    assert benchmark.machine_class("AMD EPYC", {"avx2"}) == "AMD EPYC, AVX2"
    assert benchmark.machine_class("aarch64", {"asimd", "sve", "bf16"}) == \
        "aarch64, NEON + SVE + BF16"


def test_write_out_replaces_its_class_section_or_appends_one(tmp_path):
    path = str(tmp_path / "BENCH.md")
    with open(path, "w") as handle:
        handle.write("# Benchmarks\n\n## Results\n\n"
                     "<!-- benchmark:begin AMD EPYC, AVX2 -->\nold epyc\n"
                     "<!-- benchmark:end AMD EPYC, AVX2 -->\n\n## What changed\n\nprose\n")
    benchmark.write_out(path, "new xeon\n", "Intel Xeon, AVX-512 + AVX512_BF16 + AMX")
    benchmark.write_out(path, "new epyc\n", "AMD EPYC, AVX2")
    with open(path) as handle:
        text = handle.read()
    assert text == ("# Benchmarks\n\n## Results\n\n"
                    "<!-- benchmark:begin AMD EPYC, AVX2 -->\nnew epyc\n"
                    "<!-- benchmark:end AMD EPYC, AVX2 -->\n\n"
                    "<!-- benchmark:begin Intel Xeon, AVX-512 + AVX512_BF16 + AMX -->\nnew xeon\n"
                    "<!-- benchmark:end Intel Xeon, AVX-512 + AVX512_BF16 + AMX -->\n\n"
                    "## What changed\n\nprose\n")
    fresh = str(tmp_path / "fresh.md")
    benchmark.write_out(fresh, "only\n", "AMD EPYC, AVX2")
    with open(fresh) as handle:
        assert handle.read() == ("<!-- benchmark:begin AMD EPYC, AVX2 -->\nonly\n"
                                 "<!-- benchmark:end AMD EPYC, AVX2 -->\n")


def test_the_recorded_results_section_carries_its_machine_class():
    import os

    with open(os.path.join(benchmark.ROOT, "BENCHMARKS.md")) as handle:
        text = handle.read()
    assert benchmark.BEGIN.format("AMD EPYC, AVX2") in text
    assert benchmark.END.format("AMD EPYC, AVX2") in text
    assert "<!-- benchmark:begin -->" not in text


# ------------------------------------------------------------------ yardstick and targets

def test_yardstick_summary_takes_the_best_median_over_libraries_sizes_and_settings():
    def run(lib, malloc, cells):
        return {"lib": lib, "malloc": malloc, "cells": [
            dict(lib=lib, dtype=d, n=n, gflops=g) if g else
            dict(lib=lib, dtype=d, n=n, skipped="one product ~20 s") for d, n, g in cells]}

    results = [run("torch", "default", [("float32", 1024, 100.0), ("float32", 2048, 140.0),
                                        ("bfloat16", 1024, 1.0), ("bfloat16", 2048, None)]),
               run("torch", "default", [("float32", 1024, 110.0), ("float32", 2048, 120.0),
                                        ("bfloat16", 1024, 1.2), ("bfloat16", 2048, None)]),
               run("jax", "heap", [("float32", 2048, 125.0), ("bfloat16", 2048, 60.0)]),
               {"lib": "tensorflow", "malloc": "heap", "error": "exit 1: boom"}]
    summary = benchmark.summarise_yardstick(results)
    assert summary["best"]["float32"] == dict(gflops=130.0, lib="torch", n=2048,
                                              malloc="default")
    assert summary["best"]["bfloat16"] == dict(gflops=60.0, lib="jax", n=2048, malloc="heap")
    cells = {(c["lib"], c["dtype"], c["n"]): c for c in summary["cells"]}
    assert cells["torch", "float32", 1024]["gflops"] == {"default": 105.0}
    assert cells["torch", "bfloat16", 2048]["skipped"] == {"default": "one product ~20 s"}
    assert summary["errors"] == ["tensorflow (heap): exit 1: boom"]
    assert "torch-bf16 was left out" in benchmark._torch_bf16_slow(summary)
    lines = "\n".join(benchmark.yardstick_lines(summary, ["default", "heap"]))
    assert "| torch | bfloat16 | 2048 | one product ~20 s | - |" in lines
    assert "best float32: **130.0 GFLOP/s** (torch, n=2048, default malloc)" in lines


def _rows(malloc, **medians):
    return [_row(impl.replace("_", "-"), malloc, s) for impl, s in medians.items()]


def test_issue_targets_come_from_the_rows():
    rows = (_rows("default", mmaction2=4.0, torch=2.5, torch_compiled=2.0, jax=3.0,
                  onnxruntime=2.4, openvino=1.6, jax_bf16=3.2)
            + _rows("heap", mmaction2=2.4, torch=2.0, torch_compiled=1.8, jax=3.0,
                    onnxruntime=1.6, jax_bf16=3.0))
    best = {"float32": {"gflops": 130.0}, "bfloat16": {"gflops": 60.0}}
    found = benchmark.issue_targets(rows, best, flags=["avx2", "fma"])
    got = [(t["issue"], t["malloc"], t["impl"], round(t["value"], 2), t["met"]) for t in found]
    assert got == [
        (17, "default", "openvino", 2.5, True),             # 4.0 / 1.6
        (17, "default", "openvino", 0.84, True),            # 175.5 / 1.6 / 130
        (22, "default", "openvino", 0.84, True),
        (22, "default", "jax-bf16", 1.25, False),
        (17, "heap", "onnxruntime", 1.5, True),
        (17, "heap", "onnxruntime", 0.84, True),
        (22, "heap", "onnxruntime", 0.84, True),
        (22, "heap", "torch", 1.2, False),
        (22, "heap", "torch-compiled", 1.33, True),
        (22, "heap", "jax", 0.8, False),
        (22, "heap", "jax-bf16", 0.8, False),
    ]
    assert found[3]["note"] == "needs AVX512_BF16; this CPU has none"
    assert not benchmark.issue_targets(rows, best, ["avx512_bf16"])[3]["note"]
    table = benchmark.issue_target_lines(found)
    assert "| 17 | fastest float32 path >= 1.8x mmaction2 | tiny | default | openvino 2.50x " \
           "| met |" in table
    assert "| 22 | fastest bfloat16 path >= 4.0x mmaction2 float32 | tiny | default | " \
           "keras-jax-bf16 1.25x | **missed** (needs AVX512_BF16; this CPU has none) |" in table
    # Without the yardstick, the matmul shares are left out; off the target clip, nothing.
    assert len(benchmark.issue_targets(rows, {}, [])) == 7
    other = [dict(r, clip=[8, 112, 112]) for r in rows]
    assert benchmark.issue_targets(other, best) == []
    assert "not covered" in benchmark.issue_target_lines([])[0]


def test_backends_default_to_all_and_are_checked(capsys):
    args = benchmark.parse_args([])
    assert args.impls == list(benchmark.IMPLS) and args.default_backends
    args = benchmark.parse_args(["--backends", "openvino,mmaction2", "--matmul-libs", "none"])
    assert args.impls == ["mmaction2", "openvino"] and not args.default_backends
    assert args.matmul_libs == []
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--profile", "jax"])
    assert "cannot --profile ['jax']" in capsys.readouterr().err


# ---------------------------------------------------------------------- one real run

def test_new_workers_run_on_a_micro_model(tmp_path, capsys):
    """The yardstick, both exports and their runtimes, and a bfloat16 Keras path, for real
    on a micro model at a micro clip (about a minute and a half on 2 busy cores)."""
    import importlib.util

    absent = [m for m in ("onnxruntime", "openvino", "onnxscript", "tensorflow", "jax")
              if importlib.util.find_spec(m) is None]
    if absent:
        pytest.skip(f"needs {', '.join(absent)} (the export extra)")
    out, raw = tmp_path / "BENCH.md", tmp_path / "bench.json"
    code = benchmark.main(["--models", "micro", "--clips", "4x32x32", "--batch", "1",
                           "--backends", "onnxruntime,openvino,jax-bf16", "--repeats", "2",
                           "--conversion", "none", "--matmul-libs", "torch,jax",
                           "--matmul-sizes", "64", "--matmul-seconds", "0.05",
                           "--drift-size", "0", "--out", str(out), "--json", str(raw)])
    capsys.readouterr()
    assert code == 0
    result = json.loads(raw.read_text())
    rows = {r["impl"]: r for r in result["forward"]}
    assert set(rows) == {"onnxruntime", "openvino", "jax-bf16"}
    for row in rows.values():
        assert row["median_s"] > 0 and row["gflops"] > 0 and row["out_shape"] == [1, 400]
    assert not rows["onnxruntime"]["keras_imported"] and not rows["openvino"]["keras_imported"]
    exports = {e["format"]: e for e in result["exports"]}
    assert set(exports) == {"onnx", "openvino"}
    for record in exports.values():
        assert record["process_s"] > 0 and record["rss_peak_mb"] > 0 and record["size_mb"] > 0
    best = result["yardstick"]["best"]
    assert best["float32"]["gflops"] > 0 and best["bfloat16"]["gflops"] > 0
    cells = result["yardstick"]["cells"]
    assert {(c["lib"], c["dtype"]) for c in cells if c["gflops"].get("default", 0) > 0} == {
        (lib, dtype) for lib in ("torch", "jax") for dtype in ("float32", "bfloat16")}
    text = out.read_text()
    cls = result["meta"]["cpu"]["class"]
    assert text.startswith(benchmark.BEGIN.format(cls) + f"\n### {cls}\n")
    assert "| micro | 4x32x32 | 1 | onnx |" in text and "keras-jax-bf16" in text
