"""Fine-tuning path on the active backend: freezing by stage, a new head, `fit`, save/reload.

A tiny Video Swin is trained for a few steps on a small separable synthetic set. Training
compiles only on JAX (where eager training is the slow path); elsewhere it runs eagerly.
"""

import contextlib

import keras
import numpy as np
import pytest

from videoswin.model import VideoSwinBackbone, VideoSwinClassifier
from videoswin.model.finetune import freeze_stages, frozen_layer_names, without_optimizer

BACKEND = keras.backend.backend()
TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=(2, 3, 3))
CLIP = (4, 32, 32, 3)
NUM_CLASSES = 3
FROZEN = 2  # patch_embed, layers_0, layers_1


def separable_set(n, seed=0):
    """Noise clips whose class c has +1 added to colour channel c."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % NUM_CLASSES
    x = rng.normal(size=(n,) + CLIP).astype("float32")
    x[np.arange(n), ..., y] += 1.0
    return x, y.astype("int32")


def tiny_backbone(**kwargs):
    return VideoSwinBackbone(**TINY, input_shape=CLIP, **kwargs)


def np_out(t):
    return keras.ops.convert_to_numpy(t)


_JITTED = {}


def forward(model, x, training=False):
    """Outputs as NumPy. Compiled on JAX, whose eager mode compiles every op separately
    (far slower here); elsewhere eager. Random state advances as in an eager call."""
    if BACKEND == "torch" and not training:
        import torch

        # no_grad also makes torch's attention kernel choice independent of which weights
        # require grad (frozen or not), so reloaded models compare bit for bit.
        with torch.no_grad():
            return np_out(model(x, training=False))
    if BACKEND != "jax":
        return np_out(model(x, training=training))
    import jax

    key = (id(model), training)
    if key not in _JITTED:
        _JITTED[key] = (model, jax.jit(lambda tv, ntv, x: model.stateless_call(
            tv, ntv, x, training=training)))
    fn = _JITTED[key][1]
    out, state = fn([v.value for v in model.trainable_variables],
                    [v.value for v in model.non_trainable_variables], x)
    for v, value in zip(model.non_trainable_variables, state):
        v.assign(value)
    return np_out(out)


def cheap_jax_rng():
    """On JAX, non-partitionable threefry: with the default, XLA:CPU takes ~10x longer
    (seconds) to compile each dropout mask of a multi-dimensional shape."""
    if BACKEND != "jax":
        return contextlib.nullcontext()
    import jax

    return jax.threefry_partitionable(False)


def snapshot(model):
    return {id(v): np.array(v.numpy()) for v in model.weights}


def xent(model, x, y):
    logits = forward(model, x)
    loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return float(np.mean(np_out(loss)))


@pytest.fixture(scope="module")
def finetuned():
    """A partly frozen tiny classifier before and after a few `fit` epochs."""
    backbone = tiny_backbone(drop_path_rate=0.1)
    frozen = freeze_stages(backbone, FROZEN)
    model = VideoSwinClassifier(backbone, NUM_CLASSES, dropout=0.2)
    # Adam without weight decay: a weight changes only if a gradient reached it.
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=BACKEND == "jax")
    x, y = separable_set(24)
    before = snapshot(model)
    loss_before = xent(model, x, y)
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=True, verbose=0)
    return dict(model=model, backbone=backbone, frozen=frozen, x=x, y=y, before=before,
                after=snapshot(model), loss_before=loss_before, loss_after=xent(model, x, y),
                history=history.history["loss"])


def test_frozen_layer_names():
    assert frozen_layer_names(4, -1) == []
    assert frozen_layer_names(4, 0) == ["patch_embed"]
    assert frozen_layer_names(4, 2) == ["patch_embed", "layers_0", "layers_1"]
    assert frozen_layer_names(4, 4)[-1] == "layers_3"
    for bad in (-2, 5):
        with pytest.raises(ValueError, match="frozen_stages"):
            frozen_layer_names(4, bad)


def test_freeze_stages_sets_trainable_weights():
    backbone = tiny_backbone()
    model = VideoSwinClassifier(backbone, NUM_CLASSES)
    n_all = len(model.trainable_weights)
    per_layer = {layer.name: len(layer.trainable_weights) for layer in backbone.layers}

    freeze_stages(model, 2)  # the classifier is accepted too
    frozen = per_layer["patch_embed"] + per_layer["layers_0"] + per_layer["layers_1"]
    assert len(model.trainable_weights) == n_all - frozen
    assert not backbone.get_layer("layers_1").trainable
    assert backbone.get_layer("layers_2").trainable and backbone.get_layer("norm").trainable

    # Linear probe: only fc_cls (kernel, bias) trains.
    backbone.trainable = False
    assert [v.path.split("/")[-2:] for v in model.trainable_weights] == [
        ["fc_cls", "kernel"], ["fc_cls", "bias"]]

    # -1 unfreezes everything, including a backbone frozen as a whole.
    assert freeze_stages(model, -1) == []
    assert len(model.trainable_weights) == n_all
    with pytest.raises(TypeError, match="VideoSwinBackbone"):
        freeze_stages(keras.Sequential([keras.layers.Dense(2)]), 1)


def test_fit_reduces_loss(finetuned):
    assert finetuned["loss_after"] < 0.5 * finetuned["loss_before"], finetuned
    hist = finetuned["history"]
    assert hist[-1] < hist[0], hist


def test_fit_updates_only_unfrozen_weights(finetuned):
    backbone, before, after = finetuned["backbone"], finetuned["before"], finetuned["after"]
    frozen_ids = {id(v) for name in finetuned["frozen"]
                  for v in backbone.get_layer(name).weights}
    assert frozen_ids
    model = finetuned["model"]
    for v in model.weights:
        changed = not np.array_equal(before[id(v)], after[id(v)])
        assert changed == (id(v) not in frozen_ids), v.path
    assert len(model.trainable_weights) == len(model.weights) - len(frozen_ids)


def test_save_and_reload_give_identical_predictions(finetuned, tmp_path):
    model, x = finetuned["model"], finetuned["x"][:2]
    expected = forward(model, x)

    model.save(tmp_path / "ft.keras")
    reloaded = keras.saving.load_model(tmp_path / "ft.keras")
    np.testing.assert_array_equal(forward(reloaded, x), expected)

    model.save_weights(tmp_path / "ft.weights.h5")
    fresh = VideoSwinClassifier.from_config(model.get_config())
    fresh.load_weights(tmp_path / "ft.weights.h5")
    np.testing.assert_array_equal(forward(fresh, x), expected)

    # Backbone alone (the artifact shape for further fine-tuning).
    backbone = finetuned["backbone"]
    backbone.save_weights(tmp_path / "bb.weights.h5")
    fresh_bb = tiny_backbone()
    fresh_bb.load_weights(tmp_path / "bb.weights.h5")
    for saved, loaded in zip(backbone.weights, fresh_bb.weights):
        assert saved.path == loaded.path
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())


def test_without_optimizer_saves_the_weights_alone(finetuned, tmp_path):
    model, x = finetuned["model"], finetuned["x"][:2]
    model.save(tmp_path / "with.keras")
    without_optimizer(model).save(tmp_path / "without.keras")
    reloaded = keras.saving.load_model(tmp_path / "without.keras")
    np.testing.assert_array_equal(forward(reloaded, x), forward(model, x))
    assert getattr(reloaded, "optimizer", None) is None
    # Adam keeps two moments per trainable weight: the full file is far larger.
    weights = sum(v.numpy().nbytes for v in model.weights)
    moments = 2 * sum(v.numpy().nbytes for v in model.trainable_weights)
    with_size = (tmp_path / "with.keras").stat().st_size
    without_size = (tmp_path / "without.keras").stat().st_size
    assert with_size - without_size >= 0.9 * moments
    assert without_size < weights + moments / 2     # HDF5 overhead, but no moments


def test_keras_file_keeps_frozen_stages(finetuned, tmp_path):
    model = finetuned["model"]
    model.save(tmp_path / "ft.keras")
    reloaded = keras.saving.load_model(tmp_path / "ft.keras")
    assert len(reloaded.trainable_weights) == len(model.trainable_weights)
    assert not reloaded.backbone.get_layer("layers_1").trainable


@pytest.mark.parametrize("rate", ["drop_rate", "attn_drop_rate", "drop_path_rate", "head"])
def test_stochastic_layers_act_only_in_training(rate):
    # One stage of two blocks is enough and keeps JAX compiles short. Drop-path rises
    # linearly from 0, so only the second block has it: rate 0.5 there.
    one_stage = dict(TINY, depths=(2,), num_heads=(1,))
    if rate == "head":
        backbone = VideoSwinBackbone(**one_stage, input_shape=CLIP, drop_path_rate=0.0)
        model = VideoSwinClassifier(backbone, NUM_CLASSES, dropout=0.5)
    else:
        value = 0.5 if rate == "drop_path_rate" else 0.9
        model = VideoSwinBackbone(**one_stage, input_shape=CLIP,
                                  **{"drop_path_rate": 0.0, rate: value})
    # No seeding (keras.utils.set_random_seed imports TensorFlow). The rarest case is
    # drop-path: two calls draw the same keep/drop for a clip's two residual branches with
    # probability 1/4, so all 16 clips agree with probability 4**-16, about 2e-10.
    x, _ = separable_set(16)
    with cheap_jax_rng():
        infer = [forward(model, x) for _ in range(2)]
        train = [forward(model, x, training=True) for _ in range(2)]
    np.testing.assert_array_equal(infer[0], infer[1])
    assert not np.allclose(train[0], train[1]), f"{rate}: training calls agree"
    assert not np.allclose(train[0], infer[0]), f"{rate}: training equals inference"


def _gradients(model, x, y):
    """Native autodiff of the training-mode loss w.r.t. each trainable weight."""
    def loss_of(logits):
        return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True))

    if BACKEND == "torch":
        loss_of(model(x, training=True)).backward()
        return [v.value.grad for v in model.trainable_weights]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_of(model(x, training=True))
        return tape.gradient(loss, model.trainable_weights)
    import jax

    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_fn(trainable):
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_of(logits)

    # jit: one compile instead of one per primitive of the backward pass.
    return jax.jit(jax.grad(loss_fn))([v.value for v in model.trainable_variables])


def test_gradient_reaches_every_trainable_weight():
    # Rates 0 so that no weight is skipped by chance; the training path still runs.
    model = VideoSwinClassifier(tiny_backbone(drop_path_rate=0.0), NUM_CLASSES, dropout=0.0)
    x, y = separable_set(2)
    grads = _gradients(model, x, y)
    assert len(grads) == len(model.trainable_weights) > 50
    for v, g in zip(model.trainable_weights, grads):
        assert g is not None, f"no gradient for {v.path}"
        g = np.asarray(np_out(g) if BACKEND != "torch" else g.detach().numpy())
        assert g.shape == tuple(v.shape), v.path
        assert np.all(np.isfinite(g)) and np.any(g != 0), f"zero gradient for {v.path}"
