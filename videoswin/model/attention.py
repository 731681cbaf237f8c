"""Window multi-head self-attention with a 3-D relative position bias."""

import re

import keras
import numpy as np
from keras import ops

from videoswin.model import windows

# Keras's torch backend accepts `bias` in `ops.dot_product_attention` from Keras 3.14 on;
# before, it raises "torch's `dot_product_attention` doesn't support `bias`" (the JAX,
# TensorFlow and NumPy backends take it on every Keras this package supports).
TORCH_BIAS_SINCE = (3, 14)


def fused_takes_bias(backend, keras_version):
    """Whether Keras `keras_version`'s fused `ops.dot_product_attention` accepts a `bias`
    on `backend`. Where it does not, `WindowAttention3D` computes the same attention
    explicitly (einsum, softmax, einsum)."""
    major_minor = tuple(int(part) for part in re.findall(r"\d+", keras_version)[:2])
    return not (backend == "torch" and major_minor < TORCH_BIAS_SINCE)


# Backends on which the explicit form ran faster than Keras's fused op. On JAX the fused op
# is `jax.nn.dot_product_attention`, which jaxlib's XLA:CPU runs as one pass for the logits
# and softmax sums and a second that divides all the logits (3 x 392 x 392 per window in
# Swin-T) and copies them into the layout of the second product; the explicit form divides
# the output instead (head_dim wide, 12x less), and ran Swin-T's forward 1.2x faster
# (BENCHMARKS.md). TensorFlow's XLA gained nothing from it; torch has a fused kernel.
EXPLICIT_IS_FASTER = ("jax",)


def uses_fused(backend, keras_version):
    """Whether `WindowAttention3D` calls Keras's fused `ops.dot_product_attention` (outside
    attention dropout) on `backend` under Keras `keras_version`, or its explicit form."""
    return fused_takes_bias(backend, keras_version) and backend not in EXPLICIT_IS_FASTER


# Decided once per process: the backend and the Keras version cannot change within one.
# A plain module constant, so that graph tracers (torch.export, torch.compile) see a fixed
# branch. Tests force either path by monkeypatching it.
FUSED_ATTENTION = uses_fused(keras.backend.backend(), keras.__version__)

# Bytes of float32 attention logits (batch x windows x heads x N x N) one attention call may
# produce on JAX; None: each mask group's windows in one call. jaxlib's XLA:CPU compiles a
# call's first product and softmax sums into one YNNPACK fusion, which slows down once its
# logits outgrow the cache (one call is 236 MB in Swin-T's first stage at 32x224x224);
# calls of about 8 MB ran Swin-T's and Swin-B's blocks up to 1.5x faster (BENCHMARKS.md).
# TensorFlow's XLA and torch's fused kernel gained nothing, so their graphs stay as they are.
LOGITS_PER_CALL = {"jax": 8 << 20}.get(keras.backend.backend())
# At most this many calls per mask group, so that large batches do not multiply the graph
# (and its compile time) without bound; the calls then grow past the budget instead.
MAX_CALLS_PER_GROUP = 32


