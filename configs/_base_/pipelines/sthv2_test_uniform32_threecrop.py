# Something-Something V2 test views: one clip of 32 frames sampled uniformly over the
# whole video (one frame from the middle of each of 32 equal segments), short side 224,
# three 224x224 crops (1 x 3 = 3 views). The official 0.x config writes this sampler as
# SampleFrames(..., frame_uniform=True), which ignores its frame_interval.
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=32, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='ThreeCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
