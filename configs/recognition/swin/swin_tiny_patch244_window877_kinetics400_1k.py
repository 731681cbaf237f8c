# Video Swin-T on Kinetics-400 (ImageNet-1K pretrain), official release v1.0.4.
# drop_path_rate is the training recipe's; inference ignores it.
_base_ = [
    '../../_base_/models/swin/swin_tiny.py',
    '../../_base_/pipelines/kinetics_test_32x2x4_threecrop.py',
]

model = dict(backbone=dict(drop_path_rate=0.1))

origin = 'official'
dataset = 'kinetics400'
pretrain = 'ImageNet-1K'
checkpoint = dict(
    filename='swin_tiny_patch244_window877_kinetics400_1k.pth',
    url='https://github.com/SwinTransformer/storage/releases/download/v1.0.4/'
    'swin_tiny_patch244_window877_kinetics400_1k.pth')
metrics = dict(top1=78.8, top5=93.6, views='32x4x3',
               source='https://github.com/SwinTransformer/Video-Swin-Transformer/'
               'blob/master/README.md#kinetics-400')
