"""A dataset job, shared by `videoswin-evaluate` and `videoswin-extract` and by both engines.

A job runs one model under one test protocol over the entries of a list. Its two halves:

- `decode_views(path, settings)`: a video file -> its test views as uint8, crop-major (the
  `videoswin.video` pipeline up to the crops). It imports no Keras, so it runs in worker
  processes (local engine) or Ray tasks. Normalisation happens next to the model, as the same
  float32 operations `videoswin.video.make_views` does, so the views are bit-identical.
- `Runner`: holds the model and turns decoded views into per-video outputs (class
  probabilities: softmax per view, averaged; or pooled backbone features).

Batching is deterministic, so that a result never depends on which other videos shared its
forward pass, on where a run was interrupted, or on the engine. The entries are cut, in list
order, into groups of `group_size(V, B)` videos (V views each, B views per forward pass); a
group's views fill fixed slots (video j, view v -> slot j * V + v) padded to a multiple of B
with zeros, and every forward pass has exactly B rows. A video that failed, or whose result
an earlier run already wrote, leaves zeros in its slots. Rows of a forward pass do not mix, so
with the shape and the position fixed each video's output is the same bits every time.
"""

import math
import os
import pickle
from dataclasses import dataclass

import numpy as np

from videoswin import video
from videoswin.core.pipelines import ORIGINS, SAMPLING_KEYS

# The errors a video file is expected to raise (others are named by their type in the row).
VIDEO_ERRORS = (video.VideoReadError, ValueError, OSError, MemoryError)


# ------------------------------------------------------------------------------ protocol

@dataclass(frozen=True)
class Protocol:
    """The test protocol of a job: the sampling settings, origin and view averaging."""

    pipeline: dict
    origin: str = "official"
    average_clips: str = "prob"

    def __post_init__(self):
        unknown = set(self.pipeline) - set(SAMPLING_KEYS)
        if unknown:
            raise ValueError(f"unknown pipeline settings {sorted(unknown)}")
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}; got {self.origin!r}")

    @property
    def views_per_video(self):
        return int(self.pipeline["num_clips"]) * int(self.pipeline["num_crops"])

    @property
    def views(self):
        return f"{self.pipeline['num_clips']}x{self.pipeline['num_crops']}"

    def to_dict(self):
        data = {key: (list(value) if isinstance(value, tuple) else value)
                for key, value in self.pipeline.items()}
        return {"views": self.views, "origin": self.origin,
                "average_clips": self.average_clips, "pipeline": data}


def resolve_protocol(spec, dataset, views=None, origin=None):
    """The protocol `videoswin-predict` uses: the manifest's pipeline and origin (`spec`), else
    the dataset's official pipeline and 'official'; `views` (clips, crops) and `origin`
    override."""
    from videoswin.core import datasets

    test = spec.pipeline if spec is not None else datasets.pipeline_for(dataset)
    pipeline = test.sampling()
    if views:
        pipeline["num_clips"], pipeline["num_crops"] = views
    origin = origin or (spec.origin if spec is not None else "official")
    return Protocol(pipeline, origin, test.average_clips)


# ------------------------------------------------------------------------------ decoding

def decode_views(path, pipeline, origin):
    """uint8 views `(num_crops * num_clips, clip_len, crop, crop, 3)` of the file `path`."""
    p = pipeline
    clips, _ = video.read_clips(path, p["clip_len"], p["frame_interval"], p["num_clips"],
                                p["uniform_sampling"], p["short_side"], origin)
    height, width = clips.shape[2:4]
    size = p["crop_size"]
    crops = [clips[:, :, top:top + size, left:left + size]
             for top, left in video.crop_offsets(height, width, size, p["num_crops"])]
    return np.ascontiguousarray(np.concatenate(crops, axis=0))


def decode_or_error(path, pipeline, origin):
    """`(views, None)` or `(None, reason)`: what a worker sends back. Any error while reading
    one file fails that video only (a long job should not stop at one odd file)."""
    try:
        return decode_views(path, pipeline, origin), None
    except Exception as err:  # noqa: BLE001  (FFmpeg and its bindings raise many types)
        return None, _reason(err, path)


def _reason(err, path):
    text = str(err) or type(err).__name__
    if not isinstance(err, VIDEO_ERRORS):
        text = f"{type(err).__name__}: {text}"
    if isinstance(err, video.VideoReadError) or path in text:
        return text
    return f"{path}: {text}"


def normalise(views, mean, std):
    """float32 views, normalised exactly as `videoswin.video.make_views` does."""
    x = views.astype(np.float32)
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return x


# ------------------------------------------------------------------------------ batching

def group_size(views_per_video, batch_size):
    """Videos per group: the fewest whose views fill whole forward passes, unless that is
    more than four passes' worth of videos; then enough videos for one pass, padded."""
    lcm = views_per_video * batch_size // math.gcd(views_per_video, batch_size)
    least = max(1, math.ceil(batch_size / views_per_video))
    return lcm // views_per_video if lcm // views_per_video <= 4 * least else least


def groups(entries, size):
    return [entries[i:i + size] for i in range(0, len(entries), size)]


# ------------------------------------------------------------------------------ the model

@dataclass
class ModelSpec:
    """What a process needs to build a `Runner` on its own (a Ray actor, say): how to load
    the model and what to compute. Picklable."""

    mode: str                              # "classify" or "features"
    model_ref: str
    protocol: Protocol
    batch_size: int
    stage: str = "last"                    # features: "last" or "all"
    pool: str = "mean"                     # features: mean over views, or "none"
    backend: str = None


