"""converter.config: our configs, the real mmaction2 1.x files, official 0.x fixtures, errors."""

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from converter.config import CONFIG_ROOT, ConfigError, list_configs, load_spec
from tests.converter.support import write_config

pytestmark = pytest.mark.backend_independent

FIXTURES_0X = (Path(__file__).parent / "fixtures" / "upstream_0x" / "configs" / "recognition"
               / "swin")
MMACTION_SPEC = importlib.util.find_spec("mmaction")
WHEEL_SWIN = (Path(MMACTION_SPEC.submodule_search_locations[0]) / ".mim" / "configs"
              / "recognition" / "swin") if MMACTION_SPEC else None
needs_wheel = pytest.mark.skipif(WHEEL_SWIN is None or not WHEEL_SWIN.is_dir(),
                                 reason="mmaction2 (with its .mim configs) is not installed")

OFFICIAL_URL = "https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
MMACTION2_URL = "https://download.openmmlab.com/mmaction/v1.0/recognition/swin/"
K400_VIEWS = dict(clip_len=32, frame_interval=2, num_clips=4, uniform_sampling=False)
SSV2_VIEWS = dict(clip_len=32, frame_interval=1, num_clips=1, uniform_sampling=True)

# name: arch, embed, window, classes, drop_path, origin, dataset, pretrain, top1, top5, views
EXPECTED = {
    "swin_tiny_patch244_window877_kinetics400_1k":
        ("tiny", 96, (8, 7, 7), 400, 0.1,
         "official", "kinetics400", "ImageNet-1K", 78.8, 93.6, "32x4x3"),
    "swin_small_patch244_window877_kinetics400_1k":
        ("small", 96, (8, 7, 7), 400, 0.1,
         "official", "kinetics400", "ImageNet-1K", 80.6, 94.5, "32x4x3"),
    "swin_base_patch244_window877_kinetics400_1k":
        ("base", 128, (8, 7, 7), 400, 0.3,
         "official", "kinetics400", "ImageNet-1K", 80.6, 94.6, "32x4x3"),
    "swin_base_patch244_window877_kinetics400_22k":
        ("base", 128, (8, 7, 7), 400, 0.2,
         "official", "kinetics400", "ImageNet-22K", 82.7, 95.5, "32x4x3"),
    "swin_base_patch244_window877_kinetics600_22k":
        ("base", 128, (8, 7, 7), 600, 0.2,
         "official", "kinetics600", "ImageNet-22K", 84.0, 96.5, "32x4x3"),
    "swin_base_patch244_window1677_sthv2":
        ("base", 128, (16, 7, 7), 174, 0.4,
         "official", "sthv2", "Kinetics-400", 69.6, 92.7, "32x1x3"),
    "swin_base_patch244_window1677_kinetics400_22k":
        ("base", 128, (16, 7, 7), 400, 0.2,
         "official", "kinetics400", "ImageNet-22K", None, None, None),
    "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb":
        ("tiny", 96, (8, 7, 7), 400, 0.1,
         "mmaction2", "kinetics400", "ImageNet-1K", 78.9, 93.77, "32x4x3"),
    "swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb":
        ("small", 96, (8, 7, 7), 400, 0.2,
         "mmaction2", "kinetics400", "ImageNet-1K", 80.54, 94.46, "32x4x3"),
    "swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb":
        ("base", 128, (8, 7, 7), 400, 0.3,
         "mmaction2", "kinetics400", "ImageNet-1K", 80.57, 94.49, "32x4x3"),
    "swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb":
        ("large", 192, (8, 7, 7), 400, 0.4,
         "mmaction2", "kinetics400", "ImageNet-22K", 83.46, 95.91, "32x4x3"),
    "swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb":
        ("large", 192, (8, 7, 7), 700, 0.4,
         "mmaction2", "kinetics700", "ImageNet-22K", 75.92, 92.72, "32x4x3"),
    "swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb":
        ("small", 96, (8, 7, 7), 710, 0.2,
         "mmaction2", "kinetics710", "ImageNet-1K", 76.9, 92.96, "32x4x3"),
}
DEPTHS = {"tiny": (2, 2, 6, 2), "small": (2, 2, 18, 2), "base": (2, 2, 18, 2),
          "large": (2, 2, 18, 2)}
