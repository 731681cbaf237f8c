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
  (non-strict) and compiled with `torch.compile` (inductor): README's recipe.

Latency is the median (and minimum) over `--repeats` timed calls after `--warmup` untimed
ones; compile time shows as the first call. GFLOP/s = 2 x MACs (analytic, `videoswin.flops`)
/ latency, set against a float32 torch matmul measured before every forward worker of the
run (the median of those measurements). A conversion section
times `videoswin-convert --backends none` on a random official-layout checkpoint against a
bare `torch.load` + Keras `save_weights`. With `--malloc default,heap` every implementation
also runs with glibc keeping freed memory (see MALLOC), each compared with mmaction2 under the
same setting.

    python scripts/benchmark.py --quick                  # minutes: tiny, 8x112x112, batch 1
    python scripts/benchmark.py --out BENCHMARKS.md      # full: tiny and base, 32/16x224x224

With `--out FILE`, the results replace the text between the benchmark markers of FILE (or
become the whole file when it has none).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# Nothing heavy is imported at module level: workers pin CPUs and choose a backend first.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ("mmaction2", "reference", "torch", "torch-compiled", "jax", "tensorflow")
# The Keras model, by implementation: the backend it runs on.
KERAS_IMPLS = {"torch": "torch", "torch-compiled": "torch", "jax": "jax",
               "tensorflow": "tensorflow"}
TORCH_IMPLS = ("mmaction2", "reference") + tuple(i for i, b in KERAS_IMPLS.items()
                                                 if b == "torch")
BASELINE = "mmaction2"
NUM_CLASSES = 400
BEGIN, END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"
CONVERT_CONFIGS = {
    "tiny": "swin_tiny_patch244_window877_kinetics400_1k",
    "base": "swin_base_patch244_window877_kinetics400_22k",
}
# The project's speed and conversion goals (BENCHMARKS.md, "Goals"), on Swin-T and Swin-B,
# 32x224x224, batch 1.
TARGET_CLIP, TARGET_BATCH = (32, 224, 224), 1
TARGET_TORCH, TARGET_BEST, TARGET_MATMUL = 1.4, 1.8, 0.75
TARGET_CONVERT_TIME, TARGET_CONVERT_RSS = 1.5, 3.0
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


def _build(impl, model, clip, batch, seed=0):
    """(callable running one forward pass to completion, output shape thunk)."""
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
                pretrained=None, pretrained2d=False, drop_path_rate=0.0)
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

    import keras  # KERAS_BACKEND was set by the parent

    from videoswin.model import VideoSwinBackbone, VideoSwinClassifier

    backbone = VideoSwinBackbone(**a, input_shape=tuple(clip) + (3,))
    net = VideoSwinClassifier(backbone, NUM_CLASSES)
    if impl in ("torch", "torch-compiled"):
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
    if impl == "jax":
        import jax

        trainable = [v.value for v in net.trainable_variables]
        non_trainable = [v.value for v in net.non_trainable_variables]
        forward = jax.jit(lambda tv, ntv, x: net.stateless_call(tv, ntv, x, training=False)[0])
        x = jax.numpy.asarray(clip_nthwc)
        return lambda: forward(trainable, non_trainable, x).block_until_ready()
    if impl == "tensorflow":
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
    run = _build(job["impl"], job["model"], job["clip"], job["batch"])
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
    """torch.profiler table of one forward (torch-based implementations)."""
    _pin(job["threads"])
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


WORKERS = {"forward": worker_forward, "matmul": worker_matmul, "bare_save": worker_bare_save,
           "imports": worker_imports, "checkpoint": worker_checkpoint,
           "profile": worker_profile}


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
    name = impl if impl in (BASELINE, "reference") else f"keras-{impl}"
    return name if malloc == "default" else f"{name} ({malloc} malloc)"


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _measure_matmul(args, malloc):
    """One matmul worker under `malloc`; the result is tagged with it."""
    result = run_worker("matmul", {"threads": args.threads}, timeout=args.worker_timeout,
                        malloc=malloc)
    return dict(result, malloc=malloc)


