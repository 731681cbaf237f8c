"""Window geometry of Video Swin: clamping, padding, partitioning, masks and indices.

Everything here is NumPy, computed once per shape (cached): small integer constants that
the layers hand to `ops.take` and to attention.
"""

import functools
from typing import NamedTuple

import numpy as np

from videoswin.core.geometry import padded_size


@functools.lru_cache(maxsize=None)
def relative_position_index(window):
    """(N, N) row of the bias table for each token pair of a `window` (N = Wd*Wh*Ww)."""
    window = tuple(int(k) for k in window)
    grids = np.meshgrid(*[np.arange(k) for k in window], indexing="ij")
    coords = np.stack(grids).reshape(3, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel = rel + (np.asarray(window) - 1)
    _, wh, ww = window
    index = rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]
    return index.astype("int32")


def _regions(window, shift):
    # The official slices, kept verbatim in meaning: with shift 0 the middle slice is
    # empty and the last one covers the whole axis, so that axis has a single region.
    return slice(-window), slice(-window, -shift), slice(-shift, None)


@functools.lru_cache(maxsize=None)
def shift_region_ids(padded, window, shift):
    """(num_windows, N) region label of every token of every window after the cyclic shift.

    Two tokens of one window attend to each other only when their labels are equal.
    """
    labels = np.zeros(padded, dtype=np.int32)
    count = 0
    for d in _regions(window[0], shift[0]):
        for h in _regions(window[1], shift[1]):
            for w in _regions(window[2], shift[2]):
                labels[d, h, w] = count
                count += 1
    return partition_numpy(labels[None, ..., None], window)[..., 0]


def partition_numpy(x, window):
    """(B, D, H, W, C) -> (B*nW, N, C), windows in the official order."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.reshape(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


class WindowPlan(NamedTuple):
    """How one block reads its windows out of a feature map and writes them back.

    - `gather` (nW*N,): flat index into the padded (D', H', W') map of every windowed
      token, after the cyclic shift, windows grouped by their shift mask;
    - `scatter` (D*H*W,): where each position of the unpadded map sits among the windowed
      tokens: the reverse shift and the crop in one gather;
    - `groups`: `(count, mask)` per group of consecutive windows, `mask` a (N, N) float32
      array of 0 and -100, or None where every token of the window may see every other.
    """

    gather: np.ndarray
    scatter: np.ndarray
    groups: tuple


@functools.lru_cache(maxsize=None)
def window_plan(size, window, shift):
    """The `WindowPlan` of a (D, H, W) feature map for a clamped window and shift.

    Grouping windows by mask lets attention add a (heads, N, N) bias per group instead of
    materialising a (windows x heads, N, N) one: a shifted map has at most 8 distinct
    masks (a window is cut only where it is the last along a shifted axis).
    """
    size, window, shift = (tuple(int(k) for k in v) for v in (size, window, shift))
    padded = padded_size(size, window)
    grid = np.arange(int(np.prod(padded))).reshape(padded)
    # The official roll by -shift: rolled[p] = x[(p + shift) % padded].
    rolled = np.roll(grid, [-s for s in shift], axis=(0, 1, 2))
    source = partition_numpy(rolled[None, ..., None], window)[..., 0]     # (nW, N)
    labels = shift_region_ids(padded, window, shift)                       # (nW, N)
    groups = {}
    for w, ids in enumerate(labels):
        # Relabel by first appearance: equal keys mean equal masks.
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))
        groups.setdefault(rank[inverse].astype(np.int8).tobytes(), []).append(w)
    plan_groups, order = [], []
    for key, members in sorted(groups.items(), key=lambda kv: (any(kv[0]), kv[1][0])):
        canon = np.frombuffer(key, dtype=np.int8)
        mask = None
        if canon.any():
            # -100, not -inf: the official mask value; exp(-100) underflows to 0 in
            # float32 yet keeps every row finite.
            mask = np.where(canon[:, None] != canon[None, :], -100.0, 0.0).astype(np.float32)
            mask.setflags(write=False)
        plan_groups.append((len(members), mask))
        order.extend(members)
    gather = source[order].reshape(-1).astype(np.int32)
    slot = np.empty(grid.size, dtype=np.int32)
    slot[gather] = np.arange(gather.size, dtype=np.int32)
    d, h, w = size
    scatter = np.ascontiguousarray(slot.reshape(padded)[:d, :h, :w].reshape(-1))
    for a in (gather, scatter):
        a.setflags(write=False)
    return WindowPlan(gather, scatter, tuple(plan_groups))


def static_size(x, what):
    """The static (D, H, W) of a (B, D, H, W, C) tensor, or a clear error."""
    size = tuple(x.shape[1:4])
    if any(n is None for n in size):
        raise ValueError(
            f"{what} needs static clip dimensions (T, H, W); got shape {tuple(x.shape)}. "
            "Build the model with a fixed `input_shape`, or call it eagerly / under jit "
            "with concrete shapes."
        )
    return tuple(int(n) for n in size)
