#!/usr/bin/env python
"""Forward-pass and conversion benchmark of the Keras Video Swin against mmaction2.

Every measurement runs in its own subprocess, pinned to `--threads` CPUs (and torch set to
as many threads), so that KERAS_BACKEND is chosen before keras is imported and each peak
RSS belongs to one model. Implementations:

- `mmaction2`: mmaction2's `SwinTransformer3D` (+ an I3D head), swin.py loaded by file path;
- `reference`: the project's PyTorch reference, `converter.reference.VideoSwinReference`;
- `torch`, `jax`, `tensorflow`: the Keras `VideoSwinClassifier` on that backend, called
  under `torch.no_grad()`, through `jax.jit` of `stateless_call`, through
  `tf.function(jit_compile=True)`;
- `torch-compiled`: the same Keras model on torch, exported with `torch.export`
  (non-strict) and compiled with `torch.compile` (inductor): README's recipe;
- `onnxruntime`, `openvino`: the same classifier exported by the project's own route
  (`converter.export_worker`, as `videoswin-export` builds it: ONNX from the torch backend,
  OpenVINO IR from the TensorFlow backend's SavedModel), once per model, clip and batch, in
  its own pinned process (export time and peak RSS reported), then run by onnxruntime (CPU
  provider, `--threads` intra-op threads) or OpenVINO (CPU, f32, `--threads`, latency hint);
- `torch-bf16`, `jax-bf16`, `tensorflow-bf16`: the Keras classifier with its backbone under
  the "mixed_bfloat16" policy (as the parity worker builds it), run like their float32
  counterparts.

Latency is the median (and minimum) over `--repeats` timed calls after `--warmup` untimed
ones; compile time shows as the first call. GFLOP/s = 2 x MACs (analytic, `videoswin.flops`)
/ latency, set against the yardstick: the best float32 (float32 paths) or bfloat16 (bfloat16
paths) matmul rate of torch and XLA (JAX, TensorFlow) at several sizes, measured under each
allocator setting at the start and at the end of the run. A torch float32 matmul before
every forward worker tracks the machine's drift. The CPU model, its ISA flags and a machine
class ("AMD EPYC, AVX2") head the report. A conversion section times `videoswin-convert
--backends none` on a random official-layout checkpoint against a bare `torch.load` + Keras
`save_weights`. With `--malloc default,heap` every implementation also runs with glibc
keeping freed memory (see MALLOC), each compared with mmaction2 under the same setting.

    python scripts/benchmark.py --quick                  # tiny, 8x112x112, batch 1
    python scripts/benchmark.py --out BENCHMARKS.md      # full: tiny and base, 32/16x224x224

With `--out FILE`, the results replace the section of this machine's class in FILE (between
`<!-- benchmark:begin CLASS -->` and `<!-- benchmark:end CLASS -->`), or are appended as a
new section after the last one (or at the end of the file).
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# Nothing heavy is imported at module level: workers pin CPUs and choose a backend first.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ("mmaction2", "reference", "torch", "torch-compiled", "jax", "tensorflow",
         "onnxruntime", "openvino", "torch-bf16", "jax-bf16", "tensorflow-bf16")
# The Keras model, by implementation: the backend it runs on.
KERAS_IMPLS = {"torch": "torch", "torch-compiled": "torch", "jax": "jax",
               "tensorflow": "tensorflow", "torch-bf16": "torch", "jax-bf16": "jax",
               "tensorflow-bf16": "tensorflow"}
BF16_IMPLS = ("torch-bf16", "jax-bf16", "tensorflow-bf16")
KERAS_FP32 = tuple(i for i in KERAS_IMPLS if i not in BF16_IMPLS)
# Serving runtimes: (export format, Keras backend the project's export route builds it on).
RUNTIME_IMPLS = {"onnxruntime": ("onnx", "torch"), "openvino": ("openvino", "tensorflow")}
FP32_PATHS = KERAS_FP32 + tuple(RUNTIME_IMPLS)   # every float32 path but the two oracles
TORCH_IMPLS = ("mmaction2", "reference") + tuple(i for i, b in KERAS_IMPLS.items()
                                                 if b == "torch")
PROFILABLE = TORCH_IMPLS + tuple(RUNTIME_IMPLS)
BASELINE = "mmaction2"
NUM_CLASSES = 400
# A smoke-test architecture besides the published presets (`--models micro`).
BENCH_ARCHS = {"micro": dict(embed_dim=16, depths=(2, 1), num_heads=(1, 2),
                             window_size=(2, 3, 3))}
# One results section per machine class: <!-- benchmark:begin CLASS --> ... end CLASS.
BEGIN, END = "<!-- benchmark:begin {} -->", "<!-- benchmark:end {} -->"
_ANY_END = re.compile(r"<!-- benchmark:end\b[^>]*-->")
CONVERT_CONFIGS = {
    "tiny": "swin_tiny_patch244_window877_kinetics400_1k",
    "base": "swin_base_patch244_window877_kinetics400_22k",
}
# The project's speed and conversion goals (BENCHMARKS.md, "Goals"), on Swin-T and Swin-B,
# 32x224x224, batch 1.
TARGET_CLIP, TARGET_BATCH = (32, 224, 224), 1
TARGET_TORCH, TARGET_BEST, TARGET_MATMUL = 1.4, 1.8, 0.75
TARGET_CONVERT_TIME, TARGET_CONVERT_RSS = 1.5, 3.0
# Tracker targets, same clip and batch, each against mmaction2 (float32) under the same
# allocator setting. Issue 17: the fastest float32 path (ONNX Runtime and OpenVINO included)
# at these speed-ups per setting, and at this share of the best float32 matmul.
ISSUE17_SPEEDUP = {"default": 1.8, "heap": 1.3}
ISSUE17_MATMUL = 0.80
# Issue 22: the fastest float32 path at this share of the best float32 matmul; every Keras
# float32 backend this fast under "heap"; the fastest bfloat16 path this fast (on a CPU with
# AVX512_BF16).
ISSUE22_MATMUL = 0.60
ISSUE22_KERAS_HEAP = 1.3
ISSUE22_BF16 = 4.0
# Matmul yardstick: libraries, sizes, dtypes; seconds per measurement; sizes whose single
# product would take longer than MATMUL_MAX_S (estimated from the size below) are skipped.
MATMUL_LIBS = ("torch", "jax", "tensorflow")
MATMUL_SIZES = (1024, 2048, 4096)
MATMUL_DTYPES = ("float32", "bfloat16")
MATMUL_MAX_S = 10.0
# ISA flags of /proc/cpuinfo reported in the header (x86; aarch64 lists asimd, sve, bf16).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "bf16")
# Allocator settings a worker can run under (`--malloc`). glibc serves blocks above its mmap
# threshold (at most 32 MiB) with mmap and unmaps them on free, so a forward pass whose
# activations are larger (Swin at 224x224: 19 to 77 MiB each) page-faults them in again on
# every call. "heap" keeps freed memory in the heap instead: the process's peak RSS is held.
MALLOC = {
    "default": {},
    "heap": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)},
}


# ----------------------------------------------------------------------------- workers

def _pin(threads):
    """Use the first `threads` CPUs of this process (before any thread pool starts)."""
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return cpus


def _rss_mb():
    """Peak RSS of this process in MiB. VmHWM, because Linux carries the parent's RSS at
    fork into the child's ru_maxrss (through exec); getrusage where /proc is missing."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _arch(model):
    """Settings of a preset: a published variant, or one of BENCH_ARCHS."""
    if model in BENCH_ARCHS:
        return dict(BENCH_ARCHS[model])
    # videoswin.core imports no keras: the mmaction2 and reference workers do not pay for it.
    sys.path.insert(0, ROOT)
    from videoswin.core.archs import arch

    return arch(model)


