"""`videoswin-convert` and `videoswin-parity`: the converter's command line."""

from converter.backend import select_backend

select_backend()  # before anything imports keras

import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import click  # noqa: E402

EXAMPLE = ("videoswin-convert --config configs/recognition/swin/"
           "swin_base_patch244_window877_kinetics400_22k.py --checkpoint swin_base_22k.pth")


class Progress:
    """Numbered steps with elapsed time on stderr; silent with --quiet."""

    def __init__(self, total, quiet):
        self.total, self.quiet, self.step, self.start = total, quiet, 0, time.perf_counter()

    def __call__(self, message):
        if not self.quiet:
            click.echo(message, err=True)

    def begin(self, message):
        self.step += 1
        self(f"[{self.step}/{self.total}] {message} "
             f"(+{time.perf_counter() - self.start:.1f}s)")


def _macs(spec, with_head):
    """Analytic multiply-accumulates of one test view (the config's clip)."""
    from videoswin.flops import count_macs

    count = count_macs(spec.clip_shape, embed_dim=spec.embed_dim, depths=spec.depths,
                       num_heads=spec.num_heads, patch_size=spec.patch_size,
                       window_size=spec.window_size, mlp_ratio=spec.mlp_ratio,
                       in_channels=spec.in_channels,
                       num_classes=spec.num_classes if with_head else None)
    return {"macs_per_view": int(count.total), "gmacs_per_view": round(count.gmacs, 2),
            "view": list(spec.clip_shape)}


def _fail(message, code=1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _parse_backends(value):
    from converter.parity import installed_backends

    if value is None:
        return installed_backends()
    if value.strip().lower() in ("", "none"):
        return []
    names = [b.strip() for b in value.split(",") if b.strip()]
    unknown = [b for b in names if b not in ("torch", "jax", "tensorflow")]
    if unknown:
        raise click.BadParameter(f"unknown backend(s) {', '.join(unknown)}; choose from "
                                 "torch, jax, tensorflow, or 'none'", param_hint="--backends")
    missing = [b for b in names if b not in installed_backends()]
    if missing:
        raise click.BadParameter(f"backend(s) {', '.join(missing)} not installed here",
                                 param_hint="--backends")
    return names


def convert(config, checkpoint=None, output_dir=None, backends=None, parity_clip=None,
            parity_clips=2, random_weights=None, tolerance=None, trust_checkpoint=False,
            reference="auto", bf16=False, quiet=False):
    """The whole conversion; returns the manifest dict. Raises on any failure."""
    options = dict(locals())
    from concurrent.futures import ThreadPoolExecutor

    from converter import artifacts

    # Hash a given checkpoint on a second thread while the imports and the loading run.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    source_hash = (hasher.submit(artifacts.sha256, checkpoint)
                   if random_weights is None and checkpoint is not None
                   and os.path.isfile(checkpoint) else None)
    try:
        return _convert(source_hash=source_hash, **options)
    finally:
        hasher.shutdown(cancel_futures=True)


