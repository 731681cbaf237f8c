"""`videoswin-export`: serving exports of a conversion folder, each proven in its runtime.

The work is `converter.export` (see docs/exports.md); this module parses options and
reports.
"""

from videoswin.core.backends import select_backend

select_backend()  # before anything imports keras

import sys  # noqa: E402

import click  # noqa: E402

from videoswin.core import naming  # noqa: E402

EXAMPLE = ("videoswin-export converted/swin_tiny_patch244_window877_kinetics400_1k "
           "--format onnx,saved_model,litert,openvino")


def _fail(message, code=1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _batch(value):
    from converter.export import ExportError, check_batch

    try:
        return check_batch(value)
    except ExportError as err:
        _fail(str(err), 2)


def _clip(value):
    from converter.export import ExportError, check_clip

    if not value:
        return None
    try:
        return check_clip(value)
    except ExportError as err:
        _fail(f"--clip: {err}", 2)


def _formats(value):
    try:
        return naming.parse_export_formats(value)
    except ValueError as err:
        _fail(f"--format: {err}", 2)


def table(manifest, formats):
    """Text lines: one per export, with its proof."""
    lines = []
    for fmt in formats:
        record = manifest["exports"][fmt]
        diff = record["max_abs_diff"]
        lines.append(f"  {fmt:<12} {record['status']:<7} max |diff| "
                     f"{'n/a' if diff is None else f'{diff:.2e}'} "
                     f"(tolerance {record['tolerance']:g}) in {record['runtime']}")
    return lines


def report(manifest, formats, quiet=False):
    """Print the result; exit 1 when an export failed its proof."""
    failed = [f for f in formats if manifest["exports"][f]["status"] != "passed"]
    if not quiet:
        for line in table(manifest, formats):
            click.echo(line)
    click.echo(f"{manifest.name}: exported {', '.join(formats)} to {manifest.output_dir} "
               f"({'all proven' if not failed else 'FAILED: ' + ', '.join(failed)})")
    if failed:
        _fail(f"export proof failed for {', '.join(failed)}: the files are kept and marked "
              f"failed in {manifest.output_dir}/{naming.MANIFEST}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog=f"Example:\n\n  {EXAMPLE}\n\n  videoswin-export DIR --format onnx "
               "--clip 16 224 224 --batch 1")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "formats", required=True, metavar="FORMATS",
              help=f"Comma-separated: {', '.join(naming.EXPORT_FORMATS)}, or 'all'.")
@click.option("--clip", nargs=3, type=int, metavar="T H W",
              help="Clip size the exported graph takes. Default: the config's test view "
                   "(e.g. 32 224 224).")
@click.option("--batch", default="dynamic", show_default=True, metavar="N|dynamic",
              help="Batch size: a fixed int, or 'dynamic' (any size at run time).")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="The checkpoint the folder was converted from: the proof then runs "
                   "against the original model (mmaction2 when installed). Default: a "
                   "--random-weights conversion's checkpoint is made again from its seed; "
                   "otherwise the converted .keras (proven by parity) is the reference.")
@click.option("--tolerance", type=float, default=None,
              help="Max |diff| of the logits. Default: the conversion's parity tolerance.")
@click.option("--reference", type=click.Choice(["auto", "mmaction2", "videoswin-reference"]),
              default="auto", show_default=True,
              help="PyTorch model the proof compares with, when a checkpoint is at hand.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Allow full unpickling for a checkpoint you trust.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final line.")
def main(output_dir, formats, clip, batch, checkpoint, tolerance, reference, trust_checkpoint,
         quiet):
    """Export the classifier of the conversion in OUTPUT_DIR and prove each export.

    Writes <name>.onnx, <name>_saved_model/, <name>.tflite and <name>_openvino/<name>.xml
    (as asked) into OUTPUT_DIR: input `video` (batch, T, H, W, 3) float32, channels last,
    normalised as the classifier expects; output `logits`. Each export is then run in a
    fresh process by its own runtime (onnxruntime, TensorFlow, the LiteRT interpreter,
    OpenVINO at f32), on the conversion's parity clips, and compared with the reference.

    The folder is checked against its manifest first (exit 2). The exports, the manifest
    (`artifacts`, `exports`) and the parity reports are written as one set under the
    folder's lock: a failure while building changes nothing (exit 1); a proof that fails
    keeps the files, marks the export failed and exits 1.
    """
    from converter.artifacts import DiskFullError, OutputError, exit_on_disk_full
    from converter.checkpoint import CheckpointError
    from converter.export import ExportError, export_folder
    from videoswin.core.manifest import ManifestError

    chosen, clip, batch = _formats(formats), _clip(clip), _batch(batch)
    if tolerance is not None and not tolerance >= 0:
        _fail(f"--tolerance must be a number >= 0, not {tolerance}", 2)
    log = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    try:
        manifest = export_folder(output_dir, chosen, clip=clip, batch=batch,
                                 tolerance=tolerance, checkpoint=checkpoint,
                                 reference=reference, trust_checkpoint=trust_checkpoint,
                                 log=log)
    except ManifestError as err:
        _fail(f"{str(err).rstrip('.')}.", 2)
    except DiskFullError as err:
        exit_on_disk_full(f"error: {err}")
    except (ExportError, CheckpointError, OutputError, RuntimeError) as err:
        _fail(str(err))
    report(manifest, chosen, quiet)


if __name__ == "__main__":
    main()
