#!/usr/bin/env python
"""Dataset throughput: videoswin-evaluate's local engine against simpler loops and mmaction2.

Writes `--videos` synthetic videos with PyAV (smooth moving gradients, `--size` at `--fps`,
`--seconds` long), then times, on the same files and the same test protocol (origin
mmaction2, Kinetics sampling with `--views` clips x crops of `--clip` frames):

- forward only: the Keras classifier on views decoded beforehand, in the engine's fixed
  batches: the model's own throughput, the ceiling;
- decode only: `videoswin_tools.jobs.decode_views` per video, in this process;
- sequential: `videoswin.video.video_probabilities` per video (decode, then predict);
- local engine, 1 and 2 decoding workers (`videoswin_tools.engine_local`), decoding
  overlapped with inference, views of several videos per forward pass;
- mmaction2: its test pipeline (`PyAVInit`, `SampleFrames`, `PyAVDecode`, `Resize`,
  `ThreeCrop`/`CenterCrop`, `FormatShape`) and its `SwinTransformer3D` (+ a linear head), per
  video, under `torch.no_grad()`.

Weights are random (speed does not depend on them). Prints a Markdown table (videos/s, and
the ratio to the forward-only throughput) and where the time goes.

    KERAS_BACKEND=torch python scripts/benchmark_evaluate.py                       # Swin-T
    KERAS_BACKEND=torch python scripts/benchmark_evaluate.py --arch tiny --videos 4 \\
        --views 1x1 --clip 32 --batch-size 1 --seconds 10 --rounds 2      # BENCHMARKS.md
    KERAS_BACKEND=torch python scripts/benchmark_evaluate.py --quick               # a minute
"""

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction

os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

ARCHS = {"tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
         "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
         "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
         "micro": dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))}


def write_videos(folder, count, size, fps, seconds):
    import av

    width, height = size
    paths = []
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    for i in range(count):
        path = os.path.join(folder, f"video{i:03d}.mp4")
        base, slope, speed = rng.uniform(0, 255, 3), rng.uniform(-120, 120, (2, 3)), \
            rng.uniform(-3, 3, 3)
        with av.open(path, "w") as container:
            stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.bit_rate = 2_000_000
            for t in range(int(fps * seconds)):
                frame = np.clip(base + slope[0] * y + slope[1] * x + speed * t, 0, 255)
                frame = (frame + 20 * np.sin(t / 7 + 9 * x * y)).clip(0, 255).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        paths.append(path)
    return paths


def keras_model(arch, num_classes):
    import videoswin

    backbone = videoswin.VideoSwinBackbone(**ARCHS[arch], input_shape=(None, None, None, 3))
    return videoswin.VideoSwinClassifier(backbone, num_classes)


def mmaction_model(arch, num_classes):
    import torch

    from converter.upstream import swin_module

    spec = ARCHS[arch]
    backbone = swin_module().SwinTransformer3D(
        arch=dict(embed_dims=spec["embed_dim"], depths=list(spec["depths"]),
                  num_heads=list(spec["num_heads"])),
        pretrained=None, patch_size=(2, 4, 4), window_size=(8, 7, 7), drop_path_rate=0.0,
        out_indices=(len(spec["depths"]) - 1,))
    backbone.eval()                      # its train() override returns None: no chaining
    head = torch.nn.Linear(spec["embed_dim"] * 8, num_classes)
    head.eval()
    return backbone, head


def mmaction_video(path, pipeline, num_clips, num_crops):
    from mmaction.datasets.transforms import formatting, loading, processing

    r = loading.PyAVInit()({"filename": path, "start_index": 0, "modality": "RGB"})
    r = loading.SampleFrames(pipeline["clip_len"], pipeline["frame_interval"], num_clips,
                             test_mode=True)(r)
    r = loading.PyAVDecode()(r)
    r = processing.Resize(scale=(-1, pipeline["short_side"]))(r)
    crop = (processing.ThreeCrop(pipeline["crop_size"]) if num_crops == 3
            else processing.CenterCrop(pipeline["crop_size"]))
    x = formatting.FormatShape("NCTHW")(crop(r))["imgs"].astype(np.float32)
    mean = np.array([123.675, 116.28, 103.53], np.float32)[None, :, None, None, None]
    std = np.array([58.395, 57.12, 57.375], np.float32)[None, :, None, None, None]
    return (x - mean) / std