def windows_per_call(count, batch, heads, n, budget=None):
    """How many of a group's `count` windows one attention call takes: as many as fit
    `budget` bytes of float32 logits at this batch size (an unknown batch counts as 1), at
    least one and at least a `MAX_CALLS_PER_GROUP`-th of the group; all of them when
    `budget` is None."""
    if budget is None:
        return count
    per_window = (batch or 1) * heads * n * n * 4
    fewest = -(-count // MAX_CALLS_PER_GROUP)
    return min(count, max(fewest, int(budget) // per_window))


@keras.saving.register_keras_serializable(package="videoswin")
class WindowAttention3D(keras.layers.Layer):
    """W-MSA / SW-MSA of Video Swin (the official `attn` module).

    Windows arrive grouped by shift mask (`windows.window_plan`), so each group needs one
    `(1, heads, N, N)` bias (relative position bias plus that group's mask) that broadcasts
    over its windows and the batch.
    """

    def __init__(self, dim, num_heads, *, window_size=(8, 7, 7), qkv_bias=True, qk_scale=None,
                 attn_drop=0.0, proj_drop=0.0, **kwargs):
        super().__init__(**kwargs)
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.window_size = tuple(int(k) for k in window_size)
        self.qkv_bias = bool(qkv_bias)
        self.qk_scale = qk_scale
        self.attn_drop = float(attn_drop)
        self.proj_drop = float(proj_drop)
        self.head_dim = self.dim // self.num_heads
        self.scale = float(qk_scale) if qk_scale is not None else self.head_dim ** -0.5
        self.qkv = keras.layers.Dense(3 * self.dim, use_bias=self.qkv_bias, name="qkv",
                                      dtype=self.dtype_policy)
        self.proj = keras.layers.Dense(self.dim, name="proj", dtype=self.dtype_policy)
        self.attn_dropout = keras.layers.Dropout(self.attn_drop, dtype=self.dtype_policy)
        self.proj_dropout = keras.layers.Dropout(self.proj_drop, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        wd, wh, ww = self.window_size
        rows = (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1)
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=(rows, self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.qkv.build((None, self.dim))
        self.proj.build((None, self.dim))
        self.built = True

    def relative_bias(self, n):
        """(heads, n, n) float32 bias for the first n tokens of the configured window.

        The index is computed for the configured window and sliced [:n, :n] even when the
        window was clamped: that is what the official model does, so we keep it.
        """
        index = windows.relative_position_index(self.window_size)[:n, :n].reshape(-1)
        # Gather along the transposed table: the result is already (heads, n, n) in
        # memory, so no backend has to copy it again on the way to the attention kernel.
        # Gather in float32 whatever the policy: torch's CPU index_select is about 8x slower
        # on bfloat16 than on float32 (the same values either way: the table is cast first).
        table = ops.cast(ops.transpose(self.relative_position_bias_table), "float32")
        bias = ops.take(table, ops.convert_to_tensor(index), axis=1)
        return ops.reshape(bias, (self.num_heads, n, n))

    def call(self, x, *, size, window, shift, training=None):
        """Attention within windows.

        x: (B, nW*N, C), the tokens of nW windows of N tokens, window after window, in the
        order of `windows.window_plan(size, window, shift)`: grouped by shift mask.
        """
        c = x.shape[-1]
        groups = windows.window_plan(size, window, shift).groups
        n = int(np.prod(window))
        relative = self.relative_bias(n)
        qkv = self.qkv(x)
        dropout = bool(training) and self.attn_drop > 0
        total = sum(count for count, _ in groups)
        outs, start = [], 0
        for count, mask in groups:
            bias = relative
            if mask is not None:
                bias = bias + ops.convert_to_tensor(mask)
            bias = ops.cast(bias, qkv.dtype)[None]
            step = windows_per_call(count, x.shape[0], self.num_heads, n, LOGITS_PER_CALL)
            for first in range(start, start + count, step):
                taken = min(step, start + count - first)
                part = qkv if taken == total else qkv[:, first * n:(first + taken) * n]
                # (B*taken, N, 3, heads, d): q, k and v are (batch, N, heads, d) views.
                part = ops.reshape(part, (-1, n, 3, self.num_heads, self.head_dim))
                q, k, v = (part[:, :, i] for i in range(3))
                if FUSED_ATTENTION and not dropout:
                    out = ops.dot_product_attention(q, k, v, bias=bias, scale=self.scale)
                else:
                    out = self._explicit_attention(q, k, v, bias, dropout)
                outs.append(ops.reshape(out, (-1, taken * n, c)))
            start += count
        out = outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=1)
        out = self.proj(out)
        return self.proj_dropout(out, training=training)

    def _explicit_attention(self, q, k, v, bias, dropout):
        # Softmax(q k^T * scale + bias) v, normalised after the second product: the sums
        # divide the (batch, heads, N, head_dim) output rather than the (batch, heads, N, N)
        # probabilities, the same numbers up to rounding. Dropout scales elementwise, so
        # dropping from the unnormalised weights equals dropping from the probabilities. The
        # softmax statistics stay in float32 under a bfloat16 policy, as in the fused op.
        logits = ops.einsum("bqhd,bkhd->bhqk", q * ops.cast(self.scale, q.dtype), k) + bias
        logits = ops.cast(logits, "float32")
        weights = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
        total = ops.sum(weights, axis=-1, keepdims=True)
        if dropout:
            weights = self.attn_dropout(weights, training=True)
        out = ops.einsum("bhqk,bkhd->bhqd", ops.cast(weights, v.dtype), v)
        out = ops.cast(ops.cast(out, "float32") / total, v.dtype)
        return ops.transpose(out, (0, 2, 1, 3))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, window_size=self.window_size,
                      qkv_bias=self.qkv_bias, qk_scale=self.qk_scale,
                      attn_drop=self.attn_drop, proj_drop=self.proj_drop)
        return config
