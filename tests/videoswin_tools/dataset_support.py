"""A tiny labelled video set and a tiny converted classifier for the dataset-job tests.

- `make_dataset(root)`: videos written with PyAV (sizes, orientations, frame rates and lengths
  all differ; one is shorter than a clip; one file is not a video) and `list.txt` in
  mmaction2's format. Frames are smooth random gradients, so predictions differ per video.
- `make_model(root)`: mmaction2's own `SwinTransformer3D` (the oracle, random weights) written
  as an official checkpoint and converted by `converter.convert.convert` (no parity run),
  with a config whose test pipeline is tiny: 8 frames x 2, 4 clips x 3 crops of 32 px.
- `oracle_probabilities(...)`: mmaction2's test pipeline (`PyAVInit`, `SampleFrames`,
  `PyAVDecode`, `Resize`, `ThreeCrop`/`CenterCrop`, `FormatShape`) and the oracle model.
"""

import os
import textwrap
from fractions import Fraction

import numpy as np

from tests.videoswin import test_video

NUM_CLASSES = 7
ARCH = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
WINDOW = (2, 3, 3)
PIPELINE = dict(clip_len=8, frame_interval=2, num_clips=4, short_side=32, crop_size=32,
                num_crops=3)

# (name, frames, height, width, fps): landscape, portrait, square, odd rates and lengths;
# "short" has fewer frames than one 8 x 2 clip.
VIDEOS = [
    ("a/landscape.mp4", 40, 48, 64, 25),
    ("a/portrait.mp4", 23, 64, 40, Fraction(30000, 1001)),
    ("b/square.mp4", 17, 48, 48, 12),
    ("b/wide.mp4", 31, 36, 90, 60),
    ("short.mp4", 10, 40, 56, 24),
    ("c/tall.mp4", 26, 80, 48, 15),
]
BROKEN = "c/broken.mp4"
# Some labels are the oracle's top class, some not; class 0 is only ever predicted, which
# mmaction2's mean class accuracy counts as a class with accuracy 0.
LABELS = {"a/landscape.mp4": 4, "a/portrait.mp4": 3, "b/square.mp4": 1, "b/wide.mp4": 6,
          "short.mp4": 5, "c/tall.mp4": 4, BROKEN: 2}


def frames(count, height, width, seed):
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    out = np.empty((count, height, width, 3), np.uint8)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-120, 120, (2, 3))
    speed = rng.uniform(-6, 6, 3)
    for t in range(count):
        value = base + slope[0] * y + slope[1] * x + speed * t
        out[t] = np.clip(value + rng.normal(0, 6, (height, width, 3)), 0, 255)
    return out


def write_video(path, data, fps):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return test_video.write_video(path, data, fps)


def make_dataset(root, copies=1):
    """Write the videos under `root/videos` and `root/list.txt` (the list repeated `copies`
    times); return the list's path."""
    videos = os.path.join(root, "videos")
    for i, (name, count, height, width, fps) in enumerate(VIDEOS):
        write_video(os.path.join(videos, name), frames(count, height, width, i), fps)
    os.makedirs(os.path.join(videos, "c"), exist_ok=True)
    with open(os.path.join(videos, BROKEN), "w") as handle:
        handle.write("this is not a video\n")
    names = [name for name, *_ in VIDEOS]
    names.insert(3, BROKEN)
    lines = [f"{name} {LABELS[name]}" for _ in range(copies) for name in names]
    path = os.path.join(root, "list.txt")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def write_config(path):
    features = ARCH["embed_dim"] * 8
    p = PIPELINE
    with open(path, "w") as handle:
        handle.write(textwrap.dedent(f"""\
            model = dict(
                type='Recognizer3D',
                backbone=dict(type='SwinTransformer3D',
                              arch=dict(embed_dims={ARCH['embed_dim']},
                                        depths={list(ARCH['depths'])},
                                        num_heads={list(ARCH['num_heads'])}),
                              patch_size=(2, 4, 4), window_size={WINDOW}, patch_norm=True),
                cls_head=dict(type='I3DHead', in_channels={features},
                              num_classes={NUM_CLASSES}, average_clips='prob'))
            test_pipeline = [
                dict(type='DecordInit'),
                dict(type='SampleFrames', clip_len={p['clip_len']},
                     frame_interval={p['frame_interval']}, num_clips={p['num_clips']},
                     test_mode=True),
                dict(type='DecordDecode'),
                dict(type='Resize', scale=(-1, {p['short_side']})),
                dict(type='ThreeCrop', crop_size={p['crop_size']}),
                dict(type='FormatShape', input_format='NCTHW'),
                dict(type='PackActionInputs')]
            """))
    return str(path)


