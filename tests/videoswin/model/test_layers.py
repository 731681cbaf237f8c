"""A keras-hub-style harness run on every layer class of `videoswin.model` and on both models.

Each case of `CASES` (tiny settings, odd clip sizes) goes through the same checks:
config round trip, `compute_output_shape` against the real output, dtype policies
(mixed_bfloat16 and float32), serialisation with exactly equal outputs, and weight counts
(unchanged by the round trip; no non-trainable constants among the weights).
"""

import json
from dataclasses import dataclass, field

import keras
import numpy as np
import pytest

from videoswin.core import geometry
from videoswin.model import windows
from videoswin.model.attention import WindowAttention3D
from videoswin.model.backbone import VideoSwinBackbone
from videoswin.model.block import DropPath, Mlp, SwinTransformerBlock3D
from videoswin.model.classifier import VideoSwinClassifier
from videoswin.model.embedding import PatchEmbed3D, PatchMerging
from videoswin.model.preprocessing import VideoNormalization
from videoswin.model.stage import BasicLayer

WINDOW = (2, 3, 3)
TINY = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=WINDOW,
            patch_size=(2, 4, 4))
CLIP = (2, 3, 17, 19, 3)          # odd T, H, W: every axis pads


def _attention_input(size, window, shift, batch=2, dim=8):
    """(B, nW*N, C) shape and call kwargs of a WindowAttention3D on a `size` map."""
    window, shift = geometry.clamp_window(size, window, shift)
    tokens = len(windows.window_plan(size, window, shift).gather)
    return (batch, tokens, dim), dict(size=size, window=window, shift=shift)


@dataclass(frozen=True)
class Case:
    id: str
    factory: object                  # dtype -> layer
    input_shape: tuple
    call_kwargs: dict = field(default_factory=dict)
    weights: int = 0                 # expected len(layer.weights)
    mixed_output: str = "bfloat16"   # output dtype under mixed_bfloat16
    is_model: bool = False
    rgb: bool = False                # inputs in 0-255
    float32_sublayers: tuple = ()    # sublayers that keep float32 by design


_SHIFTED_ATTN = _attention_input((3, 5, 7), WINDOW, (1, 1, 1))
_PLAIN_ATTN = _attention_input((3, 5, 7), WINDOW, (0, 0, 0))
_CLAMPED_ATTN = _attention_input((2, 3, 3), WINDOW, (1, 1, 1))   # one window, no mask


def _classifier(dtype):
    return VideoSwinClassifier(VideoSwinBackbone(**TINY, include_preprocessing=True,
                                                 dtype=dtype), 5, name="classifier")


