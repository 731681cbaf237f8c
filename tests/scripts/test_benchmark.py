"""scripts/benchmark.py: allocator settings, and targets compared per setting."""

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
