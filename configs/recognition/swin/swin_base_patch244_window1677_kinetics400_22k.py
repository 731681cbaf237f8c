# Video Swin-B, window 16x7x7, trained on Kinetics-400 from ImageNet-22K: the checkpoint the
# official README names as the pretrained model for SSv2 (release v1.0.4). No config and no
# accuracy were published for it: the 400-class head is assumed from the name (the converter
# checks the checkpoint's head shape), drop_path_rate follows the K400 IN-22K recipe and is
# ignored at inference, and the test views are the Kinetics ones.
_base_ = [
    '../../_base_/models/swin/swin_base.py',
    '../../_base_/pipelines/kinetics_test_32x2x4_threecrop.py',
]

model = dict(backbone=dict(window_size=(16, 7, 7), drop_path_rate=0.2))

origin = 'official'
dataset = 'kinetics400'
pretrain = 'ImageNet-22K'
checkpoint = dict(
    filename='swin_base_patch244_window1677_kinetics400_22k.pth',
    url='https://github.com/SwinTransformer/storage/releases/download/v1.0.4/'
    'swin_base_patch244_window1677_kinetics400_22k.pth')
# Not published: the README lists this file only as the SSv2 starting point.
metrics = dict(top1=None, top5=None, views=None,
               source='https://github.com/SwinTransformer/Video-Swin-Transformer/'
               'blob/master/README.md#something-something-v2')
