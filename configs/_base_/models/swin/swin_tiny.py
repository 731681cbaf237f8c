# Video Swin-T (patch 2x4x4, window 8x7x7) with the I3D head, Kinetics-400 sized.
# Every key the converter reads is spelled out; variants override what differs.
model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='SwinTransformer3D',
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        patch_size=(2, 4, 4),
        window_size=(8, 7, 7),
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_path_rate=0.1,
        patch_norm=True),
    # RGB, 0-255 input; the same statistics in every published Video Swin model.
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        format_shape='NCTHW'),
    cls_head=dict(
        type='I3DHead',
        in_channels=768,
        num_classes=400,
        spatial_type='avg',
        dropout_ratio=0.5,
        average_clips='prob'))