def _convert(config, checkpoint, output_dir, backends, parity_clip, parity_clips,
             random_weights, tolerance, trust_checkpoint, reference, bf16, quiet, source_hash):
    import keras
    import numpy as np

    import videoswin
    from converter import artifacts, mapping, parity
    from converter import checkpoint as ckpt
    from converter.config import load_spec

    progress = Progress(5 if backends != [] else 4, quiet)
    progress.begin(f"config {config}")
    spec = load_spec(config)
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
        digest = artifacts.sha256(checkpoint) if source_hash is None else source_hash.result()
        source = {"name": os.path.basename(checkpoint), "sha256": digest,
                  "size": os.path.getsize(checkpoint), "random_weights_seed": random_weights,
                  "url": fetched_url}
    progress(f"  {source['name']}: layout {loaded.layout}, {len(loaded.state)} tensors, "
             f"{'with' if loaded.has_head else 'without'} classification head")

    progress.begin("mapping weights")
    with_head = loaded.has_head and bool(spec.num_classes)

    def models():
        backbone = videoswin.VideoSwinBackbone(**spec.backbone_kwargs(),
                                               name="video_swin_backbone")
        return backbone, (videoswin.VideoSwinClassifier(backbone, spec.num_classes,
                                                        dropout=spec.head_dropout,
                                                        name="video_swin")
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
        manifest = {
            "config": spec.name,
            "config_path": os.path.relpath(spec.path) if os.path.isabs(spec.path) else spec.path,
            "spec": spec.to_dict(),
            "source_checkpoint": source,
            "layout": loaded.layout,
            "with_head": with_head,
            "coverage": coverage.summary(),
            "params": int((classifier or backbone).count_params()),
            "flops": _macs(spec, with_head),
            "backbone_params": int(backbone.count_params()),
            "versions": {"videoswin": videoswin.__version__, "keras": keras.__version__,
                         "numpy": np.__version__},
        }
        report = None
        if backends != []:
            progress.begin(f"parity on {', '.join(backends or parity.installed_backends())}")
            report = parity.check(
                spec, loaded.state, stage, spec.name, backends=backends, count=parity_clips,
                clip_shape=parity_clip, tolerance=tolerance or parity.DEFAULT_TOLERANCE,
                reference=reference, bf16=bf16, log=progress)
            artifacts.write_json(os.path.join(stage, f"{spec.name}.parity.json"), report)
            with open(os.path.join(stage, f"{spec.name}.parity.md"), "w") as handle:
                handle.write(parity.markdown(report, title=spec.name))
            for name in (f"{spec.name}.parity.json", f"{spec.name}.parity.md"):
                described[name] = artifacts.describe(os.path.join(stage, name))
            manifest["parity"] = parity.summary(report)
        else:
            manifest["parity"] = {"status": "skipped"}
        manifest["artifacts"] = described
        artifacts.write_json(os.path.join(stage, "manifest.json"), manifest)
    if report is not None and not quiet:
        click.echo(parity.markdown(report, title=spec.name))
    manifest["output_dir"] = output_dir
    return manifest


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog=f"Example:\n\n  {EXAMPLE}\n\n  videoswin-convert --config "
               "configs/recognition/swin/swin_tiny_patch244_window877_kinetics400_1k.py "
               "--random-weights 0 --parity-clip 8 64 64")
@click.option("--config", "config", required=True, type=click.Path(dir_okay=False),
              help="mmaction2-style config (ours in configs/, or an upstream 0.x / 1.x file).")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="Official checkpoint (.pth or .safetensors). Default: the config's URL, "
                   "downloaded into ~/.cache/videoswin (needs network).")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Where artifacts go. Default: ./converted/<config-name>/.")
@click.option("--backends", default=None,
              help="Comma-separated Keras backends for parity (torch,jax,tensorflow), or "
                   "'none' to skip parity. Default: every installed backend.")
@click.option("--parity-clip", nargs=3, type=int, metavar="T H W",
              help="Clip size for parity. Default: the config's test clip (e.g. 32 224 224).")
@click.option("--parity-clips", default=2, show_default=True, type=click.IntRange(1),
              help="Number of seeded random clips for parity.")
@click.option("--tolerance", type=float, default=None,
              help="Max |diff| allowed on logits and features (float32). Default: 1e-4.")
@click.option("--reference", type=click.Choice(["auto", "mmaction2", "videoswin-reference"]),
              default="auto", show_default=True,
              help="PyTorch model parity runs against: mmaction2's own module when installed "
                   "(auto), or the project's PyTorch reference.")
@click.option("--bf16", is_flag=True, help="Also report parity under mixed_bfloat16.")
@click.option("--random-weights", type=int, metavar="SEED",
              help="Fabricate an official-layout checkpoint with every tensor random and run "
                   "the whole pipeline offline.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling (weights_only=False) for a checkpoint you trust.")
@click.option("--push-to-hub", metavar="ORG/NAME",
              help="After a passing conversion, publish the artifacts to this Hub repo.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final line.")
