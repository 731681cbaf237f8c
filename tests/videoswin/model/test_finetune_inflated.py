"""Fine-tuning from a backbone inflated from a 2D (image) Swin checkpoint, on this backend.

The path of docs/finetuning.md ("From an inflated 2D backbone") on a tiny model: a random
2D checkpoint is inflated by `videoswin-convert --inflate-2d`'s function, its
`_backbone.weights.h5` loaded, a new head put on the backbone, and a few `fit` steps on a
small separable synthetic set must lower the loss.
"""

import keras
import numpy as np
import pytest

from tests.converter.support import write_config
from tests.videoswin.model.test_finetune import CLIP, cheap_jax_rng, separable_set
from videoswin.model import VideoSwinBackbone, VideoSwinClassifier
from videoswin.model.finetune import freeze_stages

BACKEND = keras.backend.backend()
ARCH = dict(embed_dim=16, depths=(2, 1), num_heads=(1, 2))   # small: short compiles


@pytest.fixture(scope="module")
def inflated(tmp_path_factory):
    """The `_backbone.weights.h5` of a random window-7 2D Swin inflated into window
    (2, 3, 3)."""
    from converter import synthetic2d
    from converter.convert import convert

    folder = tmp_path_factory.mktemp("inflated")
    source = synthetic2d.random_checkpoint(folder / "swin2d.pth", window=7, seed=5, **ARCH)
    config = write_config(folder / "swin_inflated.py", window_size=(2, 3, 3), head=False,
                          **ARCH)
    manifest = convert(config, output_dir=str(folder / "out"), backends=[], quiet=True,
                       inflate_2d=str(source))
    assert manifest["inflation"]["bias_table_resize"] == ["13x13 -> 5x5"]
    return folder / "out" / "swin_inflated_backbone.weights.h5"


def test_fit_from_an_inflated_backbone_reduces_loss(inflated):
    # One build, fixed clip size, no drop-path (no random masks to compile): the shortest
    # compiles. docs/finetuning.md loads the .keras file instead; its weights are these.
    backbone = VideoSwinBackbone(**ARCH, patch_size=(2, 4, 4), window_size=(2, 3, 3),
                                 drop_path_rate=0.0, input_shape=CLIP)
    backbone.load_weights(inflated)
    freeze_stages(backbone, 0)                       # patch_embed
    model = VideoSwinClassifier(backbone, num_classes=3, dropout=0.0)
    # Compiled on JAX (its eager training is the slow path), eager elsewhere (TensorFlow's
    # graph tracing costs more than these few steps).
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=BACKEND == "jax", run_eagerly=BACKEND != "jax")
    x, y = separable_set(8)
    with cheap_jax_rng():
        losses = model.fit(x, y, batch_size=4, epochs=5, shuffle=False, verbose=0)
    losses = losses.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses
