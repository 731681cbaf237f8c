"""Patch embedding and patch merging: the two places where resolution changes."""

import keras
from keras import ops

from videoswin.core import geometry
from videoswin.model import windows


@keras.saving.register_keras_serializable(package="videoswin")
class PatchEmbed3D(keras.layers.Layer):
    """Pads (T, H, W) at the end to patch multiples, then a strided Conv3D and LayerNorm."""

    def __init__(self, patch_size=(2, 4, 4), embed_dim=96, *, patch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.embed_dim = int(embed_dim)
        self.patch_norm = bool(patch_norm)
        self.proj = keras.layers.Conv3D(self.embed_dim, self.patch_size, strides=self.patch_size,
                                        padding="valid", name="proj", dtype=self.dtype_policy)
        self.norm = (keras.layers.LayerNormalization(epsilon=1e-5, name="norm",
                                                     dtype=self.dtype_policy)
                     if self.patch_norm else None)

    def build(self, input_shape):
        self.proj.build((None,) + self.patch_size + (input_shape[-1],))
        if self.norm is not None:
            self.norm.build((None, self.embed_dim))
        self.built = True

    def call(self, x):
        size = windows.static_size(x, self.name)
        padded = geometry.padded_size(size, self.patch_size)
        if padded != size:
            x = ops.pad(x, [(0, 0)] + [(0, p - n) for p, n in zip(padded, size)] + [(0, 0)])
        x = self.proj(x)
        return self.norm(x) if self.norm is not None else x

    def compute_output_shape(self, input_shape):
        dims = tuple(None if n is None else -(-n // p)
                     for n, p in zip(input_shape[1:4], self.patch_size))
        return (input_shape[0],) + dims + (self.embed_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(patch_size=self.patch_size, embed_dim=self.embed_dim,
                      patch_norm=self.patch_norm)
        return config


@keras.saving.register_keras_serializable(package="videoswin")
class PatchMerging(keras.layers.Layer):
    """2x2 spatial merge: pad H, W to even, concat in the official order, LayerNorm, Linear."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="norm",
                                                    dtype=self.dtype_policy)
        self.reduction = keras.layers.Dense(2 * self.dim, use_bias=False, name="reduction",
                                            dtype=self.dtype_policy)

    def build(self, input_shape):
        self.norm.build((None, 4 * self.dim))
        self.reduction.build((None, 4 * self.dim))
        self.built = True

    def call(self, x):
        _, h, w = windows.static_size(x, self.name)
        if h % 2 or w % 2:
            x = ops.pad(x, [(0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)])
        x = ops.concatenate(
            [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]],
            axis=-1,
        )
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        b, d, h, w, _ = input_shape
        half = lambda n: None if n is None else -(-n // 2)  # noqa: E731
        return (b, d, half(h), half(w), 2 * self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim)
        return config
