# Video Swin-L on Kinetics-700 (ImageNet-22K pretrain), mmaction2 1.x model zoo.
# Inherits the Kinetics-400 Swin-L recipe, as upstream does; 700 classes.
_base_ = './swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py'

model = dict(cls_head=dict(num_classes=700))

origin = 'mmaction2'
dataset = 'kinetics700'
pretrain = 'ImageNet-22K'
checkpoint = dict(
    filename='swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb_20220930-f8d74db7.pth',
    url='https://download.openmmlab.com/mmaction/v1.0/recognition/swin/'
    'swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb/'
    'swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb_20220930-f8d74db7.pth')
metrics = dict(top1=75.92, top5=92.72, views='32x4x3',
               source='https://github.com/open-mmlab/mmaction2/blob/main/'
               'configs/recognition/swin/metafile.yml')
