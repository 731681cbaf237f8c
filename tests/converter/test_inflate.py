"""Inflating 2D (image) Swin checkpoints into Video Swin backbones, against mmaction2's own
`SwinTransformer3D(pretrained=PATH, pretrained2d=True).init_weights()` (the oracle).

The 2D files are random (`converter.synthetic2d`: every parameter distinct) with the official
release's keys, small widths and depths. Cases: a window-7 tiny-like source into a 3D window
of the same spatial size, a window-12 base-like source into a 7x7 one (bicubic resize), and
for the weights alone also an upsampling and a non-square resize.
"""

import json
import os
import textwrap
import warnings

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from converter import inflate, layouts, layouts2d, mapping, synthetic2d
from converter import checkpoint as ckpt
from converter.config import load_spec
from converter.convert import _inflation_source, convert, rerun_parity
from tests import oracle
from tests.converter.support import write_config

BACKEND = keras.backend.backend()
# Odd clips: patch and window padding, clamped windows.
CLIPS = {"tiny_w7": (3, 33, 45), "base_w12": (5, 29, 37)}

# name: (embed_dim, depths, num_heads, 2D window, 3D window)
CASES = {
    # Four stages (mmaction2 moves `norm` to `norm3` only then); two blocks where the clips
    # below shift windows (stage 0), one elsewhere: fewer ops for JAX to compile.
    "tiny_w7": (16, (2, 1, 1, 1), (1, 2, 2, 4), 7, (2, 7, 7)),
    "base_w12": (32, (2, 1, 1, 1), (1, 2, 4, 8), 12, (2, 7, 7)),
    "w7_to_w12": (16, (2, 2, 2, 2), (1, 2, 2, 4), 7, (2, 12, 12)),
    "w7_to_5x7": (16, (1, 1, 1, 1), (1, 2, 2, 4), 7, (3, 5, 7)),
}


class Case:
    """A 2D checkpoint on disk, a config for its 3D backbone, and mmaction2's inflation."""

    def __init__(self, name, folder, seed=3):
        embed_dim, depths, heads, window2d, window3d = CASES[name]
        self.name, self.folder = name, folder
        self.state = synthetic2d.random_state(embed_dim, depths, heads, window2d, seed=seed,
                                              num_classes=5)
        self.path = synthetic2d.save(self.state, folder / f"{name}_2d.pth")
        self.config = write_config(folder / f"swin_{name}.py", embed_dim=embed_dim,
                                   depths=depths, num_heads=heads, window_size=window3d)
        self.spec = load_spec(self.config)
        self._oracle = None

    @property
    def oracle(self):
        """mmaction2's backbone after `init_weights()` inflated the file (eval mode)."""
        if self._oracle is None:
            spec = self.spec
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                backbone = oracle.load_swin_module().SwinTransformer3D(
                    arch=dict(embed_dims=spec.embed_dim, depths=list(spec.depths),
                              num_heads=list(spec.num_heads)),
                    pretrained=str(self.path), pretrained2d=True,
                    patch_size=tuple(spec.patch_size), window_size=tuple(spec.window_size),
                    drop_path_rate=0.0, out_indices=(len(spec.depths) - 1,))
                inflate._quietly(backbone.init_weights)
            backbone.eval()            # its train() override returns None
            self._oracle = backbone
        return self._oracle

    def features(self, clips):
        with torch.no_grad():
            out = self.oracle(torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous())
        return out.permute(0, 2, 3, 4, 1).numpy()


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inflate")
    made = {}

    def get(name):
        if name not in made:
            made[name] = Case(name, folder)
        return made[name]

    return get


@pytest.fixture(scope="module")
def converted(cases, tmp_path_factory):
    """name -> (case, output folder, manifest) of one conversion per case (no parity)."""
    done = {}

    def get(name):
        if name not in done:
            case = cases(name)
            out = tmp_path_factory.mktemp("converted") / name
            manifest = convert(case.config, output_dir=str(out), backends=[], quiet=True,
                               inflate_2d=str(case.path))
            done[name] = case, out, manifest
        return done[name]

    return get


# -- the math, against torch and mmaction2 (no Keras) ------------------------------------------

@pytest.mark.backend_independent
def test_bicubic_resize_is_torchs():
    rng = np.random.default_rng(0)
    for side in (1, 2, 5, 13, 23):
        for size in ((13, 13), (23, 23), (9, 13), (25, 25), (3, 5), (1, 1)):
            grid = rng.standard_normal((4, side, side)).astype(np.float32) * 3
            want = F.interpolate(torch.from_numpy(grid)[None], size=size, mode="bicubic",
                                 align_corners=False)[0].numpy()
            got = inflate.bicubic_resize(grid, size)
            assert got.dtype == np.float32 and got.shape == want.shape
            # float32 rounding of torch's own polynomial: 3.4e-7 of the input's scale with
            # NumPy 2, 1.4e-6 with NumPy 1.23.5 (the declared floor)
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(grid).max(),
                                       err_msg=f"{side} -> {size}")
    same = rng.standard_normal((2, 7, 7)).astype(np.float32)
    np.testing.assert_array_equal(inflate.bicubic_resize(same, (7, 7)), same)


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", sorted(CASES))
def test_inflated_weights_are_mmaction2s(cases, name):
    case = cases(name)
    result = inflate.load(str(case.path), case.spec)
    theirs = layouts.canonicalize({"backbone." + k: v.numpy() for k, v in
                                   case.oracle.state_dict().items()}, layouts.MMACTION2)
    ours = result.loaded.state
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
        if key.endswith("relative_position_bias_table") and result.account.resized:
            np.testing.assert_allclose(ours[key], value, rtol=0, atol=2e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(ours[key], value, err_msg=key)
    # The account: every tensor of the file used once or dropped with its reason.
    account = result.account
    assert not set(account.used) & set(account.dropped)
    assert set(account.used) | set(account.dropped) == set(case.state)
    blocks, shifted = sum(case.spec.depths), sum(d // 2 for d in case.spec.depths)
    dropped = {"attn_mask": shifted, "head": 2, "relative_position_index": blocks}
    assert account.summary()["tensors_dropped"] == {k: n for k, n in dropped.items() if n}
    assert len(set(account.used.values())) == len(account.used) == len(case.state) - \
        blocks - shifted - 2
    resized = account.summary()["bias_tables_resized"]
    assert resized == (0 if name == "tiny_w7" else blocks)


@pytest.mark.backend_independent
def test_timm_keys_are_the_official_ones_shifted():
    official = {"layers.0.downsample.reduction.weight": 1, "layers.2.downsample.norm.bias": 2,
                "layers.3.blocks.1.mlp.fc2.weight": 3, "head.weight": 4, "norm.bias": 5}
    timm = layouts2d.export(official, layouts2d.TIMM_2D)
    assert timm == {"layers.1.downsample.reduction.weight": 1,
                    "layers.3.downsample.norm.bias": 2, "layers.3.blocks.1.mlp.fc2.weight": 3,
                    "head.fc.weight": 4, "norm.bias": 5}
    assert layouts2d.detect(timm) is layouts2d.TIMM_2D
    assert layouts2d.detect(official) is layouts2d.OFFICIAL_2D
    headless = {k: v for k, v in timm.items() if not k.startswith("head")}
    assert layouts2d.detect(headless) is layouts2d.TIMM_2D
    assert layouts2d.to_canonical(timm)[0] == official


# -- the Keras backbone on this backend ------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny_w7", "base_w12"])
def test_inflated_backbone_features_are_mmaction2s(converted, name):
    case, out, manifest = converted(name)
    stem = case.spec.name
    assert sorted(os.listdir(out)) == sorted(
        [f"{stem}_backbone.keras", f"{stem}_backbone.weights.h5", "manifest.json"])
    on_disk = json.loads((out / "manifest.json").read_text())
    source = on_disk["source_checkpoint"]
    assert source["inflated_from_2d"] is True and source["layout_2d"] == "swin2d-official"
    assert source["name"] == os.path.basename(case.path) and source["crc32"] == "verified"
    assert on_disk["layout"] == "swin2d-official" and on_disk["with_head"] is False
    assert on_disk["inflation"]["bias_table_resize"] == (
        [] if name == "tiny_w7" else ["23x23 -> 13x13"])
    assert on_disk["coverage"]["parameters_assigned"] == on_disk["backbone_params"] == sum(
        p.numel() for p in case.oracle.parameters())

    model = keras.saving.load_model(out / f"{stem}_backbone.keras")
    clips = np.random.default_rng(7).standard_normal((2, *CLIPS[name], 3)).astype(np.float32)
    got, want = _features(model, clips), case.features(clips)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.std(want) > 0.1


def _features(model, clips):
    """The model's output as NumPy: compiled on JAX (eager JAX dispatches op by op)."""
    if BACKEND == "jax":
        import jax

        run = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x)[0])
        return np.asarray(run([v.value for v in model.trainable_variables],
                              [v.value for v in model.non_trainable_variables], clips))
    if BACKEND == "torch":
        with torch.no_grad():
            return keras.ops.convert_to_numpy(model(clips))
    return keras.ops.convert_to_numpy(model(clips))


