"""One conversion, end to end: config -> checkpoint -> mapping -> artifacts -> parity ->
manifest, all in a staging folder that replaces the output folder as a whole only when every
step before parity succeeded (`converter.artifacts.Output`: locked, all or nothing).
`videoswin-convert` (`videoswin_tools.convert`) is its command line."""

import errno
import os
import sys
import tempfile
import time

from videoswin.core.manifest import Manifest, ManifestError, sha256


class Progress:
    """Numbered steps on stderr: each step's line when it starts, and its duration when the
    next one starts (or at `done`); silent when `quiet`."""

    def __init__(self, total, quiet=False):
        self.total, self.quiet, self.step = total, quiet, 0
        self.started = self.step_started = time.perf_counter()

    def __call__(self, message):
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def _close(self):
        if self.step:
            self(f"      done in {time.perf_counter() - self.step_started:.1f}s")

    def begin(self, message):
        self._close()
        self.step += 1
        self.step_started = time.perf_counter()
        self(f"[{self.step}/{self.total}] {message}")

    def done(self):
        """Close the last step and say the total time."""
        self._close()
        self.step = 0
        self(f"total {time.perf_counter() - self.started:.1f}s")


def convert(config, checkpoint=None, output_dir=None, backends=None, parity_clip=None,
            parity_clips=2, random_weights=None, tolerance=None, trust_checkpoint=False,
            reference="auto", bf16=False, quiet=False, trust_config=False, force=False,
            inflate_2d=None, export=None, export_clip=None, export_batch="dynamic",
            parity_jobs=1):
    """The whole conversion; returns the `Manifest` (with `output_dir` set). Raises on any
    failure before parity; a parity failure is recorded in the manifest.

    The new files replace `output_dir` as a whole (`converter.artifacts.Output`): another
    run on the same folder raises `OutputBusy`; a folder holding files that no conversion
    wrote raises `ForeignFiles` unless `force` (they are deleted with the old set); too
    little disk space raises `DiskFullError`. On any error `output_dir` is unchanged.

    `parity_jobs`: backend workers run at once in the parity check (each holds the model).

    `inflate_2d`: a 2D (image) Swin checkpoint to inflate into a backbone instead
    (`converter.inflate`); without any checkpoint or URL, a config whose backbone names
    `pretrained` with `pretrained2d` (the default) is inflated from that file.

    `export`: serving formats (`converter.export`: onnx, saved_model, litert, openvino) to
    build and prove after parity, at `export_clip` (T, H, W; default the config's test view)
    with batch `export_batch` ('dynamic' or an int); recorded in the manifest's `exports`."""
    options = dict(locals())
    from concurrent.futures import ThreadPoolExecutor

    # Hash a given checkpoint on a second thread while the imports and the loading run.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    given = checkpoint if inflate_2d is None else inflate_2d
    source_hash = (hasher.submit(sha256, given)
                   if random_weights is None and given is not None
                   and os.path.isfile(given) else None)
    try:
        return _convert(source_hash=source_hash, **options)
    finally:
        hasher.shutdown(cancel_futures=True)


def _convert(config, checkpoint, output_dir, backends, parity_clip, parity_clips,
             random_weights, tolerance, trust_checkpoint, reference, bf16, quiet, trust_config,
             force, source_hash, inflate_2d, export=None, export_clip=None,
             export_batch="dynamic", parity_jobs=1):
    from converter import artifacts
    from converter.config import load_spec

    progress = Progress((5 if backends != [] else 4) + bool(export), quiet)
    progress.begin(f"config {config}")
    spec = load_spec(config, trust=trust_config)
    if export:                               # bad formats or a missing runtime: fail first
        from converter import export as exports

        export = exports.plan(export, export_clip or spec.clip_shape, export_batch, spec)
    inflate_2d, inflate_url = _inflation_source(config, spec, checkpoint, random_weights,
                                                inflate_2d, trust_config, progress)
    output_dir = output_dir or os.path.join("converted", spec.name)
    with artifacts.Output(output_dir, force=force) as out:
        head = bool(spec.num_classes)
        out.reserve(artifacts.bytes_needed(spec.params(head), spec.params(False), head,
                                           checkpoint=random_weights is not None))
        manifest, report = _write(out, spec, config, checkpoint, backends, parity_clip,
                                  parity_clips, random_weights, tolerance, trust_checkpoint,
                                  reference, bf16, source_hash, progress, inflate_2d,
                                  inflate_url, export=export, parity_jobs=parity_jobs)
        out.commit()
    progress.done()
    manifest.report = report
    manifest.output_dir = output_dir
    return manifest


