"""`videoswin-convert` and `videoswin-parity`: the converter's command line.

The work is `converter.convert`; this module parses options, reports and, with
`--push-to-hub`, hands a passing conversion to `videoswin_tools.publish`.
"""

from videoswin.core.backends import select_backend

select_backend()  # before anything imports keras

import sys  # noqa: E402

import click  # noqa: E402

from videoswin.core import backends as backend_names  # noqa: E402

EXAMPLE = ("videoswin-convert --config configs/recognition/swin/"
           "swin_base_patch244_window877_kinetics400_22k.py --checkpoint swin_base_22k.pth")


def _fail(message, code=1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _backends(value):
    try:
        return backend_names.parse_backends(value)
    except ValueError as err:
        _fail(f"--backends: {err}", 2)


def _tolerance(value):
    if value is not None and not value >= 0:      # also refuses NaN
        _fail(f"--tolerance must be a number >= 0 (0 means exact), not {value}", 2)
    return value


def _export_options(formats, clip, batch):
    """`convert`'s export arguments, checked (exit 2 for a bad format, clip or batch)."""
    if formats is None:
        return {}
    from videoswin_tools import export as export_cli

    return {"export": export_cli._formats(formats), "export_clip": export_cli._clip(clip),
            "export_batch": export_cli._batch(batch)}


def _clip(value):
    if value and not all(0 < n <= 4096 for n in value):
        _fail(f"--parity-clip {' '.join(map(str, value))}: each of T H W must be in 1..4096", 2)
    return value or None


BF16_HELP = ("Also run the artifacts under mixed_bfloat16 and report max |diff| of logits and "
             "top-1 / top-5 agreement against the same float32 reference (reported, never a "
             "failure; see docs/performance.md).")


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
@click.option("--bf16", is_flag=True, help=BF16_HELP)
@click.option("--random-weights", type=int, metavar="SEED",
              help="Fabricate an official-layout checkpoint with every tensor random and run "
                   "the whole pipeline offline.")
@click.option("--inflate-2d", "inflate_2d", type=click.Path(dir_okay=False), metavar="PATH",
              help="Inflate a 2D (image) Swin checkpoint (official {'model': ...} or timm, "
                   ".pth or .safetensors) into a Video Swin backbone, as mmaction2's "
                   "pretrained2d=True does; writes the backbone files only.")
@click.option("--trust-config", is_flag=True,
              help="Run the config (and its _base_ files) through mmengine, which executes "
                   "them, instead of reading them safely: only for files you trust.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling (weights_only=False), which can execute code: only "
                   "for a checkpoint you trust.")
@click.option("--force", is_flag=True,
              help="Convert even into a folder holding files that no videoswin conversion "
                   "wrote (not listed in its manifest.json): the folder is replaced as a "
                   "whole, so those files are deleted with the old conversion.")
@click.option("--export", "export", metavar="FORMATS",
              help="After parity, export the classifier and prove each export in its own "
                   "runtime (videoswin-export): onnx, saved_model, litert, openvino "
                   "(comma-separated) or 'all'.")
@click.option("--export-clip", nargs=3, type=int, metavar="T H W",
              help="Clip size of the exports. Default: the config's test view.")
@click.option("--export-batch", default="dynamic", show_default=True, metavar="N|dynamic",
              help="Batch size of the exports.")
@click.option("--push-to-hub", metavar="ORG/NAME",
              help="After a passing conversion, publish the artifacts to this Hub repo.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final line.")
def main(config, checkpoint, output_dir, backends, parity_clip, parity_clips, tolerance,
         reference, bf16, random_weights, trust_config, trust_checkpoint, force, push_to_hub,
         quiet, inflate_2d=None, export=None, export_clip=None, export_batch="dynamic"):
    """Convert an official Video Swin checkpoint to Keras 3 artifacts and prove parity.

    Reads CONFIG, loads the checkpoint safely (weights_only), maps every tensor onto the
    Keras model with a full coverage account, writes <name>.weights.h5 / .keras (classifier
    and backbone), checks logits and features against the PyTorch original on each Keras
    backend in its own process, and writes <name>.parity.json and manifest.json.

    One folder holds one conversion, all or nothing: the files are built beside OUTPUT_DIR
    and replace it as a whole, so it holds either the complete previous conversion or the
    complete new one, never a mix (files of an earlier conversion do not survive). One run
    per folder at a time (a lock file beside it); a killed run's leftovers are cleaned up by
    the next one. Nothing changes when a step before parity fails, or the disk is too full
    (exit 1); a parity failure keeps the artifacts, records "failed" in the manifest and
    exits with status 1.
    """
    from converter.artifacts import DiskFullError, OutputError, exit_on_disk_full
    from converter.checkpoint import CheckpointError
    from converter.config import ConfigError
    from converter.convert import convert
    from converter.export import ExportError
    from converter.mapping import MappingError
    from converter.parity import markdown
    from videoswin.core.manifest import ManifestError

    if checkpoint is not None and random_weights is not None:
        _fail("--checkpoint and --random-weights are mutually exclusive.", 2)
    if inflate_2d is not None and (checkpoint is not None or random_weights is not None):
        _fail("--inflate-2d is the source checkpoint: it cannot be combined with "
              "--checkpoint or --random-weights.", 2)
    chosen, tolerance, parity_clip = _backends(backends), _tolerance(tolerance), _clip(parity_clip)
    try:
        manifest = convert(config, checkpoint, output_dir, chosen, parity_clip, parity_clips,
                           random_weights, tolerance, trust_checkpoint, reference, bf16, quiet,
                           trust_config, force=force, inflate_2d=inflate_2d,
                           **_export_options(export, export_clip, export_batch))
    except DiskFullError as err:
        exit_on_disk_full(f"error: {err}")
    except ConfigError as err:
        _fail(str(err), 2)
    except (CheckpointError, MappingError, OutputError, ManifestError, RuntimeError,
            ExportError) as err:
        _fail(str(err))
    if manifest.report is not None and not quiet:
        click.echo(markdown(manifest.report, title=manifest.name))
    status = manifest.parity_status
    click.echo(f"{manifest.name}: wrote {len(manifest['artifacts']) + 1} files to "
               f"{manifest.output_dir} (parity: {status})")
    if status == "failed":
        _fail("parity check failed; see the report above and "
              f"{manifest.output_dir}/{manifest.name}.parity.json")
    if manifest.get("exports"):
        from videoswin_tools.export import report as export_report

        export_report(manifest, list(manifest["exports"]), quiet)    # exit 1 if one failed
    if push_to_hub:
        from videoswin_tools.publish import PublishError, publish

        try:
            result = publish(manifest.output_dir, push_to_hub,
                             log=None if quiet else (lambda m: click.echo(m, err=True)))
        except PublishError as err:
            _fail(f"the artifacts in {manifest.output_dir} are intact, but publishing "
                  f"failed: {err}")
        click.echo(f"published to {result.url or push_to_hub} at {result.revision} "
                   f"({'new commit ' + str(result.commit) if result.committed else 'unchanged'})")


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Example:\n\n  videoswin-parity converted/swin_tiny_patch244_window877_"
               "kinetics400_1k --checkpoint swin_tiny_patch244_window877_kinetics400_1k.pth "
               "--backends jax --parity-clip 16 112 112")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="The source checkpoint the artifacts were converted from. Default, for a "
                   "--random-weights conversion: fabricated again from its recorded seed.")
