"""Class-name maps of the datasets the published models were trained on.

The maps ship as `videoswin/labels/<dataset>.txt` (named in `videoswin.core.datasets`): one
name per line in class-index order, `#` lines are comments (each file names its source there).
Every dataset in `videoswin.core.datasets` has one; for other class lists pass your own file
(`read_label_file`).
"""

import json
from importlib import resources
from pathlib import Path

from videoswin.core import datasets


def has_labels(dataset):
    """Whether a label map for `dataset` ships with videoswin."""
    return datasets.get(dataset).label_file is not None


def load_labels(dataset):
    """The packaged class names of `dataset` (e.g. 'kinetics400', 'sthv2'), index order."""
    key = datasets.canonical(dataset)
    filename = datasets.DATASETS[key].label_file
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
