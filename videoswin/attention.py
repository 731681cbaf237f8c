"""Window multi-head self-attention with a 3-D relative position bias."""

import keras
from keras import ops

from videoswin import windows


@keras.saving.register_keras_serializable(package="videoswin")
class WindowAttention3D(keras.layers.Layer):
    """W-MSA / SW-MSA of Video Swin (the official `attn` module).

    Takes windows in one of two layouts (see `windows.window_partition`):
    - `(B*nW, N, C)` without a shift mask: one `(1, heads, N, N)` bias for all windows;
    - `(B, N, nW, C)` with `region_ids` `(nW, N)`: windows are folded into the heads axis,
      so the per-window mask is one `(1, nW*heads, N, N)` bias that broadcasts over the batch.
    """

    def __init__(self, dim, num_heads, window_size=(8, 7, 7), qkv_bias=True, qk_scale=None,
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
        """(heads, n, n) bias for the first n tokens of the configured window.

        The index is computed for the configured window and sliced [:n, :n] even when the
        window was clamped: that is what the official model does, so we keep it.
        """
        index = windows.relative_position_index(self.window_size)[:n, :n].reshape(-1)
        # Gather along the transposed table: the result is already (heads, n, n) in
        # memory, so no backend has to copy it again on the way to the attention kernel.
        table = ops.transpose(self.relative_position_bias_table)
        bias = ops.take(table, ops.convert_to_tensor(index), axis=1)
        return ops.reshape(bias, (self.num_heads, n, n))

    def call(self, x, region_ids=None, training=None):
        n, c = x.shape[1], x.shape[-1]
        heads = self.num_heads
        bias = self.relative_bias(n)
        qkv = self.qkv(x)
        if region_ids is None:
            # x: (B*nW, N, C); attention batch = B*nW, heads = heads.
            qkv = ops.reshape(qkv, (-1, n, 3, heads, self.head_dim))
            qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))               # (3, B*nW, h, N, d)
            bias = bias[None]
        else:
            # x: (B, N, nW, C); attention batch = B, heads = nW*heads.
            num_windows = x.shape[2]
            qkv = ops.reshape(qkv, (-1, n, num_windows, 3, heads, self.head_dim))
            qkv = ops.transpose(qkv, (3, 0, 2, 4, 1, 5))            # (3, B, nW, h, N, d)
            qkv = ops.reshape(qkv, (3, -1, num_windows * heads, n, self.head_dim))
            # -100, not -inf: the official mask value; exp(-100) underflows to 0 in float32
            # yet keeps rows finite. Built here from (nW, N) labels: a cheap compare.
            ids = ops.convert_to_tensor(region_ids)
            mask = ops.where(ops.not_equal(ids[:, None, :], ids[:, :, None]), -100.0, 0.0)
            bias = ops.cast(bias, mask.dtype)
            bias = ops.reshape(bias[None] + mask[:, None], (1, num_windows * heads, n, n))
        # Heads-major (batch, heads, N, d) in memory, handed over as (batch, N, heads, d)
        # views: on torch the fused kernel then needs no extra copies of q, k and v.
        q, k, v = (ops.transpose(qkv[i], (0, 2, 1, 3)) for i in range(3))
        bias = ops.cast(bias, q.dtype)
        if training and self.attn_drop > 0:
            out = self._explicit_attention(q, k, v, bias, training)
        else:
            out = ops.dot_product_attention(q, k, v, bias=bias, scale=self.scale)
        out = ops.reshape(out, (-1,) + tuple(x.shape[1:-1]) + (c,))
        out = self.proj(out)
        return self.proj_dropout(out, training=training)

    def _explicit_attention(self, q, k, v, bias, training):
        # Only for attention dropout during training: the fused op has no dropout.
        logits = ops.einsum("bqhd,bkhd->bhqk", q * ops.cast(self.scale, q.dtype), k) + bias
        probs = self.attn_dropout(ops.softmax(logits, axis=-1), training=training)
        return ops.einsum("bhqk,bkhd->bqhd", probs, v)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, window_size=self.window_size,
                      qkv_bias=self.qkv_bias, qk_scale=self.qk_scale,
                      attn_drop=self.attn_drop, proj_drop=self.proj_drop)
        return config
