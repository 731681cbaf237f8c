"""videoswin.core.manifest: the schema of `manifest.json`, strict JSON, atomic writes, verify."""

import hashlib
import json
import os

import numpy as np
import pytest

from videoswin.core import manifest as manifest_mod
from videoswin.core.manifest import Manifest, ManifestError, describe, sha256, write_json
from videoswin.core.spec import CheckpointSource, Metrics, ModelSpec

pytestmark = pytest.mark.backend_independent

NAME = "swin_tiny_patch244_window877_kinetics400_1k"
# The four model files of a conversion with a head, written out by hand.
FILES = [f"{NAME}.weights.h5", f"{NAME}.keras", f"{NAME}_backbone.weights.h5",
         f"{NAME}_backbone.keras"]
BACKBONE_FILES = FILES[2:]


def _never(constant):
    raise AssertionError(f"strict JSON must not contain {constant}")


def _spec():
    return ModelSpec(name=NAME, path=f"configs/recognition/swin/{NAME}.py",
                     window_size=(8, 7, 7), dataset="kinetics400", pretrain="ImageNet-1K",
                     arch_name="tiny",
                     checkpoint=CheckpointSource(filename=f"{NAME}.pth", url="https://x/y.pth"),
                     metrics=Metrics(top1=78.8, top5=93.6, source="https://readme",
                                     views="32x4x3"))


def _files(folder, names=FILES):
    """Write small distinct files; returns their artifact records, computed here by hand."""
    records = {}
    for i, name in enumerate(names):
        payload = bytes([i + 1]) * (10 + i) + name.encode()
        (folder / name).write_bytes(payload)
        records[name] = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    return records


def _data(folder, names=FILES, **changes):
    data = {
        "config": NAME,
        "config_path": f"configs/recognition/swin/{NAME}.py",
        "spec": _spec().to_dict(),
        "layout": "official",
        "source_checkpoint": {"name": f"{NAME}.pth", "sha256": "ab" * 32, "size": 123,
                              "random_weights_seed": None, "url": "https://x/y.pth"},
        "params": 28158070,
        "parity": {"status": "passed", "max_abs_diff": float("nan"),
                   "tolerance": float("inf"), "floor": float("-inf"), "clips": 2},
        "artifacts": _files(folder, names),
    }
    data.update(changes)
    return data


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "conversion"
    out.mkdir()
    return out


# -- parse, write, read ---------------------------------------------------------------------

def test_complete_manifest_parses_with_accessors(folder):
    m = Manifest.parse(_data(folder))
    assert m.name == NAME
    assert m.spec == _spec()
    assert m.with_head is True                      # the classifier .keras is listed
    assert m.is_random is False and m.random_seed is None
    assert m.parity_status == "passed"
    assert m.hub is None
    assert m.keras_file() == f"{NAME}.keras"
    assert m.keras_file(backbone=True) == f"{NAME}_backbone.keras"
    assert m.required_files() == FILES


def test_backbone_only_and_random_manifest_accessors(folder):
    data = _data(folder, names=BACKBONE_FILES)
    data["source_checkpoint"]["random_weights_seed"] = 7
    m = Manifest.parse(data)
    assert m.with_head is False                     # no classifier .keras listed
    assert m.required_files() == BACKBONE_FILES
    assert m.is_random is True and m.random_seed == 7
    # Seed 0 is a seed, not "no seed".
    data["source_checkpoint"]["random_weights_seed"] = 0
    assert Manifest.parse(data).is_random is True
    # An explicit `with_head` wins over the inference from the artifacts.
    assert Manifest.parse(_data(folder, with_head=False)).with_head is False
    assert Manifest.parse(_data(folder, with_head=False)).required_files() == BACKBONE_FILES


