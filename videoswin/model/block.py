"""The Video Swin transformer block: (shifted) window attention and MLP, pre-norm."""

import keras
import numpy as np
from keras import ops

from videoswin.core import geometry
from videoswin.model import windows
from videoswin.model.attention import WindowAttention3D


@keras.saving.register_keras_serializable(package="videoswin")
class DropPath(keras.layers.Layer):
    """Stochastic depth per sample; identity unless `training=True`."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None
        # No weights, and never called at inference: left unbuilt, it would make Keras's
        # predict/fit run one eager forward pass first to build it (op by op on JAX).
        self.built = True

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
        return x / keep * ops.floor(keep + noise)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="videoswin")
class Mlp(keras.layers.Layer):
    """fc1 -> exact (erf) GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, hidden_dim, out_dim, *, drop=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.out_dim = int(out_dim)
        self.drop = float(drop)
        self.fc1 = keras.layers.Dense(self.hidden_dim, name="fc1", dtype=self.dtype_policy)
        self.fc2 = keras.layers.Dense(self.out_dim, name="fc2", dtype=self.dtype_policy)
        self.dropout = keras.layers.Dropout(self.drop, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.hidden_dim,))
        self.built = True

    def call(self, x, training=None):
        x = ops.gelu(self.fc1(x), approximate=False)
        x = self.dropout(x, training=training)
        return self.dropout(self.fc2(x), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, out_dim=self.out_dim, drop=self.drop)
        return config


@keras.saving.register_keras_serializable(package="videoswin")
class SwinTransformerBlock3D(keras.layers.Layer):
    """One Video Swin block on a (B, D, H, W, C) feature map.

    `shift_size` is (0, 0, 0) on even blocks and window // 2 on odd blocks.
    """

    def __init__(self, dim, num_heads, *, window_size=(8, 7, 7), shift_size=(0, 0, 0),
                 mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.window_size = tuple(int(k) for k in window_size)
        self.shift_size = tuple(int(s) for s in shift_size)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.qk_scale = qk_scale
        self.drop = float(drop)
        self.attn_drop = float(attn_drop)
        self.drop_path_rate = float(drop_path_rate)
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm1", dtype=policy)
        self.attn = WindowAttention3D(self.dim, self.num_heads, window_size=self.window_size,
                                      qkv_bias=self.qkv_bias, qk_scale=qk_scale,
                                      attn_drop=self.attn_drop, proj_drop=self.drop,
                                      name="attn", dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, name="drop_path", dtype=policy)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm2", dtype=policy)
        self.mlp = Mlp(int(self.dim * self.mlp_ratio), self.dim, drop=self.drop, name="mlp",
                       dtype=policy)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attn.build(None)
        self.norm2.build(input_shape)
        self.mlp.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        size = windows.static_size(x, self.name)
        window, shift = geometry.clamp_window(size, self.window_size, self.shift_size)
        padded = geometry.padded_size(size, window)
        plan = windows.window_plan(size, window, shift)
        shortcut = x
        x = self.norm1(x)
        # Pad after norm1, at the end only: padded tokens are zeros (their keys and
        # values reduce to the qkv bias) and are not masked in unshifted windows.
        if padded != size:
            x = ops.pad(x, [(0, 0)] + [(0, p - n) for p, n in zip(padded, size)] + [(0, 0)])
        # One gather does the cyclic shift and the window partition; one more undoes both
        # and crops the padding.
        x = ops.reshape(x, (-1, int(np.prod(padded)), self.dim))
        x = ops.take(x, plan.gather, axis=1)
        x = self.attn(x, size=size, window=window, shift=shift, training=training)
        x = ops.reshape(ops.take(x, plan.scatter, axis=1), (-1,) + size + (self.dim,))
        x = shortcut + self._drop_path(x, training)
        return x + self._drop_path(self.mlp(self.norm2(x), training=training), training)

    def _drop_path(self, x, training):
        # Skipping the layer call at inference saves Keras's per-call overhead.
        if training and self.drop_path_rate > 0:
            return self.drop_path(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, window_size=self.window_size,
                      shift_size=self.shift_size, mlp_ratio=self.mlp_ratio,
                      qkv_bias=self.qkv_bias, qk_scale=self.qk_scale, drop=self.drop,
                      attn_drop=self.attn_drop, drop_path_rate=self.drop_path_rate)
        return config
