"""Builds serving exports of a classifier `.keras` file, in its own process, on the Keras
backend the route needs (`converter.export` starts it; see docs/exports.md).

Usage:
  KERAS_BACKEND=torch python -m converter.export_worker KERAS STEM OUT SCRATCH INFO.json \\
      --formats onnx --clip T H W --batch dynamic
  KERAS_BACKEND=tensorflow python -m converter.export_worker ... --formats saved_model,litert

Routes (why these: docs/exports.md):
- onnx (torch backend): `torch.export` of the model called on channels-last float32 clips,
  a dynamic batch dimension, the no-op `squeeze` calls on axes longer than 1 that Keras's
  torch `take` makes removed from the graph (ONNX's Squeeze refuses them), then the
  `torch.onnx` dynamo exporter (onnxscript), opset `OPSET`, standard ops only.
- saved_model (tensorflow backend): `keras.export.ExportArchive` with one
  `serving_default` signature, input `video`, output `logits`.
- litert: that SavedModel through `tf.lite.TFLiteConverter`, float32, builtin ops only.
- openvino: that SavedModel through `openvino.convert_model`, saved with float32 weights.
The SavedModel is built in SCRATCH when only litert or openvino is asked for.

INFO.json gets what the caller reports: the routes taken and notes (e.g. a mixed-precision
model exported as float32).
"""

import json
import os
import sys

OPSET = 18

if __name__ == "__main__":
    from converter.parity_worker import die_with_parent

    die_with_parent()       # before the imports below, which take seconds


def float32_model(path, clip, notes):
    """The classifier of the `.keras` file at `path`, rebuilt for clips of shape `clip`
    (T, H, W) in float32: the graph needs static T, H, W, and a model saved under a
    mixed-precision policy is exported in float32 (said in `notes`)."""
    import copy

    import keras
    import numpy as np

    import videoswin.model  # noqa: F401  (registers the serialisable classes)

    model = keras.saving.load_model(path, compile=False)
    shape = model.output_shape
    if not (isinstance(shape, tuple) and len(shape) == 2) or not hasattr(model, "backbone"):
        raise SystemExit(f"{path}: not a VideoSwinClassifier (outputs {shape}); exports need "
                         "the classifier")
    policies = sorted({layer.dtype_policy.name for layer in model._flatten_layers()
                       if getattr(layer, "dtype_policy", None) is not None
                       and layer.dtype_policy.compute_dtype != "float32"})
    if policies:
        notes.append(f"the model computes in {', '.join(policies)}; exported as float32 "
                     "(its float32 variables, float32 compute)")
    config = copy.deepcopy(model.get_config())
    backbone = config["backbone"]["config"]
    channels = model.input_shape[-1]
    backbone["input_shape"] = [*clip, channels]
    backbone["dtype"] = "float32"
    fresh = type(model).from_config(config)
    fresh.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    return fresh, channels


