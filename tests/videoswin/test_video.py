"""videoswin.video and videoswin.labels: sampling, resize, crops, decoding, multi-view averaging.

Videos are written here with PyAV. Each frame carries its own number as two flat grey levels
(top half: number % 25, bottom half: number // 25), so a decoded frame tells which one it is.
Where mmaction2 1.2.0 imports, its own transforms are the reference; the official (0.x)
sampling is checked against worked examples computed by hand from its code.
"""

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from videoswin.core import labels as label_maps
from videoswin import video


def _av():
    return pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")


# ------------------------------------------------------------------------------ helpers

def numbered_frames(count, height, width):
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, : height // 2] = 20 + 8 * (i % 25)
        frames[i, height // 2:] = 20 + 8 * (i // 25)
    return frames


def frame_number(rgb):
    h, w = rgb.shape[:2]
    top = rgb[h // 4, w // 4: 3 * w // 4].mean()
    bottom = rgb[(3 * h) // 4, w // 4: 3 * w // 4].mean()
    return int(round((top - 20) / 8)) + 25 * int(round((bottom - 20) / 8))


def write_video(path, frames, fps=25, codec="mpeg4"):
    """Write uint8 RGB frames `(T, H, W, 3)`; mpeg4 needs even sizes, ffv1 takes any."""
    av = _av()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        stream.bit_rate = 20_000_000  # near-lossless: the frame numbers must survive
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


# (name, frames, height, width, fps, codec): sizes, rates, lengths, containers all differ;
# "short" is shorter than one 8x2 clip; the .mkv (ffv1) stores no frame count.
VIDEOS = [
    ("landscape.mp4", 70, 48, 64, 25, "mpeg4"),
    ("portrait.mp4", 41, 64, 40, Fraction(30000, 1001), "mpeg4"),
    ("odd.mkv", 23, 27, 41, 12, "ffv1"),
    ("short.mp4", 9, 36, 90, 60, "mpeg4"),
]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {name: (write_video(root / name, numbered_frames(n, h, w), fps, codec), n, h, w)
            for name, n, h, w, fps, codec in VIDEOS}


def _mmaction_transforms():
    pytest.importorskip("mmaction", reason="mmaction2 (the oracle) is not installed")
    pytest.importorskip("cv2", reason="OpenCV (mmcv's resize) is not installed")
    from mmaction.datasets.transforms import formatting, loading, processing

    return loading, processing, formatting


# ----------------------------------------------------------------------------- sampling

def test_official_sample_frames_worked_example():
    # 100 frames, 32x2x4: step = (100 - 64 + 1) / 4 = 9.25; offsets int(9.25 k + 4.625).
    inds = video.sample_frames(100, 32, 2, 4, origin="official")
    assert inds.shape == (4, 32)
    assert inds[:, 0].tolist() == [4, 13, 23, 32]
    np.testing.assert_array_equal(inds[1], 13 + 2 * np.arange(32))
    # 63 frames < 32 * 2: every clip starts at 0 and loops.
    short = video.sample_frames(63, 32, 2, 4, origin="official")
    np.testing.assert_array_equal(short, np.tile(np.arange(0, 64, 2) % 63, (4, 1)))
    # 64 frames is just enough: step 1/4, offsets int(k/4 + 1/8) = 0.
    assert video.sample_frames(64, 32, 2, 4, origin="official")[:, 0].tolist() == [0, 0, 0, 0]


def test_mmaction2_sample_frames_worked_example():
    # span (32 - 1) * 2 + 1 = 63; max offset 37 spread over 3 gaps: round(12.33 k).
    inds = video.sample_frames(100, 32, 2, 4, origin="mmaction2")
    assert inds[:, 0].tolist() == [0, 12, 25, 37]
    assert inds.max() == 99
    assert video.sample_frames(100, 32, 2, 1, origin="mmaction2")[0, 0] == 18  # 37 // 2
    # 20 frames, 8x2: span 15, max offset 5, offsets round(0, 2.5, 5) = 0, 2, 5 (half to even)
    assert video.sample_frames(20, 8, 2, 3, origin="mmaction2")[:, 0].tolist() == [0, 2, 5]
    # 12 frames < span 15: every clip starts at 0 and loops
    np.testing.assert_array_equal(video.sample_frames(12, 8, 2, 3, origin="mmaction2"),
                                  np.tile(np.arange(0, 16, 2) % 12, (3, 1)))
    np.testing.assert_array_equal(video.sample_frames(5, 4, 3, 1, origin="mmaction2"),
                                  [[0, 3, 1, 4]])  # 0 3 6 9 looped over 5 frames


def test_uniform_sample_worked_examples():
    # 50 frames, 8 segments of 49 / 8 = 6.125: starts 0 6 12 18 24 31 37 43 (numpy rounding:
    # 24.5 -> 24); ends 6 12 18 24 31 37 43 49.
    assert video.uniform_sample(50, 8, 1, origin="official").tolist() == [
        [3, 9, 15, 21, 27, 34, 40, 46]]
    # mmaction2 1.x: clip k adds int(6.125 / 3 * (k + 1)) = 2, 4 to each start.
    assert video.uniform_sample(50, 8, 2, origin="mmaction2").tolist() == [
        [2, 8, 14, 20, 26, 33, 39, 45], [4, 10, 16, 22, 28, 35, 41, 47]]
    assert video.uniform_sample(1, 4, origin="official").tolist() == [[0, 0, 0, 0]]
    with pytest.raises(ValueError, match="one clip"):
        video.uniform_sample(50, 8, 2, origin="official")


def test_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="origin"):
        video.sample_frames(10, origin="0.x")
    with pytest.raises(ValueError, match="at least one frame"):
        video.sample_frames(0)
    with pytest.raises(ValueError, match="out_of_bound"):
        video.sample_frames(10, out_of_bound="clip")


def test_repeat_last_matches_mmaction2_rule():
    inds = video.sample_frames(5, 4, 2, 1, origin="mmaction2", out_of_bound="repeat_last")
    assert inds.tolist() == [[0, 2, 4, 4]]


@pytest.mark.parametrize("total", [1, 2, 5, 20, 62, 63, 64, 65, 100, 301, 1000])
def test_sampling_matches_mmaction2(total):
    loading, _, _ = _mmaction_transforms()
    for clip_len, interval, clips, bound in [(32, 2, 4, "loop"), (32, 2, 1, "loop"),
                                             (8, 3, 5, "repeat_last"), (1, 1, 8, "loop"),
                                             (16, 4, 2, "loop")]:
        ref = loading.SampleFrames(clip_len, interval, clips, test_mode=True,
                                   out_of_bound_opt=bound)(
            {"total_frames": total, "start_index": 0})["frame_inds"]
        ours = video.sample_frames(total, clip_len, interval, clips, "mmaction2", bound)
        np.testing.assert_array_equal(ours.ravel(), ref, err_msg=f"{clip_len}x{interval}x{clips}")
    for clip_len, clips in [(32, 1), (16, 3), (8, 2)]:
        ref = loading.UniformSample(clip_len, clips, test_mode=True)(
            {"total_frames": total, "start_index": 0})["frame_inds"]
        ours = video.uniform_sample(total, clip_len, clips, origin="mmaction2")
        np.testing.assert_array_equal(ours.ravel(), ref)


# ----------------------------------------------------------------------- resize, crops

@pytest.mark.parametrize("size,expected", [((240, 320), (224, 299)), ((320, 240), (299, 224)),
                                           ((224, 224), (224, 224)), ((37, 101), (224, 611)),
                                           ((1080, 1920), (224, 398))])
def test_resized_shape(size, expected):
    assert video.resized_shape(*size, 224) == expected


def test_resize_and_crops_match_mmaction2():
    _, processing, _ = _mmaction_transforms()
    rng = np.random.default_rng(0)
    for (h, w), short, crop, crops in [((240, 320), 224, 224, 3), ((320, 240), 224, 224, 3),
                                       ((37, 101), 32, 32, 3), ((99, 100), 64, 64, 3),
                                       ((50, 80), 64, 48, 1), ((81, 33), 40, 40, 1)]:
        imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]
        r = processing.Resize(scale=(-1, short))({"imgs": imgs, "img_shape": (h, w),
                                                  "modality": "RGB"})
        ours = [video.resize_frame(img, *video.resized_shape(h, w, short), "cv2") for img in imgs]
        for a, b in zip(ours, r["imgs"]):
            np.testing.assert_array_equal(a, b)
        crop_op = processing.ThreeCrop(crop) if crops == 3 else processing.CenterCrop(crop)
        r = crop_op(r)
        views = video.make_views(np.stack(ours)[None], crop, crops, normalize=False)
        assert views.shape == (crops, 2, crop, crop, 3)
        np.testing.assert_array_equal(views.reshape(-1, crop, crop, 3), np.stack(r["imgs"]))


def test_crop_offsets_order_and_errors():
    assert video.crop_offsets(224, 300, 224, 3) == [(0, 0), (0, 76), (0, 38)]
    assert video.crop_offsets(301, 224, 224, 3) == [(0, 0), (76, 0), (38, 0)]
    assert video.crop_offsets(230, 300, 224, 1) == [(3, 38)]
    with pytest.raises(ValueError, match="short side"):
        video.crop_offsets(256, 300, 224, 3)
    with pytest.raises(ValueError, match="exceeds"):
        video.crop_offsets(200, 300, 224, 1)
    with pytest.raises(ValueError, match="num_crops"):
        video.crop_offsets(224, 300, 224, 5)


def test_numpy_resize_is_within_one_level_of_opencv():
    pytest.importorskip("cv2", reason="OpenCV is the reference for the NumPy fallback")
    rng = np.random.default_rng(1)
    for (h, w), (nh, nw) in [((48, 80), (32, 53)), ((37, 29), (224, 175)),
                             ((240, 320), (224, 299)), ((5, 7), (3, 4))]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = video.resize_frame(img, nh, nw, "cv2").astype(int)
        ours = video.resize_frame(img, nh, nw, "numpy").astype(int)
        assert ours.shape == ref.shape == (nh, nw, 3)
        assert np.abs(ours - ref).max() <= 1
        assert np.mean(ours == ref) > 0.8
    flat = np.full((10, 16, 3), 77, np.uint8)
    assert (video.resize_frame(flat, 7, 11, "numpy") == 77).all()
    with pytest.raises(ValueError, match="resize backend"):
        video.resize_frame(flat, 7, 11, "pillow")


# ---------------------------------------------------------------------------- decoding

@pytest.mark.parametrize("name", [v[0] for v in VIDEOS])
@pytest.mark.parametrize("origin", video.ORIGINS)
def test_decoded_frames_are_the_sampled_ones(videos, name, origin):
    path, n, h, w = videos[name]
    assert video.count_frames(path) == n
    for clip_len, interval, clips, uniform in [(8, 2, 3, False), (32, 2, 4, False),
                                               (6, 1, 1, True)]:
        got, inds = video.read_clips(path, clip_len, interval, clips, uniform, short_side=None,
                                     origin=origin)
        expected = video.frame_indices(n, clip_len, interval, clips, uniform, origin)
        np.testing.assert_array_equal(inds, expected)
        assert got.shape == (clips, clip_len, h, w, 3) and got.dtype == np.uint8
        numbers = [[frame_number(f) for f in clip] for clip in got]
        assert numbers == inds.tolist()


def test_short_video_loops(videos):
    path, n, _, _ = videos["short.mp4"]
    _, inds = video.read_clips(path, 8, 2, 2, short_side=None, origin="official")
    np.testing.assert_array_equal(inds, np.tile(np.arange(0, 16, 2) % n, (2, 1)))


def test_load_video_views(videos):
    path, _, h, w = videos["portrait.mp4"]  # 64 x 40: three crops stacked vertically
    views = video.load_video(path, clip_len=4, frame_interval=2, num_clips=2, short_side=32,
                             crop_size=32, num_crops=3, origin="mmaction2")
    assert views.shape == (6, 4, 32, 32, 3) and views.dtype == np.float32
    raw = video.load_video(path, clip_len=4, frame_interval=2, num_clips=2, short_side=32,
                           crop_size=32, num_crops=3, origin="mmaction2", normalize=False)
    np.testing.assert_allclose(views, (raw - np.float32(video.MEAN)) / np.float32(video.STD),
                               rtol=1e-6, atol=1e-6)
    assert raw.min() >= 0 and raw.max() <= 255
    # crop-major: views 0-1 are the top crop of clips 0-1, views 2-3 the bottom crop.
    clips, _ = video.read_clips(path, 4, 2, 2, short_side=32, origin="mmaction2")
    assert clips.shape[2:4] == video.resized_shape(h, w, 32) == (51, 32)
    np.testing.assert_array_equal(raw[1], clips[1, :, 0:32])
    np.testing.assert_array_equal(raw[3], clips[1, :, 18:50])
    np.testing.assert_array_equal(raw[5], clips[1, :, 9:41])


def test_pipeline_matches_mmaction2_end_to_end(videos):
    av = _av()
    loading, processing, formatting = _mmaction_transforms()
    for name, (path, n, _, _) in videos.items():
        for clip_len, interval, clips, short, crop, crops in [(8, 2, 3, 32, 32, 3),
                                                              (4, 3, 2, 24, 20, 1)]:
            # mmaction2's PyAVInit reads the container's frame count (0 for the .mkv, where
            # decord would count frames): give it the true count.
            r = {"filename": path, "start_index": 0, "modality": "RGB", "total_frames": n}
            r["video_reader"] = av.open(path)
            r = loading.SampleFrames(clip_len, interval, clips, test_mode=True)(r)
            r = loading.PyAVDecode()(r)
            r = processing.Resize(scale=(-1, short))(r)
            r = (processing.ThreeCrop(crop) if crops == 3 else processing.CenterCrop(crop))(r)
            ref = formatting.FormatShape("NCTHW")(r)["imgs"].transpose(0, 2, 3, 4, 1)
            ours = video.load_video(path, clip_len, interval, clips, False, short, crop, crops,
                                    origin="mmaction2", normalize=False, resize_backend="cv2")
            np.testing.assert_array_equal(ours, ref.astype(np.float32), err_msg=name)


def test_unreadable_files_name_the_file(tmp_path):
    av = _av()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(video.VideoReadError, match="notes.mp4: not a readable video"):
        video.load_video(text)
    with pytest.raises(video.VideoReadError, match="missing.mp4: no such file"):
        video.load_video(tmp_path / "missing.mp4")
    with pytest.raises(video.VideoReadError, match="is a directory"):
        video.load_video(tmp_path)
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(video.VideoReadError, match="tone.wav: holds no video stream"):
        video.load_video(audio)


def test_missing_pyav_is_a_clear_error(monkeypatch, videos):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` fail
    with pytest.raises(ImportError, match="pip install av"):
        video.load_video(videos["short.mp4"][0])


def test_videoswin_imports_without_pyav():
    code = ("import sys; sys.modules['av'] = None; sys.modules['cv2'] = None; "
            "import videoswin, videoswin.video, videoswin.labels; print('ok')")
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "torch"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


# -------------------------------------------------------------------------- prediction

def test_average_views_softmax_per_view_then_mean():
    logits = np.array([[0.0, 0.0, np.log(2.0)], [np.log(3.0), 0.0, 0.0]], np.float32)
    # view 0: (1, 1, 2) / 4; view 1: (3, 1, 1) / 5
    expected = (np.array([0.25, 0.25, 0.5]) + np.array([0.6, 0.2, 0.2])) / 2
    np.testing.assert_allclose(video.average_views(logits), expected, rtol=1e-6)
    # 'score' averages logits first: mean (log 3 / 2, 0, log 2 / 2) -> softmax
    mean = np.array([np.log(3.0) / 2, 0.0, np.log(2.0) / 2])
    np.testing.assert_allclose(video.average_views(logits, "score"),
                               np.exp(mean) / np.exp(mean).sum(), rtol=1e-6)
    probs = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    np.testing.assert_allclose(video.average_views(probs, probabilities=True), [0.4, 0.6])
    with pytest.raises(ValueError, match="average_clips"):
        video.average_views(logits, "max")


def test_top_classes():
    probs = np.array([0.1, 0.4, 0.1, 0.4])
    assert video.top_classes(probs, None, 3) == [(1, 0.4), (3, 0.4), (0, 0.1)]
    assert video.top_classes(probs, list("abcd"), 2) == [("b", 0.4), ("d", 0.4)]
    with pytest.raises(ValueError, match="3 labels for a model with 4 classes"):
        video.top_classes(probs, list("abc"))


def tiny_classifier(num_classes=400):
    import keras

    import videoswin

    keras.utils.set_random_seed(0)
    backbone = videoswin.VideoSwinBackbone(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 4, 4),
        input_shape=(None, None, None, 3))
    return videoswin.VideoSwinClassifier(backbone, num_classes)


TINY_PIPELINE = dict(clip_len=4, frame_interval=2, num_clips=2, short_side=32, crop_size=32,
                     num_crops=3)


def test_predict_video_follows_the_protocol(videos):
    model = tiny_classifier()
    path = videos["landscape.mp4"][0]
    names = label_maps.load_labels("kinetics400")
    top = video.predict_video(model, path, names, top_k=4, origin="mmaction2", **TINY_PIPELINE)
    views = video.load_video(path, origin="mmaction2", **TINY_PIPELINE)
    logits = np.asarray(model.predict(views, batch_size=1, verbose=0))
    assert logits.shape == (6, 400)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).mean(0)
    order = np.argsort(-probs)[:4]
    assert [label for label, _ in top] == [names[i] for i in order]
    np.testing.assert_allclose([p for _, p in top], probs[order], rtol=1e-5)


class StubModel:
    """Duck-typed classifier: records its inputs, returns fixed per-view outputs."""

    def __init__(self, outputs, input_shape=(None, None, None, None, 3), normalises=False,
                 softmax=False):
        self.outputs = np.asarray(outputs, np.float32)
        self.input_shape = input_shape
        self.backbone = type("Backbone", (), {"include_preprocessing": normalises})()
        self.head = type("Dense", (), {"activation": video.softmax if softmax else None})()
        self.seen = []

    def get_layer(self, name):
        assert name == "fc_cls"
        return self.head

    def predict(self, x, batch_size=None, verbose=0):
        self.seen.append(np.array(x))
        return self.outputs[: len(x)]


def test_predict_video_feeds_raw_pixels_to_in_model_normalisation(videos):
    path = videos["odd.mkv"][0]
    outputs = np.zeros((6, 3))
    plain, inside = StubModel(outputs), StubModel(outputs, normalises=True)
    video.video_probabilities(plain, path, **TINY_PIPELINE)
    video.video_probabilities(inside, path, **TINY_PIPELINE)
    np.testing.assert_allclose(plain.seen[0], (inside.seen[0] - np.float32(video.MEAN))
                               / np.float32(video.STD), rtol=1e-6, atol=1e-6)
    assert inside.seen[0].min() >= 0 and inside.seen[0].max() > 100


def test_predict_video_takes_softmax_heads_as_probabilities(videos):
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]] * 3)
    model = StubModel(probs, softmax=True)
    top = video.predict_video(model, videos["odd.mkv"][0], ["a", "b", "c"], top_k=3,
                              **TINY_PIPELINE)
    assert [label for label, _ in top] == ["a", "c", "b"]
    np.testing.assert_allclose([p for _, p in top], [0.4, 0.35, 0.25], rtol=1e-6)


def test_predict_video_checks_the_models_clip_shape(videos):
    model = StubModel(np.zeros((6, 3)), input_shape=(None, 8, 32, 32, 3))
    with pytest.raises(ValueError, match=r"\(8, 32, 32\).*\(4, 32, 32\)"):
        video.predict_video(model, videos["short.mp4"][0], **TINY_PIPELINE)
    with pytest.raises(TypeError, match="unknown pipeline settings"):
        video.predict_video(model, videos["short.mp4"][0], clip_length=8)


# ------------------------------------------------------------------------------ labels

def test_packaged_label_maps():
    from videoswin.core.datasets import DATASETS

    for dataset, count, first, last in [("kinetics400", 400, "abseiling", "zumba"),
                                        ("kinetics700", 700, "abseiling", "zumba"),
                                        ("sthv2", 174, "Approaching something with your camera",
                                         "Wiping something off of something")]:
        names = label_maps.load_labels(dataset)
        assert len(names) == len(set(names)) == count == DATASETS[dataset].num_classes
        assert (names[0], names[-1]) == (first, last)
        assert not any(n.startswith("#") or n != n.strip() or "_" in n for n in names)
    k400 = label_maps.load_labels("K400")
    assert k400[208:210] == ["passing American football (in game)",
                             "passing American football (not in game)"]
    k700 = label_maps.load_labels("kinetics-700")
    assert "massaging person's head" in k700 and "backflip (human)" in k700
    # Kinetics-700 keeps 378 Kinetics-400 names; e.g. 'hugging' became 'hugging (not baby)'.
    assert len(set(k400) & set(k700)) == 378
    assert "hugging" in k400 and "hugging" not in k700 and "hugging (not baby)" in k700


def test_label_map_lookup():
    from videoswin.core import datasets

    assert datasets.canonical("SSv2") == "sthv2"
    assert datasets.for_num_classes(174) == "sthv2"
    assert datasets.for_num_classes(10) is None
    assert label_maps.has_labels("kinetics600") and len(label_maps.load_labels("k600")) == 600
    with pytest.raises(ValueError, match="unknown dataset 'ucf101'"):
        label_maps.load_labels("ucf101")
    assert video.default_pipeline("ssv2")["uniform_sampling"] is True
    assert video.default_pipeline("kinetics400")["num_clips"] == 4


def test_read_label_file(tmp_path):
    txt = tmp_path / "classes.txt"
    txt.write_text("# my classes\ncat\n\n dog \n")
    assert label_maps.read_label_file(txt) == ["cat", "dog"]
    as_list = tmp_path / "classes.json"
    as_list.write_text('["cat", "dog"]')
    assert label_maps.read_label_file(as_list) == ["cat", "dog"]
    as_dict = tmp_path / "id2label.json"
    as_dict.write_text('{"1": "dog", "0": "cat"}')
    assert label_maps.read_label_file(as_dict) == ["cat", "dog"]
    gap = tmp_path / "gap.json"
    gap.write_text('{"0": "cat", "2": "dog"}')
    with pytest.raises(ValueError, match="gap.json: class indices must be 0..1"):
        label_maps.read_label_file(gap)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.txt holds no class names"):
        label_maps.read_label_file(empty)
    with pytest.raises(ValueError, match="cannot read label file"):
        label_maps.read_label_file(tmp_path / "absent.txt")


def test_extreme_aspect_ratio_is_refused_before_it_asks_for_gigabytes(tmp_path):
    # 2 x 2000 pixels: the short side resized to 224 makes the long side 224,000 pixels
    # (50 million per frame, 150 MB each): refused, naming the bound.
    path = write_video(tmp_path / "thin.mkv", np.full((3, 2, 2000, 3), 128, np.uint8),
                       codec="ffv1")
    with pytest.raises(video.VideoReadError, match=r"2000x2 frame becomes 224000x224.*"
                                                   r"MAX_FRAME_PIXELS"):
        video.read_clips(path, clip_len=2, frame_interval=1, num_clips=1)
    # the same frames pass without the resize
    clips, _ = video.read_clips(path, clip_len=2, frame_interval=1, num_clips=1,
                                short_side=None)
    assert clips.shape == (1, 2, 2, 2000, 3)