def test_write_read_round_trip_is_strict_json(folder):
    m = Manifest.parse(_data(folder))
    path = m.write(str(folder))
    assert path == os.path.join(str(folder), "manifest.json")
    text = (folder / "manifest.json").read_text("utf-8")
    for literal in ("NaN", "Infinity"):
        assert literal not in text
    raw = json.loads(text, parse_constant=_never)
    assert raw["schema_version"] == 1
    assert list(raw)[0] == "schema_version"
    assert raw["parity"] == {"status": "passed", "max_abs_diff": None, "tolerance": None,
                             "floor": None, "clips": 2}
    assert raw["params"] == 28158070
    assert raw["spec"]["window_size"] == [8, 7, 7]

    back = Manifest.read(str(folder))
    assert back.source == path
    assert back.spec == _spec()
    assert back["artifacts"] == m["artifacts"]
    assert back["parity"]["max_abs_diff"] is None
    assert back["schema_version"] == 1
    back.verify(str(folder))
    # Writing what was read gives the same bytes.
    back.write(str(folder))
    assert (folder / "manifest.json").read_text("utf-8") == text


def test_write_leaves_no_temporary_file(folder):
    m = Manifest.parse(_data(folder))
    assert sorted(os.listdir(folder)) == sorted(FILES)
    m.write(str(folder))
    m.write(str(folder))                            # replacing an existing one
    assert sorted(os.listdir(folder)) == sorted(FILES + ["manifest.json"])


def test_failed_validation_leaves_existing_manifest_untouched(folder):
    good = Manifest.parse(_data(folder))
    good.write(str(folder))
    original = (folder / "manifest.json").read_bytes()
    listing = sorted(os.listdir(folder))
    good["parity"] = {"status": "maybe"}
    with pytest.raises(ManifestError, match="parity.status"):
        good.write(str(folder))
    assert (folder / "manifest.json").read_bytes() == original
    assert sorted(os.listdir(folder)) == listing


def test_failed_write_removes_its_temporary_file(folder, monkeypatch):
    Manifest.parse(_data(folder)).write(str(folder))
    original = (folder / "manifest.json").read_bytes()
    listing = sorted(os.listdir(folder))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(manifest_mod.os, "replace", broken_replace)
    changed = Manifest.parse(_data(folder, params=1))
    with pytest.raises(OSError, match="disk full"):
        changed.write(str(folder))
    assert sorted(os.listdir(folder)) == listing
    assert (folder / "manifest.json").read_bytes() == original


def test_manifest_without_schema_version_reads_as_version_1(folder):
    data = _data(folder, parity={"status": "skipped"})
    assert "schema_version" not in data
    (folder / "manifest.json").write_text(json.dumps(data))
    m = Manifest.read(str(folder))
    assert m.spec == _spec()
    assert m.get("schema_version", 1) == 1
    m.write(str(folder))
    assert json.loads((folder / "manifest.json").read_text())["schema_version"] == 1


def test_newer_schema_version_is_refused_naming_the_file(folder):
    data = _data(folder, schema_version=2)
    data["parity"] = {"status": "passed"}
    (folder / "manifest.json").write_text(json.dumps(data))
    path = os.path.join(str(folder), "manifest.json")
    with pytest.raises(ManifestError, match="schema_version 2 is newer") as err:
        Manifest.read(str(folder))
    assert str(err.value).startswith(path + ":")
    with pytest.raises(ManifestError, match="newer"):
        Manifest.parse(data)


@pytest.mark.parametrize("version", [0, -1, "1", True, 1.0, None])
def test_bad_schema_version_is_refused(folder, version):
    with pytest.raises(ManifestError, match="schema_version"):
        Manifest.parse(_data(folder, schema_version=version))


@pytest.mark.parametrize("key", ["config", "spec", "source_checkpoint", "params", "parity",
                                 "artifacts"])
def test_missing_key_is_refused_naming_it(folder, key):
    data = _data(folder)
    del data[key]
    with pytest.raises(ManifestError, match=f"lacks {key}") as err:
        Manifest.parse(data, source="here.json")
    assert str(err.value).startswith("here.json:")


