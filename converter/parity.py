"""Proof that the emitted artifacts compute what the original model computes.

Seeded random clips go through a PyTorch reference (mmaction2's own module when installed,
else `converter.reference`) and through the saved `.keras` and `.weights.h5` files on each
requested Keras backend, each in its own process. Logits and backbone features are compared.
"""

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from videoswin.core import naming
from videoswin.core.backends import installed_backends
from videoswin.core.manifest import describe, write_json, write_text_atomic

DEFAULT_TOLERANCE = 1e-4
BF16_NOTE = {
    "policy": "mixed_bfloat16",
    "held_to_tolerance": False,
    "top1_agreement": "fraction of clips whose bf16 argmax is the reference's argmax",
    "top5_agreement": "fraction of clips whose bf16 top-5 class set equals the reference's "
                      "top-5 set (order ignored; min(5, classes) classes)",
}


def make_clips(count, clip_shape, seed, channels=3):
    """`count` standard-normal clips (T, H, W, C) from a seeded generator."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, *clip_shape, channels), dtype=np.float32)


def reference_outputs(spec, state, clips, reference="auto"):
    """(name, features, logits) of the PyTorch reference on channels-last clips, run one
    clip at a time: at 32x224x224 each clip holds about 1.4 GB of activations, so a batch
    of 32 would not fit a 24 GB machine."""
    from converter import upstream

    if reference == "auto":
        reference = "mmaction2" if upstream.available() else "videoswin-reference"
    if reference == "mmaction2":
        modules = upstream.load(spec, state)
        features, logits = _clip_by_clip(lambda x: upstream.forward(modules, x), clips)
        return "mmaction2 SwinTransformer3D", features, logits
    import torch

    from converter.reference import VideoSwinReference

    head = any(k.startswith("cls_head.") for k in state) and spec.num_classes
    if not head:
        state = {k: v for k, v in state.items() if not k.startswith("cls_head.")}
    model = VideoSwinReference.from_spec(spec, num_classes=spec.num_classes if head else None)
    model.load_canonical({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    model.eval()

    def forward(clip):
        with torch.no_grad():
            x = torch.from_numpy(clip)
            return model.forward_features(x).numpy(), model(x).numpy() if head else None

    features, logits = _clip_by_clip(forward, clips)
    return "videoswin PyTorch reference", features, logits


def _clip_by_clip(forward, clips):
    """`forward` ((1, T, H, W, C) -> (features, logits or None)) over each clip, stacked."""
    outputs = [forward(clips[i:i + 1]) for i in range(len(clips))]
    features = np.concatenate([f for f, _ in outputs])
    logits = None if outputs[0][1] is None else np.concatenate([g for _, g in outputs])
    return features, logits


def compare(reference, candidate):
    """max |diff|, relative max |diff|, and for (B, K) arrays top-1 agreement (rows whose
    argmax matches) and top-5 agreement (rows whose top-min(5, K) index sets are equal)."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    diff = np.abs(reference - candidate)
    result = {"max_abs": float(diff.max()),
              "max_rel": float(diff.max() / max(np.abs(reference).max(), 1e-12))}
    if reference.ndim == 2:
        k = min(5, reference.shape[1])
        result["top1_agreement"] = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
        ref5 = np.argsort(-reference, axis=1)[:, :k]
        got5 = np.argsort(-candidate, axis=1)[:, :k]
        result["top5_agreement"] = float(np.mean([set(a) == set(b) for a, b in zip(ref5, got5)]))
    return result


def bf16_row(entry, count):
    """The `bf16_*` keys of a backend's row: the mixed_bfloat16 run against the float32
    reference (None where the conversion has no head), over `count` clips."""
    logits = entry.get("logits/bf16") or {}
    return {"bf16_max_abs_logits": logits.get("max_abs"),
            "bf16_max_abs_features": (entry.get("backbone/bf16") or {}).get("max_abs"),
            "bf16_top1_agreement": logits.get("top1_agreement"),
            "bf16_top5_agreement": logits.get("top5_agreement"),
            "bf16_clips": count}


def agreement(value, count):
    """`96.9% (31/32)`: an agreement fraction with its clip count."""
    if value is None:
        return "n/a"
    text = f"{value:.1%}".replace(".0%", "%")
    return f"{text} ({round(value * count)}/{count})" if count else text


# What every bf16 table (parity report, CI summary, model card) says its numbers are.
BF16_MEANING = ("Reported, not held to the tolerance: it never fails the check. Top-1 agree: "
                "clips whose bf16 argmax is the reference's; top-5 agree: clips whose bf16 "
                "top-5 class set equals the reference's (order ignored).")