def bench_forward(args, log, matmuls):
    """Each (model, clip, batch) measured in `--rounds` rounds; a round runs every
    implementation once under every `--malloc` setting, in reversed order on odd rounds, so
    that a slow spell of the machine falls on all of them alike. Times of all rounds are
    pooled. A matmul measurement precedes every forward worker (appended to `matmuls`)."""
    rows = []
    variants = [(impl, malloc) for malloc in args.malloc for impl in args.impls]
    for model in args.models:
        for clip in args.clips:
            macs = _macs(model, clip)
            for batch in args.batch:
                pooled = {}
                for rnd in range(args.rounds):
                    order = variants if rnd % 2 == 0 else variants[::-1]
                    for impl, malloc in order:
                        job = dict(impl=impl, model=model, clip=list(clip), batch=batch,
                                   repeats=args.repeats, warmup=args.warmup,
                                   threads=args.threads)
                        matmuls.append(_measure_matmul(args, malloc))
                        log(f"forward {model} {'x'.join(map(str, clip))} b{batch} "
                            f"{_label(impl, malloc)} (round {rnd + 1}/{args.rounds}) ...")
                        result = run_worker("forward", job,
                                            backend=KERAS_IMPLS.get(impl),
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
    """One figure from the run's matmul measurements: the median of their medians.

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


def markdown(meta, matmul, rows, conversion, profiles):
    lines = [f"Run {meta['date']} on {meta['machine']}; {meta['threads']} threads (CPUs "
             f"pinned), {meta['rounds']} round(s) of every implementation in alternating "
             f"order, each {meta['repeats']} timed runs after {meta['warmup']} warm-up; "
             f"{meta['versions']}. Load average (1 min): {meta['load_start'][0]:.1f} before, "
             f"{meta['load_end'][0]:.1f} after; the run itself adds about {meta['threads']}, "
             "beyond that other work shared the CPUs and the figures are noisy.", ""]
    if "gflops" in matmul:
        lines.append(f"float32 matmul ({matmul['n']}x{matmul['n']}, torch, the median of "
                     f"{matmul['count']} measurements taken before every forward worker and "
                     f"at the end, each the median of 20 products): **{matmul['gflops']:.1f} "
                     f"GFLOP/s** (measurements ranged {matmul['low_gflops']:.1f} to "
                     f"{matmul['high_gflops']:.1f}).")
    else:
        lines.append(f"float32 matmul: failed ({matmul.get('error')})")
    if len(meta["malloc"]) > 1 and "by_malloc" in matmul:
        lines.append("By allocator setting, the matmul medians were " + ", ".join(
            f"{g:.1f} ({m})" for m, g in matmul["by_malloc"].items()) + ".")
    if meta["malloc"] != ["default"]:
        lines += ["", "Allocator settings (`--malloc`), set in the environment of every worker "
                  "of that setting, matmul included: " + "; ".join(
                      f"{m}: " + (" ".join(f"`{k}={v}`" for k, v in MALLOC[m].items())
                                  or "glibc's defaults") for m in meta["malloc"]) + "."]
    peak = matmul.get("gflops")
    if rows:
        lines += ["", "Latency is the median seconds per forward pass of the batch (backbone "
                  "+ I3D head, float32, inference). Speed-up = mmaction2 median (under the "
                  "same allocator setting) / median. "
                  "GFLOP/s counts 2 x analytic MACs; '% mm' is against the matmul figure. "
                  "First call includes compilation (JAX, TF; keras-torch-compiled: "
                  "torch.export + inductor, whose kernels inductor caches on disk across "
                  "runs). Peak RSS is the worker process's.", "",
                  "| model | clip | batch | implementation | median s | min s | clips/s | "
                  "speed-up | GFLOP/s | % mm | first call s | peak RSS MiB |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    else:
        lines += ["", "Forward benchmark not run (`--backends none`)."]
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
        pct = 100 * r["gflops"] / peak if peak else None
        lines.append(f"{head} {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{r['batch'] / r['median_s']:.2f} | {_fmt(speedup, '.2f')} | "
                     f"{r['gflops']:.1f} | {_fmt(pct, '.0f')} | {r['first_s']:.1f} | "
                     f"{r['rss_peak_mb']:.0f} |")
    lines += ["", *targets(rows, peak)]
    lines += ["", "### Conversion", ""]
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
        lines += ["", f"### Profile: {name} (one forward, {prof.get('wall_s', 0):.3f} s under "
                  "the profiler)", "", "```", prof.get("table", prof.get("error", "")).rstrip(),
                  "```"]
    return "\n".join(lines) + "\n"


def targets(rows, peak):
    """Lines checking the goals where the run covers them (per allocator setting:
    each implementation is compared with mmaction2 under the same one)."""
    out = []
    settings = list(dict.fromkeys(r["malloc"] for r in rows))
    for malloc in settings:
        tag = "" if len(settings) == 1 and malloc == "default" else f" [{malloc} malloc]"
        for model in sorted({r["model"] for r in rows}):
            sel = {r["impl"]: r for r in rows if r["model"] == model and "median_s" in r
                   and r["malloc"] == malloc and tuple(r["clip"]) == TARGET_CLIP
                   and r["batch"] == TARGET_BATCH}
            if BASELINE not in sel:
                continue
            ref = sel[BASELINE]["median_s"]
            keras = {k: v for k, v in sel.items() if k in KERAS_IMPLS}
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


def write_out(path, text):
    """Replace the text between the markers of `path`, or write the whole file."""
    block = f"{BEGIN}\n{text}{END}"
    rest = "\n"
    if os.path.exists(path):
        with open(path) as handle:
            old = handle.read()
        if BEGIN in old and END in old:
            head, after = old.split(BEGIN, 1)
            block, rest = head + block, after.split(END, 1)[1]
    with open(path + ".tmp", "w") as handle:   # never a half-written file
        handle.write(block + rest)
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


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
                   help="comma-separated presets (tiny, small, base, large)")
    p.add_argument("--clips", type=lambda v: [_clip(c) for c in _csv(v)],
                   default=[(32, 224, 224), (16, 224, 224)], help="e.g. 32x224x224,16x224x224")
    p.add_argument("--batch", type=lambda v: _csv(v, int), default=[1, 4])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of every implementation, alternating order; times pooled")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed runs first (>= 1); the median absorbs one slow run after")
    p.add_argument("--backends", type=_csv, default=list(IMPLS),
                   help=f"implementations to run, from {','.join(IMPLS)}; 'none' for "
                        "the conversion benchmark alone")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--malloc", type=_csv, default=["default"],
                   help=f"allocator settings to run every implementation under, from "
                        f"{','.join(MALLOC)} (see MALLOC); profiles use the first")
    p.add_argument("--conversion", choices=["none", *CONVERT_CONFIGS], default="base",
                   help="model for the conversion benchmark")
    p.add_argument("--conversion-repeats", type=int, default=1)
    p.add_argument("--profile", type=_csv, default=[],
                   help="also profile these torch-based implementations (torch, torch-compiled, "
                        "mmaction2, reference) on the first model/clip/batch")
    p.add_argument("--worker-timeout", type=int, default=3600)
    p.add_argument("--quick", action="store_true",
                   help="tiny, 8x112x112, batch 1, conversion of tiny: a few minutes")
    p.add_argument("--out", help="Markdown file to write (between benchmark markers)")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.clips, args.batch = ["tiny"], [(8, 112, 112)], [1]
        if args.conversion == "base":
            args.conversion = "tiny"
    if args.backends == ["none"]:
        args.backends = []
    unknown = [b for b in args.backends if b not in IMPLS]
    if unknown:
        p.error(f"unknown --backends {unknown}; choose from {', '.join(IMPLS)}")
    bad = [m for m in args.malloc if m not in MALLOC]
    if bad or not args.malloc:
        p.error(f"unknown --malloc {bad}; choose from {', '.join(MALLOC)}")
    if args.warmup < 1 or args.repeats < 1 or args.rounds < 1:
        p.error("--warmup, --repeats and --rounds must be >= 1")
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
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M"), threads=args.threads,
                repeats=args.repeats, warmup=args.warmup, rounds=args.rounds,
                malloc=args.malloc,
                versions=_versions(),
                machine=f"{_cpu_name()}, {os.cpu_count()} CPUs, Python "
                        f"{platform.python_version()}", argv=sys.argv[1:],
                load_start=os.getloadavg())
    matmuls = []
    rows = bench_forward(args, log, matmuls)
    log("matmul ...")
    matmuls += [_measure_matmul(args, malloc) for malloc in args.malloc]
    matmul = summarise_matmul(matmuls)
    meta["load_end"] = os.getloadavg()
    conversion = None if args.conversion == "none" else bench_conversion(args, log)
    profiles = {}
    for impl in args.profile:
        job = dict(impl=impl, model=args.models[0], clip=list(args.clips[0]),
                   batch=args.batch[0], threads=args.threads, rows=15)
        label = _label(impl, args.malloc[0])
        log(f"profile {label} ...")
        backend = KERAS_IMPLS.get(impl)
        name = f"{label}, {args.models[0]} {'x'.join(map(str, args.clips[0]))} " \
               f"batch {args.batch[0]}"
        profiles[name] = run_worker("profile", job, backend=backend, timeout=args.worker_timeout,
                                    malloc=args.malloc[0])
    text = markdown(meta, matmul, rows, conversion, profiles)
    print(text)
    if args.out:
        write_out(args.out, text)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(meta=meta, matmul=matmul, forward=rows, conversion=conversion,
                           profiles=profiles), handle, indent=1)
    failed = [r for r in rows if "error" in r] or (conversion or {}).get("error")
    return 1 if failed or "error" in matmul else 0


if __name__ == "__main__":
    sys.exit(main())