CASES = [
    Case("VideoNormalization", lambda dtype: VideoNormalization(dtype=dtype),
         (2, 3, 5, 7, 3), rgb=True),
    Case("PatchEmbed3D", lambda dtype: PatchEmbed3D((2, 4, 4), 8, dtype=dtype),
         CLIP, weights=4),
    Case("PatchEmbed3D-no-norm",
         lambda dtype: PatchEmbed3D((2, 4, 4), 8, patch_norm=False, dtype=dtype),
         CLIP, weights=2),
    Case("PatchMerging", lambda dtype: PatchMerging(8, dtype=dtype), (2, 3, 5, 7, 8),
         weights=3),
    Case("DropPath", lambda dtype: DropPath(0.3, seed=1, dtype=dtype), (2, 3, 5, 8)),
    Case("Mlp", lambda dtype: Mlp(16, 6, drop=0.1, dtype=dtype), (2, 3, 5, 7, 8),
         weights=4),
    Case("WindowAttention3D-shifted",
         lambda dtype: WindowAttention3D(8, 2, window_size=WINDOW, dtype=dtype),
         _SHIFTED_ATTN[0], _SHIFTED_ATTN[1], weights=5),
    Case("WindowAttention3D-unshifted",
         lambda dtype: WindowAttention3D(8, 2, window_size=WINDOW, qk_scale=0.3, dtype=dtype),
         _PLAIN_ATTN[0], _PLAIN_ATTN[1], weights=5),
    Case("WindowAttention3D-clamped",
         lambda dtype: WindowAttention3D(8, 1, window_size=WINDOW, qkv_bias=False,
                                         dtype=dtype),
         _CLAMPED_ATTN[0], _CLAMPED_ATTN[1], weights=4),
    Case("SwinTransformerBlock3D-shifted",
         lambda dtype: SwinTransformerBlock3D(8, 2, window_size=WINDOW, shift_size=(1, 1, 1),
                                              drop_path_rate=0.1, dtype=dtype),
         (2, 3, 5, 7, 8), weights=13),
    Case("SwinTransformerBlock3D-unshifted",
         lambda dtype: SwinTransformerBlock3D(8, 2, window_size=WINDOW, mlp_ratio=2.0,
                                              dtype=dtype),
         (2, 3, 5, 7, 8), weights=13),
    Case("BasicLayer-downsample",
         lambda dtype: BasicLayer(8, 2, 2, window_size=WINDOW, drop_path_rates=[0.0, 0.1],
                                  downsample=True, dtype=dtype),
         (2, 3, 5, 7, 8), weights=2 * 13 + 3),
    Case("BasicLayer-last",
         lambda dtype: BasicLayer(8, 2, 2, window_size=WINDOW, dtype=dtype),
         (2, 3, 5, 7, 8), weights=2 * 13),
    Case("VideoSwinBackbone", lambda dtype: VideoSwinBackbone(**TINY, dtype=dtype),
         CLIP, weights=4 + (2 * 13 + 3) + 2 * 13 + 2, is_model=True),
    Case("VideoSwinBackbone-fixed-shape-stages",
         lambda dtype: VideoSwinBackbone(**TINY, input_shape=CLIP[1:], return_stages=True,
                                         include_preprocessing=True, dtype=dtype),
         CLIP, weights=4 + (2 * 13 + 3) + 2 * 13 + 2, is_model=True, rgb=True),
    # Logits stay float32 under mixed precision: the head is float32 by design.
    Case("VideoSwinClassifier", _classifier, CLIP,
         weights=4 + (2 * 13 + 3) + 2 * 13 + 2 + 2, mixed_output="float32", is_model=True,
         rgb=True, float32_sublayers=("avg_pool", "dropout", "fc_cls")),
]


def _inputs(case, seed=0):
    rng = np.random.default_rng(seed)
    if case.rgb:
        return rng.uniform(0, 255, case.input_shape).astype("float32")
    return rng.standard_normal(case.input_shape).astype("float32")


def _flat(outputs):
    """The output tensors of a call, in a fixed order (dicts by key)."""
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, (tuple, list)):
        return list(outputs)
    return [outputs]


def _flat_shapes(shapes):
    if isinstance(shapes, dict):
        return [tuple(shapes[k]) for k in sorted(shapes)]
    if shapes and all(isinstance(s, (tuple, list)) for s in shapes):
        return [tuple(s) for s in shapes]
    return [tuple(shapes)]


def _numpy(outputs):
    return [keras.ops.convert_to_numpy(x) for x in _flat(outputs)]


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


def _call(layer, case, x):
    return layer(x, **case.call_kwargs)


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def case(request):
    keras.utils.set_random_seed(0)
    return request.param


def test_config_round_trip(case):
    layer = case.factory(None)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    # As a .keras file stores it: through JSON (tuples come back as lists).
    from_json = type(layer).from_config(json.loads(json.dumps(config)))
    assert from_json.get_config() == config


def test_compute_output_shape_equals_the_real_output(case):
    layer = case.factory(None)
    outputs = _flat(_call(layer, case, _inputs(case)))
    predicted = _flat_shapes(layer.compute_output_shape(case.input_shape))
    assert len(predicted) == len(outputs)
    for want, got in zip(predicted, outputs):
        assert want == tuple(got.shape)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "float32"])
