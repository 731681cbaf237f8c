"""The size rules shared by the model and the cost model."""

import pytest

from videoswin.core.geometry import clamp_window, padded_size, triple

pytestmark = pytest.mark.backend_independent


def test_window_clamps_at_or_below_the_feature_size():
    assert clamp_window((16, 56, 56), (8, 7, 7)) == ((8, 7, 7), (0, 0, 0))
    assert clamp_window((16, 7, 7), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 0, 0))  # `<=`
    assert clamp_window((16, 6, 9), (16, 7, 7), (8, 3, 3)) == ((16, 6, 7), (0, 0, 3))
    assert clamp_window((1, 2, 3), (8, 7, 7), (4, 3, 3)) == ((1, 2, 3), (0, 0, 0))


def test_padded_size_rounds_up_to_multiples():
    assert padded_size((5, 9, 11), (2, 4, 4)) == (6, 12, 12)
    assert padded_size((8, 7, 7), (8, 7, 7)) == (8, 7, 7)


@pytest.mark.parametrize("bad", [0, -1, (2, 4), (2, 0, 4), (2.0, 4, 4), (True, 4, 4), "244"])
def test_triple_refuses_what_is_not_three_positive_ints(bad):
    with pytest.raises(ValueError, match="window_size"):
        triple(bad, "window_size")


def test_triple_spreads_an_int():
    assert triple(7, "patch_size") == (7, 7, 7)
