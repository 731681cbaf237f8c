"""converter.layouts: the official 0.x, mmaction2 1.x and torchvision swin3d key layouts.

The literal key pairs below are written by hand from the layouts themselves, not from the
code under test:
- official 0.x (canonical): `backbone.patch_embed`, `backbone.layers.{i}.blocks.{j}`,
  `backbone.layers.{i}.downsample`, `backbone.norm`, `cls_head.fc_cls`;
- mmaction2 1.x: the same, but the final norm is `backbone.norm{num_stages - 1}`;
- torchvision `SwinTransformer3d`: bare `patch_embed`, `features` = [stage 0, merge 0,
  stage 1, merge 1, ...] (stage i at 2i, its patch merging at 2i + 1), the MLP a Sequential
  (Linear at 0, GELU, Dropout, Linear at 3, Dropout), bare `norm`, `head`.
"""

import pytest

from converter import layouts
from converter.layouts import MMACTION2, OFFICIAL, TORCHVISION, LayoutError

pytestmark = pytest.mark.backend_independent

# canonical key -> (torchvision, mmaction2 with 4 stages, mmaction2 with 2 stages)
KEYS = {
    "backbone.patch_embed.proj.weight":
        ("patch_embed.proj.weight", "backbone.patch_embed.proj.weight",
         "backbone.patch_embed.proj.weight"),
    "backbone.patch_embed.norm.bias":
        ("patch_embed.norm.bias", "backbone.patch_embed.norm.bias",
         "backbone.patch_embed.norm.bias"),
    "backbone.layers.0.blocks.0.norm1.weight":
        ("features.0.0.norm1.weight", "backbone.layers.0.blocks.0.norm1.weight",
         "backbone.layers.0.blocks.0.norm1.weight"),
    "backbone.layers.0.blocks.1.attn.relative_position_bias_table":
        ("features.0.1.attn.relative_position_bias_table",
         "backbone.layers.0.blocks.1.attn.relative_position_bias_table",
         "backbone.layers.0.blocks.1.attn.relative_position_bias_table"),
    "backbone.layers.0.blocks.1.attn.relative_position_index":
        ("features.0.1.attn.relative_position_index",
         "backbone.layers.0.blocks.1.attn.relative_position_index",
         "backbone.layers.0.blocks.1.attn.relative_position_index"),
    "backbone.layers.0.blocks.0.attn.qkv.weight":
        ("features.0.0.attn.qkv.weight", "backbone.layers.0.blocks.0.attn.qkv.weight",
         "backbone.layers.0.blocks.0.attn.qkv.weight"),
    "backbone.layers.0.blocks.0.mlp.fc1.bias":
        ("features.0.0.mlp.0.bias", "backbone.layers.0.blocks.0.mlp.fc1.bias",
         "backbone.layers.0.blocks.0.mlp.fc1.bias"),
    "backbone.layers.1.blocks.0.mlp.fc2.weight":
        ("features.2.0.mlp.3.weight", "backbone.layers.1.blocks.0.mlp.fc2.weight",
         "backbone.layers.1.blocks.0.mlp.fc2.weight"),
    "backbone.layers.0.downsample.norm.weight":
        ("features.1.norm.weight", "backbone.layers.0.downsample.norm.weight",
         "backbone.layers.0.downsample.norm.weight"),
    "backbone.layers.2.downsample.reduction.weight":
        ("features.5.reduction.weight", "backbone.layers.2.downsample.reduction.weight",
         "backbone.layers.2.downsample.reduction.weight"),
    "backbone.layers.2.blocks.17.mlp.fc1.weight":                  # Swin-B: 18 blocks
        ("features.4.17.mlp.0.weight", "backbone.layers.2.blocks.17.mlp.fc1.weight",
         "backbone.layers.2.blocks.17.mlp.fc1.weight"),
    "backbone.layers.3.blocks.1.norm2.bias":
        ("features.6.1.norm2.bias", "backbone.layers.3.blocks.1.norm2.bias",
         "backbone.layers.3.blocks.1.norm2.bias"),
    "backbone.norm.weight":
        ("norm.weight", "backbone.norm3.weight", "backbone.norm1.weight"),
    "backbone.norm.bias":
        ("norm.bias", "backbone.norm3.bias", "backbone.norm1.bias"),
    "cls_head.fc_cls.weight":
        ("head.weight", "cls_head.fc_cls.weight", "cls_head.fc_cls.weight"),
    "cls_head.fc_cls.bias":
        ("head.bias", "cls_head.fc_cls.bias", "cls_head.fc_cls.bias"),
}
CANONICAL = {key: i for i, key in enumerate(KEYS)}      # distinct values, to follow them


