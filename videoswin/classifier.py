"""Video Swin with the I3D classification head."""

import keras

from videoswin.backbone import VideoSwinBackbone


@keras.saving.register_keras_serializable(package="videoswin")
class VideoSwinClassifier(keras.Model):
    """Backbone + I3DHead: mean over (T, H, W), dropout, `fc_cls` Dense.

    Returns logits by default (`activation=None`); logits are float32 under mixed precision.
    """

    def __init__(self, backbone, num_classes, dropout=0.5, activation=None, **kwargs):
        if backbone.return_stages:
            raise ValueError("VideoSwinClassifier needs a backbone with return_stages=False")
        inputs = keras.Input(shape=backbone.input.shape[1:], name="video")
        x = backbone(inputs)
        x = keras.layers.GlobalAveragePooling3D(name="avg_pool", dtype=backbone.dtype_policy)(x)
        x = keras.layers.Dropout(dropout, name="dropout", dtype=backbone.dtype_policy)(x)
        # float32 head: logits stay float32 when the backbone runs in mixed precision.
        outputs = keras.layers.Dense(num_classes, activation=activation, name="fc_cls",
                                     dtype="float32")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.dropout = float(dropout)
        self.activation = keras.activations.get(activation)
        self._activation_config = activation

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
        }

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Load from a zoo preset name, an `hf://ORG/NAME` URI or a local folder/file."""
        from videoswin import hub

        return hub.load_preset(preset, kind="classifier", **kwargs)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("activation") is not None:
            config["activation"] = keras.activations.deserialize(config["activation"])
        return cls(**config)


def _variant(arch_name, num_classes, input_shape, window_size, include_top, dropout,
             activation, **backbone_kwargs):
    from videoswin.presets import arch

    backbone = VideoSwinBackbone(**arch(arch_name), input_shape=input_shape,
                                 window_size=window_size, **backbone_kwargs)
    if not include_top:
        return backbone
    return VideoSwinClassifier(backbone, num_classes, dropout=dropout, activation=activation)


def _make_variant(arch_name, label):
    def constructor(num_classes=400, input_shape=(32, 224, 224, 3), window_size=(8, 7, 7),
                    include_top=True, dropout=0.5, activation=None, **backbone_kwargs):
        return _variant(arch_name, num_classes, input_shape, window_size, include_top,
                        dropout, activation, **backbone_kwargs)

    constructor.__name__ = constructor.__qualname__ = f"VideoSwin{label}"
    constructor.__doc__ = (
        f"Video Swin-{label} ({arch_name}): a `VideoSwinClassifier`, or the backbone alone "
        "when `include_top=False`. Extra keyword arguments go to `VideoSwinBackbone` "
        "(patch_size, drop_path_rate, include_preprocessing, ...)."
    )
    return constructor


VideoSwinT = _make_variant("tiny", "T")
VideoSwinS = _make_variant("small", "S")
VideoSwinB = _make_variant("base", "B")
VideoSwinL = _make_variant("large", "L")
