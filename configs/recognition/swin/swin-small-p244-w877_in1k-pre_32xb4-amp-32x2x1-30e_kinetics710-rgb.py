# Video Swin-S on Kinetics-710 (the union of K400/K600/K700 classes; ImageNet-1K pretrain),
# mmaction2 1.x model zoo. Inherits the Kinetics-400 Swin-S recipe, as upstream does; 710 classes.
# Upstream tests it on the K400, K600 and K700 validation sets together.
_base_ = './swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py'

model = dict(cls_head=dict(num_classes=710))

origin = 'mmaction2'
dataset = 'kinetics710'
pretrain = 'ImageNet-1K'
checkpoint = dict(
    filename='swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb_20230612-8e082ff1.pth',
    url='https://download.openmmlab.com/mmaction/v1.0/recognition/swin/'
    'swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb/'
    'swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb_20230612-8e082ff1.pth')
metrics = dict(top1=76.90, top5=92.96, views='32x4x3',
               source='https://github.com/open-mmlab/mmaction2/blob/main/'
               'configs/recognition/swin/metafile.yml')
