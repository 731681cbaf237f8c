"""An exported `.onnx` classifier run by onnxruntime, for `videoswin-predict` (no Keras).

`load(path)` returns what `videoswin_tools.predict` works with: a model object with the
parts of a Keras classifier that `videoswin.video.video_probabilities` uses (`predict`,
`input_shape`, `output_shape`, `get_layer`), the manifest of the conversion folder the file
lies in (its labels, dataset and test protocol), and a description.

The file must be the export recorded in that manifest (`exports.onnx`, made by
`videoswin-export` or `videoswin-convert --export`), unchanged since (size and sha256), and
its proof must have passed.
"""

import os
from pathlib import Path

import click
import numpy as np

from videoswin.core import naming
from videoswin.core.manifest import Manifest, ManifestError

EXTRA = "pip install 'videoswin[export]'"


class OnnxClassifier:
    """An onnxruntime session on the CPU with the face of a Keras classifier."""

    def __init__(self, path):
        try:
            import onnxruntime
        except ImportError:
            raise click.ClickException(f"{path}: running an .onnx model needs onnxruntime; "
                                       f"install the export extra: {EXTRA}") from None
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for a bad file
            raise click.ClickException(f"{path}: onnxruntime cannot load it ({err})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 5:
            raise click.ClickException(f"{path}: expected one clip input (batch, T, H, W, 3) "
                                       "and one logits output")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        self.output_shape = tuple(d if isinstance(d, int) else None for d in outputs[0].shape)
        self.batch = self.input_shape[0]            # None: any batch size

    def get_layer(self, name):
        raise ValueError(f"an ONNX graph has no Keras layer {name!r}")

    def predict(self, views, batch_size=1, verbose=0):
        """Logits of `views` (N, T, H, W, 3), `batch_size` at a time (the graph's batch
        when it is fixed: the last group padded with zeros, then dropped)."""
        views = np.asarray(views, dtype=np.float32)
        step = self.batch or batch_size
        outputs = []
        for start in range(0, len(views), step):
            part = views[start:start + step]
            real = len(part)
            if self.batch and real < self.batch:
                part = np.concatenate([part, np.zeros((self.batch - real, *part.shape[1:]),
                                                      np.float32)])
            logits = self.session.run([self.output_name], {self.input_name: part})[0]
            outputs.append(logits[:real])
        return np.concatenate(outputs)


def load(ref):
    """(OnnxClassifier, manifest, description) for the `.onnx` file `ref`."""
    path = Path(ref)
    if not path.is_file():
        raise click.BadParameter(f"{ref}: no such file", param_hint="--model")
    folder = path.parent
    if not (folder / naming.MANIFEST).is_file():
        raise click.ClickException(
            f"{ref}: no {naming.MANIFEST} beside it; an .onnx model is read from its "
            "conversion folder, which gives its labels and test protocol (videoswin-export)")
    try:
        manifest = Manifest.read(folder)
        if path.name not in manifest["artifacts"]:
            raise ManifestError(f"{manifest.source}: does not list {path.name}")
        manifest.verify(folder, [path.name])
    except ManifestError as err:
        raise click.ClickException(f"{err}; re-run videoswin-export") from None
    record = (manifest.get("exports") or {}).get("onnx")
    if record is None or path.name not in record.get("files", ()):
        raise click.ClickException(f"{ref}: not the ONNX export recorded in "
                                   f"{manifest.source}; re-run videoswin-export")
    if record.get("status") != "passed":
        raise click.ClickException(f"{ref}: its proof against the original failed (see "
                                   f"{manifest.source}, exports.onnx); re-run videoswin-export")
    return OnnxClassifier(os.fspath(path)), manifest, str(path)
