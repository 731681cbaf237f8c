"""Safe loading, layout detection and the clear errors of converter.checkpoint."""

import os
import zipfile

import numpy as np
import pytest
import torch

from converter import checkpoint as ckpt
from tests import oracle

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def tiny():
    return oracle.make_oracle(16, (2, 2, 2, 2), (1, 2, 2, 4), window_size=(2, 3, 3),
                              num_classes=7, seed=3)


@pytest.mark.parametrize("layout,exporter,wrapper", [
    ("official", oracle.official_state_dict, "official"),
    ("mmaction2", oracle.mmaction_state_dict, "mmaction"),
    ("torchvision", oracle.torchvision_state_dict, "bare"),
])
def test_layouts_canonicalise_to_the_official_keys(tmp_path, tiny, layout, exporter, wrapper):
    path = oracle.save_checkpoint(exporter(tiny), tmp_path / "c.pth", wrapper=wrapper)
    loaded = ckpt.load(str(path))
    official = oracle.official_state_dict(tiny)
    assert loaded.layout == layout
    assert loaded.has_head
    assert sorted(loaded.state) == sorted(official)
    for key, value in official.items():
        np.testing.assert_array_equal(loaded.state[key], value.numpy(), err_msg=key)


def test_module_prefix_and_model_wrapper_are_unwrapped(tmp_path, tiny):
    state = {"module." + k: v for k, v in oracle.official_state_dict(tiny).items()}
    torch.save({"model": state}, tmp_path / "c.pth")
    loaded = ckpt.load(str(tmp_path / "c.pth"))
    assert "backbone.norm.weight" in loaded.state and loaded.layout == "official"


def test_bare_backbone_state_dict_has_no_head(tmp_path, tiny):
    state = {k[len("backbone."):]: v for k, v in oracle.official_state_dict(tiny).items()
             if k.startswith("backbone.")}
    torch.save(state, tmp_path / "b.pth")
    loaded = ckpt.load(str(tmp_path / "b.pth"))
    assert not loaded.has_head
    assert "backbone.patch_embed.proj.weight" in loaded.state


def test_safetensors_is_accepted(tmp_path, tiny):
    from safetensors.torch import save_file

    save_file(dict(oracle.official_state_dict(tiny)), tmp_path / "c.safetensors")
    loaded = ckpt.load(str(tmp_path / "c.safetensors"))
    assert loaded.layout == "official" and len(loaded.state) == len(
        oracle.official_state_dict(tiny))


class Evil:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_pickle_with_objects_is_refused_unless_trusted(tmp_path, tiny):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": oracle.official_state_dict(tiny), "extra": Evil()}, path)
    with pytest.raises(ckpt.CheckpointError, match="--trust-checkpoint") as err:
        ckpt.load(str(path))
    assert str(path) in str(err.value)
    # Opting in loads it (the object is only a print call here).
    assert ckpt.load(str(path), trust_pickle=True).layout == "official"


def test_missing_file(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(str(tmp_path / "nope.pth"))


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("just some text, not a checkpoint\n")
    with pytest.raises(ckpt.CheckpointError, match="not a PyTorch checkpoint") as err:
        ckpt.load(str(path))
    assert "notes.pth" in str(err.value)


def test_truncated_checkpoint(tmp_path, tiny):
    path = tmp_path / "c.pth"
    oracle.save_checkpoint(oracle.official_state_dict(tiny), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load(str(path))


def test_pickled_non_dict_and_non_swin(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(ckpt.CheckpointError, match="not a state dict"):
        ckpt.load(str(tmp_path / "list.pth"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ckpt.CheckpointError, match="does not look like a Video Swin"):
        ckpt.load(str(tmp_path / "other.pth"))


def test_nan_and_inf_are_named(tmp_path, tiny):
    state = oracle.official_state_dict(tiny)
    state["backbone.layers.1.blocks.0.mlp.fc1.weight"][0, 0] = float("nan")
    state["backbone.norm.bias"][1] = float("inf")
    oracle.save_checkpoint(state, tmp_path / "c.pth")
    with pytest.raises(ckpt.CheckpointError, match="NaN or Inf") as err:
        ckpt.load(str(tmp_path / "c.pth"))
    assert "layers.1.blocks.0.mlp.fc1.weight" in str(err.value)
    assert "backbone.norm.bias" in str(err.value)


def test_legacy_non_zip_format_loads(tmp_path, tiny):
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": oracle.official_state_dict(tiny)}, path,
               _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert ckpt.load(str(path)).layout == "official"


def test_offline_download_says_to_pass_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSWIN_CACHE", str(tmp_path))
    with pytest.raises(ckpt.CheckpointError, match="--checkpoint PATH"):
        ckpt.fetch("http://127.0.0.1:9/swin.pth", timeout=2, log=lambda *_: None)
    assert not any(tmp_path.rglob("*.pth*"))


def _rss_file_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status
                    if line.startswith("RssFile:")) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_consumed_tensors_of_a_mapped_checkpoint_leave_resident_memory(tmp_path):
    big = torch.randn(16, 1024, 1024)            # 64 MiB
    path = tmp_path / "big.pth"
    torch.save({"state_dict": {"backbone.patch_embed.proj.weight": big}}, path)
    before = _rss_file_mib()
    loaded = ckpt.load(str(path))                # the NaN/Inf check reads every page...
    after_load = _rss_file_mib()
    array = loaded.state["backbone.patch_embed.proj.weight"]
    assert float(array.sum(dtype=np.float64)) == pytest.approx(
        float(big.sum(dtype=torch.float64)))    # ...reading it again maps it back in
    touched = _rss_file_mib()
    loaded.release(array)
    released = _rss_file_mib()
    assert after_load - before < 16              # ...and releases each tensor after
    assert touched - after_load > 56             # the measure sees a whole read
    assert touched - released > 56
    np.testing.assert_array_equal(array, big.numpy())   # the data is intact

    # Only the checkpoint's own mapping is ever advised: anonymous memory keeps its data.
    own = np.arange(4 << 20, dtype=np.float32)
    loaded.release(own)
    loaded.release(own[::2])
    assert own[-1] == (4 << 20) - 1 and float(own.sum(dtype=np.float64)) == float(
        np.arange(4 << 20, dtype=np.float64).sum())


def test_release_is_a_no_op_without_a_mapping(tmp_path, tiny):
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": oracle.official_state_dict(tiny)}, path,
               _use_new_zipfile_serialization=False)
    loaded = ckpt.load(str(path))
    key = "backbone.patch_embed.proj.weight"
    loaded.release(loaded.state[key])
    np.testing.assert_array_equal(loaded.state[key],
                                  oracle.official_state_dict(tiny)[key].numpy())