class Runner:
    """The model side of a job: decoded views of a group in, one output per video out."""

    def __init__(self, forward, spec, normalize, softmax_head=False):
        self.forward = forward             # float32 (B, T, H, W, 3) -> np.ndarray (B, ...)
        self.spec = spec
        self.normalize = normalize
        self.softmax_head = softmax_head
        self.views = spec.protocol.views_per_video
        self.forward_seconds = 0.0
        self.forward_views = 0

    def run_group(self, decoded, size):
        """`decoded`: {position in group: uint8 views} for the videos to compute; `size`: the
        group's length. Returns {position: output}."""
        import time

        if not decoded:
            return {}
        batch = self.spec.batch_size
        slots = math.ceil(size * self.views / batch) * batch
        pipeline = self.spec.protocol.pipeline
        sample = next(iter(decoded.values()))
        per_view = {}
        for start in range(0, slots, batch):
            rows = [(s, divmod(s, self.views)) for s in range(start, start + batch)]
            if not any(j in decoded for _, (j, _) in rows):
                continue
            x = np.zeros((batch,) + sample.shape[1:], np.uint8)
            for i, (_, (j, v)) in enumerate(rows):
                if j in decoded:
                    x[i] = decoded[j][v]
            x = normalise(x, pipeline["mean"], pipeline["std"]) if self.normalize else \
                x.astype(np.float32)
            began = time.perf_counter()
            out = self.forward(x)
            self.forward_seconds += time.perf_counter() - began
            self.forward_views += batch
            for i, (_, (j, v)) in enumerate(rows):
                if j in decoded:
                    per_view.setdefault(j, {})[v] = out[i]
        return {j: self._combine(np.stack([views[v] for v in range(self.views)]))
                for j, views in per_view.items()}

    def _combine(self, outputs):
        if self.spec.mode == "classify":
            return video.average_views(outputs, self.spec.protocol.average_clips,
                                       probabilities=self.softmax_head)
        return outputs.mean(axis=0) if self.spec.pool == "mean" else outputs


def build_runner(spec, model=None):
    """A `Runner` for `spec`; loads the model unless given (a loaded Keras model)."""
    from videoswin.core.backends import select_backend

    select_backend()
    import keras

    import videoswin.model  # noqa: F401  (registers the classes)
    from videoswin.model import presets

    if model is None:
        model = presets.load(spec.model_ref, prefer_backbone=spec.mode == "features")
    if spec.mode == "classify":
        inner = getattr(model, "backbone", None)
        normalize = not bool(getattr(inner, "include_preprocessing", False))
        return Runner(_predictor(model), spec, normalize, video._ends_in_softmax(model))
    backbone = feature_backbone(keras, model, spec.stage)
    normalize = not bool(getattr(backbone, "include_preprocessing", False))
    predict = _predictor(backbone)

    def forward(x):
        out = predict(x)
        if isinstance(out, dict):          # return_stages: stage_0 .. stage_{n-1}
            parts = [np.asarray(out[f"stage_{i}"]) for i in range(len(out))]
        else:
            parts = [np.asarray(out)]
        return np.concatenate([p.mean(axis=(1, 2, 3)) for p in parts], axis=-1)

    return Runner(forward, spec, normalize)


def feature_backbone(keras, model, stage):
    """The backbone of `model` (a classifier or a backbone), giving every stage's output when
    `stage` is 'all'."""
    backbone = getattr(model, "backbone", model)
    if not hasattr(backbone, "return_stages"):
        raise ValueError("the model is neither a VideoSwinClassifier nor a VideoSwinBackbone")
    if stage == "all" and not backbone.return_stages:
        config = backbone.get_config()
        config["return_stages"] = True
        config["name"] = f"{backbone.name}_stages"
        staged = type(backbone).from_config(config)
        staged.set_weights(backbone.get_weights())
        return staged
    if stage == "last" and backbone.return_stages:
        last = f"stage_{len(backbone.depths) - 1}"
        return keras.Model(backbone.input, backbone.output[last])
    return backbone


def feature_layout(backbone_like, stage):
    """[(name, width)] of the feature vector's parts."""
    backbone = getattr(backbone_like, "backbone", backbone_like)
    widths = [backbone.embed_dim * 2 ** i for i in range(len(backbone.depths))]
    if stage == "last":
        return [(f"stage_{len(widths) - 1}", widths[-1])]
    return [(f"stage_{i}", w) for i, w in enumerate(widths)]


def _predictor(model):
    def forward(x):
        return model.predict_on_batch(x)
    return forward


# ------------------------------------------------------------------------------ helpers

def payload(obj):
    """Bytes for a Ray row (ragged arrays and errors travel pickled)."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unpayload(data):
    return pickle.loads(bytes(data))


def default_workers():
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def run_engine(engine, entries, skip, protocol, spec, group, model, source, workers,
               ray_address=None, ray_actors=1):
    """(results, runner): `(entry, output, error)` per video not in `skip`, from the local
    engine (decoding workers beside `model`) or the Ray pipeline (whose actors load the
    model themselves); `runner` is the local engine's (its timings), else None."""
    if engine == "ray":
        from videoswin_tools import engine_ray

        # what an actor loads: the resolved file when the model was a local path
        spec.model_ref = os.path.abspath(source) if os.path.exists(source) else spec.model_ref
        return engine_ray.run(entries, skip, protocol, spec, group, ray_address,
                              ray_actors), None
    from videoswin_tools import engine_local

    runner = build_runner(spec, model)
    return engine_local.run(entries, skip, protocol, runner, workers, group), runner