def timed(fn):
    began = time.perf_counter()
    out = fn()
    return time.perf_counter() - began, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--views", default="1x1", help="clips x crops, e.g. 4x3")
    parser.add_argument("--clip", type=int, default=32, help="frames per clip")
    parser.add_argument("--crop", type=int, default=224, help="short side and crop size")
    parser.add_argument("--size", default="340x256", help="video WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", default="1,2", help="worker counts for the local engine")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of every method; the best round of each counts")
    parser.add_argument("--skip-mmaction2", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="micro model, 8 x 112 px clips, 4 videos: checks the script")
    args = parser.parse_args(argv)
    if args.quick:
        args.arch, args.videos, args.clip, args.crop, args.seconds = "micro", 4, 8, 112, 3

    import keras

    from videoswin import video
    from videoswin_tools import datalist, engine_local, jobs

    clips, crops = (int(v) for v in args.views.lower().split("x"))
    pipeline = dict(clip_len=args.clip, frame_interval=2, num_clips=clips,
                    uniform_sampling=False, short_side=args.crop, crop_size=args.crop,
                    num_crops=crops, mean=video.MEAN, std=video.STD)
    protocol = jobs.Protocol(pipeline, "mmaction2", "prob")
    views = protocol.views_per_video
    folder = tempfile.mkdtemp(prefix="videoswin-bench-eval-")
    width, height = (int(v) for v in args.size.split("x"))
    print(f"writing {args.videos} videos ({width}x{height}, {args.fps:g} fps, "
          f"{args.seconds:g} s) to {folder}", file=sys.stderr)
    paths = write_videos(folder, args.videos, (width, height), args.fps, args.seconds)
    entries = datalist.from_paths(paths)

    model = keras_model(args.arch, 400)
    spec = jobs.ModelSpec("classify", "<memory>", protocol, args.batch_size)
    runner = jobs.build_runner(spec, model)
    group = jobs.group_size(views, args.batch_size)
    rows = []

    # decode only, and the decoded views for the forward-only pass
    seconds, decoded = timed(lambda: [jobs.decode_views(p, pipeline, "mmaction2")
                                      for p in paths])
    decode_each = seconds / len(paths)
    runner.run_group({0: decoded[0]}, group)                       # warm-up (jit, caches)
    runner.forward_seconds = runner.forward_views = 0

    def forward_only():
        for start in range(0, len(decoded), group):
            chunk = decoded[start:start + group]
            runner.run_group(dict(enumerate(chunk)), group)

    def sequential():
        for p in paths:
            video.video_probabilities(model, p, batch_size=args.batch_size, origin="mmaction2",
                                      **{k: v for k, v in pipeline.items()})

    shares = {}

    def engine(workers):
        runner.forward_seconds = runner.forward_views = 0
        began = time.perf_counter()
        list(engine_local.run(entries, set(), protocol, runner, workers, group))
        wall = time.perf_counter() - began
        # The share of the engine's wall time spent in forward passes: the load-independent
        # measure of the overlap (1.0: decoding entirely hidden behind inference).
        shares.setdefault(workers, []).append(runner.forward_seconds / wall)
        print(f"  {workers} worker(s): {wall:.1f}s, of which forward "
              f"{runner.forward_seconds:.1f}s", file=sys.stderr)

    # Rounds of every method in turn; each method's best round counts (on a shared machine
    # the others' load comes and goes).
    methods = [("forward only (views decoded beforehand)", forward_only),
               ("sequential: decode, then predict (video_probabilities)", sequential)]
    methods += [(f"local engine, {w} worker(s)", (lambda w=w: engine(w)))
                for w in (int(w) for w in args.workers.split(","))]
    best = {}
    for round_ in range(args.rounds):
        for name, fn in methods:
            seconds, _ = timed(fn)
            best[name] = min(best.get(name, seconds), seconds)
            print(f"round {round_ + 1}: {name}: {seconds:.1f}s", file=sys.stderr)
    forward_rate = len(paths) / best[methods[0][0]]
    forward_per_view = best[methods[0][0]] / (len(paths) * views)
    rows.append((methods[0][0], forward_rate))
    rows.append(("decode only (1 process)", 1 / decode_each))
    rows += [(name, len(paths) / best[name]) for name, _ in methods[1:]]

    mm_decode = mm_forward = None
    if not args.skip_mmaction2:
        import torch

        backbone, head = mmaction_model(args.arch, 400)
        mm_decode = mm_forward = 0.0

        def classify(x):
            return head(backbone(torch.from_numpy(x)).mean((2, 3, 4))).softmax(1).mean(0)

        with torch.no_grad():
            classify(mmaction_video(paths[0], pipeline, clips, crops))      # warm-up
            for p in paths:
                s, x = timed(lambda: mmaction_video(p, pipeline, clips, crops))
                mm_decode += s
                s, _ = timed(lambda: classify(x))
                mm_forward += s
        rows.append(("mmaction2: its pipeline, then its model", len(paths) /
                     (mm_decode + mm_forward)))

    print(f"\n{args.arch}, {args.videos} videos of {width}x{height} x "
          f"{int(args.fps * args.seconds)} frames, views {clips}x{crops} of "
          f"{args.clip}x{args.crop}x{args.crop}, batch {args.batch_size} views, "
          f"keras {keras.__version__} on {keras.backend.backend()}, "
          f"{os.cpu_count()} CPUs\n")
    print("| method | videos/s | vs forward only |")
    print("|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.3f} | {rate / forward_rate:.2f}x |")
    print(f"\nWhere time goes, per video: decode + resize + crops {decode_each:.2f}s "
          f"(one process); forward {forward_per_view * views:.2f}s ({views} views, "
          f"{forward_per_view:.3f}s each)"
          + (f"; mmaction2 pipeline {mm_decode / len(paths):.2f}s, its model "
             f"{mm_forward / len(paths):.2f}s" if mm_decode is not None else "") + ".")
    for workers, values in shares.items():
        print(f"Local engine, {workers} worker(s): forward passes took "
              f"{', '.join(f'{100 * v:.1f}%' for v in values)} of its wall time (per round).")


if __name__ == "__main__":
    main()
