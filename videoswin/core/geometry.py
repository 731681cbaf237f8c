"""Size rules of Video Swin, shared by the Keras model and the analytic cost model."""


def triple(value, name):
    """`value` as a (T, H, W) tuple of positive ints; an int stands for all three axes."""
    value = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(value) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                  for v in value):
        raise ValueError(f"{name} must be a positive int or 3 positive ints (T, H, W), "
                         f"got {value!r}")
    return value


def clamp_window(size, window, shift=(0, 0, 0)):
    """Window and shift actually used on a feature map of `size` (D, H, W).

    The official rule: along an axis whose size is not larger than the window (`<=`), the
    window shrinks to the size and the shift on that axis becomes 0.
    """
    window, shift = list(window), list(shift)
    for axis, (n, k) in enumerate(zip(size, window)):
        if n <= k:
            window[axis] = n
            shift[axis] = 0
    return tuple(window), tuple(shift)


def padded_size(size, multiple):
    """Each axis rounded up to a multiple of `multiple` (a patch or a window)."""
    return tuple(-(-n // k) * k for n, k in zip(size, multiple))


def prod(values):
    out = 1
    for v in values:
        out *= v
    return out