def _load_mmaction_swin():
    """mmaction2's swin.py, loaded by file path (`converter.upstream`)."""
    sys.path.insert(0, ROOT)
    from converter.upstream import swin_module

    return swin_module()


def _torch_runner(net, x):
    import torch

    def run():
        with torch.no_grad():
            return net(x)
    return run


def _keras_classifier(model, clip, bf16=False):
    """The Keras classifier with random weights; under bf16 its backbone computes in
    "mixed_bfloat16" (the head stays float32), as `converter.parity_worker` builds it."""
    from videoswin.model import VideoSwinBackbone, VideoSwinClassifier

    backbone = VideoSwinBackbone(**_arch(model), input_shape=tuple(clip) + (3,),
                                 dtype="mixed_bfloat16" if bf16 else None)
    return VideoSwinClassifier(backbone, NUM_CLASSES)


def _ort_session(path, threads, profile_prefix=None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _ov_compiled(path, threads, profile=False):
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
              "PERFORMANCE_HINT": "LATENCY"}
    if profile:
        config["PERF_COUNT"] = True
    return ov.Core().compile_model(path, "CPU", config)


def _build(impl, model, clip, batch, seed=0, path=None, threads=1):
    """A callable running one forward pass to completion. `path`: the exported file, for
    the runtimes (onnxruntime, openvino)."""
    import numpy as np

    a = _arch(model)
    rng = np.random.default_rng(seed)
    clip_nthwc = rng.standard_normal((batch,) + tuple(clip) + (3,), dtype=np.float32)
    if impl == "mmaction2":
        import warnings

        import torch

        swin = _load_mmaction_swin()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            backbone = swin.SwinTransformer3D(
                arch=dict(embed_dims=a["embed_dim"], depths=list(a["depths"]),
                          num_heads=list(a["num_heads"])),
                window_size=tuple(a.get("window_size", (8, 7, 7))),
                out_indices=(len(a["depths"]) - 1,), pretrained=None, pretrained2d=False,
                drop_path_rate=0.0)
        dim = a["embed_dim"] * 2 ** (len(a["depths"]) - 1)
        fc = torch.nn.Linear(dim, NUM_CLASSES)

        class Net(torch.nn.Module):   # backbone + I3DHead at inference
            def __init__(self):
                super().__init__()
                self.backbone, self.fc_cls = backbone, fc

            def forward(self, x):
                return self.fc_cls(self.backbone(x).mean(dim=(2, 3, 4)))

        net = Net()
        net.eval()        # SwinTransformer3D.train() returns None: no chaining
        x = torch.from_numpy(np.ascontiguousarray(clip_nthwc.transpose(0, 4, 1, 2, 3)))
        return _torch_runner(net, x)
    if impl == "reference":
        import torch

        from converter.reference import VideoSwinReference

        net = VideoSwinReference(**a, num_classes=NUM_CLASSES).eval()
        return _torch_runner(net, torch.from_numpy(clip_nthwc))
    if impl == "onnxruntime":
        session = _ort_session(path, threads)
        return lambda: session.run(["logits"], {"video": clip_nthwc})[0]
    if impl == "openvino":
        request = _ov_compiled(path, threads).create_infer_request()
        return lambda: request.infer({0: clip_nthwc})[0]

    import keras  # noqa: F401  (KERAS_BACKEND was set by the parent)

    net = _keras_classifier(model, clip, bf16=impl in BF16_IMPLS)
    if impl in ("torch", "torch-compiled", "torch-bf16"):
        import torch

        x = torch.from_numpy(clip_nthwc)
        forward = lambda x: net(x, training=False)  # noqa: E731
        if impl == "torch-compiled":
            with torch.no_grad():
                forward = torch.compile(torch.export.export(net, (x,), strict=False).module())

        def run():
            with torch.no_grad():
                return forward(x)
        return run
    if impl in ("jax", "jax-bf16"):
        import jax

        trainable = [v.value for v in net.trainable_variables]
        non_trainable = [v.value for v in net.non_trainable_variables]
        forward = jax.jit(lambda tv, ntv, x: net.stateless_call(tv, ntv, x, training=False)[0])
        x = jax.numpy.asarray(clip_nthwc)
        return lambda: forward(trainable, non_trainable, x).block_until_ready()
    if impl in ("tensorflow", "tensorflow-bf16"):
        import tensorflow as tf

        forward = tf.function(lambda x: net(x, training=False), jit_compile=True)
        x = tf.constant(clip_nthwc)
        return lambda: forward(x).numpy()
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLS}")


def _shape(out):
    return list(getattr(out, "shape", ()))


def worker_forward(job):
    """Time one (impl, model, clip, batch); returns a result dict."""
    cpus = _pin(job["threads"])
    if job["impl"] in TORCH_IMPLS:
        import torch

        torch.set_num_threads(job["threads"])
    t0 = time.perf_counter()
    run = _build(job["impl"], job["model"], job["clip"], job["batch"], path=job.get("path"),
                 threads=job["threads"])
    build_s = time.perf_counter() - t0
    rss_built = _rss_mb()
    t0 = time.perf_counter()
    out = run()
    first_s = time.perf_counter() - t0
    for _ in range(job["warmup"] - 1):
        run()
    times = []
    for _ in range(job["repeats"]):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"build_s": build_s, "first_s": first_s, "times": times,
            "median_s": statistics.median(times), "min_s": min(times),
            "rss_built_mb": rss_built, "rss_peak_mb": _rss_mb(), "cpus": cpus,
            "out_shape": _shape(out), "keras_imported": "keras" in sys.modules}


def worker_matmul(job):
    """Float32 torch matmul throughput on the pinned CPUs (GFLOP/s, median)."""
    cpus = _pin(job["threads"])
    import torch

    torch.set_num_threads(job["threads"])
    n = job.get("n", 2048)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(job.get("repeats", 20)):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"n": n, "median_s": median, "gflops": 2 * n ** 3 / median / 1e9,
            "best_gflops": 2 * n ** 3 / min(times) / 1e9, "cpus": cpus}


def _matmul_step(lib, dtype, n):
    """A callable computing one n x n product of `dtype` in `lib` to completion."""
    if lib == "torch":
        import torch

        a, b = (torch.randn(n, n).to(getattr(torch, dtype)) for _ in range(2))
        c = torch.empty_like(a)
        return lambda: torch.mm(a, b, out=c)
    if lib == "jax":
        import jax

        a, b = (jax.random.normal(jax.random.key(i), (n, n), dtype) for i in range(2))
        product = jax.jit(jax.numpy.matmul)
        return lambda: product(a, b).block_until_ready()
    if lib == "tensorflow":
        import tensorflow as tf

        a, b = (tf.cast(tf.random.normal((n, n), seed=i), dtype) for i in range(2))
        product = tf.function(tf.linalg.matmul, jit_compile=True)
        return lambda: product(a, b).numpy()
    raise ValueError(f"unknown matmul library {lib!r}; expected one of {MATMUL_LIBS}")


