# Video Swin-L on Kinetics-400 (ImageNet-22K pretrain), mmaction2 1.x model zoo.
# Checkpoint layout: the official one, except that the final norm is `backbone.norm3`.
_base_ = [
    '../../_base_/models/swin/swin_large.py',
    '../../_base_/pipelines/kinetics_test_32x2x4_threecrop.py',
]

model = dict(backbone=dict(drop_path_rate=0.4))

origin = 'mmaction2'
dataset = 'kinetics400'
pretrain = 'ImageNet-22K'
checkpoint = dict(
    filename='swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-78ad8b11.pth',
    url='https://download.openmmlab.com/mmaction/v1.0/recognition/swin/'
    'swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb/'
    'swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb_20220930-78ad8b11.pth')
metrics = dict(top1=83.46, top5=95.91, views='32x4x3',
               source='https://github.com/open-mmlab/mmaction2/blob/main/'
               'configs/recognition/swin/metafile.yml')
