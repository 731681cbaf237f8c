#!/usr/bin/env python
"""Convert the whole zoo in one command: every config under configs/recognition/swin/ (or a
selection), one after another, each in its own process; then regenerate MODEL_ZOO.md.

For each config: take its checkpoint (from --checkpoint-dir, matched by the file name the
config records and checked against the sha256 it records; else downloaded from the config's
URL into the cache), run `videoswin-convert` (conversion, parity on the chosen backends,
exports with --export), and with --publish ORG run `videoswin-publish` to ORG/<config>.

Resumable: a config whose folder already holds a verified conversion of the same checkpoint
(sha256) by the same videoswin version, with parity passed on every chosen backend (and every
--export format passed), is skipped; so is a publish whose record in the manifest already
covers the folder's artifacts. One config failing does not stop the others. A final table says
what happened to each (also appended to $GITHUB_STEP_SUMMARY when set); the exit status is 1
if any failed, 2 for a usage error.

Memory stays within one conversion's peak: conversions and publishes run in child processes,
one at a time; this process only reads configs and manifests and hashes checkpoints.

Usage: python scripts/convert_zoo.py [--select PATTERN,...] [--checkpoint-dir DIR]
           [--output-root converted] [--backends torch,jax,tensorflow] [--export FORMATS]
           [--publish ORG] [--zoo-output MODEL_ZOO.md | --no-zoo] [--dry-run]
"""

import argparse
import collections
import fnmatch
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "torch")       # for the child processes

import videoswin  # noqa: E402  (no Keras: only the version)
from converter.config import CONFIG_ROOT, ConfigError, list_configs, load_spec  # noqa: E402
from videoswin.core import backends as backend_names  # noqa: E402
from videoswin.core import naming  # noqa: E402
from videoswin.core.manifest import Manifest, ManifestError, sha256, write_text_atomic  # noqa: E402

DEFAULT_CONFIGS = CONFIG_ROOT / "recognition" / "swin"
DEFAULT_ZOO = ROOT / "MODEL_ZOO.md"
LOG_DIR = ".zoo-logs"            # hidden: the zoo's manifest search skips it
TAIL_LINES = 20


class Failed(Exception):
    """One config's step failed; the message says why, in one line."""


@dataclass
class Row:
    name: str
    config: str
    result: str = "pending"       # converted | up to date | failed | would convert
    parity: str = ""
    exports: str = ""
    published: str = ""
    seconds: float = 0.0
    note: str = ""


# -- selection -----------------------------------------------------------------------------

def find_configs(paths, select):
    """Config files under `paths` (folders or files), filtered by the comma-separated
    `select` patterns (fnmatch on the config name); sorted, each once."""
    found = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found += [Path(p) for p in list_configs(path)]
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"error: --configs {path}: no such file or folder")
    patterns = [p.strip() for p in (select or "").split(",") if p.strip()]
    if patterns:
        chosen = [p for p in found if any(fnmatch.fnmatchcase(p.stem, pat) for pat in patterns)]
        if not chosen:
            raise SystemExit(f"error: --select {select!r} matches none of the "
                             f"{len(found)} configs under {', '.join(map(str, paths))}")
        found = chosen
    unique = sorted({p.resolve(): p for p in found}.values(), key=lambda p: p.stem)
    stems = collections.Counter(p.stem for p in unique)
    twins = [s for s, n in stems.items() if n > 1]
    if twins:
        raise SystemExit(f"error: several configs are named {twins[0]!r}; each conversion "
                         "folder is named by its config, so the names must differ")
    return unique


# -- checkpoints ---------------------------------------------------------------------------

def checkpoint_names(spec):
    if spec.checkpoint.filename:
        return [spec.checkpoint.filename]
    return [f"{spec.name}.pth", f"{spec.name}.safetensors"]