def worker_yardstick(job):
    """Matmul GFLOP/s of one library (torch, or XLA through jax or tensorflow) for each dtype
    and square size, on the pinned CPUs: after two untimed products (the first compiles),
    as many timed ones as fit in `seconds` (at least 3); the median counts. A size whose
    single product would take over `max_s` (from the size below it, at n^3) is skipped."""
    cpus = _pin(job["threads"])
    if job["lib"] == "torch":
        import torch

        torch.set_num_threads(job["threads"])
    cells = []
    for dtype in job["dtypes"]:
        below = None
        for n in sorted(job["sizes"]):
            cell = dict(lib=job["lib"], dtype=dtype, n=n)
            cells.append(cell)
            estimate = below[1] * (n / below[0]) ** 3 if below else 0.0
            if estimate > job["max_s"]:
                cell["skipped"] = f"one product ~{estimate:.0f} s"
                continue
            step = _matmul_step(job["lib"], dtype, n)
            step()
            t0 = time.perf_counter()
            step()
            single = time.perf_counter() - t0
            times = []
            for _ in range(max(3, min(200, int(job["seconds"] / max(single, 1e-6))))):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            cell.update(median_s=median, gflops=2 * n ** 3 / median / 1e9, repeats=len(times))
            below = (n, median)
    return {"lib": job["lib"], "cells": cells, "cpus": cpus}


def worker_keras_model(job):
    """The random-weight classifier (seed 0) saved as a `.keras` file, for the exports."""
    _pin(job["threads"])
    import keras

    keras.utils.set_random_seed(0)
    net = _keras_classifier(job["model"], job["clip"])
    net.save(job["path"])
    return {"path": job["path"], "rss_peak_mb": _rss_mb()}


def worker_export(job):
    """One export by the project's route (`converter.export_worker.main`, the build step of
    `videoswin-export`), on the pinned CPUs; its wall time includes the imports."""
    _pin(job["threads"])
    t0 = time.perf_counter()
    from converter import export_worker
    from converter.export import worker_argv

    info = os.path.join(job["scratch"], "info.json")
    export_worker.main(worker_argv(job["keras"], job["stem"], job["out"], job["scratch"], info,
                                   [job["format"]], job["clip"], job["batch"]))
    wall = time.perf_counter() - t0
    with open(info, encoding="utf-8") as handle:
        info = json.load(handle)
    return {"export_s": wall, "route": info["routes"].get(job["format"], "?"),
            "notes": info["notes"], "rss_peak_mb": _rss_mb()}


def worker_bare_save(job):
    """The conversion floor: torch.load of the checkpoint + a Keras model's save_weights.

    The name mapping is skipped: the freshly initialised weights are saved.
    """
    _pin(job["threads"])
    import torch

    torch.set_num_threads(job["threads"])
    from converter.config import load_spec
    from videoswin.model import VideoSwinBackbone, VideoSwinClassifier

    spec = load_spec(job["config"])
    state = torch.load(job["checkpoint"], map_location="cpu", weights_only=True)
    backbone = VideoSwinBackbone(**spec.backbone_kwargs())
    model = VideoSwinClassifier(backbone, spec.num_classes)
    model.save_weights(os.path.join(job["output_dir"], "bare.weights.h5"))
    return {"tensors": len(state["state_dict"]), "rss_peak_mb": _rss_mb()}


def worker_checkpoint(job):
    """A random official-layout checkpoint for a config (kept out of the parent, whose RSS
    every child's ru_maxrss would otherwise start from)."""
    from converter.config import load_spec
    from converter.synthetic import random_checkpoint

    spec = load_spec(job["config"])
    path = os.path.join(job["dir"], f"{spec.name}.pth")
    random_checkpoint(spec, 0, path)
    return {"name": spec.name, "path": path}


def worker_imports(job):
    """What every conversion process pays before any work: the imports alone."""
    _pin(job["threads"])
    import h5py  # noqa: F401
    import keras  # noqa: F401
    import torch  # noqa: F401

    import converter.config  # noqa: F401
    import converter.synthetic  # noqa: F401
    import videoswin  # noqa: F401

    return {"rss_peak_mb": _rss_mb()}


def worker_profile(job):
    """Where one forward's time goes: torch.profiler's table (torch-based implementations),
    onnxruntime's node profile or OpenVINO's per-node counters (the runtimes), by op type."""
    _pin(job["threads"])
    if job["impl"] in RUNTIME_IMPLS:
        return _profile_runtime(job)
    import torch

    torch.set_num_threads(job["threads"])
    run = _build(job["impl"], job["model"], job["clip"], job["batch"])
    run()
    run()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=job["rows"])
    return {"wall_s": wall, "table": table}


def _profile_runtime(job):
    """Per-op-type time of the third forward of an export in its runtime."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal(
        (job["batch"], *job["clip"], 3), dtype=np.float32)
    spent = {}                                    # (op type, kernel) -> [calls, seconds]
    if job["impl"] == "onnxruntime":
        with tempfile.TemporaryDirectory(prefix="videoswin-ort-profile-") as tmp:
            session = _ort_session(job["path"], job["threads"], os.path.join(tmp, "ort"))
            for _ in range(3):
                session.run(["logits"], {"video": x})
            with open(session.end_profiling()) as handle:
                events = json.load(handle)
        last = max((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
        wall = last["dur"] / 1e6
        for e in events:
            if (e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                    and last["ts"] <= e["ts"] <= last["ts"] + last["dur"]):
                args = e.get("args", {})
                entry = spent.setdefault((args.get("op_name", "?"), args.get("provider", "")),
                                         [0, 0.0])
                entry[0] += 1
                entry[1] += e["dur"] / 1e6
    else:
        request = _ov_compiled(job["path"], job["threads"], profile=True).create_infer_request()
        for _ in range(3):
            t0 = time.perf_counter()
            request.infer({0: x})
            wall = time.perf_counter() - t0
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                entry = spent.setdefault((info.node_type, info.exec_type), [0, 0.0])
                entry[0] += 1
                entry[1] += info.real_time.total_seconds()
    total = sum(s for _, s in spent.values()) or 1.0
    lines = [f"{'op type':<28} {'kernel':<28} {'calls':>6} {'ms':>10} {'share':>7}"]
    for (op, kernel), (calls, seconds) in sorted(spent.items(), key=lambda kv: -kv[1][1])[
            :job["rows"]]:
        lines.append(f"{op[:28]:<28} {kernel[:28]:<28} {calls:>6} {1e3 * seconds:>10.1f} "
                     f"{seconds / total:>7.1%}")
    lines.append(f"{'total of the ops':<57} {sum(c for c, _ in spent.values()):>6} "
                 f"{1e3 * total:>10.1f}")
    return {"wall_s": wall, "table": "\n".join(lines)}


WORKERS = {"forward": worker_forward, "matmul": worker_matmul, "bare_save": worker_bare_save,
           "imports": worker_imports, "checkpoint": worker_checkpoint,
           "profile": worker_profile, "yardstick": worker_yardstick,
           "keras_model": worker_keras_model, "export": worker_export}


# ------------------------------------------------------------------------------ parent

def _child_env(backend=None, malloc="default"):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
        filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    if backend:
        env["KERAS_BACKEND"] = backend
    for name in {k for setting in MALLOC.values() for k in setting}:
        env.pop(name, None)   # "default" means glibc's own defaults, whatever the shell had
    env.update(MALLOC[malloc])
    return env


def _run_measured(cmd, env, timeout):
    """Run `cmd` and return (returncode, stdout, stderr, wall s, peak RSS MiB) of that child.

    The child's ru_maxrss starts from this (small) parent's RSS at fork: keep the parent light.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err, text=True)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                status = None
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        code = None if status is None else os.waitstatus_to_exitcode(status)
        proc.returncode = code if code is not None else -9  # reaped: Popen must not wait
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), wall, usage.ru_maxrss / 1024.0


def run_worker(kind, job, backend=None, timeout=3600, malloc="default"):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(job)]
    code, out, err, wall, rss = _run_measured(cmd, _child_env(backend, malloc), timeout)
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result.update(process_s=wall, process_rss_mb=rss)
            return result
    tail = (err or "").strip().splitlines()[-3:]
    return {"error": f"exit {code}: " + " | ".join(tail)}


