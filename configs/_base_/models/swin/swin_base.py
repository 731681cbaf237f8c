# Video Swin-B: width 128, heads 4/8/16/32, 18 blocks in stage 3.
_base_ = './swin_tiny.py'

model = dict(
    backbone=dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    cls_head=dict(in_channels=1024))
