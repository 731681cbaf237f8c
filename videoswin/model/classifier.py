"""Video Swin with the I3D classification head."""

import keras

from videoswin.model import presets


@keras.saving.register_keras_serializable(package="videoswin")
class VideoSwinClassifier(keras.Model):
    """Backbone + I3DHead: mean over (T, H, W), dropout, `fc_cls` Dense.

    Returns logits by default (`activation=None`); logits are float32 under mixed precision.
    """

    def __init__(self, backbone, num_classes, *, dropout=0.5, activation=None, **kwargs):
        if backbone.return_stages:
            raise ValueError("VideoSwinClassifier needs a backbone with return_stages=False")
        inputs = keras.Input(shape=backbone.input.shape[1:], name="video")
        x = backbone(inputs)
        # A float32 head (pool, dropout, fc_cls): under mixed precision the mean over all
        # tokens is taken in float32 and the logits stay float32.
        x = keras.layers.GlobalAveragePooling3D(name="avg_pool", dtype="float32")(x)
        x = keras.layers.Dropout(dropout, name="dropout", dtype="float32")(x)
        outputs = keras.layers.Dense(num_classes, activation=activation, name="fc_cls",
                                     dtype="float32")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.dropout = float(dropout)
        self.activation = keras.activations.get(activation)

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
        """Load from a zoo preset name, an `hf://ORG/NAME` URI or a local folder/file.

        `num_classes` (with `dropout`, `activation`) different from the preset's puts a new,
        freshly initialised head on the pretrained backbone.
        """
        unknown = sorted(set(kwargs) - {"num_classes", "dropout", "activation"})
        if unknown:
            raise TypeError(f"from_preset() got unexpected keyword arguments {unknown}; a "
                            "classifier accepts num_classes, dropout, activation")
        model = presets.load(preset, prefer_backbone=False)
        if not isinstance(model, cls):
            if hasattr(model, "return_stages"):   # a VideoSwinBackbone
                raise ValueError(f"{preset!r} holds a backbone only (no classification head); "
                                 "load it with VideoSwinBackbone.from_preset, then add a head "
                                 "with VideoSwinClassifier(backbone, num_classes)")
            raise ValueError(f"{preset!r} holds a {type(model).__name__}, not a "
                             f"{cls.__name__}")
        return model.with_head(**kwargs)

    def with_head(self, num_classes=None, dropout=None, activation=None):
        """This model, or one sharing its backbone with a different head.

        The head keeps its trained weights when `num_classes` is unchanged; a new class
        count gets a freshly initialised `fc_cls`.
        """
        keep = num_classes is None or num_classes == self.num_classes
        if keep and dropout is None and activation is None:
            return self
        model = type(self)(self.backbone, self.num_classes if keep else num_classes,
                           dropout=self.dropout if dropout is None else dropout,
                           activation=self.activation if activation is None else activation)
        if keep:
            model.get_layer("fc_cls").set_weights(self.get_layer("fc_cls").get_weights())
        return model

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("activation") is not None:
            config["activation"] = keras.activations.deserialize(config["activation"])
        return cls(**config)

