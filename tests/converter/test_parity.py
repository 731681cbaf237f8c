"""`converter.parity.reference_outputs`: the PyTorch reference runs the parity clips one at a
time (32 clips of 32x224x224 in one batch took over 21 GB before it did) and gives what one
batched forward of mmaction2's module gives."""

import numpy as np
import pytest

from converter import parity, upstream
from converter.reference import VideoSwinReference
from converter.synthetic import random_state_dict
from videoswin.core.spec import ModelSpec

from tests import oracle

try:
    oracle.load_swin_module()
except ImportError as exc:          # mmaction2 / mmcv / mmengine / einops absent
    pytest.skip(f"mmaction2 oracle unavailable: {exc}", allow_module_level=True)

SPEC = ModelSpec(name="tiny", path="tiny.py", embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                 window_size=(2, 3, 3), num_classes=5)


# Where each reference takes its clips: mmaction2's forward, or our reference's backbone.
@pytest.mark.parametrize("reference, owner, name", [
    ("mmaction2", upstream, "forward"),
    ("videoswin-reference", VideoSwinReference, "forward_features"),
], ids=["mmaction2", "videoswin-reference"])
def test_reference_runs_one_clip_at_a_time(reference, owner, name, monkeypatch):
    state = {k: v.numpy() for k, v in random_state_dict(SPEC, seed=1).items()}
    clips = np.random.default_rng(0).standard_normal((3, 4, 24, 24, 3)).astype(np.float32)
    want_features, want_logits = upstream.forward(upstream.load(SPEC, state), clips)
    seen, original = [], getattr(owner, name)

    def counting(first, x):
        seen.append(len(x))
        return original(first, x)
    monkeypatch.setattr(owner, name, counting)
    _, features, logits = parity.reference_outputs(SPEC, state, clips, reference)
    assert seen and set(seen) == {1}
    assert features.shape == want_features.shape and logits.shape == (3, 5)
    np.testing.assert_allclose(features, want_features, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=1e-5)
    assert np.abs(logits[0] - logits[1]).max() > 1e-2        # the clips were not mixed up
