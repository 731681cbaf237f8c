"""Analytic cost of a Video Swin model: multiply-accumulates per view and parameter count.

Pure Python (no Keras, no tensors), so a model zoo can be generated in milliseconds.

What counts as a MAC follows the convention of the published figures (fvcore-style, as in
the Swin papers): one multiply-accumulate per weight of a matmul or convolution applied, i.e.
- the patch-embedding Conv3d, on the input padded at the end to patch multiples;
- per block: qkv, q @ k^T, attn @ v and proj on the window-padded tokens (padded tokens are
  computed, exactly as the official code does), MLP fc1 and fc2 on the real tokens;
- per patch merging: the 4C -> 2C reduction on the H, W-padded-to-even grid;
- the classification head `fc_cls`.
Not counted: biases, LayerNorm, softmax, GELU, the relative position bias and shift-mask adds,
residual adds, drop-path and the global average pool. On Swin-T at 32x224x224 this gives
87.76 G (official figure: 87.9 G); mmengine's traced counter gives 88.06 G, which is exactly
this count plus 0.30 G it charges for LayerNorm.

The window rule is the model's: on each axis where the feature size is <= the window, the
window becomes the feature size; the features are then padded at the end to window multiples.
"""

from dataclasses import dataclass, field
from math import ceil

from videoswin.core.geometry import clamp_window, padded_size, prod, triple

# Order of `MacCount.by_op` (stable for printing).
OPS = ("patch_embed", "qkv", "attn_qk", "attn_v", "proj", "mlp", "downsample", "head")


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass of one clip, by operation."""

    by_op: dict = field(default_factory=dict)

    @property
    def total(self):
        return sum(self.by_op.values())

    @property
    def gmacs(self):
        """Total in G (1e9) MACs: the unit of the published "FLOPs" figures."""
        return self.total / 1e9




def count_macs(clip_shape=(32, 224, 224), embed_dim=96, depths=(2, 2, 6, 2),
               num_heads=(3, 6, 12, 24), patch_size=(2, 4, 4), window_size=(8, 7, 7),
               mlp_ratio=4.0, in_channels=3, num_classes=400):
    """MACs of one clip of `clip_shape` (T, H, W) through the model; `num_classes` None or 0
    means the backbone alone. `num_heads` does not change the count (kept for a uniform
    signature with `count_params`).
    """
    t, h, w = triple(clip_shape, "clip_shape")
    patch = triple(patch_size, "patch_size")
    window = triple(window_size, "window_size")
    if len(depths) != len(num_heads):
        raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
    ops = dict.fromkeys(OPS, 0)

    grid = (ceil(t / patch[0]), ceil(h / patch[1]), ceil(w / patch[2]))
    dim = embed_dim
    ops["patch_embed"] = prod(grid) * in_channels * prod(patch) * dim
    for i, depth in enumerate(depths):
        win, _ = clamp_window(grid, window)
        padded = padded_size(grid, win)
        tokens, padded_tokens, n = prod(grid), prod(padded), prod(win)
        hidden = int(dim * mlp_ratio)
        ops["qkv"] += depth * padded_tokens * dim * 3 * dim
        # Per window and head: (N x hd) @ (hd x N) and (N x N) @ (N x hd); summed over heads
        # and windows that is padded_tokens * N * dim each.
        ops["attn_qk"] += depth * padded_tokens * n * dim
        ops["attn_v"] += depth * padded_tokens * n * dim
        ops["proj"] += depth * padded_tokens * dim * dim
        ops["mlp"] += depth * tokens * 2 * dim * hidden
        if i < len(depths) - 1:
            grid = (grid[0], ceil(grid[1] / 2), ceil(grid[2] / 2))
            ops["downsample"] += prod(grid) * 4 * dim * 2 * dim
            dim *= 2
    ops["head"] = dim * (num_classes or 0)
    return MacCount(ops)


def count_params(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 patch_size=(2, 4, 4), window_size=(8, 7, 7), mlp_ratio=4.0, qkv_bias=True,
                 patch_norm=True, in_channels=3, num_classes=400):
    """Parameters of `VideoSwinClassifier` (or of the backbone alone when `num_classes` is
    None or 0), counted from the architecture: equals Keras's `count_params()`.
    """
    patch = triple(patch_size, "patch_size")
    window = triple(window_size, "window_size")
    table_rows = prod(2 * v - 1 for v in window)
    dim = embed_dim
    total = in_channels * prod(patch) * dim + dim + (2 * dim if patch_norm else 0)
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        hidden = int(dim * mlp_ratio)
        block = (2 * dim                                        # norm1
                 + dim * 3 * dim + (3 * dim if qkv_bias else 0)  # qkv
                 + table_rows * heads                           # relative_position_bias_table
                 + dim * dim + dim                              # proj
                 + 2 * dim                                      # norm2
                 + dim * hidden + hidden + hidden * dim + dim)  # mlp fc1, fc2
        total += depth * block
        if i < len(depths) - 1:
            total += 2 * 4 * dim + 4 * dim * 2 * dim            # norm, reduction (no bias)
            dim *= 2
    total += 2 * dim                                            # final norm
    if num_classes:
        total += dim * num_classes + num_classes                # fc_cls
    return total