def _macs(model, clip):
    from videoswin.core.flops import count_macs

    return count_macs(tuple(clip), **_arch(model), num_classes=NUM_CLASSES).total


def _label(impl, malloc="default"):
    name = impl if impl in (BASELINE, "reference", *RUNTIME_IMPLS) else f"keras-{impl}"
    return name if malloc == "default" else f"{name} ({malloc} malloc)"


def _dtype(impl):
    return "bfloat16" if impl in BF16_IMPLS else "float32"


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _measure_matmul(args, malloc):
    """One drift measurement (torch float32, `--drift-size`) under `malloc`, tagged with it."""
    result = run_worker("matmul", {"threads": args.threads, "n": args.drift_size},
                        timeout=args.worker_timeout, malloc=malloc)
    return dict(result, malloc=malloc)


def run_yardstick(args, log, phase):
    """The yardstick's workers (one per library) under every allocator setting; each result
    is tagged with its setting and `phase` ("start" or "end")."""
    results = []
    for malloc in args.malloc:
        for lib in args.matmul_libs:
            log(f"yardstick ({phase}): {lib} matmul, {malloc} malloc ...")
            job = dict(lib=lib, dtypes=list(MATMUL_DTYPES), sizes=args.matmul_sizes,
                       seconds=args.matmul_seconds, max_s=MATMUL_MAX_S, threads=args.threads)
            result = run_worker("yardstick", job, timeout=args.worker_timeout, malloc=malloc)
            if "error" in result:
                log(f"  failed: {result['error']}")
            results.append(dict(result, lib=lib, malloc=malloc, phase=phase))
    return results


def summarise_yardstick(results):
    """Per (library, dtype, n): the median over the measurements of each allocator setting;
    best float32 / bfloat16: the highest of those medians (library, size and setting)."""
    cells, errors = {}, []
    for result in results:
        if "error" in result:
            errors.append(f"{result.get('lib')} ({result.get('malloc')}): {result['error']}")
            continue
        for cell in result["cells"]:
            entry = cells.setdefault((cell["lib"], cell["dtype"], cell["n"]),
                                     {"by_malloc": {}, "skipped": {}})
            if "gflops" in cell:
                entry["by_malloc"].setdefault(result["malloc"], []).append(cell["gflops"])
            else:
                entry["skipped"][result["malloc"]] = cell.get("skipped", "skipped")
    table, best = [], {}
    for (lib, dtype, n), entry in cells.items():
        rates = {m: statistics.median(v) for m, v in entry["by_malloc"].items()}
        table.append(dict(lib=lib, dtype=dtype, n=n, gflops=rates, skipped=entry["skipped"]))
        for malloc, rate in rates.items():
            if rate > best.get(dtype, {}).get("gflops", 0.0):
                best[dtype] = dict(gflops=rate, lib=lib, n=n, malloc=malloc)
    order = {d: i for i, d in enumerate(MATMUL_DTYPES)}
    table.sort(key=lambda c: (order.get(c["dtype"], 9), c["lib"], c["n"]))
    return {"cells": table, "best": best, "errors": errors}


def _torch_bf16_slow(yardstick, ratio=0.1):
    """A reason to leave torch-bf16 out of the default set, or None: torch's bfloat16
    matmul (no oneDNN kernel without AVX-512 or AMX) below `ratio` of its float32 one."""
    rate = {d: max((r for c in yardstick["cells"] if c["lib"] == "torch" and c["dtype"] == d
                    for r in c["gflops"].values()), default=None) for d in MATMUL_DTYPES}
    if rate["float32"] and rate["bfloat16"] and rate["bfloat16"] < ratio * rate["float32"]:
        return (f"torch-bf16 was left out of the default set: torch's bfloat16 matmul ran at "
                f"{rate['bfloat16']:.1f} GFLOP/s in the yardstick against {rate['float32']:.1f} "
                "for float32, so one forward would take minutes; name it in --backends to run it")
    return None


def export_for(args, log, work, exports, impl, model, clip, batch):
    """The export a runtime implementation runs, made once per (format, model, clip, batch)
    under `work` and recorded in `exports`: first the random-weight classifier as `.keras`,
    then the project's route for the format (`worker_export`), in its own pinned process
    under the first allocator setting."""
    fmt, backend = RUNTIME_IMPLS[impl]
    tag = f"{model}-{'x'.join(map(str, clip))}"
    key = f"{fmt}-{tag}-b{batch}"
    if key in exports:
        return exports[key]
    stem = f"videoswin_{model}"
    keras_file = os.path.join(work, tag, stem + ".keras")
    record = dict(impl=impl, format=fmt, model=model, clip=list(clip), batch=batch)
    exports[key] = record
    if not os.path.exists(keras_file):
        os.makedirs(os.path.dirname(keras_file), exist_ok=True)
        log(f"export: saving a random-weight {model} classifier at {tag} ...")
        made = run_worker("keras_model", dict(model=model, clip=list(clip), path=keras_file,
                                              threads=args.threads),
                          backend="torch", timeout=args.worker_timeout)
        if "error" in made:
            record["error"] = f"saving the .keras: {made['error']}"
            return record
    from videoswin.core import naming

    out = os.path.join(work, key)
    scratch = os.path.join(work, key + "-scratch")
    os.makedirs(out)
    os.makedirs(scratch)
    log(f"export: {fmt} of {tag}, batch {batch}, on the {backend} backend ...")
    result = run_worker("export", dict(keras=keras_file, stem=stem, out=out, scratch=scratch,
                                       format=fmt, clip=list(clip), batch=batch,
                                       threads=args.threads),
                        backend=backend, timeout=args.worker_timeout, malloc=args.malloc[0])
    shutil.rmtree(scratch, ignore_errors=True)      # the OpenVINO route's SavedModel
    if "error" in result:
        record["error"] = result["error"]
        log(f"  failed: {result['error']}")
        return record
    entry = os.path.join(out, naming.export_entry(stem, fmt))
    size = (os.path.getsize(entry) if os.path.isfile(entry) else
            sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(entry) for f in fs))
    record.update(result, path=os.path.join(out, naming.export_main_file(stem, fmt)),
                  size_mb=size / 2 ** 20)
    log(f"  {record['process_s']:.1f}s (the export step {record['export_s']:.1f}s), peak RSS "
        f"{record['rss_peak_mb']:.0f} MiB")
    return record