BF16_HEADER = ("bf16 max abs logits", "bf16 max abs features", "top-1 agree", "top-5 agree",
               "clips")


def bf16_cells(row):
    """A row's bf16 numbers as table cells, in `BF16_HEADER` order."""
    count = row.get("bf16_clips")
    return [_fmt(row.get("bf16_max_abs_logits")), _fmt(row.get("bf16_max_abs_features")),
            agreement(row.get("bf16_top1_agreement"), count),
            agreement(row.get("bf16_top5_agreement"), count),
            "n/a" if count is None else str(count)]


def bf16_table(backends):
    """Markdown lines of the bf16 table of {backend: row}, for the rows that have bf16
    numbers (none without `--bf16`)."""
    rows = {b: r for b, r in backends.items() if "bf16_max_abs_logits" in r}
    if not rows:
        return []
    return (["| backend | " + " | ".join(BF16_HEADER) + " |",
             "|---" * (len(BF16_HEADER) + 1) + "|"]
            + [f"| {b} | " + " | ".join(bf16_cells(r)) + " |" for b, r in rows.items()])


def bf16_text(row):
    """One line of a row's bf16 numbers."""
    count = row.get("bf16_clips")
    return (f"max |diff| logits {_fmt(row.get('bf16_max_abs_logits'))}, features "
            f"{_fmt(row.get('bf16_max_abs_features'))}, top-1 agreement "
            f"{agreement(row.get('bf16_top1_agreement'), count)}, top-5 agreement "
            f"{agreement(row.get('bf16_top5_agreement'), count)}")


def run_backend(backend, directory, stem, clips_path, bf16=False, timeout=3600):
    """Run `converter.parity_worker` under KERAS_BACKEND=backend; returns its outputs.

    The worker dies with this process (see `parity_worker.die_with_parent`): a killed
    conversion leaves no worker running."""
    with tempfile.TemporaryDirectory(prefix="videoswin-parity-") as tmp:
        out = os.path.join(tmp, "out.npz")
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                   VIDEOSWIN_PARENT_PID=str(os.getpid()))
        cmd = [sys.executable, "-m", "converter.parity_worker", directory, stem, clips_path, out]
        if bf16:
            cmd.append("--bf16")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"parity worker on backend {backend!r} failed "
                               f"(exit {proc.returncode}):\n{tail}")
        with np.load(out) as data:
            return {k: data[k] for k in data.files}


def check(spec, state, directory, stem, backends=None, count=2, clip_shape=None, seed=0,
          tolerance=None, reference="auto", bf16=False, log=print, jobs=1):
    """Run parity for every backend; returns the report dict (see `markdown`). `jobs`: how
    many backend workers run at once (each holds the model: memory grows with it)."""
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    backends = installed_backends() if backends is None else list(backends)
    clip_shape = tuple(clip_shape or spec.clip_shape)
    clips = make_clips(count, clip_shape, seed, spec.in_channels)
    log(f"  reference: {count} random clip(s) of {'x'.join(map(str, clip_shape))}...")
    start = time.perf_counter()
    ref_name, ref_features, ref_logits = reference_outputs(spec, state, clips, reference)
    log(f"  reference ({ref_name}) in {time.perf_counter() - start:.1f}s")
    report = {"reference": ref_name,
              "clips": {"count": count, "shape": list(clip_shape), "seed": seed},
              "tolerance": {"max_abs": tolerance, "dtype": "float32"},
              "logits_scale": None if ref_logits is None else float(np.std(ref_logits)),
              "backends": {}}
    if bf16:
        report["bf16"] = dict(BF16_NOTE, clips=count)
    with tempfile.TemporaryDirectory(prefix="videoswin-clips-") as tmp:
        clips_path = os.path.join(tmp, "clips.npy")
        np.save(clips_path, clips)

        def run(numbered):
            number, backend = numbered
            log(f"  {backend} ({number}/{len(backends)}): loading the artifacts and running "
                f"{count} clip(s) in a fresh process...")
            start = time.perf_counter()
            outputs = run_backend(backend, directory, stem, clips_path, bf16=bf16)
            seconds = round(time.perf_counter() - start, 1)
            log(f"  {backend}: finished in {seconds}s")
            return outputs, seconds

        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="parity") as pool:
            finished = list(pool.map(run, enumerate(backends, 1)))
        for backend, (outputs, seconds) in zip(backends, finished):
            entry = {}
            identical = {k.split("/")[0]: bool(v) for k, v in outputs.items()
                         if k.endswith("/weights_h5_identical")}
            for key in sorted(k for k in outputs if not k.startswith(("seconds:", "backend"))
                              and not k.endswith("/weights_h5_identical")):
                kind, artifact = key.split("/")
                reference_value = ref_logits if kind == "logits" else ref_features
                if reference_value is None:
                    continue
                entry[f"{kind}/{artifact}"] = compare(reference_value, outputs[key])
            checked = {k: v for k, v in entry.items() if not k.endswith("/bf16")}
            entry_summary = {
                "max_abs_logits": max((v["max_abs"] for k, v in checked.items()
                                       if k.startswith("logits/")), default=None),
                "max_abs_features": max(v["max_abs"] for k, v in checked.items()
                                        if k.startswith("backbone/")),
                "top1_agreement": min((v["top1_agreement"] for k, v in checked.items()
                                       if k.startswith("logits/")), default=None),
                "top5_agreement": min((v["top5_agreement"] for k, v in checked.items()
                                       if k.startswith("logits/")), default=None),
                "weights_h5_identical": all(identical.values()),
                "seconds": seconds,
            }
            if bf16:
                entry_summary.update(bf16_row(entry, count))
            entry_summary["passed"] = (all(v["max_abs"] <= tolerance for v in checked.values())
                                       and entry_summary["weights_h5_identical"])
            report["backends"][backend] = {**entry_summary, "detail": entry}
            log(f"  {backend}: max |diff| logits {_fmt(entry_summary['max_abs_logits'])}, "
                f"features {_fmt(entry_summary['max_abs_features'])} "
                f"({'ok' if entry_summary['passed'] else 'FAILED'}, "
                f"{entry_summary['seconds']}s)")
            if bf16:
                log(f"  {backend}: bf16 (reported, not checked) {bf16_text(entry_summary)}")
    report["status"] = ("passed" if backends and all(b["passed"] for b in
                                                     report["backends"].values())
                        else "failed" if backends else "skipped")
    return report