def local_checkpoint(spec, folder):
    """(path, sha256) of the config's checkpoint in `folder`, matched by file name and checked
    against the sha256 the config records; `Failed` when missing or different."""
    names = checkpoint_names(spec)
    for name in names:
        try:
            path = naming.inside(folder, name, "checkpoint file name")
        except ValueError as err:
            raise Failed(f"config {spec.name}: {err}") from None
        if os.path.isfile(path):
            break
    else:
        raise Failed(f"checkpoint {names[0]} not found in --checkpoint-dir {folder}")
    digest = sha256(path)
    expected = (spec.checkpoint.sha256 or "").strip().lower()
    if expected and digest != expected:
        raise Failed(f"{path}: sha256 {digest} is not the config's {expected}; not converted")
    return path, digest


def downloaded_checkpoint(spec, log):
    """(path, sha256) of the config's checkpoint, downloaded into the cache unless already
    there (checked against the config's sha256 when it records one)."""
    from converter import checkpoint as ckpt

    if not spec.checkpoint.url:
        raise Failed(f"config {spec.name} names no checkpoint URL; pass --checkpoint-dir")
    try:
        path = ckpt.fetch(spec.checkpoint.url, spec.checkpoint.filename,
                          sha256=spec.checkpoint.sha256, log=log)
    except ckpt.CheckpointError as err:
        raise Failed(" ".join(str(err).split())) from None
    return path, sha256(path)


def known_checkpoint(spec, folder, log):
    """(cached path or None, sha256 or None) of the config's checkpoint without downloading
    it: the cached copy's, else the one the folder's conversion fetched from the config's URL
    (its manifest records the URL and the sha256), else (None, None)."""
    from converter import checkpoint as ckpt

    url = spec.checkpoint.url
    if not url:
        raise Failed(f"config {spec.name} names no checkpoint URL; pass --checkpoint-dir")
    cached = os.path.join(ckpt.cache_dir(), ckpt.cached_name(url, spec.checkpoint.filename))
    if os.path.isfile(cached):
        return downloaded_checkpoint(spec, log)
    try:
        source = Manifest.read(folder)["source_checkpoint"]
    except ManifestError:
        return None, None
    return None, (source.get("sha256") if source.get("url") == url else None)


# -- resuming ------------------------------------------------------------------------------

def up_to_date(folder, digest, backends, exports):
    """(manifest or None, why not): whether `folder` holds a verified conversion of the
    checkpoint `digest` by this videoswin version, parity passed on `backends`, and every
    format of `exports` passed."""
    try:
        manifest = Manifest.read(folder)
    except ManifestError:
        return None, "no conversion yet"
    source = manifest["source_checkpoint"]
    if manifest.is_random or source.get("sha256") != digest:
        return None, "converted from another checkpoint"
    version = (manifest.get("versions") or {}).get("videoswin")
    if version != videoswin.__version__:
        return None, f"converted by videoswin {version}, this is {videoswin.__version__}"
    parity = manifest["parity"]
    checked = parity.get("backends") or {}
    if backends and (parity.get("status") != "passed"
                     or any(not (checked.get(b) or {}).get("passed") for b in backends)):
        return None, "parity not passed on every chosen backend"
    done = manifest.get("exports") or {}
    missing = [f for f in exports if (done.get(f) or {}).get("status") != "passed"]
    if missing:
        return None, f"export {', '.join(missing)} not passed"
    try:
        manifest.verify(folder)
    except ManifestError as err:
        return None, f"artifacts do not verify ({err})"
    return manifest, ""


def published_already(manifest, repo_id):
    """Whether the manifest records a publish to `repo_id` covering every artifact as is."""
    hub = manifest.get("hub") or {}
    files = hub.get("files") or {}
    return hub.get("repo_id") == repo_id and all(
        (files.get(name) or {}).get("sha256") == record["sha256"]
        for name, record in manifest["artifacts"].items())


# -- child processes -----------------------------------------------------------------------

