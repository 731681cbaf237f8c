"""The compiled-inference recipe for the torch backend (README, "Fast inference on torch"):
`torch.export` (non-strict) of the Keras model, then `torch.compile` (inductor).

It is the path `scripts/benchmark.py` times as keras-torch-compiled, so it must give the
eager model's numbers, on shifted and padded windows, for new inputs of the same shape.
"""

import shutil

import keras
import numpy as np
import pytest

from videoswin.model import VideoSwinBackbone, VideoSwinClassifier

BACKEND = keras.backend.backend()
pytestmark = pytest.mark.skipif(
    BACKEND != "torch",
    reason=f"torch.export/torch.compile trace torch modules: only a Keras model on the torch "
           f"backend is one (this pass: {BACKEND})")

# The second block of stage 1 is shifted (8 mask groups); T=5 and 36x36 pad every stage.
# Small, because inductor compiles cold in CI: about 85 s on 2 cores.
TINY = dict(embed_dim=16, depths=(2, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=(2, 3, 3))
CLIP = (5, 36, 36, 3)


def _compiled(model, example):
    import torch

    # A Keras layer on torch is a torch.nn.Module: export traces its forward (inference).
    with torch.no_grad():
        program = torch.export.export(model, (example,), strict=False)
    return torch.compile(program.module())


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's inductor backend needs a C++ compiler on CPU")
def test_exported_and_compiled_model_gives_the_eager_logits():
    import torch

    keras.utils.set_random_seed(3)
    model = VideoSwinClassifier(VideoSwinBackbone(**TINY, input_shape=CLIP), num_classes=7)
    rng = np.random.default_rng(0)
    first, second = (torch.from_numpy(rng.standard_normal((2,) + CLIP, dtype=np.float32))
                     for _ in range(2))
    forward = _compiled(model, first)
    eager = []
    with torch.no_grad():
        for x in (first, second):
            eager.append(model(x, training=False).numpy())
            compiled = forward(x).numpy()
            assert compiled.shape == (2, 7)
            np.testing.assert_allclose(compiled, eager[-1], rtol=0, atol=1e-5)
    # Not vacuous: the two clips give different logits.
    assert np.abs(eager[0] - eager[1]).max() > 1e-3