def main(config, checkpoint, output_dir, backends, parity_clip, parity_clips, tolerance,
         reference, bf16, random_weights, trust_checkpoint, push_to_hub, quiet):
    """Convert an official Video Swin checkpoint to Keras 3 artifacts and prove parity.

    Reads CONFIG, loads the checkpoint safely (weights_only), maps every tensor onto the
    Keras model with a full coverage account, writes <name>.weights.h5 / .keras (classifier
    and backbone), checks logits and features against the PyTorch original on each Keras
    backend in its own process, and writes <name>.parity.json and manifest.json. Nothing
    is written when a step before parity fails; a parity failure keeps the artifacts,
    records "failed" in the manifest and exits with status 1.
    """
    from converter.artifacts import OutputError
    from converter.checkpoint import CheckpointError
    from converter.config import ConfigError
    from converter.mapping import MappingError

    if checkpoint is not None and random_weights is not None:
        _fail("--checkpoint and --random-weights are mutually exclusive.", 2)
    try:
        chosen = _parse_backends(backends)
    except click.BadParameter as err:
        _fail(err.format_message(), 2)
    try:
        manifest = convert(config, checkpoint, output_dir, chosen, parity_clip, parity_clips,
                           random_weights, tolerance, trust_checkpoint, reference, bf16, quiet)
    except ConfigError as err:
        _fail(f"config: {err}", 2)
    except (CheckpointError, MappingError, OutputError) as err:
        _fail(str(err))
    except RuntimeError as err:
        _fail(str(err))
    status = manifest["parity"]["status"]
    click.echo(f"{manifest['config']}: wrote {len(manifest['artifacts'])} files to "
               f"{manifest['output_dir']} (parity: {status})")
    if status == "failed":
        _fail("parity check failed; see the report above and "
              f"{manifest['output_dir']}/{manifest['config']}.parity.json")
    if push_to_hub:
        from converter.publish import PublishError, publish

        try:
            result = publish(manifest["output_dir"], push_to_hub,
                             log=None if quiet else (lambda m: click.echo(m, err=True)))
        except PublishError as err:
            _fail(f"the artifacts in {manifest['output_dir']} are intact, but publishing "
                  f"failed: {err}")
        click.echo(f"published to {result.url or push_to_hub} at {result.revision} "
                   f"({'new commit ' + str(result.commit) if result.committed else 'unchanged'})")


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Example:\n\n  videoswin-parity converted/swin_tiny_patch244_window877_"
               "kinetics400_1k --checkpoint swin_tiny_patch244_window877_kinetics400_1k.pth "
               "--backends jax --parity-clip 16 112 112")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="The source checkpoint the artifacts were converted from.")
@click.option("--backends", default=None, help="Comma-separated Keras backends (default: all "
              "installed).")
@click.option("--parity-clip", nargs=3, type=int, metavar="T H W",
              help="Clip size. Default: the config's test clip.")
@click.option("--parity-clips", default=2, show_default=True, type=click.IntRange(1))
@click.option("--tolerance", type=float, default=None, help="Max |diff| (default 1e-4).")
@click.option("--reference", type=click.Choice(["auto", "mmaction2", "videoswin-reference"]),
              default="auto", show_default=True)
@click.option("--bf16", is_flag=True, help="Also report parity under mixed_bfloat16.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling for a checkpoint you trust.")
def parity_main(output_dir, checkpoint, backends, parity_clip, parity_clips, tolerance,
                reference, bf16, trust_checkpoint):
    """Re-run the parity check on existing conversion artifacts in OUTPUT_DIR.

    Reads OUTPUT_DIR/manifest.json, loads CHECKPOINT, compares, rewrites the parity report
    and the manifest's parity summary. Exits 1 when parity fails.
    """
    import json

    from converter import artifacts, parity
    from converter import checkpoint as ckpt
    from converter.spec import spec_from_dict

    manifest_path = os.path.join(output_dir, "manifest.json")
    try:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        spec = spec_from_dict(manifest["spec"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        _fail(f"{manifest_path} is not a videoswin conversion manifest ({err}).", 2)
    try:
        chosen = _parse_backends(backends)
        loaded = ckpt.load(checkpoint, trust_pickle=trust_checkpoint)
        report = parity.check(spec, loaded.state, output_dir, spec.name, backends=chosen,
                              count=parity_clips, clip_shape=parity_clip,
                              tolerance=tolerance or parity.DEFAULT_TOLERANCE,
                              reference=reference, bf16=bf16,
                              log=lambda m: click.echo(m, err=True))
    except click.BadParameter as err:
        _fail(err.format_message(), 2)
    except (ckpt.CheckpointError, RuntimeError) as err:
        _fail(str(err))
    artifacts.write_json(os.path.join(output_dir, f"{spec.name}.parity.json"), report)
    with open(os.path.join(output_dir, f"{spec.name}.parity.md"), "w") as handle:
        handle.write(parity.markdown(report, title=spec.name))
    manifest["parity"] = parity.summary(report)
    for name in (f"{spec.name}.parity.json", f"{spec.name}.parity.md"):
        manifest.setdefault("artifacts", {})[name] = artifacts.describe(
            os.path.join(output_dir, name))
    artifacts.write_json(manifest_path, manifest)
    click.echo(parity.markdown(report, title=spec.name))
    if report["status"] != "passed":
        _fail("parity check failed")


if __name__ == "__main__":
    main()
