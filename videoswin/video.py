"""Video file in, Video Swin's test-time views out; and the multi-view prediction protocol.

The steps of the published test pipelines, in order: decode every frame (PyAV), sample clips
(`SampleFrames`, or uniform sampling for Something-Something V2, in test mode), resize the
short side (`Resize(scale=(-1, short_side))`), crop (`ThreeCrop` or `CenterCrop`), normalise.
Views come out channels-last, crop-major as mmaction2's `FormatShape` orders them.

`origin` picks whose sampling rule applies, as `ModelSpec.origin` does:
- "official": the Video Swin repository (its mmaction2 0.x fork), which produced the published
  checkpoints and accuracies. Clip k starts at `int((k + 1/2) * (n - clip_len*interval + 1) /
  num_clips)` (at 0 if n < clip_len*interval); SSv2 (`SampleFrames(frame_uniform=True)`) takes
  the middle frame of each of `clip_len` equal segments, one clip.
- "mmaction2": mmaction2 1.x. Offsets spread evenly from 0 to `n - span` with `round`;
  `UniformSample` places clip k at `(k + 1) / (num_clips + 1)` of each segment.
Both loop short videos (`out_of_bound_opt='loop'`): index `i` reads frame `i mod n`.

Exactness: indices, resized sizes and crop offsets equal mmaction2's. mmaction2 resizes with
`mmcv.imresize`, i.e. OpenCV's bilinear on uint8; with OpenCV installed this module calls the
same function, so pixels match exactly. Without it a NumPy bilinear with OpenCV's pixel
mapping is used, within one grey level of OpenCV (OpenCV rounds in fixed point).
mmaction2's configs decode with decord; PyAV decodes with the same FFmpeg decoders.

PyAV (`pip install av`) is needed only to read files; OpenCV is optional.
"""

import os

import numpy as np

from videoswin.core import datasets
from videoswin.core.pipelines import KINETICS, MEAN, ORIGINS, SAMPLING_KEYS, STD

RESIZE_BACKENDS = ("auto", "cv2", "numpy")
# Largest frame, in pixels after the resize, that is read: a 16:9 video resized to a short
# side of 224 has 89,600; the bound stops an extreme aspect ratio (a 2 x 20,000 video has a
# long side of 2.24 million after the resize) from asking for gigabytes per frame.
MAX_FRAME_PIXELS = 4_000_000


class VideoReadError(ValueError):
    """A file that cannot be read as a video; the message names the file."""


def default_pipeline(dataset=None):
    """The sampling settings of `dataset`'s official test pipeline (Kinetics' by default), as
    keyword arguments of `load_video` and `video_probabilities`."""
    return datasets.pipeline_for(dataset).sampling()


# ----------------------------------------------------------------------------- sampling

