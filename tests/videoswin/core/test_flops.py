"""videoswin.flops: MACs against the published figures and a traced count of the official
module; parameter counts against design.md's figures and Keras's count_params()."""

import warnings

import pytest

from videoswin import ARCHS
from videoswin.core.flops import count_macs, count_params

CLIP = (32, 224, 224)
SSV2_WINDOW = (16, 7, 7)


def _arch(name):
    return dict(ARCHS[name])


# (arch, window, classes, official G MACs per 32x224x224 view, our exact count)
OFFICIAL = [
    ("tiny", (8, 7, 7), 400, 87.9, 87_764_152_320),
    ("small", (8, 7, 7), 400, 165.9, 165_682_262_016),
    ("base", (8, 7, 7), 400, 281.6, 281_332_826_112),
    ("base", SSV2_WINDOW, 174, 320.6, 320_355_874_816),
    ("large", (8, 7, 7), 400, 604.0, 603_268_669_440),
]


@pytest.mark.backend_independent
@pytest.mark.parametrize("arch, window, classes, official, ours", OFFICIAL,
                         ids=["T", "S", "B", "B-SSv2", "L"])
def test_macs_match_official_figures(arch, window, classes, official, ours):
    macs = count_macs(CLIP, **_arch(arch), window_size=window, num_classes=classes)
    assert macs.total == ours
    assert abs(macs.gmacs - official) / official < 0.01


@pytest.mark.backend_independent
def test_tiny_breakdown_by_operation():
    ops = count_macs(CLIP, **_arch("tiny")).by_op
    tokens = 16 * 56 * 56
    assert ops["patch_embed"] == tokens * 3 * 2 * 4 * 4 * 96 == 462_422_016
    assert ops["head"] == 768 * 400
    # Every Swin-T block costs the same qkv: each stage has 4x fewer tokens and is 2x wider
    # (no stage needs window padding at 32x224x224); 12 blocks in all.
    per_block = tokens * 96 * 3 * 96
    assert ops["qkv"] == 12 * per_block
    assert ops["attn_qk"] == ops["attn_v"] == 392 * 96 * tokens * (2 + 2 / 2 + 6 / 4 + 2 / 8)


ONE_STAGE = dict(embed_dim=16, depths=(2,), num_heads=(2,), window_size=(2, 7, 7),
                 num_classes=None)


@pytest.mark.backend_independent
def test_padded_windows_are_counted():
    # Grid 4x57x57: windows 2x7x7 need padding to 4x63x63; attention runs on the padded grid.
    odd = count_macs((8, 4 * 57, 4 * 57), **ONE_STAGE).by_op
    padded = count_macs((8, 4 * 63, 4 * 63), **ONE_STAGE).by_op
    for op in ("qkv", "attn_qk", "attn_v", "proj"):
        assert odd[op] == padded[op] > 0
    # The MLP and the patch embedding see only the real tokens.
    assert odd["mlp"] * 63 * 63 == padded["mlp"] * 57 * 57
    assert odd["patch_embed"] * 63 * 63 == padded["patch_embed"] * 57 * 57


@pytest.mark.backend_independent
def test_patch_padding_rounds_the_clip_up():
    # T=31 and H=W=221 pad to 32 and 224 before the patch Conv3d: the same count as 32x224x224.
    assert count_macs((31, 221, 221), **_arch("tiny")).total == \
        count_macs(CLIP, **_arch("tiny")).total


@pytest.mark.backend_independent
def test_small_clip_clamps_the_window():
    # Grid 1x4x4 < window 2x7x7: one 16-token window, no padding.
    ops = count_macs((2, 16, 16), **ONE_STAGE).by_op
    assert ops["attn_qk"] == ops["attn_v"] == 2 * 16 * 16 * 16
    assert ops["qkv"] == 2 * 16 * 16 * 48