HEADS = {"tiny": (3, 6, 12, 24), "small": (3, 6, 12, 24), "base": (4, 8, 16, 32),
         "large": (6, 12, 24, 48)}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


SWIN = "model = dict(backbone=dict(type='SwinTransformer3D'))\n"


def swin(**backbone):
    """A config text with a SwinTransformer3D backbone holding `backbone`'s options."""
    options = "".join(f", {k}={v!r}" for k, v in backbone.items())
    return f"model = dict(backbone=dict(type='SwinTransformer3D'{options}))\n"


# -- our configs ---------------------------------------------------------------------------

def test_list_configs_is_the_published_set_sorted_without_bases():
    paths = list_configs()
    assert paths == sorted(paths)
    assert {Path(p).stem for p in paths} == set(EXPECTED)
    assert len(paths) == 13
    assert all("_base_" not in Path(p).parts and Path(p).is_relative_to(CONFIG_ROOT) for p in paths)
    assert CONFIG_ROOT == Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_our_config(name):
    arch, embed, window, classes, dpr, origin, dataset, pretrain, top1, top5, views = EXPECTED[name]
    spec = load_spec(CONFIG_ROOT / "recognition" / "swin" / f"{name}.py")
    assert spec.name == name
    assert (spec.arch_name, spec.embed_dim, spec.depths, spec.num_heads) == (
        arch, embed, DEPTHS[arch], HEADS[arch])
    assert (spec.patch_size, spec.window_size, spec.num_classes) == ((2, 4, 4), window, classes)
    assert spec.drop_path_rate == pytest.approx(dpr)
    assert (spec.mlp_ratio, spec.qkv_bias, spec.qk_scale, spec.patch_norm) == (
        4.0, True, None, True)
    assert (spec.in_channels, spec.head_dropout) == (3, 0.5)
    assert (spec.origin, spec.dataset, spec.pretrain) == (origin, dataset, pretrain)

    p = spec.pipeline
    sampling = SSV2_VIEWS if dataset == "sthv2" else K400_VIEWS
    assert {k: getattr(p, k) for k in sampling} == sampling
    assert (p.short_side, p.crop_size, p.num_crops, p.average_clips) == (224, 224, 3, "prob")
    assert p.mean == (123.675, 116.28, 103.53) and p.std == (58.395, 57.12, 57.375)
    assert spec.clip_shape == (32, 224, 224)

    m = spec.metrics
    assert (m.top1, m.top5, m.views) == (top1, top5, views)
    assert m.source.startswith("https://github.com/")

    ckpt = spec.checkpoint
    assert ckpt.url.endswith("/" + ckpt.filename)
    if origin == "official":
        assert ckpt.filename == f"{name}.pth" and ckpt.url == OFFICIAL_URL + ckpt.filename
    else:  # mmaction2: <name>/<name>_<date>-<sha256 prefix>.pth
        assert ckpt.url.startswith(f"{MMACTION2_URL}{name}/{name}_")
        assert len(ckpt.filename) == len(name) + len("_20220930-241016b2.pth")


def test_our_configs_load_by_stem():
    assert load_spec("swin_base_patch244_window1677_sthv2").num_classes == 174
    assert load_spec("swin_base_patch244_window1677_sthv2.py").window_size == (16, 7, 7)


def test_params_do_not_depend_on_the_clip(tmp_path):
    """A different test clip (8 frames, 112 crop) changes the pipeline, never the model."""
    base = CONFIG_ROOT / "recognition" / "swin" / "swin_base_patch244_window877_kinetics400_22k.py"
    small = write(tmp_path, "short_clip_variant.py", f"""\
        _base_ = '{base}'
        test_pipeline = [
            dict(type='SampleFrames', clip_len=8, frame_interval=1, num_clips=1, test_mode=True),
            dict(type='Resize', scale=(-1, 128)),
            dict(type='CenterCrop', crop_size=112),
        ]
        """)
    a, b = load_spec(base), load_spec(small)
    assert b.clip_shape == (8, 112, 112) and b.pipeline.num_crops == 1
    assert b.pipeline.short_side == 128
    assert a.backbone_kwargs() == b.backbone_kwargs()
    assert b.window_size == (8, 7, 7) and b.num_classes == 400


