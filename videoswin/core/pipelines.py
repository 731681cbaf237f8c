"""The official test-time pipelines and input normalisation, as data."""

from dataclasses import asdict, dataclass, replace

# ImageNet statistics on the 0-255 RGB scale: the same in every published Video Swin model.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

# Whose clip-sampling rule a model was evaluated with (see `videoswin.video`).
ORIGINS = ("official", "mmaction2")
# How the views' outputs become one prediction: softmax per view then mean, or the reverse.
AVERAGE_CLIPS = ("prob", "score")


@dataclass(frozen=True)
class TestPipeline:
    """Test-time sampling and preprocessing of one model (defaults: Kinetics, 4 x 3 views)."""

    __test__ = False                    # not a pytest class, despite the name

    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 4
    uniform_sampling: bool = False      # SSv2: UniformSample instead of SampleFrames
    short_side: int = 224               # Resize scale=(-1, 224)
    crop_size: int = 224
    num_crops: int = 3                  # ThreeCrop=3, CenterCrop=1
    mean: tuple = MEAN
    std: tuple = STD
    average_clips: str = "prob"

    @property
    def views(self):
        """'frames x clips x crops', e.g. '32x4x3'."""
        return f"{self.clip_len}x{self.num_clips}x{self.num_crops}"

    def sampling(self):
        """The settings `videoswin.video.load_video` takes (all but `average_clips`)."""
        data = asdict(self)
        data.pop("average_clips")
        return data

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, data):
        """A pipeline from a (manifest's) dict; unknown keys are a `ValueError`."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown test pipeline keys {unknown}")
        for key in ("mean", "std"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)


KINETICS = TestPipeline()
# Something-Something V2: one clip of 32 frames sampled uniformly over the video, 3 crops.
SSV2 = TestPipeline(frame_interval=1, num_clips=1, uniform_sampling=True)
SAMPLING_KEYS = tuple(k for k in TestPipeline.__dataclass_fields__ if k != "average_clips")
