"""Runs one serving export in its own runtime, in a fresh process, without Keras.

Usage: python -m converter.export_check FORMAT PATH CLIPS.npy OUT.npz --batch dynamic|N

PATH is the file the runtime opens (`NAME.onnx`, the `NAME_saved_model` folder,
`NAME.tflite`, `NAME_openvino/NAME.xml`). OUT.npz gets `logits` (float32), `runtime`
("name version"), `problems` (what the file breaks of the export contract: opset, custom
ops, names, the batch axis) and `modules` (which of keras, torch, jax, tensorflow this process
had loaded once it finished: the proof that the runtime alone ran it).
"""

import importlib.metadata
import sys

import numpy as np

MIN_OPSET = 17
FRAMEWORKS = ("keras", "torch", "jax", "tensorflow")


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _batches(clips, batch):
    """Clips in the batches the graph takes: all at once for a dynamic batch axis, else
    groups of `batch`, the last one padded with zeros (dropped again afterwards)."""
    if batch == "dynamic":
        yield clips, len(clips)
        return
    for start in range(0, len(clips), batch):
        part = clips[start:start + batch]
        real = len(part)
        if real < batch:
            part = np.concatenate([part, np.zeros((batch - real, *part.shape[1:]), part.dtype)])
        yield part, real


def _run(step, clips, batch):
    return np.concatenate([np.asarray(step(part))[:real] for part, real in
                           _batches(clips, batch)]).astype(np.float32)


def run_onnx(path, clips, batch, problems):
    import onnx
    import onnxruntime

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx", 0) < MIN_OPSET:
        problems.append(f"opset {opsets.get('ai.onnx')} < {MIN_OPSET}")
    custom = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        problems.append(f"custom op domains {custom}")
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != ["video"] or outputs != ["logits"]:
        problems.append(f"inputs {inputs} / outputs {outputs}, not ['video'] / ['logits']")
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch == "dynamic" and not first.dim_param:
        problems.append(f"the batch axis is fixed ({first.dim_value}), not dynamic")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = _run(lambda x: session.run(["logits"], {"video": x})[0], clips, batch)
    return logits, f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


def run_saved_model(path, clips, batch, problems):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        problems.append(f"no serving_default signature (has {list(loaded.signatures)})")
        return None, f"tensorflow {tf.__version__}"
    serve = loaded.signatures["serving_default"]
    inputs = sorted(serve.structured_input_signature[1])
    outputs = sorted(serve.structured_outputs)
    if inputs != ["video"] or outputs != ["logits"]:
        problems.append(f"serving_default takes {inputs} and returns {outputs}, not "
                        "['video'] -> ['logits']")
    logits = _run(lambda x: serve(video=tf.constant(x))["logits"].numpy(), clips, batch)
    return logits, f"tensorflow {tf.__version__} (tf.saved_model.load, serving_default)"


def run_litert(path, clips, batch, problems):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    signatures = interpreter.get_signature_list()
    if signatures.get("serving_default") != {"inputs": ["video"], "outputs": ["logits"]}:
        problems.append(f"signatures {signatures}, not serving_default: video -> logits")
    runner = interpreter.get_signature_runner("serving_default")
    logits = _run(lambda x: runner(video=x)["logits"], clips, batch)
    return logits, f"ai-edge-litert {_version('ai-edge-litert')} (Interpreter, float32)"


def run_openvino(path, clips, batch, problems):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    names = ([sorted(i.get_names()) for i in model.inputs],
             [sorted(o.get_names()) for o in model.outputs])
    if not (len(model.inputs) == 1 and "video" in model.inputs[0].get_names()
            and len(model.outputs) == 1 and "logits" in model.outputs[0].get_names()):
        problems.append(f"inputs / outputs named {names}, not video -> logits")
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if "32" not in precision:
        problems.append(f"inference precision {precision}, not f32")
    output = compiled.outputs[0]
    logits = _run(lambda x: compiled({0: x})[output], clips, batch)
    return logits, f"openvino {_version('openvino')} (CPU, INFERENCE_PRECISION_HINT f32)"


RUNNERS = {"onnx": run_onnx, "saved_model": run_saved_model, "litert": run_litert,
           "openvino": run_openvino}


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="converter.export_check")
    parser.add_argument("format", choices=sorted(RUNNERS))
    parser.add_argument("path")
    parser.add_argument("clips")
    parser.add_argument("out")
    parser.add_argument("--batch", default="dynamic")
    args = parser.parse_args(argv)
    batch = args.batch if args.batch == "dynamic" else int(args.batch)
    clips = np.load(args.clips)
    problems = []
    logits, runtime = RUNNERS[args.format](args.path, clips, batch, problems)
    loaded = [m for m in FRAMEWORKS if m in sys.modules]
    np.savez(args.out, logits=np.zeros((0,), np.float32) if logits is None else logits,
             runtime=np.array(runtime), problems=np.array(problems, dtype=str),
             modules=np.array(loaded, dtype=str))


if __name__ == "__main__":
    from converter.parity_worker import die_with_parent

    die_with_parent()
    sys.exit(main())
