"""Shared helpers for converter tests: tiny configs and oracle checkpoints on disk."""

import textwrap

TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))


def write_config(path, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                 window_size=(2, 3, 3), patch_size=(2, 4, 4), num_classes=7, head=True):
    """An mmaction2 1.x style config for a small custom arch."""
    features = embed_dim * 2 ** (len(depths) - 1)
    cls_head = (f"cls_head=dict(type='I3DHead', in_channels={features}, "
                f"num_classes={num_classes}, spatial_type='avg', dropout_ratio=0.5),"
                if head else "")
    path.write_text(textwrap.dedent(f"""\
        model = dict(
            type='Recognizer3D',
            backbone=dict(
                type='SwinTransformer3D',
                arch=dict(embed_dims={embed_dim}, depths={list(depths)},
                          num_heads={list(num_heads)}),
                patch_size={tuple(patch_size)}, window_size={tuple(window_size)},
                drop_path_rate=0.1, patch_norm=True),
            {cls_head}
        )
        """))
    return str(path)