def run_child(cmd, log_path, echo, timeout=None):
    """Run `cmd`, its output to `log_path` (and, with `echo`, to stderr, indented); returns
    (exit status, last lines). `timeout` seconds: killed after that."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tail = collections.deque(maxlen=TAIL_LINES)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(map(str, cmd))}\n")
        log.flush()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", env=env)
        timer = None
        if timeout:
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
        try:
            for line in proc.stdout:
                log.write(line)
                line = line.rstrip("\n")
                # progress bars redraw with \r: keep the last state of each line
                line = line.rsplit("\r", 1)[-1]
                if line.strip():
                    tail.append(line)
                    if echo:
                        print(f"    {line}", file=sys.stderr, flush=True)
            code = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if timeout and code < 0:
        tail.append(f"killed after --timeout {timeout:g} s")
    return code, list(tail)


def why_failed(code, tail):
    """One line: the child's own error line when it printed one, else its last line."""
    for line in reversed(tail):
        text = line.strip()
        if text.startswith(("error:", "Error:")) or "Error:" in text[:40]:
            return text
    return f"exit {code}" + (f": {tail[-1].strip()}" if tail else "")


def convert_command(args, config, checkpoint, folder):
    cmd = [sys.executable, "-m", "videoswin_tools.convert", "--config", config,
           "--output-dir", folder]
    if checkpoint is not None:           # else the config's URL, cached by now
        cmd += ["--checkpoint", checkpoint]
    if args.backends is not None:
        cmd += ["--backends", args.backends]
    if args.parity_clip:
        cmd += ["--parity-clip", *map(str, args.parity_clip)]
    if args.parity_clips is not None:
        cmd += ["--parity-clips", str(args.parity_clips)]
    if args.tolerance is not None:
        cmd += ["--tolerance", repr(args.tolerance)]
    if args.reference:
        cmd += ["--reference", args.reference]
    if args.export:                      # only when asked: the option is newer than the CLI
        cmd += ["--export", ",".join(args.exports)]
    if args.force:
        cmd.append("--force")
    if args.trust_checkpoint:
        cmd.append("--trust-checkpoint")
    return cmd


# -- cells ---------------------------------------------------------------------------------

def parity_cell(manifest):
    parity = manifest["parity"]
    rows = parity.get("backends") or {}
    if parity.get("status") == "skipped" or not rows:
        return "not checked"
    parts = []
    for backend, row in rows.items():
        diffs = [row.get(k) for k in ("max_abs_logits", "max_abs_features")
                 if row.get(k) is not None]
        parts.append(f"{backend} {max(diffs):.1e}" if diffs else f"{backend} n/a")
    text = ", ".join(parts)
    return text if parity.get("status") == "passed" else f"{parity.get('status')}: {text}"


def exports_cell(manifest):
    exports = manifest.get("exports") or {}
    return ", ".join(f if (r or {}).get("status") == "passed" else f"{f} (failed)"
                     for f, r in exports.items()) or "—"


def duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours
            else f"{rest // 60}:{rest % 60:02d}")


def table(rows):
    lines = ["| # | config | result | parity (max \\|diff\\|) | exports | published | time "
             "| note |",
             "|---:|---|---|---|---|---|---:|---|"]
    for i, row in enumerate(rows, 1):
        note = row.note.replace("|", "\\|")
        lines.append(f"| {i} | {row.name} | {row.result} | {row.parity or '—'} | "
                     f"{row.exports or '—'} | {row.published or '—'} | "
                     f"{duration(row.seconds)} | {note} |")
    counts = collections.Counter(r.result for r in rows)
    lines += ["", ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))]
    return "\n".join(lines) + "\n"


# -- one config ----------------------------------------------------------------------------

