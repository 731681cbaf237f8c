"""The datasets of the published Video Swin models: names, classes, label maps, pipelines."""

from dataclasses import dataclass

from videoswin.core import pipelines


@dataclass(frozen=True)
class Dataset:
    key: str                            # as in ModelSpec.dataset
    title: str                          # display name
    hub_tag: str                        # Hugging Face dataset tag
    num_classes: int
    label_file: str | None              # in videoswin/labels/, or None where none ships
    pipeline: pipelines.TestPipeline
    note: str | None = None             # shown under the dataset's model-zoo table


DATASETS = {d.key: d for d in (
    Dataset("kinetics400", "Kinetics-400", "kinetics-400", 400, "kinetics400.txt",
            pipelines.KINETICS),
    Dataset("kinetics600", "Kinetics-600", "kinetics-600", 600, "kinetics600.txt",
            pipelines.KINETICS),
    Dataset("kinetics700", "Kinetics-700", "kinetics-700", 700, "kinetics700.txt",
            pipelines.KINETICS),
    Dataset("kinetics710", "Kinetics-710", "kinetics-710", 710, "kinetics710.txt",
            pipelines.KINETICS,
            note="Kinetics-710 merges the Kinetics-400, -600 and -700 classes; mmaction2 "
                 "reports its accuracy on their three validation sets together."),
    Dataset("sthv2", "Something-Something V2", "something-something-v2", 174, "sthv2.txt",
            pipelines.SSV2,
            note="One clip of 32 frames sampled uniformly over the whole video (no frame "
                 "interval), x 3 crops."),
)}
# alias (lower case, letters and digits only) -> dataset key
ALIASES = {
    "k400": "kinetics400", "k600": "kinetics600", "k700": "kinetics700", "k710": "kinetics710",
    "kinetics7002020": "kinetics700", "ssv2": "sthv2", "sthsthv2": "sthv2",
    "somethingsomethingv2": "sthv2",
}


def canonical(name):
    """The `DATASETS` key for a name or alias such as 'K400', 'kinetics-400' or 'ssv2'."""
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)} "
                         "or an alias such as k400, kinetics-700, ssv2")
    return key


def get(name):
    """The `Dataset` of a name or alias."""
    return DATASETS[canonical(name)]


def for_num_classes(num_classes):
    """The dataset key whose class count is `num_classes`, or None."""
    matches = [d.key for d in DATASETS.values() if d.num_classes == num_classes]
    return matches[0] if len(matches) == 1 else None


def pipeline_for(name=None):
    """The official test pipeline of a dataset (Kinetics' for None or an unknown name)."""
    try:
        return get(name).pipeline if name is not None else pipelines.KINETICS
    except ValueError:
        return pipelines.KINETICS
