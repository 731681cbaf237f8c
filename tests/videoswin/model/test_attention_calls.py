"""How many windows one attention call takes (`attention.windows_per_call`).

That splitting a group into calls leaves the logits equal to mmaction2's is proved against
the oracle in tests/converter/test_convert.py.
"""

import keras
import pytest

from videoswin.model import attention

MB8 = 8 << 20


@pytest.mark.parametrize("count, batch, heads, n, budget, want", [
    (128, 1, 3, 392, None, 128),       # no budget: the whole group
    (128, 1, 3, 392, MB8, 4),          # Swin-T stage 1: 1.84 MB of logits per window
    (32, 1, 6, 392, MB8, 2),           # stage 2: 3.7 MB per window
    (8, 1, 12, 392, MB8, 1),           # stage 3: 7.4 MB, one window per call
    (2, 1, 24, 392, MB8, 1),           # stage 4: one window is over the budget; still one
    (5, 1, 1, 18, MB8, 5),             # small windows: all in one call
    (128, None, 3, 392, MB8, 4),       # unknown batch (symbolic) counts as 1
    (128, 8, 3, 392, MB8, 4),          # batch 8: one per call would be 128 calls; capped at 32
    (100, 8, 3, 392, MB8, 4),          # ceil(100 / 32)
    (64, 2, 3, 392, MB8, 2),           # 3.7 MB per window at batch 2
    (8, 1, 3, 392, 0, 1),              # a zero budget: one window per call
    (8, 1, 3, 392, 4e6, 2),            # a float budget (4e6 bytes) is read as bytes
])
def test_windows_per_call(count, batch, heads, n, budget, want):
    assert attention.windows_per_call(count, batch, heads, n, budget) == want


def test_calls_per_group_are_bounded():
    for count in range(1, 300):
        step = attention.windows_per_call(count, 16, 24, 392, 1)
        assert 1 <= step <= count
        assert -(-count // step) <= attention.MAX_CALLS_PER_GROUP


def test_only_jax_splits_by_default():
    want = MB8 if keras.backend.backend() == "jax" else None
    assert attention.LOGITS_PER_CALL == want
