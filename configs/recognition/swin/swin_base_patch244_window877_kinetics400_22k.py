# Video Swin-B on Kinetics-400 (ImageNet-22K pretrain), official release v1.0.4.
# drop_path_rate is the training recipe's; inference ignores it.
_base_ = [
    '../../_base_/models/swin/swin_base.py',
    '../../_base_/pipelines/kinetics_test_32x2x4_threecrop.py',
]

model = dict(backbone=dict(drop_path_rate=0.2))

origin = 'official'
dataset = 'kinetics400'
pretrain = 'ImageNet-22K'
checkpoint = dict(
    filename='swin_base_patch244_window877_kinetics400_22k.pth',
    url='https://github.com/SwinTransformer/storage/releases/download/v1.0.4/'
    'swin_base_patch244_window877_kinetics400_22k.pth')
metrics = dict(top1=82.7, top5=95.5, views='32x4x3',
               source='https://github.com/SwinTransformer/Video-Swin-Transformer/'
               'blob/master/README.md#kinetics-400')
