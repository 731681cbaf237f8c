"""The Video Swin backbone as a functional Keras model."""

import keras
import numpy as np

from videoswin.core import archs
from videoswin.core.geometry import triple
from videoswin.core.pipelines import MEAN, STD
from videoswin.model import presets
from videoswin.model.embedding import PatchEmbed3D
from videoswin.model.preprocessing import VideoNormalization
from videoswin.model.stage import BasicLayer


@keras.saving.register_keras_serializable(package="videoswin")
class VideoSwinBackbone(keras.Model):
    """Video Swin Transformer backbone (Liu et al., 2021), channels-last.

    Input `(B, T, H, W, C)`; output the final normalised feature map
    `(B, T', H', W', C')` with T' = ceil(T / patch_t), H' = ceil(H / (patch_h * 8)), ...
    Any clip size works: parameter shapes depend only on the architecture and window.

    Args:
        embed_dim, depths, num_heads: architecture (see `videoswin.core.archs.ARCHS`).
        patch_size: (t, h, w) patch of the Conv3D embedding.
        window_size: (t, h, w) attention window; clamped per axis to smaller feature maps.
        mlp_ratio, qkv_bias, qk_scale: block settings.
        drop_rate, attn_drop_rate: dropout rates; drop_path_rate: stochastic depth,
            rising linearly from 0 over all blocks. All act only when `training=True`.
        patch_norm: LayerNorm after the patch embedding.
        input_shape: `(T, H, W, C)`; `None` dims accept any size in eager or jit calls.
        include_preprocessing: take RGB 0-255 and normalise with `mean` / `std` inside.
        frozen_layers: names of top-level layers to freeze (see `videoswin.finetune`).
        return_stages: output a dict `stage_0` .. `stage_{n-1}` of each stage's features
            before patch merging, the last one after the final norm.
    """

    def __init__(self, *, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 patch_size=(2, 4, 4), window_size=(8, 7, 7), mlp_ratio=4.0, qkv_bias=True,
                 qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1,
                 patch_norm=True, input_shape=(None, None, None, 3),
                 include_preprocessing=False, mean=MEAN, std=STD, return_stages=False,
                 frozen_layers=(), dtype=None, **kwargs):
        archs.check_stages(embed_dim, depths, num_heads)
        patch_size = triple(patch_size, "patch_size")
        window_size = triple(window_size, "window_size")
        input_shape = tuple(input_shape)
        if len(input_shape) != 4 or not all(n is None or (isinstance(n, int) and n > 0)
                                            for n in input_shape):
            raise ValueError(f"input_shape must be (T, H, W, C) of positive ints or None; "
                             f"got {input_shape}")
        # A functional Model ignores `dtype`: the policy is given to every layer here and set
        # on the model after construction, so that get_config records it.
        dtype = keras.dtype_policies.get(dtype)
        inputs = keras.Input(shape=input_shape, name="video")
        x = inputs
        if include_preprocessing:
            x = VideoNormalization(mean, std, name="preprocessing", dtype=dtype)(x)
        x = PatchEmbed3D(patch_size, embed_dim, patch_norm=patch_norm, name="patch_embed",
                         dtype=dtype)(x)
        if drop_rate > 0:
            x = keras.layers.Dropout(drop_rate, name="pos_drop", dtype=dtype)(x)
        rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
        stages = {}
        dim = embed_dim
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            last = i == len(depths) - 1
            stage = BasicLayer(
                dim, depth, heads, window_size=window_size, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate,
                drop_path_rates=rates[sum(depths[:i]): sum(depths[: i + 1])],
                downsample=not last, name=f"layers_{i}", dtype=dtype,
            )
            if last:
                x = stage(x)
            else:
                stages[f"stage_{i}"], x = stage(x)
                dim *= 2
        x = keras.layers.LayerNormalization(epsilon=1e-5, name="norm", dtype=dtype)(x)
        stages[f"stage_{len(depths) - 1}"] = x
        super().__init__(inputs=inputs, outputs=stages if return_stages else x, **kwargs)
        self.dtype_policy = dtype
        self.embed_dim = int(embed_dim)
        self.depths = tuple(int(d) for d in depths)
        self.num_heads = tuple(int(h) for h in num_heads)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.window_size = tuple(int(k) for k in window_size)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.qk_scale = qk_scale
        self.drop_rate = float(drop_rate)
        self.attn_drop_rate = float(attn_drop_rate)
        self.drop_path_rate = float(drop_path_rate)
        self.patch_norm = bool(patch_norm)
        self.clip_shape = input_shape
        self.include_preprocessing = bool(include_preprocessing)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.return_stages = bool(return_stages)
        self.num_features = dim
        for layer_name in frozen_layers:
            self.get_layer(layer_name).trainable = False

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "embed_dim": self.embed_dim,
            "depths": self.depths,
            "num_heads": self.num_heads,
            "patch_size": self.patch_size,
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "qk_scale": self.qk_scale,
            "drop_rate": self.drop_rate,
            "attn_drop_rate": self.attn_drop_rate,
            "drop_path_rate": self.drop_path_rate,
            "patch_norm": self.patch_norm,
            "input_shape": self.clip_shape,
            "include_preprocessing": self.include_preprocessing,
            "mean": self.mean,
            "std": self.std,
            "return_stages": self.return_stages,
            # Frozen stages survive a .keras round trip (and match the saved optimizer state).
            "frozen_layers": [layer.name for layer in self.layers
                              if layer.weights and not layer.trainable],
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Load from a zoo preset name, an `hf://ORG/NAME` URI or a local folder/file.

        A classifier's backbone is taken from it. No keyword arguments are accepted.
        """
        if kwargs:
            raise TypeError(f"from_preset() got unexpected keyword arguments {sorted(kwargs)}; "
                            "a backbone accepts none")
        model = presets.load(preset, prefer_backbone=True)
        model = getattr(model, "backbone", model)
        if not isinstance(model, cls):
            raise ValueError(f"{preset!r} holds a {type(model).__name__}, not a "
                             f"{cls.__name__}")
        return model

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
