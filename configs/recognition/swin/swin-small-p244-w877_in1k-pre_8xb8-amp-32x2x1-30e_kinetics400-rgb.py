# Video Swin-S on Kinetics-400 (ImageNet-1K pretrain), mmaction2 1.x model zoo (metafile.yml).
# Checkpoint layout: the official one, except that the final norm is `backbone.norm3`.
_base_ = [
    '../../_base_/models/swin/swin_small.py',
    '../../_base_/pipelines/kinetics_test_32x2x4_threecrop.py',
]

model = dict(backbone=dict(drop_path_rate=0.2))

origin = 'mmaction2'
dataset = 'kinetics400'
pretrain = 'ImageNet-1K'
checkpoint = dict(
    filename='swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-e91ab986.pth',
    url='https://download.openmmlab.com/mmaction/v1.0/recognition/swin/'
    'swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb/'
    'swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-e91ab986.pth')
metrics = dict(top1=80.54, top5=94.46, views='32x4x3',
               source='https://github.com/open-mmlab/mmaction2/blob/main/'
               'configs/recognition/swin/metafile.yml')