def process(args, config, row, log):
    """Take `config` through checkpoint, conversion and publishing; fills `row`."""
    try:
        spec = load_spec(config)
    except ConfigError as err:
        raise Failed(str(err)) from None
    row.name = spec.name
    folder = Path(args.output_root) / spec.name
    logs = Path(args.output_root) / LOG_DIR
    if args.checkpoint_dir:
        checkpoint, digest = local_checkpoint(spec, args.checkpoint_dir)
    else:
        checkpoint, digest = known_checkpoint(spec, folder, log)

    def current():
        if args.reconvert:
            return None, "--reconvert"
        if not digest:
            return None, "checkpoint not downloaded yet"
        return up_to_date(folder, digest, args.chosen_backends, args.exports)

    manifest, why = current()
    if manifest is None and not args.dry_run and not args.checkpoint_dir:
        if checkpoint is None:
            # Into the cache, where videoswin-convert finds it and records the URL, so
            # that a later run knows this conversion without downloading again.
            checkpoint, digest = downloaded_checkpoint(spec, log)
            manifest, why = current()
        checkpoint = None                # videoswin-convert takes it from the cache
    if manifest is not None:
        row.result = "up to date"
    elif args.dry_run:
        row.result, row.note = "would convert", why
        return
    else:
        log(f"  converting ({why})")
        code, tail = run_child(convert_command(args, config, checkpoint, folder),
                               logs / f"{spec.name}.log", not args.quiet, args.timeout)
        try:
            manifest = Manifest.read(folder)
        except ManifestError:
            manifest = None
        if manifest is not None and (manifest["source_checkpoint"].get("sha256") != digest):
            manifest = None                       # an earlier conversion, left as it was
        if manifest is not None:
            row.parity, row.exports = parity_cell(manifest), exports_cell(manifest)
        if code != 0:
            raise Failed(f"videoswin-convert: {why_failed(code, tail)} "
                         f"(log: {logs / (spec.name + '.log')})")
        if manifest is None:
            raise Failed(f"videoswin-convert wrote no readable manifest to {folder}")
        row.result = "converted"
    row.parity, row.exports = parity_cell(manifest), exports_cell(manifest)
    if args.publish:
        repo_id = f"{args.publish}/{spec.name}"
        if published_already(manifest, repo_id):
            row.published = f"{repo_id} (up to date)"
            return
        if args.dry_run:
            row.published = f"would publish to {repo_id}"
            return
        log(f"  publishing to {repo_id}")
        cmd = [sys.executable, "-m", "videoswin_tools.publish", str(folder), "--repo-id",
               repo_id]
        code, tail = run_child(cmd, logs / f"{spec.name}.log", not args.quiet, args.timeout)
        if code != 0:
            raise Failed(f"videoswin-publish: {why_failed(code, tail)} (the conversion in "
                         f"{folder} is intact)")
        try:
            commit = (Manifest.read(folder).get("hub") or {}).get("commit") or ""
        except ManifestError:
            commit = ""
        row.published = f"{repo_id}" + (f" @ {commit[:10]}" if commit else "")


# -- main ----------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="Example: python scripts/convert_zoo.py --checkpoint-dir ~/checkpoints "
               "--select 'swin_tiny*,swin_small*' --backends torch,jax",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", action="append", metavar="PATH",
                        help=f"config folder or file; repeatable (default: {DEFAULT_CONFIGS})")
    parser.add_argument("--select", metavar="PATTERNS",
                        help="comma-separated fnmatch patterns on the config names, e.g. "
                             "'swin_tiny*,*kinetics600*' (default: every config)")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="take checkpoints from here (offline), matched by the file name "
                             "each config records and checked against its sha256; a missing "
                             "one fails that config. Default: download from the config's URL")
    parser.add_argument("--output-root", default="converted", metavar="DIR",
                        help="conversions go to DIR/<config> (default: %(default)s)")
    parser.add_argument("--backends", default=None,
                        help="parity backends, comma-separated, or 'none' (default: every "
                             "installed one)")
    parser.add_argument("--parity-clip", nargs=3, type=int, metavar=("T", "H", "W"),
                        help="parity clip size (default: each config's test clip)")
    parser.add_argument("--parity-clips", type=int, metavar="N",
                        help="number of parity clips (default: videoswin-convert's)")
    parser.add_argument("--tolerance", type=float, help="max |diff| (default: 1e-4)")
    parser.add_argument("--reference", choices=["auto", "mmaction2", "videoswin-reference"],
                        help="the PyTorch model parity runs against (default: auto)")
    parser.add_argument("--export", metavar="FORMATS",
                        help="also export (onnx,saved_model,litert,openvino or 'all'); passed "
                             "to videoswin-convert --export")
    parser.add_argument("--publish", metavar="ORG",
                        help="publish each passing conversion to the Hub as ORG/<config> "
                             "(HF_TOKEN / login; HF_ENDPOINT honoured)")
    parser.add_argument("--zoo-output", metavar="PATH",
                        help="regenerate this zoo file from the configs and DIR's manifests "
                             f"(default: {DEFAULT_ZOO.name} for the default configs)")
    parser.add_argument("--no-zoo", action="store_true", help="do not regenerate the zoo")
    parser.add_argument("--reconvert", action="store_true",
                        help="convert even configs whose conversion is up to date")
    parser.add_argument("--force", action="store_true",
                        help="passed to videoswin-convert: replace folders holding files no "
                             "conversion wrote")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="passed to videoswin-convert: allow full unpickling")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="kill a config's conversion (or publish) after this long")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be converted; convert and publish nothing")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="do not echo the conversions' own output (it is still logged "
                             "under DIR/.zoo-logs/)")
    args = parser.parse_args(argv)
    try:
        args.chosen_backends = backend_names.parse_backends(args.backends)
    except ValueError as err:
        parser.error(f"--backends: {err}")
    try:
        args.exports = naming.parse_export_formats(args.export) if args.export else []
    except ValueError as err:
        parser.error(f"--export: {err}")
    if args.parity_clip and not all(0 < n <= 4096 for n in args.parity_clip):
        parser.error("--parity-clip: each of T H W must be in 1..4096")
    if args.parity_clips is not None and args.parity_clips < 1:
        parser.error("--parity-clips must be at least 1")
    if args.checkpoint_dir and not os.path.isdir(args.checkpoint_dir):
        parser.error(f"--checkpoint-dir {args.checkpoint_dir}: no such folder")
    if args.publish:
        from videoswin.core.naming import check_plain_name

        try:
            check_plain_name(args.publish, "--publish ORG")
        except ValueError as err:
            parser.error(str(err))
    return args


