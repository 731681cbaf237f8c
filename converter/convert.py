"""One conversion, end to end: config -> checkpoint -> mapping -> artifacts -> parity ->
manifest, all in a staging folder that moves into place only when every step before parity
succeeded. `videoswin-convert` (`videoswin_tools.convert`) is its command line."""

import os
import sys
import tempfile
import time

from videoswin.core.manifest import Manifest, sha256


class Progress:
    """Numbered steps on stderr, each with the time it took; silent when `quiet`."""

    def __init__(self, total, quiet=False):
        self.total, self.quiet, self.step = total, quiet, 0
        self.started = time.perf_counter()

    def __call__(self, message):
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def begin(self, message):
        self.step += 1
        self(f"[{self.step}/{self.total}] {message} "
             f"(+{time.perf_counter() - self.started:.1f}s)")


def convert(config, checkpoint=None, output_dir=None, backends=None, parity_clip=None,
            parity_clips=2, random_weights=None, tolerance=None, trust_checkpoint=False,
            reference="auto", bf16=False, quiet=False, trust_config=False):
    """The whole conversion; returns the `Manifest` (with `output_dir` set). Raises on any
    failure before parity; a parity failure is recorded in the manifest."""
    options = dict(locals())
    from concurrent.futures import ThreadPoolExecutor

    # Hash a given checkpoint on a second thread while the imports and the loading run.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    source_hash = (hasher.submit(sha256, checkpoint)
                   if random_weights is None and checkpoint is not None
                   and os.path.isfile(checkpoint) else None)
    try:
        return _convert(source_hash=source_hash, **options)
    finally:
        hasher.shutdown(cancel_futures=True)


def _convert(config, checkpoint, output_dir, backends, parity_clip, parity_clips,
             random_weights, tolerance, trust_checkpoint, reference, bf16, quiet, trust_config,
             source_hash):
    import keras
    import numpy as np

    import videoswin
    from converter import artifacts, mapping, parity
    from converter import checkpoint as ckpt
    from converter.config import load_spec
    from videoswin.model import VideoSwinBackbone, VideoSwinClassifier

    progress = Progress(5 if backends != [] else 4, quiet)
    progress.begin(f"config {config}")
    spec = load_spec(config, trust=trust_config)
    output_dir = output_dir or os.path.join("converted", spec.name)
    artifacts.check_writable(output_dir)

    progress.begin("checkpoint")
    fetched_url = None
    with tempfile.TemporaryDirectory(prefix="videoswin-random-") as scratch:
        if random_weights is not None:
            from converter.synthetic import random_checkpoint

            checkpoint = os.path.join(scratch, f"random-weights-seed{random_weights}.pth")
            random_checkpoint(spec, random_weights, checkpoint)
            progress(f"  fabricated a checkpoint in the official layout, every tensor random "
                     f"(seed {random_weights})")
        elif checkpoint is None:
            if not spec.checkpoint.url:
                raise ckpt.CheckpointError(f"config {config!r} names no checkpoint URL; pass "
                                           "--checkpoint PATH.")
            fetched_url = spec.checkpoint.url
            checkpoint = ckpt.fetch(fetched_url, spec.checkpoint.filename, log=progress)
        loaded = ckpt.load(checkpoint, trust_pickle=trust_checkpoint)
        digest = sha256(checkpoint) if source_hash is None else source_hash.result()
        source = {"name": os.path.basename(checkpoint), "sha256": digest,
                  "size": os.path.getsize(checkpoint), "random_weights_seed": random_weights,
                  "url": fetched_url}
    progress(f"  {source['name']}: layout {loaded.layout}, {len(loaded.state)} tensors, "
             f"{'with' if loaded.has_head else 'without'} classification head")

    progress.begin("mapping weights")
    with_head = loaded.has_head and bool(spec.num_classes)

    def models():
        backbone = VideoSwinBackbone(**spec.backbone_kwargs(), name="video_swin_backbone")
        return backbone, (VideoSwinClassifier(backbone, spec.num_classes,
                                              dropout=spec.head_dropout, name="video_swin")
                          if with_head else None)

    backbone, classifier = mapping.build_deferred(models)
    coverage = mapping.assign(classifier or backbone, loaded.state, spec.window_size,
                              ignore_head=not with_head, release=loaded.release)
    if not with_head:
        why = ("the checkpoint has no cls_head" if not loaded.has_head
               else "the config defines no head")
        progress(f"  backbone-only conversion: {why}; writing backbone artifacts only")
    progress(f"  {coverage.summary()['tensors_assigned']} tensors -> "
             f"{len(mapping.keras_variables(classifier or backbone))} Keras variables, "
             f"{coverage.parameters:,} parameters; "
             f"{len(coverage.verified_buffers)} relative_position_index buffers verified")

    with artifacts.staging(output_dir) as stage:
        progress.begin(f"writing artifacts to {output_dir}")
        described = artifacts.save_models(stage, spec.name, classifier, backbone)
        macs = spec.macs(with_head)
        manifest = Manifest({
            "config": spec.name,
            "config_path": os.path.relpath(spec.path) if os.path.isabs(spec.path) else spec.path,
            "spec": spec.to_dict(),
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
                clip_shape=parity_clip,
                tolerance=parity.DEFAULT_TOLERANCE if tolerance is None else tolerance,
                reference=reference, bf16=bf16, log=progress)
            described.update(parity.write_reports(stage, spec.name, report))
            manifest["parity"] = parity.summary(report)
        else:
            manifest["parity"] = {"status": "skipped"}
        manifest["artifacts"] = described
        manifest.write(stage)
    manifest.report = report
    manifest.output_dir = output_dir
    return manifest


def rerun_parity(output_dir, checkpoint, backends=None, parity_clip=None, parity_clips=2,
                 tolerance=None, reference="auto", bf16=False, trust_checkpoint=False,
                 log=None):
    """Check parity again on the artifacts of `output_dir` against `checkpoint`; rewrites
    the reports and the manifest's parity part. Returns (manifest, report)."""
    from converter import checkpoint as ckpt
    from converter import parity

    manifest = Manifest.read(output_dir)
    spec = manifest.spec
    loaded = ckpt.load(checkpoint, trust_pickle=trust_checkpoint)
    report = parity.check(spec, loaded.state, output_dir, manifest.name, backends=backends,
                          count=parity_clips, clip_shape=parity_clip,
                          tolerance=parity.DEFAULT_TOLERANCE if tolerance is None else tolerance,
                          reference=reference, bf16=bf16, log=log or (lambda message: None))
    manifest["artifacts"].update(parity.write_reports(output_dir, manifest.name, report))
    manifest["parity"] = parity.summary(report)
    manifest.write(output_dir)
    return manifest, report