def test_loading_a_config_does_not_import_keras():
    code = ("import sys; from converter.config import load_spec, list_configs; "
            "[load_spec(p) for p in list_configs()]; "
            "assert 'keras' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# -- real mmaction2 1.x files --------------------------------------------------------------

@needs_wheel
def test_all_wheel_swin_configs_load():
    files = sorted(WHEEL_SWIN.glob("*.py"))
    assert len(files) >= 6
    for f in files:
        spec = load_spec(f)
        assert spec.origin == "mmaction2" and spec.arch_name in DEPTHS, f
        assert spec.checkpoint.url.startswith(MMACTION2_URL + f.stem), f
        assert spec.metrics.top1 is not None and spec.metrics.views == "32x4x3", f


@needs_wheel
@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if "-" in n])
def test_our_mmaction2_configs_match_upstream(name):
    """Ours and the real upstream file (+ its metafile.yml) describe the same model."""
    ours, theirs = load_spec(name), load_spec(WHEEL_SWIN / f"{name}.py")
    skip = {"path", "metrics"}
    assert {k: v for k, v in ours.to_dict().items() if k not in skip} == {
        k: v for k, v in theirs.to_dict().items() if k not in skip}
    assert (ours.metrics.top1, ours.metrics.top5, ours.metrics.views) == (
        theirs.metrics.top1, theirs.metrics.top5, theirs.metrics.views)
    assert theirs.metrics.source.endswith("metafile.yml")


@needs_wheel
def test_wheel_large_k700_numbers():
    spec = load_spec(
        WHEEL_SWIN / "swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb.py")
    assert (spec.embed_dim, spec.num_heads, spec.num_classes) == (192, (6, 12, 24, 48), 700)
    assert spec.drop_path_rate == pytest.approx(0.4)
    assert (spec.dataset, spec.pretrain) == ("kinetics700", "ImageNet-22K")


def test_mmaction2_arch_alias_and_custom_dict(tmp_path):
    alias = load_spec(write(tmp_path, "alias.py", """\
        model = dict(backbone=dict(type='SwinTransformer3D', arch='B'),
                     cls_head=dict(type='I3DHead', in_channels=1024, num_classes=600))
        """))
    assert (alias.arch_name, alias.embed_dim, alias.origin) == ("base", 128, "mmaction2")
    # 1.x class defaults
    assert (alias.patch_size, alias.window_size, alias.patch_norm) == ((2, 4, 4), (8, 7, 7), True)
    assert alias.drop_path_rate == pytest.approx(0.1)

    custom = load_spec(write(tmp_path, "custom.py", """\
        model = dict(backbone=dict(type='mmaction.SwinTransformer3D', window_size=4,
                                   arch=dict(embed_dims=32, depths=[1, 1, 2, 1],
                                             num_heads=[1, 2, 2, 4])))
        """))
    assert (custom.arch_name, custom.embed_dim, custom.depths) == (None, 32, (1, 1, 2, 1))
    assert custom.window_size == (4, 4, 4) and custom.num_classes is None


def test_new_style_lazy_import_config(tmp_path):
    write(tmp_path, "base_model.py", """\
        from mmaction.models import I3DHead, Recognizer3D, SwinTransformer3D
        model = dict(type=Recognizer3D, backbone=dict(type=SwinTransformer3D, arch='tiny'),
                     cls_head=dict(type=I3DHead, in_channels=768, num_classes=400))
        """)
    cfg = write(tmp_path, "lazy_swin_small_kinetics600.py", """\
        from mmengine.config import read_base
        with read_base():
            from .base_model import *
        model.update(dict(backbone=dict(arch='small'), cls_head=dict(num_classes=600)))
        """)
    # New-style configs import their bases and types: the safe reader refuses them, naming
    # the line; trusted, mmengine reads them (without building the imported classes).
    with pytest.raises(ConfigError, match=r"lazy_swin_small_kinetics600\.py: line 2: .*"
                                          r"--trust-config"):
        load_spec(cfg)
    spec = load_spec(cfg, trust=True)
    assert (spec.arch_name, spec.num_classes, spec.dataset) == ("small", 600, "kinetics600")


# -- official 0.x fixtures -----------------------------------------------------------------

