# Video Swin-T on Kinetics-400 (ImageNet-1K pretrain), mmaction2 1.x model zoo (metafile.yml).
# Checkpoint layout: the official one, except that the final norm is `backbone.norm3`.
_base_ = [
    '../../_base_/models/swin/swin_tiny.py',
    '../../_base_/pipelines/kinetics_test_32x2x4_threecrop.py',
]

model = dict(backbone=dict(drop_path_rate=0.1))

origin = 'mmaction2'
dataset = 'kinetics400'
pretrain = 'ImageNet-1K'
checkpoint = dict(
    filename='swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-241016b2.pth',
    url='https://download.openmmlab.com/mmaction/v1.0/recognition/swin/'
    'swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb/'
    'swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-241016b2.pth')
metrics = dict(top1=78.90, top5=93.77, views='32x4x3',
               source='https://github.com/open-mmlab/mmaction2/blob/main/'
               'configs/recognition/swin/metafile.yml')
