# Video Swin-L: width 192, heads 6/12/24/48, 18 blocks in stage 3.
_base_ = './swin_tiny.py'

model = dict(
    backbone=dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    cls_head=dict(in_channels=1536))