def test_missing_keys_are_all_named(folder):
    with pytest.raises(ManifestError) as err:
        Manifest.parse({"config": NAME})
    for key in ("spec", "source_checkpoint", "params", "parity", "artifacts"):
        assert key in str(err.value)


@pytest.mark.parametrize("data", [[], "manifest", 3, None])
def test_non_object_is_refused(data):
    with pytest.raises(ManifestError, match="must be a JSON object"):
        Manifest.parse(data)


def test_non_object_file_is_refused(folder):
    (folder / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="must be a JSON object") as err:
        Manifest.read(str(folder))
    assert str(folder / "manifest.json") in str(err.value)


@pytest.mark.parametrize("bad", ["../../victim.txt", "/etc/passwd", "a/../b", "a//b", "..",
                                 ".", "", "a\\b", "x\0y"])
def test_artifact_name_that_leaves_the_folder_is_refused(folder, bad):
    # Exports list their files by relative path (`NAME_saved_model/saved_model.pb`):
    # "a/b" is a valid artifact name; anything that can leave the folder is not.
    data = _data(folder)
    data["artifacts"][bad] = {"size": 1, "sha256": "0" * 64}
    with pytest.raises(ManifestError, match="not a relative path inside the folder") as err:
        Manifest.parse(data)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".."])
def test_config_name_must_be_plain(folder, bad):
    with pytest.raises(ManifestError, match="config name") as err:
        Manifest.parse(_data(folder, config=bad))
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("field,value,message", [
    ("spec", "tiny", "`spec` is not an object"),
    ("spec", {"name": NAME}, "`spec` is not a model spec"),
    ("spec", {**ModelSpec(name="x", path="y").to_dict(), "colour": "red"},
     "`spec` is not a model spec"),
    ("params", "28M", "`params` '28M' is not an int"),
    ("params", 2.5, "`params` 2.5 is not an int"),
    ("parity", {"status": "ok"}, "parity.status"),
    ("parity", "passed", "parity.status"),
    ("source_checkpoint", "x.pth", "`source_checkpoint` is not an object"),
    ("artifacts", ["a.keras"], "`artifacts` is not an object"),
    ("artifacts", {"a.keras": {"size": "1", "sha256": "0" * 64}}, "artifact 'a.keras' needs"),
    ("artifacts", {"a.keras": {"size": 1, "sha256": "0" * 63}}, "artifact 'a.keras' needs"),
    ("artifacts", {"a.keras": {"size": 1, "sha256": "A" * 64}}, "artifact 'a.keras' needs"),
    ("artifacts", {"a.keras": [1, "0" * 64]}, "artifact 'a.keras' needs"),
    ("hub", {"repo_id": "videoswin/x"}, "`hub` needs"),
    ("hub", "videoswin/x", "`hub` needs"),
])
def test_malformed_field_is_refused_naming_it(folder, field, value, message):
    with pytest.raises(ManifestError) as err:
        Manifest.parse(_data(folder, **{field: value}))
    assert message in str(err.value)


def test_hub_record_is_accepted(folder):
    hub = {"repo_id": "videoswin/x", "url": "https://huggingface.co/videoswin/x",
           "revision": "abc"}
    assert Manifest.parse(_data(folder, hub=hub)).hub == hub


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literal_in_file_is_refused(folder, literal):
    data = _data(folder)
    data["parity"] = {"status": "passed", "max_abs_diff": "PLACEHOLDER"}
    text = json.dumps(data).replace('"PLACEHOLDER"', literal)
    assert literal in text
    (folder / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match="not a readable JSON manifest") as err:
        Manifest.read(str(folder))
    assert str(folder / "manifest.json") in str(err.value)
    assert literal in str(err.value)


