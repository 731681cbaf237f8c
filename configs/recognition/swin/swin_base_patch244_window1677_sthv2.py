# Video Swin-B on Something-Something V2, window 16x7x7, fine-tuned from the
# Kinetics-400 model swin_base_patch244_window1677_kinetics400_22k; official release v1.0.4.
# Tested on 1 uniformly sampled clip x 3 crops.
_base_ = [
    '../../_base_/models/swin/swin_base.py',
    '../../_base_/pipelines/sthv2_test_uniform32_threecrop.py',
]

model = dict(
    backbone=dict(window_size=(16, 7, 7), drop_path_rate=0.4),
    cls_head=dict(num_classes=174))

origin = 'official'
dataset = 'sthv2'
pretrain = 'Kinetics-400'
checkpoint = dict(
    filename='swin_base_patch244_window1677_sthv2.pth',
    url='https://github.com/SwinTransformer/storage/releases/download/v1.0.4/'
    'swin_base_patch244_window1677_sthv2.pth')
metrics = dict(top1=69.6, top5=92.7, views='32x1x3',
               source='https://github.com/SwinTransformer/Video-Swin-Transformer/'
               'blob/master/README.md#something-something-v2')
