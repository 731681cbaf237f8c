"""Runs emitted artifacts on one Keras backend (its own process) and saves the outputs.

Usage: KERAS_BACKEND=jax python -m converter.parity_worker DIR STEM CLIPS.npy OUT.npz [--bf16]
"""

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(poll=1.0):
    """End this process when the converter that started it dies, however it dies.

    The parent passes its pid in VIDEOSWIN_PARENT_PID. On Linux the kernel sends SIGKILL
    when the parent goes (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls
    `os.getppid()`. A parent that died before this ran is caught by comparing pids.
    """
    expected = os.environ.get("VIDEOSWIN_PARENT_PID")
    if not expected or not expected.isdigit():
        return
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != int(expected):           # already orphaned (re-parented)
        os._exit(1)
    if not armed:
        def watch():
            while os.getppid() == int(expected):
                time.sleep(poll)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    die_with_parent()       # before the imports below, which take seconds

from videoswin.core.backends import select_backend  # noqa: E402


def _infer(model, clips):
    import keras
    import numpy as np

    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            outs = [keras.ops.convert_to_numpy(model(clips[i: i + 1], training=False))
                    for i in range(len(clips))]
        return np.concatenate(outs)
    # JAX and TensorFlow: predict compiles the forward pass (eager JAX is ~100x slower).
    return model.predict(clips, batch_size=1, verbose=0)


def _rebuilt(model, weights_path, dtype=None):
    """A fresh model from `model`'s config, loaded from a `.weights.h5` file."""
    import copy

    config = copy.deepcopy(model.get_config())
    backbone_config = config["backbone"]["config"] if "backbone" in config else config
    if dtype is not None:
        backbone_config["dtype"] = dtype
    fresh = type(model).from_config(config)
    fresh.load_weights(weights_path)
    return fresh


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    bf16 = "--bf16" in argv
    directory, stem, clips_path, out_path = [a for a in argv if a != "--bf16"]
    backend = select_backend()
    import keras
    import numpy as np

    import videoswin.model  # noqa: F401  (registers the serialisable classes)

    clips = np.load(clips_path)
    results, seconds = {}, {}
    head_path = f"{directory}/{stem}.keras"
    pieces = [("backbone", f"{directory}/{stem}_backbone")]
    if os.path.exists(head_path):
        pieces.insert(0, ("logits", f"{directory}/{stem}"))
    for output, base in pieces:
        start = time.perf_counter()
        model = keras.saving.load_model(base + ".keras")
        results[f"{output}/keras"] = _infer(model, clips)
        seconds[f"{output}/keras"] = time.perf_counter() - start
        # The .weights.h5 file must give a model identical to the .keras one; if every
        # weight is bitwise equal it computes the same function, else run it too.
        fresh = _rebuilt(model, base + ".weights.h5")
        same = all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
                   for a, b in zip(model.weights, fresh.weights))
        results[f"{output}/weights_h5_identical"] = np.float32(same)
        if not same:
            results[f"{output}/weights.h5"] = _infer(fresh, clips)
        if bf16:
            fresh = _rebuilt(model, base + ".weights.h5", dtype="mixed_bfloat16")
            results[f"{output}/bf16"] = np.asarray(_infer(fresh, clips), dtype=np.float32)
    np.savez(out_path, **{k: np.asarray(v, dtype=np.float32) for k, v in results.items()},
             **{f"seconds:{k}": np.float64(v) for k, v in seconds.items()},
             backend=np.array(backend))


if __name__ == "__main__":
    main()
