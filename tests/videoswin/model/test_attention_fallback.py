"""The explicit attention, which runs on JAX and where Keras's fused op cannot take a bias.

Keras's torch backend accepts `bias` in `ops.dot_product_attention` only from Keras 3.14;
`videoswin.model.attention.FUSED_ATTENTION` (decided once per process) sends older Keras on
torch, and JAX (where it is faster), to the explicit einsum-softmax-einsum path. These tests
hold that path to the fused one and to NumPy, and the decision to the rule and to what the
installed Keras does.
"""

import keras
import numpy as np
import pytest
from keras import ops
from packaging.version import Version

from videoswin.core import geometry
from videoswin.model import attention, windows
from videoswin.model.attention import WindowAttention3D
from videoswin.model.block import SwinTransformerBlock3D

BACKEND = keras.backend.backend()
WINDOW, SHIFT = (2, 3, 3), (1, 1, 1)
SIZE = (3, 5, 7)                  # pads to (4, 6, 9): shifted, padded, 8 mask groups
DIM, HEADS = 8, 2


@pytest.mark.parametrize("backend, version, fused", [
    ("torch", "3.8.0", False),
    ("torch", "3.13.2", False),
    ("torch", "3.14.0", True),
    ("torch", "3.14.0.dev2025120100", True),
    ("torch", "3.15.1", True),
    ("torch", "4.0.0", True),
    ("jax", "3.8.0", True),
    ("tensorflow", "3.8.0", True),
    ("numpy", "3.8.0", True),
])
def test_rule(backend, version, fused):
    assert attention.fused_takes_bias(backend, version) is fused
    # JAX takes the explicit form although its fused op takes a bias: it is faster there.
    assert attention.uses_fused(backend, version) is (fused and backend != "jax")


def test_decision_for_the_installed_keras_follows_the_rule():
    old = Version(keras.__version__).release[:2] < (3, 14)
    assert attention.FUSED_ATTENTION is not (BACKEND == "jax" or BACKEND == "torch" and old)


def test_decision_matches_what_the_installed_keras_does():
    """The bias rule is neither too strict nor too loose for this Keras and backend."""
    q = ops.ones((1, 4, 2, 8))
    bias = ops.zeros((1, 2, 4, 4))
    if attention.fused_takes_bias(BACKEND, keras.__version__):
        out = ops.dot_product_attention(q, q, q, bias=bias)
        np.testing.assert_allclose(ops.convert_to_numpy(out), np.ones((1, 4, 2, 8)), atol=1e-6)
    else:
        with pytest.raises(ValueError, match="bias"):
            ops.dot_product_attention(q, q, q, bias=bias)


