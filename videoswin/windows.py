"""Window geometry of Video Swin: clamping, padding, partitioning, masks and indices.

The NumPy helpers compute small integer constants once per shape (cached); the `ops`
helpers rearrange tensors on any Keras backend.
"""

import functools

import numpy as np
from keras import ops


def clamp_window(size, window, shift):
    """Window and shift actually used for a feature map of `size` (D, H, W).

    Official rule: along an axis whose size is not larger than the window (`<=`), the
    window shrinks to the size and the shift on that axis becomes 0.
    """
    window, shift = list(window), list(shift)
    for axis, (n, k) in enumerate(zip(size, window)):
        if n <= k:
            window[axis] = n
            shift[axis] = 0
    return tuple(window), tuple(shift)


def padded_size(size, window):
    """Each axis rounded up to a multiple of the window."""
    return tuple(-(-n // k) * k for n, k in zip(size, window))


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
    """NumPy twin of `window_partition`, windows first: (B*nW, N, C)."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.reshape(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def window_partition(x, window, windows_first=True):
    """Split (B, D, H, W, C) into windows.

    windows_first=True gives (B*nW, N, C), the official order. False gives (B, N, nW, C),
    which lets attention fold the windows into its heads axis so that a per-window mask
    broadcasts over the batch.
    """
    _, d, h, w, c = x.shape
    wd, wh, ww = window
    x = ops.reshape(x, (-1, d // wd, wd, h // wh, wh, w // ww, ww, c))
    if windows_first:
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
        return ops.reshape(x, (-1, wd * wh * ww, c))
    x = ops.transpose(x, (0, 2, 4, 6, 1, 3, 5, 7))
    return ops.reshape(x, (-1, wd * wh * ww, (d // wd) * (h // wh) * (w // ww), c))


def window_reverse(windows, window, size, windows_first=True):
    """Inverse of `window_partition` for a padded feature size (D, H, W)."""
    d, h, w = size
    wd, wh, ww = window
    c = windows.shape[-1]
    nd, nh, nw = d // wd, h // wh, w // ww
    if windows_first:
        x = ops.reshape(windows, (-1, nd, nh, nw, wd, wh, ww, c))
        x = ops.transpose(x, (0, 1, 4, 2, 5, 3, 6, 7))
    else:
        x = ops.reshape(windows, (-1, wd, wh, ww, nd, nh, nw, c))
        x = ops.transpose(x, (0, 4, 1, 5, 2, 6, 3, 7))
    return ops.reshape(x, (-1, d, h, w, c))


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