@pytest.mark.parametrize("name, arch, window, classes, dpr, views", [
    ("swin_tiny_patch244_window877_kinetics400_1k", "tiny", (8, 7, 7), 400, 0.1, K400_VIEWS),
    ("swin_base_patch244_window877_kinetics400_22k", "base", (8, 7, 7), 400, 0.2, K400_VIEWS),
    ("swin_base_patch244_window877_kinetics600_22k", "base", (8, 7, 7), 600, 0.2, K400_VIEWS),
    ("swin_base_patch244_window1677_sthv2", "base", (16, 7, 7), 174, 0.4, SSV2_VIEWS),
])
def test_official_0x_fixture(name, arch, window, classes, dpr, views):
    spec = load_spec(FIXTURES_0X / f"{name}.py")
    assert spec.origin == "official" and spec.arch_name == arch
    # the base says patch (4, 4, 4); every recipe overrides it
    assert (spec.patch_size, spec.window_size, spec.num_classes) == ((2, 4, 4), window, classes)
    assert spec.drop_path_rate == pytest.approx(dpr) and spec.patch_norm is True
    p = spec.pipeline
    assert {k: getattr(p, k) for k in views} == views
    assert (p.short_side, p.crop_size, p.num_crops, p.average_clips) == (224, 224, 3, "prob")
    assert p.mean == (123.675, 116.28, 103.53)  # from the Normalize step
    # metadata the 0.x file lacks comes from our config of the same name
    ours = load_spec(name)
    assert spec.checkpoint == ours.checkpoint and spec.metrics == ours.metrics
    assert spec.backbone_kwargs() == ours.backbone_kwargs()


def test_official_0x_class_defaults_fill_missing_keys(tmp_path):
    spec = load_spec(write(tmp_path, "bare.py", SWIN))
    assert (spec.embed_dim, spec.depths, spec.num_heads) == (96, (2, 2, 6, 2), (3, 6, 12, 24))
    assert (spec.patch_size, spec.window_size, spec.patch_norm) == ((4, 4, 4), (2, 7, 7), False)
    assert spec.drop_path_rate == pytest.approx(0.2)
    assert spec.num_classes is None and spec.origin == "official"
    assert spec.pipeline == type(spec.pipeline)()  # nothing found: defaults
    assert (spec.checkpoint.url, spec.metrics.top1, spec.dataset) == (None, None, None)


def test_0x_test_cfg_average_clips_and_load_from(tmp_path):
    spec = load_spec(write(tmp_path, "x_kinetics600_22k.py", """\
        model = dict(backbone=dict(type='SwinTransformer3D', embed_dim=32, depths=[1, 1, 2, 1],
                                   num_heads=[1, 2, 2, 4], in_chans=1),
                     cls_head=dict(type='I3DHead', in_channels=256, num_classes=5),
                     test_cfg=dict(average_clips='score'))
        load_from = 'https://example.org/weights/x.pth'
        """))
    assert spec.pipeline.average_clips == "score" and spec.in_channels == 1
    assert spec.checkpoint.url == "https://example.org/weights/x.pth"
    assert spec.checkpoint.filename == "x.pth"
    assert (spec.dataset, spec.pretrain) == ("kinetics600", "ImageNet-22K")


# -- errors --------------------------------------------------------------------------------

def check_error(path, key, *words):
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.key == key and err.path == str(path)
    message = str(err)
    assert str(path) in message and "\n" not in message
    if key:
        assert f"`{key}`" in message
    for word in words:
        assert word in message, message
    return message


def test_error_missing_file(tmp_path):
    check_error(tmp_path / "nope.py", None, "no such config file")
    message = check_error(Path("swin_tiny_patch244_window877_kinetics400_k"), None)
    assert "swin_tiny_patch244_window877_kinetics400_1k" in message  # suggestion


def test_error_syntax(tmp_path):
    check_error(write(tmp_path, "bad.py", "x = 1\nmodel = dict(backbone=dict(\n"), None,
                "syntax error", "line 2")


def test_error_syntax_in_base(tmp_path):
    bad_base = write(tmp_path, "base/broken.py", "model = dict(\n  x=1,,\n)\n")
    check_error(write(tmp_path, "child.py", "_base_ = ['base/broken.py']\n"), None,
                "syntax error", str(bad_base), "line 2")


