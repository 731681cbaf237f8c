"""Data-parallel training with `keras.distribution.DataParallel` on JAX.

XLA fixes the number of host devices when JAX starts, so the check runs in a child process
(this file run as a script) with two virtual CPU devices. One SGD step on a tiny Video Swin
must give the same loss and the same updated weights as single-device training.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

DEVICES = 2
BATCH = 4  # two clips per device


def _step(model, weights, x, y):
    """One SGD step from `weights`: (loss, updated weights)."""
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = float(model.train_on_batch(x, y))
    return loss, model.get_weights()


def main():
    """Child process: single-device step, then the same step data-parallel; JSON report."""
    import jax

    from videoswin.model import VideoSwinBackbone, VideoSwinClassifier

    def build():
        # Rates 0: both runs must see the same function, not different random masks.
        backbone = VideoSwinBackbone(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2),
                                     window_size=(2, 3, 3), input_shape=(4, 32, 32, 3),
                                     drop_path_rate=0.0)
        return VideoSwinClassifier(backbone, 3, dropout=0.0)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 4, 32, 32, 3)).astype("float32")
    y = np.array([0, 1, 2, 1], dtype="int32")

    single = build()
    weights = single.get_weights()
    loss_single, after_single = _step(single, weights, x, y)

    distribution = keras.distribution.DataParallel(devices=jax.devices())
    with distribution.scope():
        parallel = build()
        loss_parallel, after_parallel = _step(parallel, weights, x, y)
        kernel = parallel.get_layer("fc_cls").kernel.value
    print(json.dumps({
        "devices": len(jax.devices()),
        "mesh": list(distribution.device_mesh.shape),
        "weights_on": len(kernel.sharding.device_set),
        "loss_single": loss_single,
        "loss_parallel": loss_parallel,
        "max_weight_diff": max(float(np.max(np.abs(a - b)))
                               for a, b in zip(after_single, after_parallel)),
        "max_step": max(float(np.max(np.abs(a - b))) for a, b in zip(after_single, weights)),
    }))


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="keras.distribution.DataParallel runs on JAX only (its TensorFlow "
                           "backend is an unfinished prototype; torch has none)")
def test_data_parallel_matches_single_device():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
                         f"--xla_force_host_platform_device_count={DEVICES}".strip())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))   # the repository: tests/videoswin/model/<this file>
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    assert report["devices"] == DEVICES and report["mesh"] == [DEVICES], report
    assert report["weights_on"] == DEVICES, report  # replicated on both devices
    assert report["loss_parallel"] == pytest.approx(report["loss_single"], rel=1e-6, abs=1e-6)
    assert report["max_step"] > 1e-3, report  # the step really moved the weights
    assert report["max_weight_diff"] < 1e-5, report


if __name__ == "__main__":
    main()
