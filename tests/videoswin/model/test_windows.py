"""Window plans (shift + partition as one gather, windows grouped by mask) and the grouped
attention, against the official roll / partition / per-window mask written out in NumPy."""

import keras
import numpy as np
import pytest

from videoswin.model import windows
from videoswin.model.attention import WindowAttention3D

GEOMETRIES = [
    # (feature size, window, shift) as a block sees them after clamping
    ((16, 56, 56), (8, 7, 7), (4, 3, 3)),     # Swin at 32x224x224, stage 1, shifted
    ((16, 56, 56), (8, 7, 7), (0, 0, 0)),     # the same, unshifted
    ((5, 18, 25), (2, 3, 3), (1, 1, 1)),      # padding on every axis
    ((2, 7, 7), (2, 7, 7), (0, 0, 0)),        # window clamped to the map: one window
    ((16, 7, 7), (8, 7, 7), (4, 0, 0)),       # stage 4: shift on the time axis only
]


def _official(size, window, shift):
    """Source index and (N, N) mask of every window, as the official code builds them."""
    padded = windows.padded_size(size, window)
    grid = np.arange(np.prod(padded)).reshape(padded)
    rolled = np.roll(grid, [-s for s in shift], axis=(0, 1, 2)) if any(shift) else grid
    labels = np.zeros(padded, dtype=np.int64)
    count = 0
    for d in (slice(-window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for h in (slice(-window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            for w in (slice(-window[2]), slice(-window[2], -shift[2]), slice(-shift[2], None)):
                labels[d, h, w] = count
                count += 1
    source = windows.partition_numpy(rolled[None, ..., None], window)[..., 0]
    ids = windows.partition_numpy(labels[None, ..., None], window)[..., 0]
    masks = np.where(ids[:, :, None] != ids[:, None, :], -100.0, 0.0)
    if not any(shift):
        masks = np.zeros_like(masks)   # the official model passes no mask to unshifted blocks
    return padded, source, masks


@pytest.mark.backend_independent
@pytest.mark.parametrize("size,window,shift", GEOMETRIES)
def test_plan_is_the_official_roll_partition_and_masks(size, window, shift):
    padded, source, masks = _official(size, window, shift)
    plan = windows.window_plan(size, window, shift)
    n = int(np.prod(window))
    rows = plan.gather.reshape(-1, n)
    assert rows.shape == source.shape
    # Every official window appears exactly once, tokens in the official order ...
    where = {tuple(row): w for w, row in enumerate(source)}
    order = [where[tuple(row)] for row in rows]
    assert sorted(order) == list(range(len(source)))
    # ... and each group's mask is the official mask of each of its windows.
    start = 0
    for count, mask in plan.groups:
        for w in order[start:start + count]:
            expected = masks[w]
            got = np.zeros((n, n)) if mask is None else mask
            np.testing.assert_array_equal(got, expected)
        start += count
    assert start == len(source)
    # scatter undoes the gather and crops the padding.
    flat = np.arange(np.prod(padded)).reshape(padded)[: size[0], : size[1], : size[2]]
    np.testing.assert_array_equal(plan.gather[plan.scatter], flat.reshape(-1))


@pytest.mark.backend_independent
def test_shifted_map_has_at_most_eight_masks_and_unmasked_windows_first():
    plan = windows.window_plan((16, 56, 56), (8, 7, 7), (4, 3, 3))
    assert len(plan.groups) == 8
    assert plan.groups[0] == (1 * 7 * 7, None)   # windows not last along any axis
    assert sum(count for count, _ in plan.groups) == 2 * 8 * 8
    assert windows.window_plan((16, 56, 56), (8, 7, 7), (0, 0, 0)).groups == ((128, None),)


def test_grouped_attention_equals_dense_attention_with_official_masks():
    size, window, shift = (5, 18, 25), (2, 3, 3), (1, 1, 1)
    dim, heads, batch = 8, 2, 2
    _, _, masks = _official(size, window, shift)
    plan = windows.window_plan(size, window, shift)
    n = int(np.prod(window))
    rng = np.random.default_rng(0)
    layer = WindowAttention3D(dim, heads, window_size=window)
    layer.build(None)
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.5
                       for w in layer.weights])
    x = rng.standard_normal((batch, plan.gather.size, dim)).astype("float32")
    got = keras.ops.convert_to_numpy(
        layer(x, size=size, window=window, shift=shift))

    # Dense reference: every window on its own, with its official mask.
    table, qkv_w, qkv_b, proj_w, proj_b = (keras.ops.convert_to_numpy(w) for w in
                                           (layer.relative_position_bias_table,
                                            layer.qkv.kernel, layer.qkv.bias,
                                            layer.proj.kernel, layer.proj.bias))
    index = windows.relative_position_index(window)
    relative = table[index.reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)
    where = {tuple(row): w for w, row in enumerate(_official(size, window, shift)[1])}
    order = [where[tuple(row)] for row in plan.gather.reshape(-1, n)]
    tokens = x.reshape(batch, -1, n, dim)
    qkv = (tokens @ qkv_w + qkv_b).reshape(batch, -1, n, 3, heads, dim // heads)
    q, k, v = (qkv[..., i, :, :].transpose(0, 1, 3, 2, 4) for i in range(3))
    logits = q @ k.swapaxes(-1, -2) * (dim // heads) ** -0.5
    logits = logits + relative + masks[order][None, :, None]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(0, 1, 3, 2, 4).reshape(batch, -1, dim) @ proj_w + proj_b
    np.testing.assert_allclose(got, out, atol=2e-5, rtol=1e-5)
