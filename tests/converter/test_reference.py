"""Our PyTorch reference (`converter.reference`) equals mmaction2's own SwinTransformer3D.

Every parameter is random; weights travel through the exported checkpoint layouts. Tiny
architectures, clip sizes chosen to exercise end padding, window clamping (`<=`, an axis
equal to the window), shifted-window masks and the sliced relative-position index.
"""

import numpy as np
import pytest
import torch

from converter.reference import VideoSwinReference, relative_position_index
from videoswin.core.spec import ModelSpec
from converter.synthetic import random_checkpoint, random_state_dict

from tests import oracle

try:
    oracle.load_swin_module()
except ImportError as exc:          # mmaction2 / mmcv / mmengine / einops absent
    pytest.skip(f"mmaction2 oracle unavailable: {exc}", allow_module_level=True)

# Float32 rounding only: the reference repeats mmaction2's ops one for one, and on one
# AVX-512 machine the two agreed bitwise, but on an AVX2 one their batched matmuls round
# differently (up to 3e-6 on features of unit scale). A wrong or swapped weight moves the
# outputs by orders of magnitude more.
TOL = 1e-5
TINY = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))

CASES = [
    # window 2x3x3: every stage pads and shifts; the last clamps H (3 <= 3) but shifts W.
    pytest.param(dict(TINY, window_size=(2, 3, 3)), (10, 72, 100), id="w233-10x72x100"),
    # tokens 2x6x6 and 1x3x3: T equals the window (shift 0), later stages clamp all axes.
    pytest.param(dict(TINY, window_size=(2, 3, 3)), (4, 24, 24), id="w233-4x24x24"),
    # T clamps (2 <= 8), H/W pad 8 -> 14 with shift 3; then every axis clamps and the
    # relative index is sliced [:N, :N] for a 2x4x4 window.
    pytest.param(dict(TINY, window_size=(8, 7, 7)), (3, 32, 32), id="w877-3x32x32"),
    # tokens 5x18x25: T clamps, H/W pad to 21x28 and shift; odd H/W before merging.
    pytest.param(dict(TINY, depths=(1, 2, 1, 2), window_size=(8, 7, 7)), (10, 72, 100),
                 id="w877-10x72x100"),
    # tokens 2x7x7: H and W equal the window exactly, so no shift anywhere (`<=`).
    pytest.param(dict(TINY, window_size=(16, 7, 7)), (4, 28, 28), id="w1677-4x28x28"),
    # Two stages and the non-default options: no qkv bias, no patch norm, qk_scale, mlp 2.
    pytest.param(dict(embed_dim=16, depths=(2, 3), num_heads=(2, 4), patch_size=(1, 4, 4),
                      window_size=(4, 3, 3), qkv_bias=False, patch_norm=False, qk_scale=0.3,
                      mlp_ratio=2.0), (5, 22, 30), id="options-2stage"),
]


def _clip(shape, seed=0, batch=2):
    return np.random.default_rng(seed).standard_normal((batch, *shape, 3)).astype(np.float32)


def _reference_outputs(model, clips):
    x = torch.from_numpy(clips)
    with torch.no_grad():
        return model.forward_features(x).numpy(), model(x).numpy()


def _max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


@pytest.mark.parametrize("arch, clip", CASES)
def test_reference_matches_mmaction2(arch, clip):
    model = oracle.make_oracle(**arch, num_classes=10, seed=1)
    reference = VideoSwinReference(**arch, num_classes=10)
    reference.load_canonical(oracle.official_state_dict(model))
    clips = _clip(clip)

    want_features, want_logits = oracle.oracle_outputs(model, clips)
    got_features, got_logits = _reference_outputs(reference, clips)

    assert _max_diff(got_features, want_features) <= TOL
    assert _max_diff(got_logits, want_logits) <= TOL
    # The comparison means something only if the outputs depend on the input.
    other = oracle.oracle_logits(model, _clip(clip, seed=1))
    assert np.abs(other - want_logits).max() > 0.1


def test_oracle_accepts_channels_first_clips():
    model = oracle.make_oracle(**TINY, window_size=(2, 3, 3), num_classes=10)
    clips = _clip((3, 16, 16))
    ncthw = np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))
    np.testing.assert_array_equal(oracle.oracle_logits(model, ncthw, channels_last=False),
                                  oracle.oracle_logits(model, clips))