def regenerate_zoo(args, config_paths, log):
    """Write the zoo for every config of the chosen folders and DIR's manifests; returns an
    error message or None."""
    from videoswin_tools.zoo import ZooError, generate

    default_set = args.configs is None
    output = args.zoo_output or (DEFAULT_ZOO if default_set else None)
    if args.no_zoo or args.dry_run:
        return None
    if output is None:
        log("zoo: not regenerated (pass --zoo-output for configs other than the default set)")
        return None
    try:
        specs = [load_spec(p) for p in config_paths]
        root = Path(args.output_root)
        text = generate([root] if root.is_dir() else [], specs, log=log)
        write_text_atomic(str(output), text)
    except (ZooError, ConfigError, OSError) as err:
        return f"zoo: {err}"
    log(f"zoo: wrote {output}")
    return None


def main(argv=None):
    args = parse_args(argv)
    sources = args.configs or [str(DEFAULT_CONFIGS)]
    configs = find_configs(sources, args.select)
    every = find_configs(sources, None)               # the zoo lists every config
    log = (lambda message: print(message, file=sys.stderr, flush=True))
    rows, timings = [], []
    started = time.perf_counter()
    for i, config in enumerate(configs, 1):
        elapsed = time.perf_counter() - started
        remaining = len(configs) - i + 1
        eta = (f"ETA ~{duration(sum(timings) / len(timings) * remaining)}" if timings
               else "ETA unknown until one conversion finishes")
        log(f"[{i}/{len(configs)}] {config.stem} (elapsed {duration(elapsed)}, {eta})")
        row = Row(name=config.stem, config=str(config))
        begin = time.perf_counter()
        try:
            process(args, str(config), row, log)
        except Failed as err:
            row.result, row.note = "failed", str(err)
        except Exception as err:  # noqa: BLE001  (one config must not stop the others)
            row.result, row.note = "failed", f"{type(err).__name__}: {err}"
        row.seconds = time.perf_counter() - begin
        if row.result == "converted" or (row.result == "failed" and row.seconds > 5):
            timings.append(row.seconds)
        log(f"  -> {row.result}" + (f": {row.note}" if row.note else "")
            + f" ({duration(row.seconds)})")
        rows.append(row)
    zoo_error = regenerate_zoo(args, every, log)
    text = table(rows)
    print(text, end="")
    if zoo_error:
        print(f"error: {zoo_error}", file=sys.stderr)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(f"### Zoo conversion\n\n{text}\n")
        except OSError as err:
            print(f"error: $GITHUB_STEP_SUMMARY ({summary}): {err}", file=sys.stderr)
    return 1 if zoo_error or any(r.result == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
