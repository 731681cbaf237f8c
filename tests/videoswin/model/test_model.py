"""The Keras model library on the current backend: shapes, configs, saving, precision."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import videoswin
from videoswin.model import windows

BACKEND = keras.backend.backend()
TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=(2, 3, 3))


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _clips(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("clip,expected", [
    ((3, 32, 32), (2, 1, 1)),      # T pads 3 -> 4; every window clamps
    ((10, 72, 100), (5, 3, 4)),    # H, W pad to patch multiples (72/4=18 -> 3; 100/4=25 -> 4)
    ((8, 64, 64), (4, 2, 2)),
])
def test_feature_shapes_for_odd_clips(clip, expected):
    backbone = videoswin.VideoSwinBackbone(**TINY)
    features = backbone(_clips((2, *clip, 3)))
    assert tuple(features.shape) == (2, *expected, 128)


def test_default_window_on_small_clip_and_classifier_logits():
    model = videoswin.VideoSwinT(num_classes=10, input_shape=(4, 32, 32, 3))
    logits = model(_clips((1, 4, 32, 32, 3)))
    assert tuple(logits.shape) == (1, 10)
    assert np.isfinite(_numpy(logits)).all()


@pytest.mark.parametrize("constructor,kwargs,expected", [
    (videoswin.VideoSwinT, {}, 28_158_070),
    (videoswin.VideoSwinS, {}, 49_816_678),
    (videoswin.VideoSwinB, {}, 88_048_984),
    (videoswin.VideoSwinB, {"num_classes": 600}, 88_253_984),
    (videoswin.VideoSwinB, {"num_classes": 174, "window_size": (16, 7, 7)}, 88_834_038),
    (videoswin.VideoSwinL, {}, 196_953_916),
    (videoswin.VideoSwinL, {"num_classes": 700}, 197_415_016),
])
def test_parameter_counts_equal_the_official_models(constructor, kwargs, expected):
    model = constructor(**kwargs)
    assert model.count_params() == expected
    # Precomputed indices and masks are constants, never weights.
    assert len(model.non_trainable_weights) == 0


def test_parameter_shapes_do_not_depend_on_clip_size():
    small = videoswin.VideoSwinT(input_shape=(8, 112, 112, 3))
    large = videoswin.VideoSwinT(input_shape=(32, 224, 224, 3))
    assert [(w.path, tuple(w.shape)) for w in small.weights] == \
           [(w.path, tuple(w.shape)) for w in large.weights]
    large.set_weights(small.get_weights())


def test_layers_are_named_after_the_official_module_tree():
    model = videoswin.VideoSwinClassifier(videoswin.VideoSwinBackbone(**TINY), 5)
    paths = [w.path for w in model.weights]
    assert "patch_embed/proj/kernel" in paths
    assert "layers_1/blocks_1/attn/relative_position_bias_table" in paths
    assert "layers_0/blocks_1/mlp/fc2/kernel" in paths
    assert "layers_2/downsample/reduction/kernel" in paths
    assert "norm/gamma" in paths and "fc_cls/kernel" in paths
    assert not [p for p in paths if "dense" in p or "layer_normalization" in p]
    assert len(set(paths)) == len(paths)


def test_config_round_trip():
    backbone = videoswin.VideoSwinBackbone(**TINY, drop_path_rate=0.2, qk_scale=0.3,
                                           include_preprocessing=True)
    model = videoswin.VideoSwinClassifier(backbone, 5, dropout=0.3, activation="softmax")
    clone = videoswin.VideoSwinClassifier.from_config(
        json.loads(json.dumps(model.get_config())))
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    x = _clips((1, 4, 32, 32, 3)) * 50 + 100
    np.testing.assert_allclose(_numpy(clone(x)), _numpy(model(x)), atol=1e-6)
    assert clone.backbone.window_size == (2, 3, 3) and clone.num_classes == 5
    for layer in backbone._flatten_layers():
        if layer is backbone:
            continue
        restored = type(layer).from_config(layer.get_config())
        assert restored.get_config() == layer.get_config()


def test_in_model_preprocessing_equals_normalising_outside():
    plain = videoswin.VideoSwinBackbone(**TINY)
    pre = videoswin.VideoSwinBackbone(**TINY, include_preprocessing=True)
    pre.set_weights(plain.get_weights())
    rgb = np.random.default_rng(1).uniform(0, 255, (1, 4, 32, 32, 3)).astype("float32")
    mean = np.array([123.675, 116.28, 103.53], "float32")
    std = np.array([58.395, 57.12, 57.375], "float32")
    np.testing.assert_allclose(_numpy(pre(rgb)), _numpy(plain((rgb - mean) / std)), atol=1e-5)
    assert pre.count_params() == plain.count_params()


def test_return_stages_gives_every_stage():
    backbone = videoswin.VideoSwinBackbone(**TINY, return_stages=True)
    out = backbone(_clips((1, 4, 32, 32, 3)))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "stage_0": (1, 2, 8, 8, 16), "stage_1": (1, 2, 4, 4, 32),
        "stage_2": (1, 2, 2, 2, 64), "stage_3": (1, 2, 1, 1, 128)}


def test_dropout_and_drop_path_act_only_in_training():
    backbone = videoswin.VideoSwinBackbone(**TINY, drop_path_rate=0.5, drop_rate=0.2,
                                           attn_drop_rate=0.2)
    model = videoswin.VideoSwinClassifier(backbone, 5, dropout=0.5)
    x = _clips((2, 4, 32, 32, 3))
    eval_a, eval_b = _numpy(model(x, training=False)), _numpy(model(x))
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a, train_b = _numpy(model(x, training=True)), _numpy(model(x, training=True))
    assert np.abs(train_a - train_b).max() > 1e-4
    assert np.abs(train_a - eval_a).max() > 1e-4


@pytest.mark.parametrize("drop_path_rate", [0.0, 0.3])
def test_a_new_model_is_built_so_predict_skips_the_eager_build_pass(drop_path_rate):
    # Keras's predict/fit run one eager forward pass first when any sublayer is unbuilt
    # (on JAX: every op compiled on its own, tens of seconds); an unbuilt DropPath did that.
    model = videoswin.VideoSwinClassifier(
        videoswin.VideoSwinBackbone(**TINY, drop_path_rate=drop_path_rate), 5)
    unbuilt = [layer.path for layer in model._flatten_layers() if not layer.built]
    assert unbuilt == []


def test_compiled_forward_equals_eager():
    model = videoswin.VideoSwinClassifier(videoswin.VideoSwinBackbone(**TINY), 5)
    x = _clips((2, 5, 36, 44, 3))
    eager = _numpy(model(x))
    if BACKEND == "jax":
        import jax

        compiled = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x)[0])(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables], x)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda x: model(x), jit_compile=True)(x)
    else:
        compiled = model.predict(x, verbose=0)
    np.testing.assert_allclose(_numpy(compiled), eager, atol=1e-5)
    np.testing.assert_allclose(model.predict(x, batch_size=1, verbose=0), eager, atol=1e-5)


def test_mixed_bfloat16_keeps_logits_float32():
    reference = videoswin.VideoSwinClassifier(videoswin.VideoSwinBackbone(**TINY), 5)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = videoswin.VideoSwinClassifier(videoswin.VideoSwinBackbone(**TINY), 5)
    finally:
        keras.config.set_dtype_policy("float32")
    model.set_weights(reference.get_weights())
    x = _clips((2, 4, 32, 32, 3))
    logits = model(x)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert model.backbone.get_layer("layers_0").blocks[0].attn.compute_dtype == "bfloat16"
    want = _numpy(reference(x))
    got = _numpy(logits)
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max() + 0.1


def test_static_size_error_is_clear():
    with pytest.raises(ValueError, match="static clip dimensions"):
        windows.static_size(keras.KerasTensor((1, None, 8, 8, 3)), "layers_0")


CROSS = """
import sys, numpy as np, keras, videoswin.model
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model.predict(x, verbose=0)))
"""


# Each pass saves on its backend and loads on the next one: over the three passes every
# backend both saves and loads, with half the processes that every ordered pair would take.
NEXT_BACKEND = {"torch": "jax", "jax": "tensorflow", "tensorflow": "torch"}


def test_keras_file_loads_on_the_other_backends(tmp_path):
    keras.utils.set_random_seed(0)
    model = videoswin.VideoSwinClassifier(videoswin.VideoSwinBackbone(**TINY), 5)
    x = _clips((2, 5, 36, 44, 3))
    np.save(tmp_path / "x.npy", x)
    path = tmp_path / "model.keras"
    model.save(path)
    want = _numpy(model(x))
    for other in [NEXT_BACKEND[BACKEND]]:
        out = tmp_path / f"{other}.npy"
        env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, "-c", CROSS, str(path), str(tmp_path / "x.npy"),
                               str(out)], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        # 1e-6 on the logits' scale: backends differ only in float summation order.
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(np.load(out) - want).max() <= 1e-6 * scale, other


@pytest.mark.parametrize("kwargs, message", [
    (dict(window_size=(0, 7, 7)), "window_size must be a positive int or 3 positive ints"),
    (dict(window_size=-2), "window_size must be a positive int or 3 positive ints"),
    (dict(patch_size=(2, 0, 4)), "patch_size must be a positive int or 3 positive ints"),
    (dict(depths=(2, -1, 6, 2)), "stage 1: depth must be a positive int"),
    (dict(embed_dim=0), "embed_dim must be a positive int"),
    (dict(num_heads=(3, 6, 12)), "must be non-empty and of the same length"),
    (dict(num_heads=(5, 6, 12, 24)), "stage 0: width 96 is not divisible by num_heads 5"),
    (dict(input_shape=(8, 0, 64, 3)), "input_shape must be (T, H, W, C)"),
])
def test_bad_sizes_are_clear_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        videoswin.VideoSwinBackbone(**kwargs)
