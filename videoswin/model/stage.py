"""One Video Swin stage (the official `BasicLayer`): blocks, then optional patch merging."""

import keras

from videoswin.model.block import SwinTransformerBlock3D
from videoswin.model.embedding import PatchMerging


@keras.saving.register_keras_serializable(package="videoswin")
class BasicLayer(keras.layers.Layer):
    """`depth` blocks alternating unshifted / shifted windows, then `downsample`.

    Returns `(features, merged)` when it downsamples, so that dense tasks can read each
    stage's features before patch merging; otherwise returns `features`.
    """

    def __init__(self, dim, depth, num_heads, *, window_size=(8, 7, 7), mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path_rates=0.0,
                 downsample=False, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.window_size = tuple(int(k) for k in window_size)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.qk_scale = qk_scale
        self.drop = float(drop)
        self.attn_drop = float(attn_drop)
        if isinstance(drop_path_rates, (int, float)):
            drop_path_rates = [float(drop_path_rates)] * self.depth
        self.drop_path_rates = [float(r) for r in drop_path_rates]
        if len(self.drop_path_rates) != self.depth:
            raise ValueError(f"{len(self.drop_path_rates)} drop_path_rates for {self.depth} "
                             "blocks")
        self.has_downsample = bool(downsample)
        shift = tuple(k // 2 for k in self.window_size)
        self.blocks = [
            SwinTransformerBlock3D(
                self.dim, self.num_heads, window_size=self.window_size,
                shift_size=(0, 0, 0) if j % 2 == 0 else shift,
                mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias, qk_scale=qk_scale,
                drop=self.drop, attn_drop=self.attn_drop,
                drop_path_rate=self.drop_path_rates[j],
                name=f"blocks_{j}", dtype=self.dtype_policy,
            )
            for j in range(self.depth)
        ]
        self.downsample = (PatchMerging(self.dim, name="downsample", dtype=self.dtype_policy)
                           if self.has_downsample else None)

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)
        if self.downsample is not None:
            self.downsample.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)
        if self.downsample is None:
            return x
        return x, self.downsample(x)

    def compute_output_shape(self, input_shape):
        if self.downsample is None:
            return tuple(input_shape)
        return tuple(input_shape), self.downsample.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, depth=self.depth, num_heads=self.num_heads,
                      window_size=self.window_size, mlp_ratio=self.mlp_ratio,
                      qkv_bias=self.qkv_bias, qk_scale=self.qk_scale, drop=self.drop,
                      attn_drop=self.attn_drop, drop_path_rates=self.drop_path_rates,
                      downsample=self.has_downsample)
        return config