def test_error_missing_base(tmp_path):
    check_error(write(tmp_path, "child.py", "_base_ = './gone.py'\n"), "_base_", "gone.py")


ERROR_CASES = [  # (config text, key at fault, words the message must hold)
    ("x = 1\n", "model", ("SwinTransformer3D",)),
    ("model = dict(type='Recognizer3D')\n", "model.backbone", ("SwinTransformer3D",)),
    ("model = dict(backbone=dict(type='ResNet3d', depth=50))\n", "model.backbone.type",
     ("ResNet3d",)),
    (swin(arch="huge"), "model.backbone.arch", ("'huge'", "base, large, small, tiny")),
    (swin(arch=dict(embed_dims=96)), "model.backbone.arch", ("embed_dims, depths and num_heads",)),
    (swin(window_sise=(8, 7, 7)), "model.backbone.window_sise", ("did you mean window_size?",)),
    (swin(arch="tiny", embed_dim=96), "model.backbone", ("one style",)),
    (swin(window_size=(8, 7)), "model.backbone.window_size", ("(8, 7)",)),
    (swin(drop_path_rate="high"), "model.backbone.drop_path_rate", ("'high'",)),
    (swin(embed_dim=96, num_heads=[5, 6, 12, 24]), "model.backbone.num_heads", ("stage 0",)),
    (swin(arch="tiny", out_indices=(0, 3)), "model.backbone.out_indices", ("last stage",)),
    (SWIN.replace("))", "), cls_head=dict(type='I3DHead', in_channels=1024, num_classes=4))"),
     "model.cls_head.in_channels", ("768",)),
    (SWIN.replace("))", "), cls_head=dict(type='TSNHead'))"), "model.cls_head.type",
     ("I3DHead",)),
    (SWIN.replace("))", "), cls_head=dict(type='I3DHead'))"), "model.cls_head.num_classes",
     ("positive int",)),
    (SWIN + "origin = 'timm'\n", "origin", ("'timm'",)),
    (SWIN + "metrics = dict(top1=1, acc=2)\n", "metrics", ("top1",)),
    (SWIN + "test_pipeline = [dict(type='DenseSampleFrames', clip_len=32)]\n",
     "test_pipeline.0.type", ("DenseSampleFrames",)),
    (SWIN + "test_pipeline = [dict(type='ThreeCrop', crop_size=(224, 160))]\n",
     "test_pipeline.0.crop_size", ("square",)),
    (SWIN + "test_pipeline = [dict(type='SampleFrames', num_clips=4)]\n",
     "test_pipeline.0.clip_len", ("positive int", "None")),
    (SWIN + "test_pipeline = [dict(type='Normalize', mean=[1, 2], std=[1, 1, 1])]\n",
     "test_pipeline.0.mean", ("3 numbers",)),
]


@pytest.mark.parametrize("text, key, words", ERROR_CASES,
                         ids=[f"{c[1]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_error_names_the_key(tmp_path, text, key, words):
    check_error(write(tmp_path, "cfg.py", text), key, *words)


@pytest.mark.backend_independent
def test_code_in_a_config_is_refused_by_default_and_runs_only_when_trusted(tmp_path):
    marker = tmp_path / "MARKER"
    base = tmp_path / "base.py"
    base.write_text(f"status = __import__('os').system('touch {marker}')\n")
    config = tmp_path / "hostile.py"
    write_config(config)
    config.write_text("_base_ = ['base.py']\n" + config.read_text())
    with pytest.raises(ConfigError, match=r"in its base file .*base\.py, line 1: .*--trust-config"):
        load_spec(config)
    assert not marker.exists()
    spec = load_spec(config, trust=True)          # mmengine executes the base file
    assert marker.exists() and spec.embed_dim == 16


@pytest.mark.backend_independent
def test_convert_cli_refuses_an_executing_config_with_exit_2(tmp_path):
    config = tmp_path / "evil.py"
    write_config(config)
    config.write_text(config.read_text() + "x = __import__('os').getcwd()\n")
    proc = subprocess.run([sys.executable, "-m", "videoswin_tools.convert", "--config",
                           str(config), "--random-weights", "0", "--backends", "none",
                           "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"evil\.py: line \d+: ", proc.stderr) and "--trust-config" in proc.stderr
    assert not (tmp_path / "out").exists()