def test_dtype_policy(case, policy):
    layer = case.factory(policy)
    outputs = _flat(_call(layer, case, _inputs(case)))
    mixed = policy == "mixed_bfloat16"
    compute = "bfloat16" if mixed else "float32"
    output = case.mixed_output if mixed else "float32"
    assert [_dtype(x) for x in outputs] == [output] * len(outputs)
    assert all(_dtype(w) == "float32" for w in layer.weights)
    for sub in layer._flatten_layers(include_self=False):
        if isinstance(sub, (keras.layers.InputLayer, keras.Model)):
            continue   # a nested backbone is checked below
        want = "float32" if sub.name in case.float32_sublayers else compute
        assert sub.compute_dtype == want, f"{sub.name} computes in {sub.compute_dtype}"
    # The policy survives the config round trip (what a .keras file reloads with).
    own = layer.backbone if case.id == "VideoSwinClassifier" else layer
    restored = type(layer).from_config(json.loads(json.dumps(layer.get_config())))
    restored = restored.backbone if case.id == "VideoSwinClassifier" else restored
    blocks = [sub for sub in restored._flatten_layers()
              if isinstance(sub, SwinTransformerBlock3D)] or [restored]
    assert {sub.dtype_policy.name for sub in blocks} == {policy}, (
        f"{type(own).__name__} built with dtype={policy!r} has get_config()['dtype'] = "
        f"{own.get_config().get('dtype')}: from_config rebuilds it in another policy")
    # The classifier model itself keeps the global policy; its head is float32 by design.
    assert own.compute_dtype == compute and own.variable_dtype == "float32", (
        f"{type(own).__name__}(dtype={policy!r}).dtype_policy is {own.dtype_policy.name}")


def test_serialisation_gives_equal_outputs(case, tmp_path):
    layer = case.factory(None)
    x = _inputs(case, seed=1)
    want = _numpy(_call(layer, case, x))
    if case.is_model:
        path = tmp_path / "model.keras"
        layer.save(path)
        restored = keras.saving.load_model(path)
    else:
        serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
        restored = keras.saving.deserialize_keras_object(serialized)
        assert type(restored) is type(layer)
        _call(restored, case, x)   # build
        restored.set_weights(layer.get_weights())
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    got = _numpy(_call(restored, case, x))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_weights_are_the_parameters_only(case, tmp_path):
    layer = case.factory(None)
    _call(layer, case, _inputs(case))
    assert len(layer.weights) == case.weights, [w.path for w in layer.weights]
    # Precomputed indices and masks are constants, never weights.
    assert layer.non_trainable_weights == [], [w.path for w in layer.non_trainable_weights]
    paths = [w.path for w in layer.weights]
    assert len(set(paths)) == len(paths)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    restored = keras.saving.deserialize_keras_object(serialized)
    _call(restored, case, _inputs(case))
    assert len(restored.weights) == len(layer.weights)
    assert [tuple(w.shape) for w in restored.weights] == [tuple(w.shape) for w in layer.weights]
    assert restored.non_trainable_weights == []


def test_relative_bias_is_gathered_in_float32():
    # torch's CPU gather is several times slower on bfloat16 than on float32; the values
    # are the same, since the table is cast before the gather. ("mixed_bfloat16" stores
    # the table in float32; the "bfloat16" policy stores it in bfloat16.)
    layer = WindowAttention3D(8, 2, window_size=WINDOW, dtype="bfloat16")
    layer.build()
    layer.relative_position_bias_table.assign(
        np.random.default_rng(2).normal(0, 1, (75, 2)).astype("float32"))
    stored = keras.ops.convert_to_numpy(
        keras.ops.cast(layer.relative_position_bias_table.value, "float32"))
    bias = layer.relative_bias(18)
    assert keras.backend.standardize_dtype(bias.dtype) == "float32"
    index = windows.relative_position_index(WINDOW).reshape(-1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bias),
                                  stored[index].T.reshape(2, 18, 18))