def bench_forward(args, log, matmuls, work, exports):
    """Each (model, clip, batch) measured in `--rounds` rounds; a round runs every
    implementation once under every `--malloc` setting, in reversed order on odd rounds, so
    that a slow spell of the machine falls on all of them alike. Times of all rounds are
    pooled. A drift measurement precedes every forward worker (appended to `matmuls`).
    The runtimes' exports are made in `work` before the first round (see `export_for`)."""
    rows = []
    variants = [(impl, malloc) for malloc in args.malloc for impl in args.impls]
    for model in args.models:
        for clip in args.clips:
            macs = _macs(model, clip)
            for batch in args.batch:
                paths = {}
                for impl in args.impls:
                    if impl in RUNTIME_IMPLS:
                        record = export_for(args, log, work, exports, impl, model, clip, batch)
                        paths[impl] = record.get("path") or record.get("error", "export failed")
                pooled = {}
                for rnd in range(args.rounds):
                    order = variants if rnd % 2 == 0 else variants[::-1]
                    for impl, malloc in order:
                        job = dict(impl=impl, model=model, clip=list(clip), batch=batch,
                                   repeats=args.repeats, warmup=args.warmup,
                                   threads=args.threads)
                        if impl in paths:
                            job["path"] = paths[impl]
                        if args.drift_size:
                            matmuls.append(_measure_matmul(args, malloc))
                        log(f"forward {model} {'x'.join(map(str, clip))} b{batch} "
                            f"{_label(impl, malloc)} (round {rnd + 1}/{args.rounds}) ...")
                        if impl in paths and not os.path.exists(paths[impl]):
                            result = {"error": f"no export: {paths[impl]}"}
                        else:
                            result = run_worker("forward", job, backend=KERAS_IMPLS.get(impl),
                                                timeout=args.worker_timeout, malloc=malloc)
                        if "median_s" in result:
                            log(f"  median {result['median_s']:.3f}s, first call "
                                f"{result['first_s']:.1f}s, peak RSS "
                                f"{result['rss_peak_mb']:.0f} MiB")
                        else:
                            log(f"  failed: {result['error']}")
                        pooled.setdefault((impl, malloc), []).append((job, result))
                for impl, malloc in variants:
                    runs = pooled[impl, malloc]
                    ok = [r for _, r in runs if "median_s" in r]
                    result = dict(runs[0][1]) if not ok else dict(ok[0])
                    if ok:
                        times = [t for r in ok for t in r["times"]]
                        result.update(times=times, median_s=statistics.median(times),
                                      min_s=min(times), rounds=len(ok),
                                      rss_peak_mb=max(r["rss_peak_mb"] for r in ok))
                    result.update(runs[0][0], malloc=malloc, gflop=2 * macs * batch / 1e9)
                    if "median_s" in result:
                        result["gflops"] = result["gflop"] / result["median_s"]
                    rows.append(result)
    return rows


def bench_conversion(args, log):
    """videoswin-convert (no parity) vs torch.load + save_weights, on a random checkpoint."""
    config = os.path.join(ROOT, "configs", "recognition", "swin",
                          CONVERT_CONFIGS[args.conversion] + ".py")
    with tempfile.TemporaryDirectory(prefix="videoswin-bench-") as scratch:
        log(f"conversion: writing a random {args.conversion} checkpoint ...")
        made = run_worker("checkpoint", {"config": config, "dir": scratch}, backend="torch",
                          timeout=args.worker_timeout)
        if "error" in made:
            return {"error": f"random checkpoint: {made['error']}", "checkpoint_mb": 0.0}
        ckpt = made["path"]
        size_mb = os.path.getsize(ckpt) / 2 ** 20
        env = _child_env("torch")
        runs = {}
        for rep in range(args.conversion_repeats):
            out_dir = os.path.join(scratch, f"out{rep}")
            cmd = [sys.executable, "-c", "from videoswin_tools.convert import main; main()",
                   "--config", config, "--checkpoint", ckpt, "--output-dir", out_dir,
                   "--backends", "none", "--quiet"]
            log(f"conversion: videoswin-convert run {rep + 1} ...")
            code, _, err, wall, rss = _run_measured(cmd, env, args.worker_timeout)
            if code != 0:
                return {"error": f"videoswin-convert exit {code}: "
                                 + " | ".join(err.strip().splitlines()[-3:]),
                        "checkpoint_mb": size_mb}
            written = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
            runs.setdefault("convert", []).append((wall, rss, written / 2 ** 20))

            bare_dir = os.path.join(scratch, f"bare{rep}")
            os.makedirs(bare_dir)
            job = dict(config=config, checkpoint=ckpt, output_dir=bare_dir,
                       threads=args.threads)
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "bare_save",
                   json.dumps(job)]
            log(f"conversion: bare load + save_weights run {rep + 1} ...")
            code, _, err, wall, rss = _run_measured(cmd, env, args.worker_timeout)
            if code != 0:
                return {"error": f"bare save exit {code}: "
                                 + " | ".join(err.strip().splitlines()[-3:]),
                        "checkpoint_mb": size_mb}
            written = sum(os.path.getsize(os.path.join(bare_dir, f))
                          for f in os.listdir(bare_dir))
            runs.setdefault("bare", []).append((wall, rss, written / 2 ** 20))

            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "imports",
                   json.dumps({"threads": args.threads})]
            code, _, err, wall, rss = _run_measured(cmd, env, args.worker_timeout)
            if code == 0:
                runs.setdefault("imports", []).append((wall, rss, 0.0))
    summary = {"config": made["name"], "checkpoint_mb": size_mb}
    for name, values in runs.items():
        summary[name] = {"wall_s": statistics.median(v[0] for v in values),
                         "rss_peak_mb": max(v[1] for v in values), "written_mb": values[0][2]}
    return summary


# ----------------------------------------------------------------------------- report

def summarise_matmul(results):
    """The drift check's figure: the median of the medians of the measurements taken before
    every forward worker (and at the end), with their range.

    A 2 s measurement swings by 15% or more on a shared machine; the median of one taken before
    every forward worker is steadier than any single one, and unbiased, where keeping the
    fastest of a few would favour a lucky spell.
    """
    ok = [r for r in results if "gflops" in r]
    if not ok:
        return {"error": next((r["error"] for r in results if "error" in r), "not run")}
    rates = [r["gflops"] for r in ok]
    by_malloc = {}
    for r in ok:
        by_malloc.setdefault(r.get("malloc", "default"), []).append(r["gflops"])
    return {"n": ok[0]["n"], "gflops": statistics.median(rates), "low_gflops": min(rates),
            "high_gflops": max(rates), "best_gflops": max(r["best_gflops"] for r in ok),
            "count": len(ok), "runs": results,
            "by_malloc": {m: statistics.median(v) for m, v in by_malloc.items()}}


