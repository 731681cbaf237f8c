# Kinetics test views: 4 clips of 32 frames taken every 2nd frame, short side 224,
# three 224x224 crops per clip (4 x 3 = 12 views, class scores averaged as probabilities).
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=32, frame_interval=2, num_clips=4, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='ThreeCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