@pytest.mark.backend_independent
def test_macs_scale_with_clip():
    tiny = _arch("tiny")
    head = 768 * 400
    short, long_ = (count_macs((t, 224, 224), **tiny).total - head for t in (32, 64))
    assert long_ == 2 * short              # twice the frames, twice the windows
    sizes = [count_macs((32, s, s), **tiny).total for s in (112, 160, 224, 256)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    # Patch merging pads H, W to even: a 57x57 grid merges to 29x29, not 28x28.
    merged = count_macs((2, 4 * 57, 4 * 57), embed_dim=16, depths=(1, 1), num_heads=(1, 1),
                        num_classes=None).by_op["downsample"]
    assert merged == 1 * 29 * 29 * 64 * 32


# -- a traced count of the official module --------------------------------------------------

@pytest.mark.backend_independent
@pytest.mark.parametrize("arch, clip", [
    (dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), window_size=(8, 7, 7)),
     (5, 37, 45)),
    (dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=(4, 3, 5)), (9, 50, 29)),
], ids=["4-stage-odd-clip", "2-stage-odd-window"])
def test_matches_mmengine_trace_of_mmaction2_module(arch, clip):
    """mmengine's FlopAnalyzer (fvcore's rules) traces mmaction2's own SwinTransformer3D;
    its conv + linear + matmul counts must equal ours exactly, padding included."""
    torch = pytest.importorskip("torch", reason="the traced count needs torch")
    pytest.importorskip("mmaction", reason="the traced count needs mmaction2 (the oracle)")
    analysis = pytest.importorskip("mmengine.analysis", reason="needs mmengine's FlopAnalyzer")
    from tests.oracle import make_oracle

    model = make_oracle(**arch, num_classes=7, randomize=False)
    analyzer = analysis.FlopAnalyzer(model, (torch.zeros(1, 3, *clip),))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with warnings.catch_warnings():  # jit tracer and numpy deprecation chatter from swin.py
        warnings.simplefilter("ignore")
        traced = analyzer.by_operator()
    assert set(traced) <= {"conv", "linear", "matmul", "layer_norm"}, traced
    ours = count_macs(clip, **arch, num_classes=7)
    assert ours.by_op["patch_embed"] == traced["conv"]
    assert ours.by_op["attn_qk"] + ours.by_op["attn_v"] == traced["matmul"]
    assert ours.total == traced["conv"] + traced["linear"] + traced["matmul"]


# -- parameters ----------------------------------------------------------------------------

DESIGN_PARAMS = [  # design.md "Reference figures" (measured with mmaction2 1.2.0's module)
    ("tiny", (8, 7, 7), 400, 28_158_070),
    ("small", (8, 7, 7), 400, 49_816_678),
    ("base", (8, 7, 7), 400, 88_048_984),
    ("base", (8, 7, 7), 600, 88_253_984),
    ("base", SSV2_WINDOW, 174, 88_834_038),
    ("large", (8, 7, 7), 400, 196_953_916),
    ("large", (8, 7, 7), 700, 197_415_016),
]


@pytest.mark.backend_independent
@pytest.mark.parametrize("arch, window, classes, expected", DESIGN_PARAMS)
def test_params_match_design_figures(arch, window, classes, expected):
    assert count_params(**_arch(arch), window_size=window, num_classes=classes) == expected


# Keras's variable set does not depend on the backend, and building a model under JAX costs
# up to 20 s here: the Keras comparisons run in the torch pass only (backend_independent).
def _keras_params(num_classes=None, in_channels=3, **arch):
    import videoswin

    backbone = videoswin.VideoSwinBackbone(**arch, input_shape=(None, None, None, in_channels))
    model = videoswin.VideoSwinClassifier(backbone, num_classes) if num_classes else backbone
    return model.count_params()


@pytest.mark.backend_independent
def test_keras_swin_t_params_equal_design_figure():
    assert _keras_params(**_arch("tiny"), window_size=(8, 7, 7), num_classes=400) == 28_158_070


@pytest.mark.backend_independent
@pytest.mark.parametrize("arch", [
    dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), num_classes=5),
    dict(embed_dim=16, depths=(2, 1), num_heads=(2, 4), window_size=(16, 7, 7),
         patch_size=(1, 2, 2), mlp_ratio=2.0, num_classes=None),
    dict(embed_dim=24, depths=(1, 2, 1), num_heads=(3, 3, 6), window_size=(2, 3, 5),
         qkv_bias=False, patch_norm=False, in_channels=1, num_classes=11),
], ids=["4-stage-head", "backbone-window1677-mlp2", "no-qkv-bias-no-patch-norm"])
def test_analytic_params_equal_keras(arch):
    assert count_params(**arch) == _keras_params(**arch)