def test_unreadable_and_missing_manifest(folder):
    with pytest.raises(ManifestError, match="not found") as err:
        Manifest.read(str(folder))
    assert str(folder / "manifest.json") in str(err.value)
    (folder / "manifest.json").write_text("{ not json")
    with pytest.raises(ManifestError, match="not a readable JSON manifest"):
        Manifest.read(str(folder))
    (folder / "manifest.json").write_bytes(b'{"config": "\xff"}')
    with pytest.raises(ManifestError, match="not a readable JSON manifest"):
        Manifest.read(str(folder))


# -- verify ---------------------------------------------------------------------------------

def test_verify_passes_for_intact_files(folder):
    m = Manifest.parse(_data(folder))
    assert m.verify(str(folder)) is None
    assert m.verify(str(folder), [FILES[1]]) is None


def test_verify_detects_a_changed_byte(folder):
    m = Manifest.parse(_data(folder))
    target = folder / FILES[2]
    payload = bytearray(target.read_bytes())
    payload[3] ^= 0x01                              # same size, one bit different
    target.write_bytes(bytes(payload))
    with pytest.raises(ManifestError, match="differs from the manifest") as err:
        m.verify(str(folder))
    assert str(target) in str(err.value)
    # Only the named files are checked when names are given.
    m.verify(str(folder), [FILES[0]])
    with pytest.raises(ManifestError, match=FILES[2]):
        m.verify(str(folder), [FILES[2]])


def test_verify_detects_a_size_change(folder):
    m = Manifest.parse(_data(folder))
    target = folder / FILES[0]
    with open(target, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="differs from the manifest") as err:
        m.verify(str(folder))
    assert str(target) in str(err.value)


def test_verify_detects_a_missing_file(folder):
    m = Manifest.parse(_data(folder))
    (folder / FILES[3]).unlink()
    with pytest.raises(ManifestError, match="is missing") as err:
        m.verify(str(folder))
    assert FILES[3] in str(err.value)


def test_verify_needs_every_required_file_listed(folder):
    data = _data(folder)
    del data["artifacts"][FILES[1]]
    data["with_head"] = True
    with pytest.raises(ManifestError, match=f"does not list {FILES[1]}"):
        Manifest.parse(data).verify(str(folder))
    with pytest.raises(ManifestError, match="does not list other.bin"):
        Manifest.parse(_data(folder)).verify(str(folder), ["other.bin"])


def test_verify_refuses_an_artifact_symlinked_outside(folder, tmp_path):
    m = Manifest.parse(_data(folder))
    target = folder / FILES[0]
    outside = tmp_path / "outside.bin"
    outside.write_bytes(target.read_bytes())        # same bytes: only the link is wrong
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(ValueError, match="resolves outside") as err:
        m.verify(str(folder))
    assert repr(FILES[0]) in str(err.value)


def test_verify_reports_an_escaping_symlink_as_manifest_error(folder, tmp_path):
    m = Manifest.parse(_data(folder))
    target = folder / FILES[0]
    outside = tmp_path / "outside.bin"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(ManifestError):
        m.verify(str(folder))


# -- helpers --------------------------------------------------------------------------------

def test_sha256_and_describe(tmp_path):
    payload = b"video swin\n" * 100_000                # > 1 MiB: more than one block
    path = tmp_path / "f.bin"
    path.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    assert sha256(path) == digest
    assert sha256(path, chunk=7) == digest
    assert describe(path) == {"size": len(payload), "sha256": digest}
    assert describe(path, digest="f" * 64) == {"size": len(payload), "sha256": "f" * 64}
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert describe(empty) == {
        "size": 0, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}


def test_write_json_is_strict_and_atomic(tmp_path):
    path = tmp_path / "report.json"
    write_json(str(path), {"a": float("nan"), "b": [1.5, float("inf")], "c": np.float32(0.25),
                           "d": np.arange(3), "e": (1, 2), 7: "seven"})
    text = path.read_text("utf-8")
    assert json.loads(text, parse_constant=_never) == {
        "a": None, "b": [1.5, None], "c": 0.25, "d": [0, 1, 2], "e": [1, 2], "7": "seven"}
    assert os.listdir(tmp_path) == ["report.json"]