def _in(layout_index, stages=4):
    col = {("tv", 4): 0, ("mm", 4): 1, ("mm", 2): 2}[(layout_index, stages)]
    return {names[col]: CANONICAL[key] for key, names in KEYS.items()}


# -- (a) literal key pairs -----------------------------------------------------------------

@pytest.mark.parametrize("canonical", list(KEYS))
def test_torchvision_keys(canonical):
    theirs = KEYS[canonical][0]
    assert TORCHVISION.from_canonical(canonical, 4) == theirs
    assert TORCHVISION.to_canonical(theirs) == canonical


@pytest.mark.parametrize("canonical", list(KEYS))
def test_mmaction2_keys(canonical):
    _, four, two = KEYS[canonical]
    assert MMACTION2.from_canonical(canonical, 4) == four
    assert MMACTION2.from_canonical(canonical, 2) == two
    assert MMACTION2.to_canonical(four) == canonical
    assert MMACTION2.to_canonical(two) == canonical


@pytest.mark.parametrize("canonical", list(KEYS))
def test_official_keys_are_the_canonical_ones(canonical):
    assert OFFICIAL.from_canonical(canonical, 4) == canonical
    assert OFFICIAL.to_canonical(canonical) == canonical


def test_whole_dicts_export_and_canonicalize():
    assert layouts.export(CANONICAL, "torchvision", 4) == _in("tv")
    assert layouts.export(CANONICAL, MMACTION2, 4) == _in("mm")
    assert layouts.export(CANONICAL, "mmaction2", 2) == _in("mm", 2)
    assert layouts.export(CANONICAL, OFFICIAL, 4) == CANONICAL
    assert layouts.canonicalize(_in("tv")) == CANONICAL
    assert layouts.canonicalize(_in("mm")) == CANONICAL
    assert layouts.canonicalize(_in("mm", 2), "mmaction2") == CANONICAL
    assert layouts.canonicalize(CANONICAL) == CANONICAL


def test_values_are_passed_through_untouched():
    value = object()
    assert layouts.canonicalize({"norm3.weight": value})["backbone.norm.weight"] is value
    assert layouts.export({"backbone.norm.weight": value}, TORCHVISION, 4)["norm.weight"] is value


def test_layouts_by_name():
    assert layouts.get("official") is OFFICIAL
    assert layouts.get("mmaction2") is MMACTION2
    assert layouts.get("torchvision") is TORCHVISION
    with pytest.raises(LayoutError, match="unknown layout 'timm'"):
        layouts.get("timm")
    with pytest.raises(LayoutError, match="unknown layout"):
        layouts.canonicalize(CANONICAL, "timm")


# -- (b) detection -------------------------------------------------------------------------

def _bare(state):
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


def test_detect_each_layout():
    assert layouts.detect(_in("tv")) is TORCHVISION
    assert layouts.detect(_in("mm")) is MMACTION2
    assert layouts.detect(_in("mm", 2)) is MMACTION2
    assert layouts.detect(CANONICAL) is OFFICIAL
    assert layouts.detect(iter(CANONICAL)) is OFFICIAL         # any iterable of keys


def test_detect_a_bare_backbone():
    bare_official = _bare(CANONICAL)
    assert "norm.weight" in bare_official and "patch_embed.proj.weight" in bare_official
    assert layouts.detect(bare_official) is OFFICIAL
    assert layouts.canonicalize(bare_official) == {
        k: v for k, v in CANONICAL.items() if k.startswith("backbone.")}
    bare_mm = _bare(_in("mm"))
    assert "norm3.weight" in bare_mm
    assert layouts.detect(bare_mm) is MMACTION2
    assert layouts.canonicalize(bare_mm)["backbone.norm.weight"] == CANONICAL[
        "backbone.norm.weight"]


