"""videoswin.core.presets: every preset agrees with its config, and with the reference figures."""

from pathlib import Path

import pytest

from converter.config import CONFIG_ROOT, list_configs, load_spec
from videoswin.core.presets import PRESETS, Preset

pytestmark = pytest.mark.backend_independent

REPO = CONFIG_ROOT.parent
OFFICIAL_README = "https://github.com/SwinTransformer/Video-Swin-Transformer/blob/master/README.md"
MMACTION2_METAFILE = ("https://github.com/open-mmlab/mmaction2/blob/main/configs/recognition/"
                      "swin/metafile.yml")

# Parameter counts of the classifier as mmaction2's own SwinTransformer3D + I3DHead count them.
TINY_400 = 28_158_070
SMALL_400 = 49_816_678
BASE_400 = 88_048_984
BASE_600 = 88_253_984
BASE_W16_174 = 88_834_038
LARGE_400 = 196_953_916
LARGE_700 = 197_415_016
# The other presets differ from those only by the head (C x width + C) or by the 16x7x7
# window's larger relative-position tables (Swin-B: 376 heads x (31 - 15) x 13 x 13 more).
SMALL_710 = SMALL_400 + (710 - 400) * (768 + 1)
BASE_W16_400 = BASE_W16_174 + (400 - 174) * (1024 + 1)

EXPECTED_PARAMS = {
    "swin_tiny_patch244_window877_kinetics400_1k": TINY_400,
    "swin_small_patch244_window877_kinetics400_1k": SMALL_400,
    "swin_base_patch244_window877_kinetics400_1k": BASE_400,
    "swin_base_patch244_window877_kinetics400_22k": BASE_400,
    "swin_base_patch244_window877_kinetics600_22k": BASE_600,
    "swin_base_patch244_window1677_kinetics400_22k": BASE_W16_400,
    "swin_base_patch244_window1677_sthv2": BASE_W16_174,
    "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb": TINY_400,
    "swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb": SMALL_400,
    "swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb": BASE_400,
    "swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb": LARGE_400,
    "swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb": LARGE_700,
    "swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb": SMALL_710,
}
LABELS = {"tiny": "Swin-T", "small": "Swin-S", "base": "Swin-B", "large": "Swin-L"}
TITLES = {"kinetics400": "Kinetics-400", "kinetics600": "Kinetics-600",
          "kinetics700": "Kinetics-700", "kinetics710": "Kinetics-710",
          "sthv2": "Something-Something V2"}


def test_derived_reference_figures():
    # Hand arithmetic on the reference counts, checked once more in the other direction.
    assert BASE_600 - BASE_400 == 200 * (1024 + 1)
    assert LARGE_700 - LARGE_400 == 300 * (1536 + 1)
    assert BASE_W16_400 - BASE_400 == 376 * 16 * 13 * 13
    assert SMALL_710 == 50_055_068
    assert BASE_W16_400 == 89_065_688


def test_presets_and_configs_are_the_same_set():
    configs = {Path(c).stem for c in list_configs()}
    assert configs == set(PRESETS)
    assert len(PRESETS) == 13
    assert set(EXPECTED_PARAMS) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_agrees_with_its_config(name):
    preset = PRESETS[name]
    assert preset.name == name
    assert preset.config_path == f"configs/recognition/swin/{name}.py"
    path = REPO / preset.config_path
    assert path.is_file()
    spec = load_spec(str(path))
    assert spec.name == name
    assert spec.arch_name == preset.arch
    assert tuple(spec.window_size) == tuple(preset.window_size)
    assert spec.dataset == preset.dataset
    assert spec.num_classes == preset.num_classes
    assert spec.pretrain == preset.pretrain
    assert spec.origin == preset.origin
    assert spec.metrics.top1 == preset.top1
    assert spec.metrics.top5 == preset.top5
    assert spec.metrics.source == preset.metrics_source
    # The analytic count of the preset equals the one of the config's full spec.
    assert preset.params == spec.params()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_params_equal_the_reference(name):
    assert PRESETS[name].params == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_metrics_source_names_the_publisher(name):
    preset = PRESETS[name]
    if preset.origin == "official":
        assert preset.metrics_source.startswith(OFFICIAL_README + "#")
    else:
        assert preset.origin == "mmaction2"
        assert preset.metrics_source == MMACTION2_METAFILE


def test_published_figures_spot_check():
    tiny = PRESETS["swin_tiny_patch244_window877_kinetics400_1k"]
    assert (tiny.top1, tiny.top5) == (78.8, 93.6)
    ssv2 = PRESETS["swin_base_patch244_window1677_sthv2"]
    assert (ssv2.dataset, ssv2.num_classes, ssv2.pretrain) == ("sthv2", 174, "Kinetics-400")
    assert (ssv2.top1, ssv2.top5) == (69.6, 92.7)
    assert ssv2.metrics_source == OFFICIAL_README + "#something-something-v2"
    unpublished = PRESETS["swin_base_patch244_window1677_kinetics400_22k"]
    assert (unpublished.top1, unpublished.top5) == (None, None)
    k700 = PRESETS["swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb"]
    assert (k700.arch, k700.num_classes, k700.top1, k700.top5) == ("large", 700, 75.92, 92.72)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_hub_handle(name):
    assert PRESETS[name].hub_handle == "hf://videoswin/" + name


def test_hub_handle_literal():
    assert (PRESETS["swin_tiny_patch244_window877_kinetics400_1k"].hub_handle
            == "hf://videoswin/swin_tiny_patch244_window877_kinetics400_1k")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_description_names_variant_and_dataset(name):
    preset = PRESETS[name]
    text = preset.description
    assert text.startswith(LABELS[preset.arch] + ", ")
    assert f"{TITLES[preset.dataset]} ({preset.num_classes} classes)" in text
    assert "window " + "x".join(str(v) for v in preset.window_size) in text
    assert preset.pretrain in text


def test_description_literal():
    assert PRESETS["swin_base_patch244_window1677_sthv2"].description == (
        "Swin-B, window 16x7x7, Something-Something V2 (174 classes), Kinetics-400 "
        "pretraining; from the official release v1.0.4.")
    assert PRESETS["swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb"
                   ].description == (
        "Swin-L, window 8x7x7, Kinetics-700 (700 classes), ImageNet-22K pretraining; "
        "from the mmaction2 1.x zoo.")


def test_a_preset_is_frozen():
    preset = PRESETS["swin_tiny_patch244_window877_kinetics400_1k"]
    assert isinstance(preset, Preset)
    with pytest.raises(AttributeError):
        preset.num_classes = 10