def sample_frames(total_frames, clip_len=32, frame_interval=2, num_clips=4, origin="official",
                  out_of_bound="loop"):
    """Frame indices `(num_clips, clip_len)` of `SampleFrames` in test mode."""
    n = _check_count(total_frames)
    _check_origin(origin)
    if origin == "official":
        span = clip_len * frame_interval
        if n > span - 1:
            step = (n - span + 1) / float(num_clips)
            offsets = (np.arange(num_clips) * step + step / 2.0).astype(np.int64)
        else:
            offsets = np.zeros(num_clips, dtype=np.int64)
    elif clip_len == 1:  # mmaction2 1.x treats single-frame clips as 2D sampling
        step = n / float(num_clips)
        offsets = np.arange(num_clips) * step + step / 2.0
    else:
        max_offset = max(n - ((clip_len - 1) * frame_interval + 1), 0)
        if num_clips > 1:
            offsets = np.round(np.arange(num_clips) * (max_offset / float(num_clips - 1)))
        else:
            offsets = np.array([max_offset // 2])
    inds = offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    if out_of_bound == "loop":
        inds = np.mod(inds, n)
    elif out_of_bound == "repeat_last":
        inside = inds < n
        last = np.max(inside * inds, axis=1)
        inds = np.where(inside, inds, last[:, None])
    else:
        raise ValueError(f"out_of_bound must be 'loop' or 'repeat_last'; got {out_of_bound!r}")
    return inds.astype(np.int64)


def uniform_sample(total_frames, clip_len=32, num_clips=1, origin="official"):
    """Frame indices `(num_clips, clip_len)` of SSv2-style uniform sampling in test mode."""
    n = _check_count(total_frames)
    _check_origin(origin)
    segment = float(n - 1) / clip_len
    starts = [int(np.round(segment * i)) for i in range(clip_len)]
    if origin == "official":
        if num_clips != 1:
            raise ValueError("the official uniform sampling takes one clip; got "
                             f"num_clips={num_clips}")
        ends = [int(np.round(segment * (i + 1))) for i in range(clip_len)]
        return np.array([[(s + e) // 2 for s, e in zip(starts, ends)]], dtype=np.int64)
    shift = segment / (num_clips + 1)
    return np.array([[s + int(shift * (k + 1)) for s in starts] for k in range(num_clips)],
                    dtype=np.int64)


def frame_indices(total_frames, clip_len=32, frame_interval=2, num_clips=4,
                  uniform_sampling=False, origin="official"):
    """Frame indices `(num_clips, clip_len)` of the test pipeline's sampler."""
    if uniform_sampling:
        return uniform_sample(total_frames, clip_len, num_clips, origin)
    return sample_frames(total_frames, clip_len, frame_interval, num_clips, origin)


# ------------------------------------------------------------------- resize and crops

def resized_shape(height, width, short_side=224):
    """`(height, width)` after `Resize(scale=(-1, short_side))`: short side to `short_side`,
    aspect kept, each side rounded half up as mmcv does."""
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_frame(frame, height, width, backend="auto"):
    """Bilinear resize of a uint8 `(H, W, 3)` frame: OpenCV when available (as mmcv), else NumPy."""
    if backend not in RESIZE_BACKENDS:
        raise ValueError(f"resize backend must be one of {RESIZE_BACKENDS}; got {backend!r}")
    if frame.shape[:2] == (height, width):
        return frame
    if backend in ("auto", "cv2"):
        try:
            import cv2
        except ImportError:
            if backend == "cv2":
                raise ImportError("resize backend 'cv2' needs OpenCV: "
                                  "pip install opencv-python-headless") from None
        else:
            return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    return _bilinear_numpy(frame, height, width)


def _bilinear_numpy(frame, height, width):
    rows0, rows1, wy = _bilinear_taps(frame.shape[0], height)
    cols0, cols1, wx = _bilinear_taps(frame.shape[1], width)
    src = frame.astype(np.float32)
    x = src[rows0] * (1 - wy)[:, None, None] + src[rows1] * wy[:, None, None]
    x = x[:, cols0] * (1 - wx)[None, :, None] + x[:, cols1] * wx[None, :, None]
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _bilinear_taps(size, new_size):
    # OpenCV's INTER_LINEAR mapping: half-pixel centres, edge taps clamped with zero weight.
    pos = ((np.arange(new_size) + 0.5) * (size / new_size) - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int64)
    weight = pos - first
    weight[first < 0] = 0
    first = np.maximum(first, 0)
    weight[first >= size - 1] = 0
    first = np.minimum(first, size - 1)
    return first, np.minimum(first + 1, size - 1), weight.astype(np.float32)


def crop_offsets(height, width, crop_size=224, num_crops=3):
    """`(top, left)` of each crop, in mmaction2's order.

    One crop: `CenterCrop`. Three: `ThreeCrop` (left, right, middle along the long side), which
    needs `crop_size` equal to the short side, as in mmaction2.
    """
    if crop_size > min(height, width):
        raise ValueError(f"crop_size {crop_size} exceeds the resized frame {height}x{width}")
    if num_crops == 1:
        return [((height - crop_size) // 2, (width - crop_size) // 2)]
    if num_crops == 3:
        if crop_size == height:
            step = (width - crop_size) // 2
            return [(0, 0), (0, 2 * step), (0, step)]
        if crop_size == width:
            step = (height - crop_size) // 2
            return [(0, 0), (2 * step, 0), (step, 0)]
        raise ValueError(f"three crops need crop_size equal to the short side after resizing "
                         f"(got crop_size {crop_size}, frame {height}x{width}); set short_side "
                         "to crop_size or use one crop")
    raise ValueError(f"num_crops must be 1 (center crop) or 3 (three crops); got {num_crops}")


# ---------------------------------------------------------------------------- decoding

def _import_av():
    try:
        import av
    except ImportError:
        raise ImportError("reading video files needs PyAV: pip install av "
                          "(or pip install 'videoswin[video]')") from None
    return av


def _open(av, path):
    if not os.path.exists(path):
        raise VideoReadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoReadError(f"{path}: is a directory, not a video file")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoReadError(f"{path}: not a readable video file ({_reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: holds no video stream")
    return container


def _reason(err):
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def count_frames(path):
    """Frames in the first video stream: the container's count, else its video packets."""
    av = _import_av()
    path = os.fspath(path)
    with _open(av, path) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as err:
            raise VideoReadError(f"{path}: cannot be demuxed ({_reason(err)})") from None


def _decode_selected(av, path, wanted, transform):
    """Decode every frame; keep `transform(rgb)` of those whose index is in `wanted`."""
    kept = {}
    count = 0
    with _open(av, path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if count in wanted:
                    kept[count] = transform(frame.to_ndarray(format="rgb24"))
                count += 1
        except av.FFmpegError as err:
            raise VideoReadError(f"{path}: decoding failed at frame {count} "
                                 f"({_reason(err)})") from None
    return kept, count


def read_clips(path, clip_len=32, frame_interval=2, num_clips=4, uniform_sampling=False,
               short_side=224, origin="official", resize_backend="auto"):
    """Decode `path` and sample its clips, resized: uint8 `(num_clips, clip_len, H, W, 3)` and
    the frame indices `(num_clips, clip_len)`. `short_side=None` keeps the decoded size."""
    av = _import_av()
    path = os.fspath(path)

    def indices_for(total):
        return frame_indices(total, clip_len, frame_interval, num_clips, uniform_sampling,
                             origin)

    def transform(rgb):
        size = rgb.shape[:2] if short_side is None else resized_shape(*rgb.shape[:2], short_side)
        if size[0] * size[1] > MAX_FRAME_PIXELS:
            raise VideoReadError(f"{path}: a {rgb.shape[1]}x{rgb.shape[0]} frame becomes "
                                 f"{size[1]}x{size[0]} after the resize, more than the "
                                 f"{MAX_FRAME_PIXELS:,} pixels videoswin reads per frame "
                                 "(videoswin.video.MAX_FRAME_PIXELS)")
        return rgb if short_side is None else resize_frame(rgb, *size, resize_backend)

    total = count_frames(path)
    if total == 0:
        raise VideoReadError(f"{path}: holds no video frames")
    inds = indices_for(total)
    frames, decoded = _decode_selected(av, path, set(inds.ravel().tolist()), transform)
    if decoded != total:  # the container's count was wrong: sample again from the real one
        if decoded == 0:
            raise VideoReadError(f"{path}: no frame could be decoded")
        inds = indices_for(decoded)
        wanted = set(inds.ravel().tolist())
        if not wanted <= frames.keys():
            frames, _ = _decode_selected(av, path, wanted, transform)
    order = sorted(frames)
    shapes = {frames[i].shape for i in order}
    if len(shapes) > 1:
        raise VideoReadError(f"{path}: the frame size changes within the video {sorted(shapes)}")
    stack = np.stack([frames[i] for i in order])
    position = np.searchsorted(order, inds)
    return stack[position], inds


def make_views(clips, crop_size=224, num_crops=3, mean=MEAN, std=STD, normalize=True):
    """Crops of resized clips `(num_clips, T, H, W, 3)` -> float32 views
    `(num_crops * num_clips, T, crop_size, crop_size, 3)`, crop-major; normalised with
    `mean` / `std` (0-255 scale) unless `normalize=False` (then RGB 0-255)."""
    clips = np.asarray(clips)
    height, width = clips.shape[2:4]
    views = [clips[:, :, top:top + crop_size, left:left + crop_size]
             for top, left in crop_offsets(height, width, crop_size, num_crops)]
    views = np.concatenate(views, axis=0).astype(np.float32)
    if normalize:
        views -= np.asarray(mean, dtype=np.float32)
        views /= np.asarray(std, dtype=np.float32)
    return views


def load_video(path, clip_len=32, frame_interval=2, num_clips=4, uniform_sampling=False,
               short_side=224, crop_size=224, num_crops=3, mean=MEAN, std=STD,
               origin="official", normalize=True, resize_backend="auto"):
    """A video file as the float32 test views `(num_crops * num_clips, clip_len, crop_size,
    crop_size, 3)`, ready for `VideoSwinClassifier` (pass `normalize=False` for a model built
    with `include_preprocessing=True`)."""
    clips, _ = read_clips(path, clip_len, frame_interval, num_clips, uniform_sampling,
                          short_side, origin, resize_backend)
    return make_views(clips, crop_size, num_crops, mean, std, normalize)


# -------------------------------------------------------------------------- prediction

def softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def average_views(outputs, average_clips="prob", probabilities=False):
    """Class probabilities of a video from its per-view outputs `(views, classes)`.

    `average_clips='prob'` (the published protocol): softmax per view, then the mean.
    `'score'`: mean of the logits, then softmax. `probabilities=True`: outputs already are.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim != 2:
        raise ValueError(f"expected per-view outputs (views, classes); got shape {outputs.shape}")
    if average_clips == "prob":
        return (outputs if probabilities else softmax(outputs)).mean(axis=0)
    if average_clips == "score":
        mean = outputs.mean(axis=0)
        return mean / mean.sum() if probabilities else softmax(mean)
    raise ValueError(f"average_clips must be 'prob' or 'score'; got {average_clips!r}")


def top_classes(probabilities, labels=None, k=5):
    """The `k` most likely classes as `(label, probability)`, most likely first (ties: lower
    index first); label is the class index when `labels` is None."""
    probabilities = np.asarray(probabilities)
    if labels is not None and len(labels) != len(probabilities):
        raise ValueError(f"{len(labels)} labels for a model with {len(probabilities)} classes")
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(labels[i] if labels is not None else int(i), float(probabilities[i]))
            for i in order]


def video_probabilities(model, path, batch_size=1, origin="official", average_clips="prob",
                        resize_backend="auto", progress=None, **pipeline):
    """Class probabilities `(classes,)` of `model` on the file `path` under the multi-view test
    protocol. `pipeline` overrides the Kinetics sampling settings (e.g. `num_clips=1`; see
    `videoswin.core.pipelines.SAMPLING_KEYS`). `progress(done, total)`, if given, is called
    once the views are decoded (`done` 0) and after each batch of `batch_size` views."""
    unknown = set(pipeline) - set(SAMPLING_KEYS)
    if unknown:
        raise TypeError(f"unknown pipeline settings {sorted(unknown)}; expected {SAMPLING_KEYS}")
    settings = dict(KINETICS.sampling(), **pipeline)
    _check_input_shape(model, settings)
    views = load_video(path, origin=origin, normalize=not _normalises_inside(model),
                       resize_backend=resize_backend, **settings)
    if progress is None:
        outputs = model.predict(views, batch_size=batch_size, verbose=0)
    else:
        progress(0, len(views))
        outputs = []
        for start in range(0, len(views), batch_size):
            outputs.append(model.predict(views[start:start + batch_size], verbose=0))
            progress(min(start + batch_size, len(views)), len(views))
        outputs = np.concatenate(outputs)
    return average_views(outputs, average_clips, probabilities=_ends_in_softmax(model))


def predict_video(model, path, labels=None, top_k=5, batch_size=1, origin="official",
                  average_clips="prob", **pipeline):
    """Top-k `(label, probability)` of a `VideoSwinClassifier` on a video file.

    `labels`: class names in index order (see `videoswin.core.labels.load_labels`), or None
    for indices. Views: `num_clips` x `num_crops` (4 x 3 by default; SSv2:
    `**default_pipeline("sthv2")`).
    """
    probs = video_probabilities(model, path, batch_size, origin, average_clips, **pipeline)
    return top_classes(probs, labels, top_k)


def _normalises_inside(model):
    backbone = getattr(model, "backbone", None)
    return bool(getattr(backbone, "include_preprocessing", False))


def _ends_in_softmax(model):
    try:
        head = model.get_layer("fc_cls")
    except ValueError:
        return False
    return getattr(getattr(head, "activation", None), "__name__", "") == "softmax"


def _check_input_shape(model, settings):
    shape = tuple(model.input_shape[1:4])
    wanted = (settings["clip_len"], settings["crop_size"], settings["crop_size"])
    if any(s is not None and s != w for s, w in zip(shape, wanted)):
        raise ValueError(f"the model takes clips of shape {shape} (T, H, W) but the pipeline "
                         f"makes {wanted}; change clip_len / crop_size to match")


def _check_count(total_frames):
    n = int(total_frames)
    if n < 1:
        raise ValueError(f"a video needs at least one frame; got total_frames={total_frames}")
    return n


def _check_origin(origin):
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}; got {origin!r}")