def test_timm_safetensors_gives_identical_keras_weights(cases, converted, tmp_path):
    case, official_out, _ = converted("tiny_w7")
    timm = synthetic2d.save(case.state, tmp_path / "swin_tiny_timm.safetensors", "swin2d-timm")
    keys = set(ckpt.read_state(timm))
    assert "head.fc.weight" in keys and "layers.0.downsample.norm.weight" not in keys
    assert not any(k.endswith(("relative_position_index", "attn_mask")) for k in keys)
    manifest = convert(case.config, output_dir=str(tmp_path / "out"), backends=[], quiet=True,
                       inflate_2d=timm)
    assert manifest["layout"] == "swin2d-timm"
    assert manifest["inflation"]["tensors_dropped"] == {"head": 2}
    stem = case.spec.name
    ours = keras.saving.load_model(tmp_path / "out" / f"{stem}_backbone.keras")
    theirs = keras.saving.load_model(official_out / f"{stem}_backbone.keras")
    assert len(ours.weights) == len(theirs.weights) == 80
    for a, b in zip(ours.weights, theirs.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b), err_msg=a.path)


def test_wrong_width_or_depth_names_keys_and_shapes(cases, tmp_path):
    case = cases("tiny_w7")
    out = tmp_path / "out"
    wider = write_config(tmp_path / "wider.py", embed_dim=32, depths=(2, 1, 1, 1),
                         window_size=(2, 7, 7))
    with pytest.raises(mapping.MappingError) as err:
        convert(wider, output_dir=str(out), backends=[], quiet=True, inflate_2d=str(case.path))
    message = str(err.value)
    assert "2D checkpoint" in message and "shape mismatches" in message
    assert "backbone.patch_embed.proj.weight: checkpoint 16x3x2x4x4" in message
    assert "patch_embed/proj/kernel 2x4x4x3x32" in message
    deeper = write_config(tmp_path / "deeper.py", depths=(2, 1, 2, 1), window_size=(2, 7, 7))
    with pytest.raises(mapping.MappingError, match=r"layers_2/blocks_1/norm1/gamma \(64\)"):
        convert(deeper, output_dir=str(out), backends=[], quiet=True, inflate_2d=str(case.path))
    assert not out.exists() or not [p for p in os.listdir(out) if not p.startswith(".")]


# -- files, configs and the command line (plumbing: the torch pass only) ---------------------

@pytest.mark.backend_independent
def test_unusable_files_are_refused_by_name(cases, tmp_path):
    import argparse

    case = cases("tiny_w7")
    out = tmp_path / "out"
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": dict(case.state), "args": argparse.Namespace(lr=1)}, pickled)
    video = tmp_path / "video.pth"
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": torch.ones(16, 3, 2, 4, 4)}},
               video)
    nan = dict(case.state, **{"norm.weight": torch.full_like(case.state["norm.weight"],
                                                             float("nan"))})
    nan_path = synthetic2d.save(nan, tmp_path / "nan.pth")
    for path, needle in ((tmp_path / "missing.pth", "does not exist"),
                         (junk, "not a PyTorch checkpoint"),
                         (pickled, "--trust-checkpoint"),
                         (video, "pass it with --checkpoint"),
                         (nan_path, "NaN or Inf values in norm.weight")):
        with pytest.raises(ckpt.CheckpointError, match=needle) as err:
            convert(case.config, output_dir=str(out), backends=[], quiet=True,
                    inflate_2d=str(path))
        assert os.path.basename(str(path)) in str(err.value)
        assert not out.exists() or not [p for p in os.listdir(out) if not p.startswith(".")]


