"""videoswin.core.datasets and labels: names, aliases, class counts, pipelines, label maps."""

from importlib import resources

import pytest

from videoswin.core import datasets, labels, pipelines
from videoswin.core.datasets import DATASETS, canonical, for_num_classes, get, pipeline_for

pytestmark = pytest.mark.backend_independent


def test_the_datasets_and_their_class_counts():
    assert {key: d.num_classes for key, d in DATASETS.items()} == {
        "kinetics400": 400, "kinetics600": 600, "kinetics700": 700, "kinetics710": 710,
        "sthv2": 174}
    for key, d in DATASETS.items():
        assert d.key == key
    assert get("sthv2").title == "Something-Something V2"
    assert get("k400").title == "Kinetics-400"
    assert get("ssv2").hub_tag == "something-something-v2"


@pytest.mark.parametrize("name,key", [
    ("kinetics400", "kinetics400"), ("K400", "kinetics400"), ("k400", "kinetics400"),
    ("kinetics-400", "kinetics400"), ("Kinetics_400", "kinetics400"),
    ("Kinetics-600", "kinetics600"), ("K600", "kinetics600"),
    ("k700", "kinetics700"), ("kinetics700-2020", "kinetics700"),
    ("K710", "kinetics710"), ("kinetics-710", "kinetics710"),
    ("sthv2", "sthv2"), ("ssv2", "sthv2"), ("SSv2", "sthv2"),
    ("Something-Something-V2", "sthv2"), ("something-something v2", "sthv2"),
    ("sth-sth-v2", "sthv2"),
])
def test_canonical_names_and_aliases(name, key):
    assert canonical(name) == key
    assert get(name) is DATASETS[key]


@pytest.mark.parametrize("name", ["ucf101", "kinetics", "k4000", "kinetics-500", "", "v2",
                                  "something-something", None])
def test_unknown_names_are_refused(name):
    with pytest.raises(ValueError, match="unknown dataset") as err:
        canonical(name)
    assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match="unknown dataset"):
        get(name)


@pytest.mark.parametrize("count,key", [(400, "kinetics400"), (600, "kinetics600"),
                                       (700, "kinetics700"), (710, "kinetics710"),
                                       (174, "sthv2"), (101, None), (0, None), (None, None)])
def test_for_num_classes(count, key):
    assert for_num_classes(count) == key


def test_ssv2_pipeline_is_uniform_sampling_one_clip():
    p = pipeline_for("sthv2")
    assert p.uniform_sampling is True
    assert (p.clip_len, p.num_clips, p.frame_interval, p.num_crops) == (32, 1, 1, 3)
    assert p.views == "32x1x3"
    assert pipeline_for("Something-Something-V2") == p


def test_kinetics_pipeline_is_four_clips_three_crops_interval_two():
    for name in ("kinetics400", "K600", "kinetics-700", "k710"):
        p = pipeline_for(name)
        assert p.uniform_sampling is False
        assert (p.clip_len, p.frame_interval, p.num_clips, p.num_crops) == (32, 2, 4, 3)
        assert (p.short_side, p.crop_size) == (224, 224)
        assert p.views == "32x4x3"
        assert p.average_clips == "prob"
        assert p.mean == (123.675, 116.28, 103.53) and p.std == (58.395, 57.12, 57.375)


def test_default_pipeline_is_kinetics():
    assert pipeline_for() is pipelines.KINETICS
    assert pipeline_for(None) is pipelines.KINETICS
    assert pipeline_for("no-such-dataset") is pipelines.KINETICS


# -- label maps -----------------------------------------------------------------------------

LABELLED = [key for key, d in DATASETS.items() if d.label_file is not None]


def test_which_datasets_ship_a_label_map():
    assert sorted(LABELLED) == ["kinetics400", "kinetics600", "kinetics700", "kinetics710",
                                "sthv2"]
    packaged = sorted(p.name for p in resources.files("videoswin").joinpath("labels").iterdir()
                      if p.name.endswith(".txt"))
    assert packaged == sorted(DATASETS[k].label_file for k in LABELLED)


@pytest.mark.parametrize("key", LABELLED)
def test_label_map_has_one_distinct_name_per_class(key):
    names = labels.load_labels(key)
    assert len(names) == DATASETS[key].num_classes
    assert len(set(names)) == len(names)
    assert all(name == name.strip() and name and not name.startswith("#") for name in names)
    assert labels.has_labels(key)


def test_label_maps_first_and_last_classes():
    k400 = labels.load_labels("K400")
    assert (k400[0], k400[1], k400[-1]) == ("abseiling", "air drumming", "zumba")
    k700 = labels.load_labels("kinetics-700")
    assert (k700[0], k700[-1]) == ("abseiling", "zumba")
    ssv2 = labels.load_labels("ssv2")
    assert ssv2[0] == "Approaching something with your camera"
    assert ssv2[173] == "Wiping something off of something"


def test_load_labels_refuses_an_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        labels.load_labels("ucf101")


def test_notes():
    assert "Kinetics-400, -600 and -700" in DATASETS["kinetics710"].note
    assert DATASETS["kinetics400"].note is None
    assert datasets.ALIASES["ssv2"] == "sthv2"