def markdown(meta, drift, yardstick, rows, exports, conversion, profiles):
    """The results section of one machine class (Markdown, headed by the class)."""
    cpu = meta["cpu"]
    absent = ", ".join(cpu["absent"]) or "none"
    lines = [f"### {cpu['class']}", "",
             f"Run {meta['date']} on {meta['machine']}; ISA flags: "
             f"{', '.join(cpu['flags']) or 'none of those checked'} (absent: {absent}); "
             f"{meta['threads']} threads (CPUs "
             f"pinned), {meta['rounds']} round(s) of every implementation in alternating "
             f"order, each {meta['repeats']} timed runs after {meta['warmup']} warm-up; "
             f"{meta['versions']}. Load average (1 min): {meta['load_start'][0]:.1f} before, "
             f"{meta['load_end'][0]:.1f} after; the run itself adds about {meta['threads']}, "
             "beyond that other work shared the CPUs and the figures are noisy.", ""]
    if meta["malloc"] != ["default"]:
        lines += ["Allocator settings (`--malloc`), set in the environment of every worker "
                  "of that setting, matmuls included: " + "; ".join(
                      f"{m}: " + (" ".join(f"`{k}={v}`" for k, v in MALLOC[m].items())
                                  or "glibc's defaults") for m in meta["malloc"]) + ".", ""]
    lines += yardstick_lines(yardstick, meta["malloc"])
    if "gflops" in drift:
        lines += ["", f"Drift check: torch float32 {drift['n']}x{drift['n']} before every "
                  f"forward worker and at the end, {drift['count']} measurements of 20 "
                  f"products each: median {drift['gflops']:.1f} GFLOP/s, ranging "
                  f"{drift['low_gflops']:.1f} to {drift['high_gflops']:.1f}"
                  + (" (by setting: " + ", ".join(f"{g:.1f} {m}" for m, g in
                                                  drift["by_malloc"].items()) + ")"
                     if len(drift.get("by_malloc", {})) > 1 else "") + "."]
    elif drift.get("error") != "not run":
        lines += ["", f"Drift check: failed ({drift.get('error')})"]
    for note in meta.get("notes", []):
        lines += ["", f"Note: {note}."]
    best = yardstick["best"]
    lines += ["", "#### Forward pass", ""]
    if rows:
        lines += ["Latency is the median seconds per forward pass of the batch (backbone "
                  "+ I3D head, inference; `-bf16` rows: backbone under mixed_bfloat16). "
                  "Speed-up = mmaction2 (float32) median under the same allocator setting / "
                  "median. GFLOP/s counts 2 x analytic MACs; '% best mm' is against the "
                  "yardstick's best float32 matmul for float32 rows and its best bfloat16 "
                  "matmul for bfloat16 rows. First call includes compilation (JAX, TF; "
                  "keras-torch-compiled: torch.export + inductor, whose kernels inductor "
                  "caches on disk across runs). onnxruntime and openvino run the exports "
                  "below. Peak RSS is the worker process's.", "",
                  "| model | clip | batch | implementation | median s | min s | clips/s | "
                  "speed-up | GFLOP/s | % best mm | first call s | peak RSS MiB |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    else:
        lines.append("Not run (`--backends none`).")
    base = {(r["model"], tuple(r["clip"]), r["batch"], r["malloc"]): r.get("median_s")
            for r in rows if r["impl"] == BASELINE}
    for r in rows:
        clip = "x".join(map(str, r["clip"]))
        head = f"| {r['model']} | {clip} | {r['batch']} | {_label(r['impl'], r['malloc'])} |"
        if "median_s" not in r:
            lines.append(f"{head} failed: {r['error'][:120]} |||||||")
            continue
        ref = base.get((r["model"], tuple(r["clip"]), r["batch"], r["malloc"]))
        speedup = ref / r["median_s"] if ref else None
        peak = best.get(_dtype(r["impl"]), {}).get("gflops")
        pct = 100 * r["gflops"] / peak if peak else None
        lines.append(f"{head} {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{r['batch'] / r['median_s']:.2f} | {_fmt(speedup, '.2f')} | "
                     f"{r['gflops']:.1f} | {_fmt(pct, '.0f')} | {r['first_s']:.1f} | "
                     f"{r['rss_peak_mb']:.0f} |")
    if exports:
        lines += ["", "#### Exports", "",
                  "The random-weight classifier exported by the project's route "
                  "(`converter.export_worker`, what `videoswin-export` runs), fixed batch, "
                  f"in its own process pinned to {meta['threads']} CPUs under the first "
                  "allocator setting; wall time and peak RSS of that whole process (imports "
                  "included).", "",
                  "| model | clip | batch | format | route | export s | peak RSS MiB | size MiB |",
                  "|---|---|---:|---|---|---:|---:|---:|"]
        for e in exports:
            head = f"| {e['model']} | {'x'.join(map(str, e['clip']))} | {e['batch']} | " \
                   f"{e['format']} |"
            if "error" in e:
                lines.append(f"{head} failed: {e['error'][:120]} ||||")
            else:
                lines.append(f"{head} {e['route']} | {e['process_s']:.1f} | "
                             f"{e['rss_peak_mb']:.0f} | {e['size_mb']:.0f} |")
    lines += ["", "#### Targets", "", *issue_target_lines(
        issue_targets(rows, best, cpu["flags"])), "",
        "The project's goals (\"Goals\" above; the matmul figure is the best float32 one):",
        "", *targets(rows, best.get("float32", {}).get("gflops"))]
    lines += ["", "#### Conversion", ""]
    if conversion is None:
        lines.append("Not run (`--conversion none`).")
    elif "error" in conversion:
        lines.append(f"Failed: {conversion['error']}")
    else:
        c, b = conversion["convert"], conversion["bare"]
        ratio = c["wall_s"] / b["wall_s"]
        rss_ratio = c["rss_peak_mb"] / conversion["checkpoint_mb"]
        lines += [f"`{conversion['config']}`, random official-layout checkpoint of "
                  f"{conversion['checkpoint_mb']:.0f} MiB; whole processes (imports "
                  "included), median of the runs.", "",
                  "| step | wall s | peak RSS MiB | written MiB |", "|---|---:|---:|---:|",
                  f"| videoswin-convert --backends none | {c['wall_s']:.1f} | "
                  f"{c['rss_peak_mb']:.0f} | {c['written_mb']:.0f} |",
                  f"| torch.load + save_weights (floor) | {b['wall_s']:.1f} | "
                  f"{b['rss_peak_mb']:.0f} | {b['written_mb']:.0f} |"]
        imports = conversion.get("imports")
        if imports:
            lines.append(f"| imports alone (torch, keras, converter) | {imports['wall_s']:.1f} | "
                         f"{imports['rss_peak_mb']:.0f} | 0 |")
        lines += ["",
                  f"- time: {ratio:.2f}x the floor (target <= {TARGET_CONVERT_TIME}x): "
                  f"{'met' if ratio <= TARGET_CONVERT_TIME else 'MISSED'}",
                  f"- peak RSS: {rss_ratio:.2f}x the checkpoint (target <= "
                  f"{TARGET_CONVERT_RSS}x): "
                  f"{'met' if rss_ratio <= TARGET_CONVERT_RSS else 'MISSED'}"]
        if imports:
            extra = (c["rss_peak_mb"] - imports["rss_peak_mb"]) / conversion["checkpoint_mb"]
            lines.append(f"- peak RSS above the imports alone: {extra:.2f}x the checkpoint")
    for name, prof in profiles.items():
        lines += ["", f"#### Profile: {name} (one forward, {prof.get('wall_s', 0):.3f} s under "
                  "the profiler)", "", "```", prof.get("table", prof.get("error", "")).rstrip(),
                  "```"]
    return "\n".join(lines) + "\n"


def yardstick_lines(yardstick, settings):
    """The yardstick's table (GFLOP/s per library, dtype, size and allocator setting) and
    its best float32 and bfloat16 rates."""
    lines = ["#### Matmul yardstick", ""]
    if not yardstick["cells"]:
        return lines + ["Not measured (`--matmul-libs none`)."] + [
            f"Failed: {e}" for e in yardstick["errors"]]
    lines += ["Square n x n products on the pinned CPUs, at the start and at the end of the "
              "run under each allocator setting; GFLOP/s = 2 n^3 / the median time, the "
              "median over the measurements. torch: `torch.mm` into a preallocated output; "
              "jax: `jax.jit(jnp.matmul)`; tensorflow: `tf.function(tf.linalg.matmul, "
              "jit_compile=True)` (both XLA). A size whose single product would take over "
              f"{MATMUL_MAX_S:.0f} s (estimated from the size below) is skipped.", "",
              "| library | dtype | n | " + " | ".join(f"{m} GFLOP/s" for m in settings) + " |",
              "|---|---|---:|" + "---:|" * len(settings)]
    for c in yardstick["cells"]:
        cells = [_fmt(c["gflops"].get(m), ".1f") if m in c["gflops"] else
                 c["skipped"].get(m, "-") for m in settings]
        lines.append(f"| {c['lib']} | {c['dtype']} | {c['n']} | " + " | ".join(cells) + " |")
    lines.append("")
    for dtype in MATMUL_DTYPES:
        b = yardstick["best"].get(dtype)
        lines.append(f"- best {dtype}: " + (f"**{b['gflops']:.1f} GFLOP/s** ({b['lib']}, "
                                            f"n={b['n']}, {b['malloc']} malloc)" if b else
                                            "not measured"))
    lines += [f"- failed: {e}" for e in yardstick["errors"]]
    return lines


def _target_groups(rows):
    """(malloc, model, {impl: row}) for every allocator setting and model whose rows at
    TARGET_CLIP and TARGET_BATCH include mmaction2's."""
    for malloc in dict.fromkeys(r["malloc"] for r in rows):
        for model in sorted({r["model"] for r in rows}):
            sel = {r["impl"]: r for r in rows if r["model"] == model and "median_s" in r
                   and r["malloc"] == malloc and tuple(r["clip"]) == TARGET_CLIP
                   and r["batch"] == TARGET_BATCH}
            if BASELINE in sel:
                yield malloc, model, sel


def issue_targets(rows, best, flags=()):
    """Issue 17's and issue 22's targets from the rows at TARGET_CLIP and TARGET_BATCH, each
    against mmaction2 (float32) under the same allocator setting; `best`: the yardstick's
    {dtype: {"gflops": ...}}; `flags`: the CPU's ISA flags. A list of dicts (issue, target,
    model, malloc, impl, value, threshold, met, note)."""
    out = []
    fp32 = (best.get("float32") or {}).get("gflops")
    bf16_note = "" if "avx512_bf16" in flags else "needs AVX512_BF16; this CPU has none"
    for malloc, model, sel in _target_groups(rows):
        ref = sel[BASELINE]["median_s"]

        def add(issue, target, impl, value, threshold, note=""):
            out.append(dict(issue=issue, target=target, model=model, malloc=malloc,
                            impl=impl, value=value, threshold=threshold,
                            unit="%" if "%" in target else "x",
                            met=value >= threshold, note=note))

        paths = {k: v for k, v in sel.items() if k in FP32_PATHS}
        if paths:
            fastest = min(paths, key=lambda k: paths[k]["median_s"])
            if malloc in ISSUE17_SPEEDUP:
                add(17, f"fastest float32 path >= {ISSUE17_SPEEDUP[malloc]}x mmaction2",
                    fastest, ref / paths[fastest]["median_s"], ISSUE17_SPEEDUP[malloc])
            if fp32:
                share = paths[fastest]["gflops"] / fp32
                for issue, goal in ((17, ISSUE17_MATMUL), (22, ISSUE22_MATMUL)):
                    add(issue, f"fastest float32 path >= {100 * goal:.0f}% of the best "
                        "float32 matmul", fastest, share, goal)
        if malloc == "heap":
            for impl in KERAS_FP32:
                if impl in sel:
                    add(22, f"every Keras backend >= {ISSUE22_KERAS_HEAP}x mmaction2",
                        impl, ref / sel[impl]["median_s"], ISSUE22_KERAS_HEAP)
        bf16 = {k: v for k, v in sel.items() if k in BF16_IMPLS}
        if bf16:
            fastest = min(bf16, key=lambda k: bf16[k]["median_s"])
            add(22, f"fastest bfloat16 path >= {ISSUE22_BF16}x mmaction2 float32",
                fastest, ref / bf16[fastest]["median_s"], ISSUE22_BF16, bf16_note)
    return out


def issue_target_lines(found):
    """`issue_targets` as a Markdown table."""
    if not found:
        return ["Issue targets (32x224x224, batch 1, vs mmaction2 under the same allocator "
                "setting): not covered by this run."]
    lines = ["Issue targets, 32x224x224, batch 1, each against mmaction2 (float32) under the "
             "same allocator setting; computed from the rows above.", "",
             "| issue | target | model | malloc | measured | result |",
             "|---:|---|---|---|---|---|"]
    for t in found:
        shown = f"{100 * t['value']:.0f}%" if t["unit"] == "%" else f"{t['value']:.2f}x"
        result = "met" if t["met"] else "**missed**"
        lines.append(f"| {t['issue']} | {t['target']} | {t['model']} | {t['malloc']} | "
                     f"{_label(t['impl'])} {shown} | {result}"
                     + (f" ({t['note']})" if t["note"] else "") + " |")
    return lines


def targets(rows, peak):
    """Lines checking the goals where the run covers them (per allocator setting:
    each implementation is compared with mmaction2 under the same one)."""
    out = []
    settings = list(dict.fromkeys(r["malloc"] for r in rows))
    for malloc, model, sel in _target_groups(rows):
        tag = "" if len(settings) == 1 and malloc == "default" else f" [{malloc} malloc]"
        ref = sel[BASELINE]["median_s"]
        keras = {k: v for k, v in sel.items() if k in KERAS_FP32}
        if "torch" in keras:
            s = ref / keras["torch"]["median_s"]
            out.append(f"- {model}{tag}: keras-torch {s:.2f}x mmaction2 (target >= "
                       f"{TARGET_TORCH}x): {'met' if s >= TARGET_TORCH else 'MISSED'}")
        if keras:
            best = min(keras, key=lambda k: keras[k]["median_s"])
            s = ref / keras[best]["median_s"]
            out.append(f"- {model}{tag}: fastest backend keras-{best} {s:.2f}x (target >= "
                       f"{TARGET_BEST}x): {'met' if s >= TARGET_BEST else 'MISSED'}")
            if peak:
                frac = keras[best]["gflops"] / peak
                out.append(f"- {model}{tag}: keras-{best} at {100 * frac:.0f}% of matmul "
                           f"GFLOP/s (target >= {100 * TARGET_MATMUL:.0f}%): "
                           f"{'met' if frac >= TARGET_MATMUL else 'MISSED'}")
    if not out:
        out.append("- Targets (32x224x224, batch 1, vs mmaction2) not covered by this run.")
    return out


def write_out(path, text, cls):
    """Replace the section of machine class `cls` in `path` (between its markers), or add
    one after the last section of any class (at the end of a file that has none)."""
    begin, end = BEGIN.format(cls), END.format(cls)
    block = f"{begin}\n{text}{end}"
    old = ""
    if os.path.exists(path):
        with open(path) as handle:
            old = handle.read()
    if begin in old and end in old.split(begin, 1)[1]:
        head, after = old.split(begin, 1)
        new = head + block + after.split(end, 1)[1]
    else:
        last = None
        for last in _ANY_END.finditer(old):
            pass
        if last:
            new = old[:last.end()] + "\n\n" + block + old[last.end():]
        else:
            new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + block + "\n"
    with open(path + ".tmp", "w") as handle:   # never a half-written file
        handle.write(new)
    os.replace(path + ".tmp", path)


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("keras", "torch", "jax", "tensorflow", "mmaction2"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def cpu_info(text=None):
    """The CPU from /proc/cpuinfo (or `text`): {"model", "flags" (those of ISA_FLAGS
    present), "absent" (those missing, of the CPU's architecture), "class"}."""
    if text is None:
        try:
            with open("/proc/cpuinfo") as handle:
                text = handle.read()
        except OSError:
            text = ""
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "features") and flags is None:
            flags = set(value.split())
    flags = flags or set()
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    arm = "asimd" in flags
    family = ISA_FLAGS[-3:] if arm else ISA_FLAGS[:-3]
    return {"model": model, "flags": [f for f in ISA_FLAGS if f in flags],
            "absent": [f for f in family if f not in flags],
            "class": machine_class(model, flags)}


def machine_class(model, flags):
    """"VENDOR LINE, ISA" for the results sections: "AMD EPYC, AVX2", "Intel Xeon, AVX-512 +
    AVX512_BF16 + AMX": what decides which recorded figures apply to a reader's CPU."""
    words = [w for w in re.sub(r"\((R|TM)\)", " ", model, flags=re.I).split()
             if w.upper() != "CPU"]
    family = " ".join(words[:2]) or "unknown CPU"
    flags = set(flags)
    if "asimd" in flags:
        isa = ["NEON"] + ["SVE"] * ("sve" in flags) + ["BF16"] * ("bf16" in flags)
    else:
        isa = ["AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"]
        isa += ["AVX512_BF16"] * ("avx512_bf16" in flags) + ["AMX"] * ("amx_bf16" in flags)
    return f"{family}, {' + '.join(isa)}"


def _csv(value, cast=str):
    return [cast(v) for v in value.split(",") if v.strip()]


def _clip(value):
    parts = value.lower().split("x")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"clip {value!r} is not TxHxW, e.g. 32x224x224")
    return tuple(int(p) for p in parts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=_csv, default=["tiny", "base"],
                   help="comma-separated presets (tiny, small, base, large; micro: a "
                        "smoke-test model)")
    p.add_argument("--clips", type=lambda v: [_clip(c) for c in _csv(v)],
                   default=[(32, 224, 224), (16, 224, 224)], help="e.g. 32x224x224,16x224x224")
    p.add_argument("--batch", type=lambda v: _csv(v, int), default=[1, 4])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of every implementation, alternating order; times pooled")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed runs first (>= 1); the median absorbs one slow run after")
    p.add_argument("--backends", type=_csv, default=None,
                   help=f"implementations to run, from {','.join(IMPLS)} (default: all, "
                        "but torch-bf16 where the yardstick finds torch's bfloat16 matmul "
                        "under a tenth of its float32 one); 'none' for the conversion "
                        "benchmark alone")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--malloc", type=_csv, default=["default"],
                   help=f"allocator settings to run every implementation under, from "
                        f"{','.join(MALLOC)} (see MALLOC); exports and profiles use the first")
    p.add_argument("--matmul-libs", type=_csv, default=list(MATMUL_LIBS),
                   help=f"yardstick libraries, from {','.join(MATMUL_LIBS)}; 'none' to skip")
    p.add_argument("--matmul-sizes", type=lambda v: _csv(v, int), default=list(MATMUL_SIZES),
                   help="yardstick matrix sizes n (n x n products)")
    p.add_argument("--matmul-seconds", type=float, default=1.0,
                   help="timed seconds per yardstick measurement (at least 3 products)")
    p.add_argument("--drift-size", type=int, default=2048,
                   help="n of the torch float32 matmul before every forward worker; 0: none")
    p.add_argument("--conversion", choices=["none", *CONVERT_CONFIGS], default="base",
                   help="model for the conversion benchmark")
    p.add_argument("--conversion-repeats", type=int, default=1)
    p.add_argument("--profile", type=_csv, default=[],
                   help=f"also profile these implementations ({', '.join(PROFILABLE)}) on "
                        "the first model/clip/batch")
    p.add_argument("--worker-timeout", type=int, default=3600)
    p.add_argument("--quick", action="store_true",
                   help="tiny, 8x112x112, batch 1, conversion of tiny")
    p.add_argument("--out", help="Markdown file whose section for this machine class to "
                                 "write (between its benchmark markers)")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.clips, args.batch = ["tiny"], [(8, 112, 112)], [1]
        if args.conversion == "base":
            args.conversion = "tiny"
    args.default_backends = args.backends is None
    if args.default_backends:
        args.backends = list(IMPLS)
    if args.backends == ["none"]:
        args.backends = []
    if args.matmul_libs == ["none"]:
        args.matmul_libs = []
    unknown = [b for b in args.backends if b not in IMPLS]
    if unknown:
        p.error(f"unknown --backends {unknown}; choose from {', '.join(IMPLS)}")
    bad = [m for m in args.malloc if m not in MALLOC]
    if bad or not args.malloc:
        p.error(f"unknown --malloc {bad}; choose from {', '.join(MALLOC)}")
    bad = [m for m in args.matmul_libs if m not in MATMUL_LIBS]
    if bad:
        p.error(f"unknown --matmul-libs {bad}; choose from {', '.join(MATMUL_LIBS)}")
    bad = [m for m in args.profile if m not in PROFILABLE]
    if bad:
        p.error(f"cannot --profile {bad}; choose from {', '.join(PROFILABLE)}")
    if args.warmup < 1 or args.repeats < 1 or args.rounds < 1:
        p.error("--warmup, --repeats and --rounds must be >= 1")
    if not args.matmul_sizes or min(args.matmul_sizes) < 1 or args.drift_size < 0:
        p.error("--matmul-sizes must be positive, --drift-size >= 0")
    args.impls = [i for i in IMPLS if i in args.backends]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        kind, job = args.worker
        print("RESULT " + json.dumps(WORKERS[kind](json.loads(job))), flush=True)
        return 0

    def log(message):
        print(message, file=sys.stderr, flush=True)

    sys.path.insert(0, ROOT)
    cpu = cpu_info()
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M"), threads=args.threads,
                repeats=args.repeats, warmup=args.warmup, rounds=args.rounds,
                malloc=args.malloc, versions=_versions(), cpu=cpu, notes=[],
                machine=f"{cpu['model']}, {os.cpu_count()} CPUs, Python "
                        f"{platform.python_version()}", argv=sys.argv[1:],
                load_start=os.getloadavg())
    log(f"machine class: {cpu['class']} (ISA flags: {', '.join(cpu['flags']) or 'none'})")
    work = tempfile.mkdtemp(prefix="videoswin-bench-")
    exports, matmuls, profiles = {}, [], {}
    try:
        yard = run_yardstick(args, log, "start")
        if args.default_backends and "torch-bf16" in args.impls:
            reason = _torch_bf16_slow(summarise_yardstick(yard))
            if reason:
                args.impls.remove("torch-bf16")
                meta["notes"].append(reason)
                log(reason)
        rows = bench_forward(args, log, matmuls, work, exports)
        if args.drift_size:
            log("drift matmul ...")
            matmuls += [_measure_matmul(args, malloc) for malloc in args.malloc]
        yard += run_yardstick(args, log, "end")
        meta["load_end"] = os.getloadavg()
        conversion = None if args.conversion == "none" else bench_conversion(args, log)
        for impl in args.profile:
            job = dict(impl=impl, model=args.models[0], clip=list(args.clips[0]),
                       batch=args.batch[0], threads=args.threads, rows=15)
            if impl in RUNTIME_IMPLS:
                job["path"] = export_for(args, log, work, exports, impl, *(
                    job[k] for k in ("model", "clip", "batch"))).get("path")
            label = _label(impl, args.malloc[0])
            log(f"profile {label} ...")
            name = f"{label}, {args.models[0]} {'x'.join(map(str, args.clips[0]))} " \
                   f"batch {args.batch[0]}"
            profiles[name] = (run_worker("profile", job, backend=KERAS_IMPLS.get(impl),
                                         timeout=args.worker_timeout, malloc=args.malloc[0])
                              if job.get("path", True) else {"error": "no export"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    drift = summarise_matmul(matmuls)
    yardstick = summarise_yardstick(yard)
    exports = list(exports.values())
    text = markdown(meta, drift, yardstick, rows, exports, conversion, profiles)
    print(text)
    if args.out:
        write_out(args.out, text, cpu["class"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(meta=meta, yardstick=yardstick, yardstick_runs=yard, drift=drift,
                           forward=rows, exports=exports, conversion=conversion,
                           profiles=profiles,
                           targets=issue_targets(rows, yardstick["best"], cpu["flags"])),
                      handle, indent=1)
    failed = ([r for r in rows if "error" in r] or (conversion or {}).get("error")
              or yardstick["errors"] or [e for e in exports if "error" in e])
    return 1 if failed or (args.drift_size and "error" in drift) else 0


if __name__ == "__main__":
    sys.exit(main())