def _pretrained_config(folder, pretrained, pretrained2d=True):
    path = folder / "swin_pretrained.py"
    path.write_text(textwrap.dedent(f"""\
        model = dict(
            type='Recognizer3D',
            backbone=dict(
                type='SwinTransformer3D', arch=dict(embed_dims=16, depths=[2, 1, 1, 1],
                                                    num_heads=[1, 2, 2, 4]),
                pretrained={pretrained!r}, pretrained2d={pretrained2d},
                patch_size=(2, 4, 4), window_size=(2, 7, 7)),
            cls_head=dict(type='I3DHead', in_channels=128, num_classes=7))
        """))
    return str(path)


@pytest.mark.backend_independent
def test_config_pretrained2d_inflates_its_file(cases, tmp_path, monkeypatch):
    case = cases("tiny_w7")
    config = _pretrained_config(tmp_path, str(case.path))
    spec = load_spec(config)
    quiet = lambda message: None                                        # noqa: E731
    assert _inflation_source(config, spec, None, None, None, False, quiet) == \
        (str(case.path), None)
    # A given checkpoint or the --random-weights demo wins over the config's 2D file.
    assert _inflation_source(config, spec, "x.pth", None, None, False, quiet) == (None, None)
    assert _inflation_source(config, spec, None, 0, None, False, quiet) == (None, None)
    off = _pretrained_config(tmp_path, str(case.path), pretrained2d=False)
    assert _inflation_source(off, load_spec(off), None, None, None, False, quiet) == \
        (None, None)
    missing = _pretrained_config(tmp_path, str(tmp_path / "nowhere.pth"))
    with pytest.raises(ckpt.CheckpointError, match="--inflate-2d PATH"):
        _inflation_source(missing, load_spec(missing), None, None, None, False, quiet)
    url = "https://example.invalid/swin_tiny_patch4_window7_224.pth"
    remote = _pretrained_config(tmp_path, url)
    fetched = []
    monkeypatch.setattr(ckpt, "fetch", lambda u, **kw: fetched.append(u) or str(case.path))
    assert _inflation_source(remote, load_spec(remote), None, None, None, False, quiet) == \
        (str(case.path), url)
    assert fetched == [url]

    # End to end: no checkpoint given, the config's 2D file is inflated; then parity can be
    # re-run on the folder from the same 2D file (the inflation check included).
    config = _pretrained_config(tmp_path, str(case.path))
    out = tmp_path / "out"
    manifest = convert(config, output_dir=str(out), backends=[], quiet=True)
    assert manifest["source_checkpoint"]["inflated_from_2d"] and not manifest["with_head"]
    manifest, report = rerun_parity(str(out), str(case.path), backends=[])
    assert manifest["parity"]["inflation_check"]["status"] == "passed"
    assert manifest["parity"]["inflation_check"]["max_abs_diff"] == 0.0


def _cli(*args):
    """`videoswin-convert` run in this process (its own interpreter costs seconds)."""
    from click.testing import CliRunner

    from videoswin_tools.convert import main

    return CliRunner().invoke(main, list(args))


@pytest.mark.backend_independent
def test_cli_inflate_2d(cases, tmp_path):
    case = cases("tiny_w7")
    out = tmp_path / "out"
    result = _cli("--config", case.config, "--inflate-2d", str(case.path), "--checkpoint",
                  str(case.path), "--output-dir", str(out))
    assert result.exit_code == 2 and "--inflate-2d" in result.output
    result = _cli("--config", case.config, "--inflate-2d", str(tmp_path / "none.pth"),
                  "--output-dir", str(out), "--backends", "none")
    assert result.exit_code == 1 and "none.pth" in result.output
    assert not out.exists() or not [p for p in os.listdir(out) if not p.startswith(".")]
    result = _cli("--config", case.config, "--inflate-2d", str(case.path), "--output-dir",
                  str(out), "--backends", "none")
    assert result.exit_code == 0, result.output
    assert "inflated a 2D Swin (swin2d-official)" in result.output
    stem = case.spec.name
    assert sorted(os.listdir(out)) == sorted(
        [f"{stem}_backbone.keras", f"{stem}_backbone.weights.h5", "manifest.json"])
