"""videoswin.core.naming: artifact file names and the rule that keeps names in their folder."""

import os

import pytest

from videoswin.core import naming
from videoswin.core.naming import check_plain_name, inside, model_files, parity_files

pytestmark = pytest.mark.backend_independent


def test_manifest_file_name():
    assert naming.MANIFEST == "manifest.json"


def test_model_files_with_and_without_head():
    assert model_files("swin_tiny") == ["swin_tiny.weights.h5", "swin_tiny.keras",
                                        "swin_tiny_backbone.weights.h5",
                                        "swin_tiny_backbone.keras"]
    assert model_files("swin_tiny", with_head=False) == ["swin_tiny_backbone.weights.h5",
                                                         "swin_tiny_backbone.keras"]
    stem = "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb"
    assert model_files(stem)[1] == stem + ".keras"


def test_keras_and_weights_file():
    assert naming.keras_file("m") == "m.keras"
    assert naming.keras_file("m", backbone=True) == "m_backbone.keras"
    assert naming.weights_file("m") == "m.weights.h5"
    assert naming.weights_file("m", backbone=True) == "m_backbone.weights.h5"


def test_parity_files():
    assert parity_files("swin_tiny") == ("swin_tiny.parity.json", "swin_tiny.parity.md")


@pytest.mark.parametrize("stem", ["", ".", "..", "a/b", "../m", "a\\b", "/abs", "m\0"])
def test_file_names_from_a_bad_stem_are_refused(stem):
    with pytest.raises(ValueError, match="model name"):
        model_files(stem)
    with pytest.raises(ValueError, match="model name"):
        parity_files(stem)


@pytest.mark.parametrize("name", ["m.keras", "swin_tiny.weights.h5", ".hidden", "..m", "a..b",
                                  "m.", "modèle.keras", "with space.json",
                                  "swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e"])
def test_plain_names_pass_through(name):
    assert check_plain_name(name) is name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "/etc/passwd", "/", "a/",
                                  "../../victim.txt", "..\\x", "a\0b", "\0"])
def test_non_plain_names_are_refused(name):
    with pytest.raises(ValueError) as err:
        check_plain_name(name, "artifact")
    assert str(err.value) == f"artifact {name!r} is not a plain file name"


@pytest.mark.parametrize("name", [None, 3, b"m.keras", ["m"]])
def test_non_strings_are_refused(name):
    with pytest.raises(ValueError, match="is not a plain file name"):
        check_plain_name(name)


def test_inside_joins_a_plain_name(tmp_path):
    folder = str(tmp_path)
    assert inside(folder, "m.keras") == os.path.join(folder, "m.keras")   # need not exist
    (tmp_path / "m.keras").write_bytes(b"x")
    assert inside(folder, "m.keras") == os.path.join(folder, "m.keras")


@pytest.mark.parametrize("name", ["..", "a/b", "../x", "/etc/passwd"])
def test_inside_refuses_non_plain_names(tmp_path, name):
    with pytest.raises(ValueError, match="artifact .* is not a plain file name"):
        inside(str(tmp_path), name, "artifact")


def test_inside_refuses_a_symlink_to_a_file_outside(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("secret")
    (folder / "m.keras").symlink_to(victim)
    with pytest.raises(ValueError) as err:
        inside(str(folder), "m.keras", "artifact")
    assert str(err.value) == f"artifact 'm.keras' resolves outside {folder}"


def test_inside_refuses_a_relative_and_a_dangling_symlink_outside(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "victim.txt").write_text("secret")
    (folder / "rel.keras").symlink_to(os.path.join("..", "victim.txt"))
    (folder / "dangling.keras").symlink_to(tmp_path / "not-yet-there.txt")
    (folder / "dir").symlink_to(tmp_path)
    for name in ("rel.keras", "dangling.keras", "dir"):
        with pytest.raises(ValueError, match="resolves outside"):
            inside(str(folder), name)


def test_inside_accepts_a_symlink_that_stays_in_the_folder(tmp_path):
    (tmp_path / "real.keras").write_bytes(b"x")
    (tmp_path / "alias.keras").symlink_to(tmp_path / "real.keras")
    assert inside(str(tmp_path), "alias.keras") == os.path.join(str(tmp_path), "alias.keras")


def test_inside_works_through_a_symlinked_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "m.keras").write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert inside(str(link), "m.keras") == os.path.join(str(link), "m.keras")
