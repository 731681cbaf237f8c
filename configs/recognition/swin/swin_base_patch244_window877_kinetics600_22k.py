# Video Swin-B on Kinetics-600 (ImageNet-22K pretrain), official release v1.0.4.
# Same recipe as the Kinetics-400 IN-22K model (the official config inherits it); 600 classes.
_base_ = './swin_base_patch244_window877_kinetics400_22k.py'

model = dict(cls_head=dict(num_classes=600))

origin = 'official'
dataset = 'kinetics600'
pretrain = 'ImageNet-22K'
checkpoint = dict(
    filename='swin_base_patch244_window877_kinetics600_22k.pth',
    url='https://github.com/SwinTransformer/storage/releases/download/v1.0.4/'
    'swin_base_patch244_window877_kinetics600_22k.pth')
metrics = dict(top1=84.0, top5=96.5, views='32x4x3',
               source='https://github.com/SwinTransformer/Video-Swin-Transformer/'
               'blob/master/README.md#kinetics-600')
