"""Damaged bytes, half-precision tensors, wrong ranks and colliding keys in a checkpoint:
each is refused with a message naming the file and the record or key, or converted."""

import struct
import zipfile

import numpy as np
import pytest
import torch

from converter import checkpoint as ckpt
from converter.config import load_spec
from converter.synthetic import random_checkpoint
from tests.converter.support import write_config

independent = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return load_spec(write_config(tmp_path_factory.mktemp("cfg") / "swin_t.py"))


@pytest.fixture()
def checkpoint(tmp_path, spec):
    return str(random_checkpoint(spec, 0, tmp_path / "c.pth"))


def _record_bytes(path, name):
    """(file offset, size) of the stored bytes of zip record `name`."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", handle.read(4))
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _flip(path, name, at=0.5, count=2):
    """Flip `count` bytes of record `name` from a fraction `at` of its length on."""
    offset, size = _record_bytes(path, name)
    with open(path, "r+b") as handle:
        handle.seek(offset + int(size * at))
        data = handle.read(count)
        handle.seek(offset + int(size * at))
        handle.write(bytes(b ^ 0xFF for b in data))


def _largest_tensor_record(path):
    with zipfile.ZipFile(path) as archive:
        return max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size).filename


@independent
def test_valid_zip_checkpoint_is_verified_and_loads_the_same_arrays(checkpoint):
    loaded = ckpt.load(checkpoint)
    assert loaded.crc32 == "verified" and loaded.upcast == {}
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert sorted(loaded.state) == sorted(saved)
    for key, value in saved.items():
        np.testing.assert_array_equal(loaded.state[key], value.numpy(), err_msg=key)


@independent
def test_flipped_bytes_inside_a_tensor_are_refused_naming_the_record(checkpoint):
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    name = _largest_tensor_record(checkpoint)
    _flip(checkpoint, name)
    # torch itself does not notice: one tensor silently loads with other values.
    damaged = torch.load(checkpoint, weights_only=True, mmap=True)["state_dict"]
    assert [k for k in saved if not torch.equal(saved[k], damaged[k])] != []
    with pytest.raises(ckpt.CheckpointError, match="is damaged") as err:
        ckpt.load(checkpoint)
    message = str(err.value)
    assert repr(checkpoint) in message and repr(name) in message and "CRC-32" in message
    with pytest.raises(ckpt.CheckpointError, match=repr(name)):
        ckpt.read_state(checkpoint)


@independent
def test_damaged_pickle_record_is_named(checkpoint):
    with zipfile.ZipFile(checkpoint) as archive:
        pickle_name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
    _flip(checkpoint, pickle_name, at=0.9, count=1)
    with pytest.raises(ckpt.CheckpointError, match="is damaged") as err:
        ckpt.load(checkpoint)
    assert repr(pickle_name) in str(err.value)


@independent
def test_damaged_record_header_is_named(checkpoint):
    name = _largest_tensor_record(checkpoint)
    with zipfile.ZipFile(checkpoint) as archive:
        header = archive.getinfo(name).header_offset
    with open(checkpoint, "r+b") as handle:        # break the local header's signature
        handle.seek(header)
        handle.write(b"XX")
    with pytest.raises(ckpt.CheckpointError, match="cannot be read") as err:
        ckpt.load(checkpoint)
    assert repr(name) in str(err.value) and repr(checkpoint) in str(err.value)


@independent
@pytest.mark.skipif(not hasattr(torch.serialization, "set_crc32_options"),
                    reason="writing a zip without CRC-32s needs torch >= 2.6 "
                           "(torch.serialization.set_crc32_options)")
def test_a_zip_saved_without_crcs_loads_and_says_so(tmp_path, spec):
    path = tmp_path / "nocrc.pth"
    torch.serialization.set_crc32_options(False)
    try:
        random_checkpoint(spec, 0, path)
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(path) as archive:
        assert all(info.CRC == 0 for info in archive.infolist())
    loaded = ckpt.load(str(path))
    assert loaded.crc32 == "not recorded"
    assert len(loaded.state) == len(torch.load(path, weights_only=True)["state_dict"])


@independent
def test_formats_without_crcs_are_not_applicable(tmp_path, checkpoint):
    from safetensors.torch import save_file

    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(dict(state), tmp_path / "c.safetensors")
    for name in ("legacy.pth", "c.safetensors"):
        loaded = ckpt.load(str(tmp_path / name))
        assert loaded.crc32 == "not applicable"
        for key, value in state.items():
            np.testing.assert_array_equal(loaded.state[key], value.numpy(), err_msg=key)


@independent
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_half_precision_tensors_are_upcast_and_recorded(tmp_path, checkpoint, dtype, suffix):
    from safetensors.torch import save_file

    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    # mmaction2 1.x layout: the upcast keys are reported under their canonical names.
    state["backbone.norm3.weight"] = state.pop("backbone.norm.weight")
    half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    path = str(tmp_path / f"half{suffix}")
    if suffix == ".safetensors":
        save_file(half, path)
    else:
        torch.save(half, path)
    loaded = ckpt.load(path)
    assert loaded.layout == "mmaction2"
    name = str(dtype).removeprefix("torch.")
    floating = {k for k, v in state.items() if v.is_floating_point()}
    assert loaded.upcast == {("backbone.norm.weight" if k == "backbone.norm3.weight" else k):
                             name for k in floating}
    for key, value in half.items():
        key = "backbone.norm.weight" if key == "backbone.norm3.weight" else key
        want = value.float() if value.is_floating_point() else value
        assert loaded.state[key].dtype == want.numpy().dtype
        np.testing.assert_array_equal(loaded.state[key], want.numpy(), err_msg=key)


@independent
def test_a_dtype_numpy_cannot_hold_is_named(tmp_path, checkpoint):
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    state["backbone.norm.bias"] = state["backbone.norm.bias"].to(torch.float8_e4m3fn)
    torch.save(state, tmp_path / "f8.pth")
    with pytest.raises(ckpt.CheckpointError, match="backbone.norm.bias") as err:
        ckpt.load(str(tmp_path / "f8.pth"))
    assert "float8_e4m3fn" in str(err.value) and "f8.pth" in str(err.value)


@independent
def test_keys_colliding_once_module_is_removed_are_named(tmp_path, checkpoint):
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    state["module.backbone.norm.bias"] = state["backbone.norm.bias"].clone()
    torch.save(state, tmp_path / "dup.pth")
    with pytest.raises(ckpt.CheckpointError, match="same tensor") as err:
        ckpt.load(str(tmp_path / "dup.pth"))
    message = str(err.value)
    assert "'backbone.norm.bias'" in message and "'module.backbone.norm.bias'" in message
    assert "dup.pth" in message


# -- ranks, against the Keras model (runs on every backend) -------------------------------

@pytest.fixture(scope="module")
def model(spec):
    import videoswin

    backbone = videoswin.VideoSwinBackbone(**spec.backbone_kwargs())
    return videoswin.VideoSwinClassifier(backbone, spec.num_classes)


def test_a_valid_checkpoint_plans_every_variable(model, spec, checkpoint):
    from converter import mapping

    state = ckpt.load(checkpoint).state
    pairs, _ = mapping.plan(model, state, spec.window_size)
    assert len(pairs) == len(mapping.keras_variables(model))
    np.testing.assert_array_equal(pairs["patch_embed/proj/kernel"],
                                  state["backbone.patch_embed.proj.weight"]
                                  .transpose(2, 3, 4, 1, 0))


@pytest.mark.parametrize("key,shape,says", [
    ("backbone.layers.0.blocks.0.attn.qkv.weight", (48 * 16,),
     "checkpoint 768 (as Keras none: 1-D, needs 2-D) vs model layers_0/blocks_0/attn/qkv/kernel "
     "16x48"),
    ("backbone.patch_embed.proj.weight", (16, 96),
     "checkpoint 16x96 (as Keras none: 2-D, needs 5-D) vs model patch_embed/proj/kernel "
     "2x4x4x3x16"),
    ("backbone.layers.0.blocks.0.attn.proj.weight", (16, 16, 1),
     "checkpoint 16x16x1 (as Keras none: 3-D, needs 2-D) vs model "
     "layers_0/blocks_0/attn/proj/kernel 16x16"),
    ("backbone.norm.weight", (), "checkpoint scalar (as Keras none: 0-D, needs 1-D)"),
])
def test_a_tensor_of_the_wrong_rank_is_a_shape_mismatch(model, spec, checkpoint, key, shape,
                                                        says):
    from converter import mapping

    state = dict(ckpt.load(checkpoint).state)
    size = int(np.prod(shape))
    state[key] = np.resize(state[key], size).reshape(shape)
    with pytest.raises(mapping.MappingError, match="1 shape mismatches") as err:
        mapping.plan(model, state, spec.window_size)
    assert f"{key}: {says}" in str(err.value)


def test_a_half_precision_checkpoint_maps_as_float32(tmp_path, model, spec, checkpoint):
    from converter import mapping

    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"state_dict": half}, tmp_path / "bf16.pth")
    pairs, _ = mapping.plan(model, ckpt.load(str(tmp_path / "bf16.pth")).state,
                            spec.window_size)
    np.testing.assert_array_equal(pairs["norm/gamma"],
                                  half["backbone.norm.weight"].float().numpy())
    assert all(a.dtype == np.float32 for a in pairs.values())