def write_reports(folder, stem, report):
    """Write `<stem>.parity.json` and `<stem>.parity.md` into `folder`; returns their
    `{name: {size, sha256}}` for the manifest."""
    json_name, md_name = naming.parity_files(stem)
    write_json(naming.inside(folder, json_name), report)
    write_text_atomic(naming.inside(folder, md_name), markdown(report, title=stem))
    return {name: describe(os.path.join(folder, name)) for name in (json_name, md_name)}


def summary(report):
    """The part of a report that goes into the manifest."""
    out = {"status": report["status"], "reference": report["reference"],
           "tolerance": report["tolerance"]["max_abs"], "clips": report["clips"],
           "backends": {b: {k: v for k, v in r.items() if k != "detail"}
                        for b, r in report["backends"].items()}}
    if report.get("bf16"):
        out["bf16"] = report["bf16"]
    return out


def _fmt(value):
    return "n/a" if value is None else f"{value:.2e}"


def markdown(report, title=None):
    """A backend x metric table of a parity report."""
    clips = report["clips"]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += [f"Reference: {report['reference']}; {clips['count']} random clips of "
              f"{'x'.join(map(str, clips['shape']))} (seed {clips['seed']}); tolerance "
              f"{report['tolerance']['max_abs']:g} max |diff|, float32.", ""]
    lines += ["| backend | max abs logits | max abs features | top-1 agree | top-5 agree "
              "| .weights.h5 == .keras | result |", "|---|---|---|---|---|---|---|"]
    for backend, row in report["backends"].items():
        cells = [backend, _fmt(row["max_abs_logits"]), _fmt(row["max_abs_features"]),
                 "n/a" if row["top1_agreement"] is None else f"{row['top1_agreement']:.0%}",
                 "n/a" if row["top5_agreement"] is None else f"{row['top5_agreement']:.0%}",
                 "yes" if row.get("weights_h5_identical") else "NO",
                 "pass" if row["passed"] else "FAIL"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Status: **{report['status']}**")
    lines += bf16_markdown_lines(report)
    if report.get("exports"):                  # videoswin-export / convert --export
        from converter.export import markdown_lines

        lines += markdown_lines(report["exports"])
    return "\n".join(lines) + "\n"


def bf16_markdown_lines(report):
    """The bf16 table of a report (none when `--bf16` was not asked for)."""
    table = bf16_table(report["backends"])
    if not table:
        return []
    return ["", "bfloat16 (`mixed_bfloat16`: the `.weights.h5` loaded under it) against the "
            f"same float32 reference on the same clips. {BF16_MEANING}", ""] + table
