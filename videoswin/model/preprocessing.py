"""In-model input normalisation (RGB 0-255 in), held as constants, not weights."""

import keras
from keras import ops

from videoswin.core.pipelines import MEAN, STD


@keras.saving.register_keras_serializable(package="videoswin")
class VideoNormalization(keras.layers.Layer):
    """(x - mean) / std over the channel axis; adds no weights, so parameter counts hold."""

    def __init__(self, mean=MEAN, std=STD, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def call(self, x):
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = ops.convert_to_tensor(self.std, dtype=x.dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(mean=self.mean, std=self.std)
        return config