@click.option("--backends", default=None, help="Comma-separated Keras backends (default: all "
              "installed).")
@click.option("--parity-clip", nargs=3, type=int, metavar="T H W",
              help="Clip size. Default: the config's test clip.")
@click.option("--parity-clips", default=2, show_default=True, type=click.IntRange(1))
@click.option("--tolerance", type=float, default=None, help="Max |diff| (default 1e-4).")
@click.option("--reference", type=click.Choice(["auto", "mmaction2", "videoswin-reference"]),
              default="auto", show_default=True)
@click.option("--bf16", is_flag=True, help=BF16_HELP)
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling for a checkpoint you trust.")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="PATH",
              help="Also write the result as JUnit XML (one test case per backend).")
@click.option("--summary", type=click.Path(dir_okay=False), metavar="PATH",
              help="Also write a Markdown summary (appended to $GITHUB_STEP_SUMMARY too "
                   "when that variable is set).")
def parity_main(output_dir, checkpoint, backends, parity_clip, parity_clips, tolerance,
                reference, bf16, trust_checkpoint, junit=None, summary=None):
    """Re-run the parity check on existing conversion artifacts in OUTPUT_DIR.

    Reads OUTPUT_DIR/manifest.json and checks every artifact against it (size and sha256),
    and that CHECKPOINT is the one they were converted from (its sha256 is the manifest's
    source_checkpoint.sha256); either failing exits with status 2 before anything runs.
    Then compares, and rewrites the parity reports and the manifest's parity summary as one
    set, under the folder's lock. Exits 1 when parity fails.
    """
    from converter import checkpoint as ckpt
    from converter.artifacts import DiskFullError, OutputError, exit_on_disk_full
    from converter.convert import rerun_parity
    from converter.parity import markdown
    from videoswin.core.manifest import ManifestError

    chosen, tolerance, parity_clip = _backends(backends), _tolerance(tolerance), _clip(parity_clip)
    try:
        manifest, report = rerun_parity(
            output_dir, checkpoint, backends=chosen, parity_clip=parity_clip,
            parity_clips=parity_clips, tolerance=tolerance, reference=reference, bf16=bf16,
            trust_checkpoint=trust_checkpoint, log=lambda m: click.echo(m, err=True))
    except ManifestError as err:
        _fail(f"{str(err).rstrip('.')}.", 2)
    except DiskFullError as err:
        exit_on_disk_full(f"error: {err}")
    except (ckpt.CheckpointError, OutputError, RuntimeError) as err:
        # A parity worker that crashed is a CI error for every backend it was to check.
        _ci_reports(output_dir, dict(error=str(err), backends=chosen or
                                     backend_names.installed_backends()), junit, summary)
        _fail(str(err))
    click.echo(markdown(report, title=manifest.name))
    _ci_reports(manifest.name, dict(report=report), junit, summary)
    if report["status"] != "passed":
        _fail("parity check failed")


def _ci_reports(name, fields, junit, summary):
    """JUnit XML / Markdown summary of one parity result (and $GITHUB_STEP_SUMMARY)."""
    import os

    from converter import reports

    name = os.path.basename(os.path.normpath(str(name)))
    try:
        for path in reports.write([reports.result(name, **fields)], junit=junit,
                                  summary=summary, title=f"Parity of {name}"):
            click.echo(f"wrote {path}", err=True)
    except OSError as err:
        _fail(f"--junit/--summary: {err}", 2)


if __name__ == "__main__":
    main()