def test_block_norms_do_not_make_a_checkpoint_mmaction2():
    # norm1/norm2 of blocks are not the final norm.
    keys = ["backbone.layers.0.blocks.0.norm1.weight", "backbone.layers.0.blocks.0.norm2.bias",
            "layers.1.blocks.0.norm1.weight", "backbone.norm.weight"]
    assert layouts.detect(keys) is OFFICIAL


# -- (c) a real model's keys survive every layout --------------------------------------------

@pytest.fixture(scope="module")
def oracle_module():
    pytest.importorskip("mmaction",
                        reason="the oracle checks need mmaction2 (requirements/oracle.txt)")
    from tests import oracle
    return oracle


@pytest.fixture(scope="module", params=[(2, 2, 2, 2), (2, 2)], ids=["4stages", "2stages"])
def real(request, oracle_module):
    depths = request.param
    model = oracle_module.make_oracle(16, depths, (1, 2, 2, 4)[:len(depths)],
                                      window_size=(2, 3, 3), num_classes=7)
    return model, oracle_module.mmaction_state_dict(model)


def test_mmaction2_export_equals_the_oracles_own_keys(real):
    model, state = real
    native = list(model.state_dict())            # mmaction2's own names: the ground truth
    final = f"backbone.norm{len(model.backbone.depths) - 1}.weight"
    assert final in native
    canonical = layouts.canonicalize(model.state_dict(), MMACTION2)
    assert "backbone.norm.weight" in canonical and final not in canonical
    assert list(layouts.export(canonical, MMACTION2, model.num_stages)) == native
    assert list(state) == native


@pytest.mark.parametrize("layout", [OFFICIAL, MMACTION2, TORCHVISION], ids=lambda x: x.name)
def test_every_key_survives_export_detect_canonicalize(real, layout):
    model, state = real
    canonical = layouts.canonicalize(state, MMACTION2)
    assert len(canonical) == len(state)
    exported = layouts.export(canonical, layout, model.num_stages)
    assert len(exported) == len(canonical)                # no two keys collapse
    assert layouts.detect(exported) is layout
    back = layouts.canonicalize(exported)
    assert list(back) == list(canonical)
    for key, value in canonical.items():
        assert back[key] is value, key


def test_real_official_and_torchvision_key_sets(real):
    model, state = real
    stages = model.num_stages
    canonical = layouts.canonicalize(state, MMACTION2)
    final = f"backbone.norm{stages - 1}."
    # official: the mmaction2 keys with the final norm renamed, nothing else.
    assert set(layouts.export(canonical, OFFICIAL, stages)) == {
        k.replace(final, "backbone.norm.") for k in state}
    tv = layouts.export(canonical, TORCHVISION, stages)
    assert not any(k.startswith(("backbone.", "cls_head.")) for k in tv)
    assert {"patch_embed.proj.weight", "norm.weight", "norm.bias", "head.weight",
            "head.bias"} <= set(tv)
    assert not any(".fc1." in k or ".fc2." in k for k in tv)
    # features: even indices hold the blocks of each stage, odd ones the merges between.
    for i, depth in enumerate(model.backbone.depths):
        for j in range(depth):
            assert f"features.{2 * i}.{j}.mlp.0.weight" in tv
            assert f"features.{2 * i}.{j}.mlp.3.bias" in tv
        merge = {k for k in tv if k.startswith(f"features.{2 * i + 1}.")}
        if i < stages - 1:
            assert merge == {f"features.{2 * i + 1}.reduction.weight",
                             f"features.{2 * i + 1}.norm.weight",
                             f"features.{2 * i + 1}.norm.bias"}
        else:
            assert merge == set()


# -- (d) collisions ------------------------------------------------------------------------

@pytest.mark.parametrize("first,second,layout", [
    ("backbone.norm3.weight", "backbone.norm.weight", MMACTION2),
    ("backbone.norm2.weight", "backbone.norm3.weight", None),       # detected: mmaction2
    ("norm.weight", "backbone.norm.weight", OFFICIAL),
    ("features.0.0.mlp.0.weight", "features.0.0.mlp.fc1.weight", TORCHVISION),
])
def test_keys_that_collide_are_refused_naming_both(first, second, layout):
    state = {first: 1, second: 2, "backbone.patch_embed.proj.weight": 3}
    with pytest.raises(LayoutError) as err:
        layouts.canonicalize(state, layout)
    message = str(err.value)
    assert repr(first) in message and repr(second) in message