def test_oracle_weights_are_random_distinct_and_realistic():
    model = oracle.make_oracle(**TINY, window_size=(8, 7, 7), num_classes=400, seed=0)
    params = dict(model.named_parameters())
    for name, p in params.items():
        assert p.dtype == torch.float32, name
        assert float(p.detach().std()) > 1e-3, f"{name} looks constant"
    firsts = [float(p.detach().flatten()[0]) for p in params.values()]
    assert len(set(firsts)) == len(firsts)
    logits = oracle.oracle_logits(model, _clip((4, 32, 32), batch=2))
    assert np.isfinite(logits).all()
    assert 1.0 <= logits.std() <= 5.0


def test_reference_index_buffers_equal_mmaction2s():
    for window in [(8, 7, 7), (16, 7, 7), (2, 3, 3)]:
        theirs = oracle.mmaction_state_dict(
            oracle.make_oracle(**TINY, window_size=window, randomize=False))
        ours = VideoSwinReference(**TINY, window_size=window).state_dict()
        key = "backbone.layers.0.blocks.1.attn.relative_position_index"
        assert ours[key].dtype == theirs[key].dtype == torch.int64
        assert torch.equal(ours[key], theirs[key])
        assert torch.equal(relative_position_index(window), theirs[key])


# --- strict loading --------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_sd():
    return random_state_dict(dict(TINY, window_size=(2, 3, 3), num_classes=10), seed=5)


def _tiny_reference():
    return VideoSwinReference(**TINY, window_size=(2, 3, 3), num_classes=10)


def test_load_canonical_rejects_missing_key(tiny_sd):
    sd = dict(tiny_sd)
    del sd["backbone.layers.1.blocks.0.attn.qkv.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['backbone\.layers\.1\.blocks\.0\.attn\.qkv\.bias'\]"):
        _tiny_reference().load_canonical(sd)


def test_load_canonical_rejects_unexpected_key(tiny_sd):
    sd = dict(tiny_sd)
    sd["backbone.norm3.weight"] = sd.pop("backbone.norm.weight")
    with pytest.raises(ValueError) as err:
        _tiny_reference().load_canonical(sd)
    assert "missing keys ['backbone.norm.weight']" in str(err.value)
    assert "unexpected keys ['backbone.norm3.weight']" in str(err.value)


def test_load_canonical_rejects_wrong_shape_and_index(tiny_sd):
    sd = dict(tiny_sd)
    sd["cls_head.fc_cls.bias"] = torch.zeros(11)
    with pytest.raises(ValueError, match=r"cls_head\.fc_cls\.bias: got \(11,\), expected \(10,\)"):
        _tiny_reference().load_canonical(sd)
    sd = dict(tiny_sd)
    key = "backbone.layers.0.blocks.0.attn.relative_position_index"
    sd[key] = sd[key].flip(0)
    with pytest.raises(ValueError, match="relative_position_index differs"):
        _tiny_reference().load_canonical(sd)


# --- synthetic weights -----------------------------------------------------------------

def test_synthetic_state_dict_runs_the_oracle_like_the_reference():
    arch = dict(TINY, window_size=(8, 7, 7))
    sd = random_state_dict(dict(arch, num_classes=7), seed=3)
    reference = VideoSwinReference(**arch, num_classes=7).load_canonical(sd)
    model = oracle.make_oracle(**arch, num_classes=7, randomize=False)
    # mmaction2 1.x names the final norm `norm3`; everything else is shared.
    mm = {k.replace("backbone.norm.", "backbone.norm3."): v for k, v in sd.items()}
    model.load_state_dict(mm, strict=True)
    clips = _clip((3, 32, 32))
    want_features, want_logits = oracle.oracle_outputs(model, clips)
    got_features, got_logits = _reference_outputs(reference, clips)
    assert _max_diff(got_features, want_features) <= TOL
    assert _max_diff(got_logits, want_logits) <= TOL
    assert 1.0 <= want_logits.std() <= 5.0


def test_synthetic_state_dict_is_seeded_distinct_and_canonical():
    spec = ModelSpec(name="tiny", path="tiny.py", **TINY, window_size=(2, 3, 3), num_classes=5)
    a, b, c = (random_state_dict(spec, seed) for seed in (0, 0, 1))
    assert list(a) == list(VideoSwinReference.from_spec(spec).state_dict())
    floats = {k: v for k, v in a.items() if v.is_floating_point()}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in floats)
    assert all(float(v.std()) > 1e-3 for v in floats.values() if v.numel() > 1)
    firsts = [float(v.flatten()[0]) for v in floats.values()]
    assert len(set(firsts)) == len(firsts)
    index = [v for k, v in a.items() if k.endswith("relative_position_index")]
    assert len(index) == sum(TINY["depths"])
    assert all(v.dtype == torch.int64 and v.shape == (18, 18) for v in index)