def export_onnx(model, path, clip, channels, batch):
    """`model` as an ONNX file at `path` (torch backend)."""
    import onnx
    import torch

    class Serving(torch.nn.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.keras_model = keras_model

        def forward(self, video):
            return self.keras_model(video, training=False)

    module = Serving(model).eval()
    example_batch = 2 if batch == "dynamic" else batch
    example = (torch.zeros((example_batch, *clip, channels), dtype=torch.float32),)
    dynamic = ({"video": {0: torch.export.Dim("batch", min=1, max=4096)}}
               if batch == "dynamic" else None)
    with torch.no_grad():
        program = torch.export.export(module, example, dynamic_shapes=dynamic)
    _drop_noop_squeezes(program)
    onnx_program = torch.onnx.export(program, example, dynamo=True, opset_version=OPSET,
                                     input_names=["video"], output_names=["logits"],
                                     optimize=True, verbose=False)
    proto = onnx_program.model_proto
    if batch == "dynamic":
        _name_batch_axis(proto)
    onnx.save_model(proto, path)
    return f"Keras torch backend -> torch.export -> torch.onnx (dynamo), opset {OPSET}"


def _drop_noop_squeezes(program):
    """Remove `aten.squeeze` calls on axes longer than 1 (no-ops in torch; Keras's torch
    `take` makes them), which ONNX's Squeeze refuses at shape inference."""
    import torch

    targets = {torch.ops.aten.squeeze.dim, torch.ops.aten.squeeze.dims}
    graph = program.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in targets:
            continue
        source = node.args[0]
        dims = node.args[1]
        dims = [dims] if isinstance(dims, int) else list(dims)
        shape = source.meta["val"].shape
        if all(isinstance(shape[d], int) and shape[d] != 1 for d in dims):
            node.replace_all_uses_with(source)
            graph.erase_node(node)
    graph.lint()


def _name_batch_axis(proto):
    """Call the symbolic batch dimension `batch` in the graph's inputs and outputs."""
    symbol = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    for value in list(proto.graph.input) + list(proto.graph.output) + list(
            proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if symbol and dim.dim_param == symbol:
                dim.dim_param = "batch"


def export_saved_model(model, path, clip, channels, batch):
    import keras
    import tensorflow as tf

    spec = tf.TensorSpec([None if batch == "dynamic" else batch, *clip, channels],
                         tf.float32, name="video")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default",
                         lambda video: {"logits": model(video, training=False)},
                         input_signature=[spec])
    archive.write_out(path, verbose=False)
    return "Keras TensorFlow backend -> keras.export.ExportArchive (serving_default)"


def export_litert(saved_model, path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.optimizations = []                       # float32: no quantization
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    return "SavedModel -> tf.lite.TFLiteConverter (float32, builtin ops)"


def export_openvino(saved_model, path):
    import openvino as ov

    model = ov.convert_model(saved_model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ov.save_model(model, path, compress_to_fp16=False)
    return "SavedModel -> openvino.convert_model (float32 IR)"


def main(argv=None):
    import argparse

    from videoswin.core import naming
    from videoswin.core.backends import select_backend

    parser = argparse.ArgumentParser(prog="converter.export_worker")
    parser.add_argument("keras_file")
    parser.add_argument("stem")
    parser.add_argument("out")
    parser.add_argument("scratch")
    parser.add_argument("info")
    parser.add_argument("--formats", required=True)
    parser.add_argument("--clip", nargs=3, type=int, required=True)
    parser.add_argument("--batch", default="dynamic")
    args = parser.parse_args(argv)
    formats = naming.parse_export_formats(args.formats)
    batch = args.batch if args.batch == "dynamic" else int(args.batch)
    backend = select_backend()
    needs = "torch" if formats == ["onnx"] else "tensorflow"
    if backend != needs or ("onnx" in formats and len(formats) > 1):
        raise SystemExit(f"export_worker: {formats} need KERAS_BACKEND={needs} (one run for "
                         f"onnx, one for the TensorFlow formats); got {backend}")
    notes, routes = [], {}
    clip = tuple(args.clip)
    model, channels = float32_model(args.keras_file, clip, notes)
    if formats == ["onnx"]:
        routes["onnx"] = export_onnx(model, os.path.join(args.out, naming.export_entry(
            args.stem, "onnx")), clip, channels, batch)
    else:
        saved_model = (os.path.join(args.out, naming.export_entry(args.stem, "saved_model"))
                       if "saved_model" in formats else os.path.join(args.scratch, "saved_model"))
        route = export_saved_model(model, saved_model, clip, channels, batch)
        if "saved_model" in formats:
            routes["saved_model"] = route
        if "litert" in formats:
            routes["litert"] = export_litert(saved_model, os.path.join(
                args.out, naming.export_entry(args.stem, "litert")))
        if "openvino" in formats:
            routes["openvino"] = export_openvino(saved_model, os.path.join(
                args.out, naming.export_main_file(args.stem, "openvino")))
    with open(args.info, "w", encoding="utf-8") as handle:
        json.dump({"routes": routes, "notes": notes}, handle)


if __name__ == "__main__":
    sys.exit(main())
