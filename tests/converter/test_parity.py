"""`converter.parity.reference_outputs`: the PyTorch reference runs the parity clips one at a
time (32 clips of 32x224x224 in one batch took over 21 GB before it did) and gives what one
batched forward of the same model gives."""

import numpy as np
import pytest
import torch

from converter import parity, upstream
from converter.reference import VideoSwinReference
from converter.synthetic import random_state_dict
from videoswin.core.spec import ModelSpec

from tests import oracle

SPEC = ModelSpec(name="tiny", path="tiny.py", embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                 window_size=(2, 3, 3), num_classes=5)


def _batched_reference(state, clips):
    model = VideoSwinReference.from_spec(SPEC, num_classes=SPEC.num_classes)
    model.load_canonical({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(clips)
        return model.forward_features(x).numpy(), model(x).numpy()


@pytest.mark.parametrize("reference", ["mmaction2", "videoswin-reference"])
def test_reference_runs_one_clip_at_a_time(reference, monkeypatch):
    if reference == "mmaction2":
        try:
            oracle.load_swin_module()
        except ImportError as exc:
            pytest.skip(f"mmaction2 oracle unavailable: {exc}")
    state = {k: v.numpy() for k, v in random_state_dict(SPEC, seed=1).items()}
    clips = np.random.default_rng(0).standard_normal((3, 4, 24, 24, 3)).astype(np.float32)
    seen = []
    if reference == "mmaction2":
        forward = upstream.forward
        batched = forward(upstream.load(SPEC, state), clips)

        def counting(modules, x):
            seen.append(len(x))
            return forward(modules, x)
        monkeypatch.setattr(upstream, "forward", counting)
    else:
        batched = _batched_reference(state, clips)
        features_of = VideoSwinReference.forward_features

        def counting(self, x):
            seen.append(len(x))
            return features_of(self, x)
        monkeypatch.setattr(VideoSwinReference, "forward_features", counting)
    _, features, logits = parity.reference_outputs(SPEC, state, clips, reference)
    assert seen and set(seen) == {1}
    assert features.shape == batched[0].shape and logits.shape == (3, 5)
    np.testing.assert_allclose(features, batched[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits, batched[1], rtol=0, atol=1e-5)
    assert np.abs(logits[0] - logits[1]).max() > 1e-2        # the clips were not mixed up