def _randomised(layer, seed):
    """Weights far from their initial values, so the relative bias is not negligible."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(0.0, 0.5, w.shape).astype("float32"))
    return layer


def _block():
    keras.utils.set_random_seed(0)
    block = SwinTransformerBlock3D(DIM, HEADS, window_size=WINDOW, shift_size=SHIFT,
                                   name="block")
    x = np.random.default_rng(1).normal(size=(2,) + SIZE + (DIM,)).astype("float32")
    block(x)
    return _randomised(block, 2), x


def _run(layer, x, fused, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        patch.setattr(attention, "FUSED_ATTENTION", fused)
        return ops.convert_to_numpy(layer(x, **kwargs))


@pytest.mark.skipif(not attention.fused_takes_bias(BACKEND, keras.__version__),
                    reason=f"Keras {keras.__version__} on {BACKEND} has no fused attention "
                           "with a bias to compare with (the NumPy test below covers the "
                           "explicit path here)")
def test_explicit_path_gives_the_fused_block_outputs(monkeypatch):
    block, x = _block()
    fused = _run(block, x, True, monkeypatch)
    explicit = _run(block, x, False, monkeypatch)
    assert fused.shape == explicit.shape == x.shape
    np.testing.assert_allclose(explicit, fused, rtol=0, atol=1e-5)
    assert np.abs(fused - x).max() > 0.1          # the block did something


def _dense_weights(layer):
    """qkv kernel, qkv bias, proj kernel, proj bias of a WindowAttention3D, in float64."""
    return (np.asarray(ops.convert_to_numpy(w), np.float64)
            for w in (layer.qkv.kernel, layer.qkv.bias, layer.proj.kernel, layer.proj.bias))


def _numpy_attention(layer, x, size, window, shift):
    """WindowAttention3D.call, window by window in float64, mask per window."""
    qkv_w, qkv_b, proj_w, proj_b = _dense_weights(layer)
    table = np.asarray(ops.convert_to_numpy(layer.relative_position_bias_table), np.float64)
    n = int(np.prod(window))
    index = windows.relative_position_index(WINDOW)[:n, :n]
    relative = table[index].transpose(2, 0, 1)                      # (heads, n, n)
    b, tokens, c = x.shape
    xs = np.asarray(x, np.float64).reshape(b, tokens // n, n, c)
    masks = [m for count, m in windows.window_plan(size, window, shift).groups
             for _ in range(count)]
    out = np.empty_like(xs)
    d = c // HEADS
    for w, mask in enumerate(masks):
        qkv = (xs[:, w] @ qkv_w + qkv_b).reshape(b, n, 3, HEADS, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = np.einsum("bqhd,bkhd->bhqk", q * d ** -0.5, k) + relative
        if mask is not None:
            logits = logits + mask
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        out[:, w] = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, c)
    return out.reshape(b, tokens, c) @ proj_w + proj_b


@pytest.mark.parametrize("path", ["this process's choice", "explicit"])
def test_attention_equals_numpy_on_a_shifted_padded_map(path, monkeypatch):
    window, shift = geometry.clamp_window(SIZE, WINDOW, SHIFT)
    tokens = len(windows.window_plan(SIZE, window, shift).gather)
    layer = WindowAttention3D(DIM, HEADS, window_size=WINDOW, name="attn")
    layer.build(None)
    _randomised(layer, 3)
    x = np.random.default_rng(4).normal(size=(2, tokens, DIM)).astype("float32")
    fused = attention.FUSED_ATTENTION if path != "explicit" else False
    got = _run(layer, x, fused, monkeypatch, size=SIZE, window=window, shift=shift)
    want = _numpy_attention(layer, x, SIZE, window, shift)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_bf16_attention_of_one_head_over_one_token():
    """One head over a one-token window, batch of one, under mixed_bfloat16, compiled where
    the backend compiles. On JAX the fused op's bfloat16 product into float32 does not
    compile there (jaxlib 0.10.2's CPU backend: ALG_DOT_BF16_BF16_F32); the explicit form,
    JAX's default, does. With one token the softmax is 1, so the output is proj(v)."""
    layer = WindowAttention3D(8, 1, window_size=(1, 1, 1), dtype="mixed_bfloat16", name="attn")
    layer.build(None)
    _randomised(layer, 5)
    x = np.random.default_rng(6).normal(size=(1, 1, 8)).astype("float32")
    geometry_kwargs = dict(size=(1, 1, 1), window=(1, 1, 1), shift=(0, 0, 0))
    if BACKEND == "jax":
        import jax

        weights = [v.value for v in layer.trainable_variables]
        forward = jax.jit(lambda w, x: layer.stateless_call(w, [], x, **geometry_kwargs)[0])
        got = np.asarray(forward(weights, x), np.float32)
    else:
        got = ops.convert_to_numpy(ops.cast(layer(x, **geometry_kwargs), "float32"))
    qkv_w, qkv_b, proj_w, proj_b = _dense_weights(layer)
    v = (x.astype(np.float64) @ qkv_w + qkv_b)[..., 16:]
    want = v @ proj_w + proj_b
    assert np.abs(want).max() > 1
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05 * np.abs(want).max())