def test_backbone_only_spec_has_no_head():
    spec = ModelSpec(name="bb", path="bb.py", **TINY, window_size=(2, 3, 3), num_classes=None)
    sd = random_state_dict(spec, seed=0)
    assert not any(k.startswith("cls_head.") for k in sd)
    model = VideoSwinReference.from_spec(spec).load_canonical(sd)
    with torch.no_grad():
        out = model(torch.from_numpy(_clip((4, 32, 32), batch=1)))
    assert tuple(out.shape) == (1, 2, 1, 1, 128)
    headed = ModelSpec(name="h", path="h.py", **TINY, window_size=(2, 3, 3), num_classes=5)
    trimmed = VideoSwinReference.from_spec(headed, num_classes=None)
    assert list(trimmed.state_dict()) == list(sd)


def test_random_checkpoint_loads_safely(tmp_path):
    spec = ModelSpec(name="tiny", path="tiny.py", **TINY, window_size=(2, 3, 3), num_classes=5)
    path = random_checkpoint(spec, 9, tmp_path / "tiny.pth")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["meta"]["seed"] == 9 and ckpt["meta"]["config"] == "tiny"
    want = random_state_dict(spec, 9)
    assert list(ckpt["state_dict"]) == list(want)
    assert all(torch.equal(ckpt["state_dict"][k], want[k]) for k in want)


# --- exported layouts ------------------------------------------------------------------

def test_exported_layouts():
    arch = dict(embed_dim=16, depths=(2, 1), num_heads=(1, 2), window_size=(2, 3, 3))
    model = oracle.make_oracle(**arch, num_classes=4)
    official = oracle.official_state_dict(model)
    mm = oracle.mmaction_state_dict(model)
    tv = oracle.torchvision_state_dict(model)
    assert list(official) == list(VideoSwinReference(**arch, num_classes=4).state_dict())
    assert "backbone.norm1.weight" in mm and "backbone.norm.weight" not in mm
    assert len(official) == len(mm) == len(tv)
    pairs = {
        "patch_embed.proj.weight": "backbone.patch_embed.proj.weight",
        "patch_embed.norm.bias": "backbone.patch_embed.norm.bias",
        "features.0.1.attn.relative_position_index":
            "backbone.layers.0.blocks.1.attn.relative_position_index",
        "features.0.1.mlp.0.weight": "backbone.layers.0.blocks.1.mlp.fc1.weight",
        "features.0.1.mlp.3.bias": "backbone.layers.0.blocks.1.mlp.fc2.bias",
        "features.1.reduction.weight": "backbone.layers.0.downsample.reduction.weight",
        "features.1.norm.weight": "backbone.layers.0.downsample.norm.weight",
        "features.2.0.attn.qkv.weight": "backbone.layers.1.blocks.0.attn.qkv.weight",
        "norm.weight": "backbone.norm.weight",
        "head.bias": "cls_head.fc_cls.bias",
    }
    for tv_key, off_key in pairs.items():
        assert torch.equal(tv[tv_key], official[off_key]), tv_key
    assert tv["features.0.1.attn.relative_position_index"].shape == (18, 18)
    for sd in (official, mm, tv):
        assert all(v.is_contiguous() for v in sd.values())
    official["backbone.norm.weight"].add_(1.0)     # exports are copies, not views
    assert torch.equal(mm["backbone.norm1.weight"], model.backbone.norm1.weight.detach())
    assert not torch.equal(official["backbone.norm.weight"], mm["backbone.norm1.weight"])


@pytest.mark.parametrize("wrapper", ["official", "mmaction", "bare"])
def test_save_checkpoint_wrappers(tmp_path, wrapper, tiny_sd):
    path = oracle.save_checkpoint(tiny_sd, tmp_path / "c.pth", wrapper=wrapper)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    sd = loaded if wrapper == "bare" else loaded["state_dict"]
    assert wrapper == "bare" or "meta" in loaded
    assert list(sd) == list(tiny_sd)
    with pytest.raises(ValueError, match="wrapper must be"):
        oracle.save_checkpoint(tiny_sd, tmp_path / "d.pth", wrapper="zip")
