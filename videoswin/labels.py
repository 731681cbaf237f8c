"""Class-name maps of the datasets the published models were trained on.

The maps ship as `videoswin/labels/<dataset>.txt`: one name per line in class-index order,
`#` lines are comments (each file names its source there). Kinetics-600 and Kinetics-710 have
no map here (no package we could reach ships one): pass your own file (`read_label_file`).
"""

import json
from importlib import resources
from pathlib import Path

# dataset name (as in ModelSpec.dataset) -> packaged file, or None where no map ships
DATASETS = {
    "kinetics400": "kinetics400.txt",
    "kinetics600": None,
    "kinetics700": "kinetics700.txt",
    "kinetics710": None,
    "sthv2": "sthv2.txt",
}
NUM_CLASSES = {"kinetics400": 400, "kinetics600": 600, "kinetics700": 700, "kinetics710": 710,
               "sthv2": 174}
# alias (lower case, letters and digits only) -> dataset name
_ALIASES = {
    "k400": "kinetics400", "k600": "kinetics600", "k700": "kinetics700",
    "kinetics7002020": "kinetics700", "ssv2": "sthv2", "sthsthv2": "sthv2",
    "somethingsomethingv2": "sthv2",
}


def canonical_dataset(name):
    """The `DATASETS` key for a dataset name or alias such as 'K400', 'kinetics-400' or 'ssv2'."""
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)} "
                         "or an alias such as k400, kinetics-700, ssv2")
    return key


def dataset_for_num_classes(num_classes):
    """The dataset whose class count is `num_classes`, or None."""
    matches = [name for name, n in NUM_CLASSES.items() if n == num_classes]
    return matches[0] if len(matches) == 1 else None


def has_labels(dataset):
    """Whether a label map for `dataset` ships with videoswin."""
    return DATASETS[canonical_dataset(dataset)] is not None


def load_labels(dataset):
    """The packaged class names of `dataset` (e.g. 'kinetics400', 'sthv2'), index order."""
    key = canonical_dataset(dataset)
    filename = DATASETS[key]
    if filename is None:
        raise LookupError(f"no {key} label map ships with videoswin; pass your own label file "
                          "(one class name per line, in class-index order)")
    text = resources.files("videoswin").joinpath("labels", filename).read_text("utf-8")
    return _parse_lines(text.splitlines(), filename)


def read_label_file(path):
    """Class names from a user file: one per line (`#` lines skipped), or a JSON list, or a
    JSON object mapping class index to name (as `id2label` in Hugging Face configs)."""
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read label file {path}: {err}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"label file {path} is not valid JSON: {err}") from None
        if isinstance(data, dict):
            try:
                index = {int(k): str(v) for k, v in data.items()}
            except ValueError:
                raise ValueError(f"label file {path}: JSON object keys must be class indices"
                                 ) from None
            if sorted(index) != list(range(len(index))):
                raise ValueError(f"label file {path}: class indices must be 0..{len(index) - 1}")
            return [index[i] for i in range(len(index))]
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return list(data)
        raise ValueError(f"label file {path}: expected a JSON list of names or an object "
                         "mapping index to name")
    return _parse_lines(text.splitlines(), str(path))


def _parse_lines(lines, source):
    names = [line.strip() for line in lines]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(f"label file {source} holds no class names")
    return names