def make_oracle(seed=5):
    from tests import oracle

    return oracle.make_oracle(ARCH["embed_dim"], ARCH["depths"], ARCH["num_heads"],
                              window_size=WINDOW, num_classes=NUM_CLASSES, seed=seed)


def make_model(root, seed=5):
    """Convert the oracle's weights into `root/model`; return (folder, oracle)."""
    from converter.convert import convert
    from tests import oracle as oracles

    model = make_oracle(seed)
    checkpoint = oracles.save_checkpoint(oracles.official_state_dict(model),
                                         os.path.join(root, "tiny.pth"))
    config = write_config(os.path.join(root, "swin_eval_tiny.py"))
    out = os.path.join(root, "model")
    convert(config, str(checkpoint), out, backends=[], quiet=True)
    return out, model


_SHARED = {}


def shared():
    """(list file, videos folder, model folder, oracle), built once per process (read-only)."""
    if not _SHARED:
        import atexit
        import shutil
        import tempfile

        root = tempfile.mkdtemp(prefix="videoswin-eval-data-")
        atexit.register(shutil.rmtree, root, True)
        list_file = make_dataset(root)
        folder, model = make_model(root)
        _SHARED.update(list=list_file, videos=os.path.join(root, "videos"), model=folder,
                       oracle=model, root=root)
    return _SHARED


def oracle_views(path, num_clips, num_crops, pipeline=PIPELINE):
    """mmaction2's test pipeline on `path`: float32 NCTHW views, normalised."""
    import av
    from mmaction.datasets.transforms import formatting, loading, processing

    results = {"filename": path, "start_index": 0, "modality": "RGB"}
    results = loading.PyAVInit()(results)
    if not results["total_frames"]:              # a container without a frame count
        with av.open(path) as container:
            results["total_frames"] = sum(1 for _ in container.decode(video=0))
        results["video_reader"] = av.open(path)
    results = loading.SampleFrames(pipeline["clip_len"], pipeline["frame_interval"],
                                   num_clips, test_mode=True)(results)
    results = loading.PyAVDecode()(results)
    results = processing.Resize(scale=(-1, pipeline["short_side"]))(results)
    crop = (processing.ThreeCrop(pipeline["crop_size"]) if num_crops == 3
            else processing.CenterCrop(pipeline["crop_size"]))
    results = formatting.FormatShape("NCTHW")(crop(results))
    x = results["imgs"].astype(np.float32)
    mean = np.array([123.675, 116.28, 103.53], np.float32)[None, :, None, None, None]
    std = np.array([58.395, 57.12, 57.375], np.float32)[None, :, None, None, None]
    return (x - mean) / std


def oracle_probabilities(model, path, num_clips, num_crops):
    """Softmax per view, averaged: mmaction2's `average_clips='prob'`."""
    import torch

    x = torch.from_numpy(oracle_views(path, num_clips, num_crops))
    with torch.no_grad():
        _, logits = model(x)
    return torch.softmax(logits, dim=1).mean(0).numpy()


def oracle_features(model, path, num_clips, num_crops):
    """The oracle backbone's final features, mean over T', H', W', per view `(views, C)`."""
    import torch

    x = torch.from_numpy(oracle_views(path, num_clips, num_crops))
    with torch.no_grad():
        features, _ = model(x)
    return features.mean(dim=(2, 3, 4)).numpy()
