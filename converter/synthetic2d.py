"""Random 2D (image) Swin checkpoints with the official release's keys and shapes.

A stand-in for files such as `swin_tiny_patch4_window7_224.pth` where they cannot be
downloaded: every parameter random and distinct (`converter.synthetic.random_value`), the
`relative_position_index` and `attn_mask` buffers and the classifier `head` included, as
the official files hold them. `save` writes it in the official or the timm layout.
"""

from collections import OrderedDict

import numpy as np

from converter import layouts2d


def _index_2d(window):
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij"))
    coords = coords.reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]) + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def shapes(embed_dim, depths, num_heads, window, num_classes=1000, patch=4, in_channels=3,
           mlp_ratio=4.0, patch_norm=True):
    """{official 2D key: shape} of a 2D Swin Transformer."""
    out = OrderedDict([("patch_embed.proj.weight", (embed_dim, in_channels, patch, patch)),
                       ("patch_embed.proj.bias", (embed_dim,))])
    if patch_norm:
        out.update({"patch_embed.norm.weight": (embed_dim,),
                    "patch_embed.norm.bias": (embed_dim,)})
    tokens = window * window
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        dim = embed_dim * 2 ** i
        hidden = int(dim * mlp_ratio)
        for j in range(depth):
            block = f"layers.{i}.blocks.{j}."
            out.update({
                block + "norm1.weight": (dim,), block + "norm1.bias": (dim,),
                block + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
                block + "attn.relative_position_index": (tokens, tokens),
                block + "attn.qkv.weight": (3 * dim, dim), block + "attn.qkv.bias": (3 * dim,),
                block + "attn.proj.weight": (dim, dim), block + "attn.proj.bias": (dim,),
                block + "norm2.weight": (dim,), block + "norm2.bias": (dim,),
                block + "mlp.fc1.weight": (hidden, dim), block + "mlp.fc1.bias": (hidden,),
                block + "mlp.fc2.weight": (dim, hidden), block + "mlp.fc2.bias": (dim,)})
            if j % 2:                                 # shifted blocks hold their mask
                out[block + "attn_mask"] = (4, tokens, tokens)
        if i < len(depths) - 1:
            out.update({f"layers.{i}.downsample.reduction.weight": (2 * dim, 4 * dim),
                        f"layers.{i}.downsample.norm.weight": (4 * dim,),
                        f"layers.{i}.downsample.norm.bias": (4 * dim,)})
    width = embed_dim * 2 ** (len(depths) - 1)
    out.update({"norm.weight": (width,), "norm.bias": (width,)})
    if num_classes:
        out.update({"head.weight": (num_classes, width), "head.bias": (num_classes,)})
    return out


def random_state(embed_dim, depths, num_heads, window, seed=0, **options):
    """An official-layout 2D state dict (torch tensors), every parameter random."""
    import torch

    from converter.synthetic import random_value

    generator = torch.Generator().manual_seed(int(seed))
    index = torch.from_numpy(_index_2d(window))
    state = OrderedDict()
    for key, shape in shapes(embed_dim, depths, num_heads, window, **options).items():
        if key.endswith("relative_position_index"):
            state[key] = index.clone()
        elif key.endswith("attn_mask"):
            state[key] = -100.0 * (torch.rand(shape, generator=generator) < 0.3).float()
        else:
            state[key] = random_value(key, shape, generator)
    return state


def save(state, path, layout="swin2d-official"):
    """Write an official-layout `state` as the official release does (`{'model': ...}`)
    or as timm does (bare, its keys, no buffers); `.safetensors` by the file's suffix."""
    path = str(path)
    if layout == layouts2d.TIMM_2D.name:
        state = {k: v for k, v in layouts2d.export(state, layout).items()
                 if not k.endswith(("relative_position_index", "attn_mask"))}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        import torch

        torch.save(state if layout == layouts2d.TIMM_2D.name else {"model": dict(state)}, path)
    return path


def random_checkpoint(path, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                      window=7, seed=0, layout="swin2d-official", **options):
    """Write a random 2D checkpoint (Swin-T, window 7, by default) to `path`."""
    return save(random_state(embed_dim, depths, num_heads, window, seed, **options), path,
                layout)