def _write(out, spec, config, checkpoint, backends, parity_clip, parity_clips, random_weights,
           tolerance, trust_checkpoint, reference, bf16, source_hash, progress,
           inflate_2d=None, inflate_url=None, export=None, parity_jobs=1):
    """Checkpoint -> mapping -> artifacts -> parity -> manifest, into `out`'s staging folder;
    returns (manifest, parity report or None)."""
    import keras
    import numpy as np

    import videoswin
    from converter import artifacts, mapping, parity
    from converter import checkpoint as ckpt
    from videoswin.model import VideoSwinBackbone, VideoSwinClassifier

    output_dir = out.output_dir
    progress.begin("checkpoint")
    fetched_url = None
    if random_weights is not None:
        from converter.synthetic import random_checkpoint

        checkpoint = os.path.join(out.scratch(), f"random-weights-seed{random_weights}.pth")
        try:
            random_checkpoint(spec, random_weights, checkpoint)
        except RuntimeError as err:                # torch.save does not say ENOSPC
            if out.nearly_full():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), checkpoint) from err
            raise
        progress(f"  fabricated a checkpoint in the official layout, every tensor random "
                 f"(seed {random_weights})")
    elif checkpoint is None and inflate_2d is None:
        if not spec.checkpoint.url:
            raise ckpt.CheckpointError(f"config {config!r} names no checkpoint URL; pass "
                                       "--checkpoint PATH.")
        fetched_url = spec.checkpoint.url
        checkpoint = ckpt.fetch(fetched_url, spec.checkpoint.filename,
                                sha256=spec.checkpoint.sha256, log=progress)
    inflated = None
    if inflate_2d is not None:
        from converter import inflate

        inflated = inflate.load(inflate_2d, spec, trust_pickle=trust_checkpoint)
        checkpoint, loaded = inflate_2d, inflated.loaded
    else:
        loaded = ckpt.load(checkpoint, trust_pickle=trust_checkpoint)
    digest = sha256(checkpoint) if source_hash is None else source_hash.result()
    published = (spec.checkpoint.sha256.lower() if spec.checkpoint.sha256 and not inflated
                 else None)
    source = {"name": os.path.basename(checkpoint), "sha256": digest,
              "size": os.path.getsize(checkpoint), "random_weights_seed": random_weights,
              "url": fetched_url, "published_sha256": published,
              "is_published": (None if random_weights is not None else
                               ckpt.matches_published(checkpoint, published, digest=digest)),
              "crc32": loaded.crc32, "upcast_to_float32": loaded.upcast}
    if inflated:
        source.update(inflated_from_2d=True, layout_2d=loaded.layout, url=inflate_url)
        done = inflated.account.summary()
        progress(f"  inflated a 2D Swin ({loaded.layout}): {done['tensors_used']} tensors "
                 f"used, dropped {done['tensors_dropped']}, {done['bias_tables_resized']} "
                 f"bias tables resized {', '.join(done['bias_table_resize'])}".rstrip())
    progress(f"  {source['name']}: layout {loaded.layout}, {len(loaded.state)} tensors, "
             f"{'with' if loaded.has_head else 'without'} classification head")
    if source["is_published"] is False:
        progress(f"  note: its sha256 {digest} is not the config's published {published}: "
                 "the manifest, the model card and the zoo will say so")
    if loaded.upcast:
        progress(f"  {len(loaded.upcast)} tensors stored as "
                 f"{'/'.join(sorted(set(loaded.upcast.values())))} were read as float32")

    progress.begin("mapping weights")
    with_head = loaded.has_head and bool(spec.num_classes)

    def models():
        backbone = VideoSwinBackbone(**spec.backbone_kwargs(), name="video_swin_backbone")
        return backbone, (VideoSwinClassifier(backbone, spec.num_classes,
                                              dropout=spec.head_dropout, name="video_swin")
                          if with_head else None)

    backbone, classifier = mapping.build_deferred(models)
    try:
        coverage = mapping.assign(classifier or backbone, loaded.state, spec.window_size,
                                  ignore_head=not with_head, release=loaded.release)
    except mapping.MappingError as err:
        if not inflated:
            raise
        raise mapping.MappingError(f"2D checkpoint {checkpoint!r} ({loaded.layout}), inflated "
                                   f"(keys as backbone.<2D key>, shapes after inflation): "
                                   f"{err}") from None
    if not with_head:
        why = ("a 2D checkpoint inflates into a backbone" if inflated else
               "the checkpoint has no cls_head" if not loaded.has_head
               else "the config defines no head")
        progress(f"  backbone-only conversion: {why}; writing backbone artifacts only")
    progress(f"  {coverage.summary()['tensors_assigned']} tensors -> "
             f"{len(mapping.keras_variables(classifier or backbone))} Keras variables, "
             f"{coverage.parameters:,} parameters; "
             f"{len(coverage.verified_buffers)} relative_position_index buffers verified")

    stage = out.stage()
    progress.begin(f"writing artifacts to {output_dir}")
    described = artifacts.save_models(stage, spec.name, classifier, backbone)
    macs = spec.macs(with_head)
    manifest = Manifest({
        "config": spec.name,
        "config_path": _shown_path(spec.path),
        "spec": dict(spec.to_dict(), path=_shown_path(spec.path)),
        "source_checkpoint": source,
        "layout": loaded.layout,
        "with_head": with_head,
        "coverage": coverage.summary(),
        "params": int((classifier or backbone).count_params()),
        "flops": {"macs_per_view": int(macs.total), "gmacs_per_view": round(macs.gmacs, 2),
                  "view": list(spec.clip_shape)},
        "backbone_params": int(backbone.count_params()),
        "versions": {"videoswin": videoswin.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
    })
    report = None
    if backends != []:
        progress.begin(f"parity on {', '.join(backends or parity.installed_backends())}")
        report = parity.check(
            spec, loaded.state, stage, spec.name, backends=backends, count=parity_clips,
            clip_shape=parity_clip, tolerance=tolerance, reference=reference, bf16=bf16,
            log=progress, jobs=parity_jobs)
        described.update(parity.write_reports(stage, spec.name, report))
        manifest["parity"] = parity.summary(report)
        if inflated:
            _check_inflation(manifest, spec, inflated, progress)
    else:
        manifest["parity"] = {"status": "skipped"}
    if inflated:
        manifest["inflation"] = inflated.account.summary()
    if export:
        from converter import export as exports

        progress.begin(f"exports: {', '.join(export[0])}")
        exports.export_new_conversion(stage, spec, loaded.state, manifest, report, described,
                                      export, parity_clips, tolerance, reference,
                                      out.scratch(), progress)
    manifest["artifacts"] = described
    manifest.write(stage)
    return manifest, report


def _check_inflation(manifest, spec, inflated, log):
    """Record in the manifest's parity part how the inflated weights compare with those
    mmaction2's own `inflate_weights` makes of the same 2D file; a mismatch fails parity.
    With the parity check (Keras == the reference holding these weights), this shows the
    Keras backbone equals mmaction2's inflated one."""
    from converter.inflate import check_against_mmaction2

    check = check_against_mmaction2(spec, inflated.state2d, inflated.loaded.state)
    manifest["parity"]["inflation_check"] = check
    log(f"  inflation against {check['reference']}: {check['status']}"
        + (f" (max |diff| {check['max_abs_diff']:.2e})" if check["max_abs_diff"] is not None
           else " (mmaction2 is not installed)"))
    if check["status"] == "failed":
        manifest["parity"]["status"] = "failed"


def _inflation_source(config, spec, checkpoint, random_weights, inflate_2d, trust_config,
                      log):
    """(path, URL or None) of the 2D checkpoint to inflate, or (None, None).

    `--inflate-2d PATH` wins; else, with no checkpoint given or named by the config, the
    backbone's `pretrained` (with `pretrained2d`): a local file (relative to the working
    folder, as mmaction2 reads it) or an https URL, fetched into the cache."""
    from converter import checkpoint as ckpt
    from converter.config import pretrained_2d

    if inflate_2d is not None:
        if checkpoint is not None or random_weights is not None:
            raise ckpt.CheckpointError("--inflate-2d cannot be combined with --checkpoint or "
                                       "--random-weights: it is the source checkpoint.")
        return inflate_2d, None
    if checkpoint is not None or random_weights is not None or spec.checkpoint.url:
        return None, None
    pretrained = pretrained_2d(config, trust=trust_config)
    if pretrained is None:
        return None, None
    if "://" in pretrained:
        log(f"  the config names no video checkpoint; inflating its 2D backbone.pretrained "
            f"{pretrained}")
        return ckpt.fetch(pretrained, log=log), pretrained
    if not os.path.isfile(pretrained):
        raise ckpt.CheckpointError(f"the config's backbone.pretrained {pretrained!r} (a 2D "
                                   "checkpoint to inflate) is not a file; pass --inflate-2d "
                                   "PATH or --checkpoint PATH.")
    return pretrained, None


def rerun_parity(output_dir, checkpoint=None, backends=None, parity_clip=None, parity_clips=2,
                 tolerance=None, reference="auto", bf16=False, trust_checkpoint=False,
                 log=None):
    """Check parity again on the artifacts of `output_dir` against `checkpoint`; rewrites
    the reports and the manifest's parity part. Returns (manifest, report).

    Without `checkpoint`, a `--random-weights` conversion's checkpoint is fabricated again
    from its recorded seed (the same bytes: the sha256 check below still applies).

    First the artifacts must match the manifest (`Manifest.verify`) and `checkpoint` must
    be the one they were converted from (its sha256 is the manifest's
    `source_checkpoint.sha256`), else `ManifestError`. The reports and the manifest are
    written as one new set (with links to the unchanged files), which replaces the folder
    as a whole, under the folder's lock, like a conversion; files that no conversion wrote
    are kept."""
    from concurrent.futures import ThreadPoolExecutor

    from converter import artifacts, parity
    from converter import checkpoint as ckpt
    from videoswin.core import naming

    if checkpoint is None:
        with tempfile.TemporaryDirectory(prefix="videoswin-random-") as scratch:
            checkpoint = _refabricate(Manifest.read(output_dir), scratch)
            return rerun_parity(output_dir, checkpoint, backends, parity_clip, parity_clips,
                                tolerance, reference, bf16, trust_checkpoint, log)
    Manifest.read(output_dir)                       # not a conversion folder: fail first
    with artifacts.Output(output_dir, force=True) as out:
        manifest = Manifest.read(output_dir)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
            digest = (hasher.submit(sha256, checkpoint) if os.path.isfile(checkpoint)
                      else None)
            manifest.verify(output_dir)
            digest = digest and digest.result()
        source = manifest["source_checkpoint"]
        if digest is not None and digest != source.get("sha256"):
            seed = source.get("random_weights_seed")
            made = (f"random weights (seed {seed})" if seed is not None
                    else source.get("name") or "an unnamed checkpoint")
            raise ManifestError(
                f"{checkpoint} is not the checkpoint {output_dir} was converted from: its "
                f"sha256 is {digest}, but the manifest records {source.get('sha256')} "
                f"({made}); pass the checkpoint the artifacts were converted from")
        inflated = None
        if source.get("inflated_from_2d"):
            from converter import inflate

            inflated = inflate.load(checkpoint, manifest.spec, trust_pickle=trust_checkpoint)
            loaded = inflated.loaded
        else:
            loaded = ckpt.load(checkpoint, trust_pickle=trust_checkpoint)
        reports = naming.parity_files(manifest.name)
        stage = out.stage(from_existing=True, skip=(naming.MANIFEST, *reports))
        report = parity.check(manifest.spec, loaded.state, stage, manifest.name,
                              backends=backends, count=parity_clips, clip_shape=parity_clip,
                              tolerance=tolerance, reference=reference, bf16=bf16,
                              log=log or (lambda message: None))
        if manifest.get("exports"):          # the exports' proofs stay in the report
            report["exports"] = manifest["exports"]
        manifest["artifacts"].update(parity.write_reports(stage, manifest.name, report))
        manifest["parity"] = parity.summary(report)
        if inflated:
            _check_inflation(manifest, manifest.spec, inflated, log or (lambda message: None))
            report["status"] = manifest["parity"]["status"]
        manifest.write(stage)
        out.commit()
    manifest.source = os.path.join(output_dir, naming.MANIFEST)
    return manifest, report


def _refabricate(manifest, folder):
    """The random checkpoint a `--random-weights` conversion was made from, written again
    into `folder` under its recorded name; `ManifestError` for a real checkpoint."""
    from converter.synthetic import random_checkpoint
    from videoswin.core import naming

    if not manifest.is_random:
        raise ManifestError(f"{manifest.source}: converted from a real checkpoint "
                            f"({manifest['source_checkpoint'].get('name')}); pass it with "
                            "--checkpoint")
    name = manifest["source_checkpoint"].get("name") or \
        f"random-weights-seed{manifest.random_seed}.pth"
    return random_checkpoint(manifest.spec, manifest.random_seed,
                             naming.inside(folder, name, "checkpoint name"))


def _shown_path(path):
    """`path` as recorded in a manifest that may be published: relative to the working
    folder when inside it, else the file name alone (no local absolute path)."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else os.path.basename(path)
