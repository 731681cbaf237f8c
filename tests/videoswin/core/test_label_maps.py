"""The packaged Kinetics-600 and Kinetics-710 label maps: provenance, size, order, lookup.

Both files are mmaction2's label maps verbatim under a `#` header: the body of each file (the
lines after the header) must hash to the git blob id its header names, so a reordered, renamed
or re-spelt class fails here without fetching anything.
"""

import hashlib
from importlib import resources

import pytest

from converter.config import CONFIG_ROOT, load_spec
from videoswin.core import datasets, labels

pytestmark = pytest.mark.backend_independent

REPO = CONFIG_ROOT.parent
K600_CONFIG = REPO / "configs/recognition/swin/swin_base_patch244_window877_kinetics600_22k.py"
K710_CONFIG = (REPO / "configs/recognition/swin/"
               "swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb.py")

MMACTION2_COMMIT = "4d6c93474730cad2f25e51109adcf96824efc7a3"       # tag v1.2.0
# git blob ids of the source files (`git rev-parse <commit>:<path>`)
K600_BLOB = "639e9c91fa8a941ea57942872fae55628d590b42"
# the same blob: mmaction2 0.x (71a938ab) tools/data/kinetics/label_map_k600.txt, and
# google-deepmind/kinetics-i3d (0667e889) data/label_map_600.txt
K710_BLOB = "5b3f53cedddfa4573d16ccdb64e9cbf8392add04"

# Kinetics-400 names Kinetics-710 writes under their Kinetics-700 name (index map from
# mmaction2's configs/recognition/uniformerv2/k710_channel_map/map_k400.json).
K400_RENAMED_IN_K710 = {
    "balloon blowing": "inflating balloons",
    "changing wheel": "changing wheel (not on bike)",
    "cooking sausages": "cooking sausages (not on barbeque)",
    "drinking": "sipping cup",
    "dying hair": "dyeing hair",
    "garbage collecting": "person collecting garbage",
    "hugging": "hugging (not baby)",
    "making bed": "making the bed",
    "opening bottle": "opening bottle (not wine)",
    "picking fruit": "picking apples",
    "skiing (not slalom or crosscountry)": "skiing mono",
    "sniffing": "smelling feet",
    "tying tie": "tying necktie",
}


def _text(filename):
    return resources.files("videoswin").joinpath("labels", filename).read_text("utf-8")


def _header_and_body(filename):
    lines = _text(filename).splitlines(keepends=True)
    n = 0
    while n < len(lines) and lines[n].startswith("#"):
        n += 1
    return "".join(lines[:n]), "".join(lines[n:])


def _git_blob_id(text):
    data = text.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.mark.parametrize("filename,blob,path", [
    ("kinetics600.txt", K600_BLOB, "tools/data/kinetics/label_map_k600.txt"),
    ("kinetics710.txt", K710_BLOB, "tools/data/kinetics710/label_map_k710.txt"),
])
def test_body_is_the_mmaction2_file_verbatim(filename, blob, path):
    header, body = _header_and_body(filename)
    assert "open-mmlab/mmaction2" in header and "Apache-2.0" in header
    assert path in header and MMACTION2_COMMIT in header and blob in header
    assert _git_blob_id(body) == blob
    assert all(line.strip() and not line.startswith("#") for line in body.splitlines())


@pytest.mark.parametrize("key,config,count", [("kinetics600", K600_CONFIG, 600),
                                              ("K710", K710_CONFIG, 710)])
def test_one_distinct_name_per_class_of_the_config_head(key, config, count):
    names = labels.load_labels(key)
    spec = load_spec(config)
    assert len(names) == len(set(names)) == count == spec.num_classes
    assert datasets.get(key).num_classes == count
    assert datasets.canonical(key) == spec.dataset
    assert all(name == name.strip() and "_" not in name for name in names)


@pytest.mark.parametrize("key,filename", [("kinetics600", "kinetics600.txt"),
                                          ("k600", "kinetics600.txt"),
                                          ("kinetics710", "kinetics710.txt"),
                                          ("k710", "kinetics710.txt")])
def test_load_labels_returns_the_file_names(key, filename):
    assert labels.has_labels(key)
    assert datasets.get(key).label_file == filename
    _, body = _header_and_body(filename)
    assert labels.load_labels(key) == body.splitlines()


def test_kinetics600_order_is_mmaction2_0x_class_numbering():
    # mmaction2 0.x tools/data/parse_file_list.py numbers Kinetics classes by sorting the
    # names with '"' dropped and ' ' written '_'; for these names that is plain sorted order.
    names = labels.load_labels("kinetics600")
    assert names == sorted(names, key=lambda s: s.replace('"', "").replace(" ", "_"))
    assert names == sorted(names)
    assert (names[0], names[1], names[-1]) == ("abseiling", "acting in play", "zumba")


def test_kinetics710_order():
    k710 = labels.load_labels("k710")
    assert k710 != sorted(k710)     # mmaction2's own order, not alphabetical
    assert (k710[0], k710[1], k710[-1]) == ("abseiling", "air drumming", "bull fighting")


def test_kinetics710_against_kinetics400():
    k400 = labels.load_labels("kinetics400")
    k710 = labels.load_labels("kinetics710")
    missing = set(k400) - set(k710)
    assert missing == set(K400_RENAMED_IN_K710)
    assert set(K400_RENAMED_IN_K710.values()) <= set(k710)
    assert len(set(k400) & set(k710)) == 387


def test_kinetics710_against_kinetics600_and_700():
    k600 = set(labels.load_labels("kinetics600"))
    k700 = set(labels.load_labels("kinetics700"))
    k710 = set(labels.load_labels("kinetics710"))
    assert k600 - k710 == {"passing american football (not in game)", "picking fruit",
                           "throwing ball (not baseball or American football)"}
    assert k700 - k710 == {"throwing ball (not baseball or American football)"}
    assert {"passing American football (not in game)", "picking apples",
            "throwing ball"} <= k710
    assert k710 <= set(labels.load_labels("kinetics400")) | k600 | k700 | {"throwing ball"}
