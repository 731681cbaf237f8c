"""Artifact files: names, hashes, atomic staging and the manifest."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile


class OutputError(ValueError):
    """The output directory cannot take the artifacts."""


def names(stem, with_head=True):
    """The artifact file names of a conversion, in a stable order."""
    files = [f"{stem}_backbone.weights.h5", f"{stem}_backbone.keras"]
    if with_head:
        files = [f"{stem}.weights.h5", f"{stem}.keras"] + files
    return files


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(path):
    return {"size": os.path.getsize(path), "sha256": sha256(path)}


def check_writable(output_dir):
    """Create `output_dir` if needed and prove a file can be written there."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise OutputError(f"output directory {output_dir!r} is not writable "
                          f"({err.strerror or err}); choose another with --output-dir.") from None


@contextlib.contextmanager
def staging(output_dir):
    """A temporary folder beside `output_dir`; its files move into place only on success.

    On an exception nothing reaches `output_dir` and the staging folder is removed.
    """
    check_writable(output_dir)
    stage = tempfile.mkdtemp(prefix=".staging-", dir=output_dir)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    else:
        for name in sorted(os.listdir(stage)):
            os.replace(os.path.join(stage, name), os.path.join(output_dir, name))
        shutil.rmtree(stage, ignore_errors=True)


def write_json(path, data):
    """Write JSON via a temporary file and a rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=_plain)
        handle.write("\n")
    os.replace(tmp, path)


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def keras_archive(model, weights_path, target):
    """Write `target` (.keras) from `model`'s config and its already written `.weights.h5`.

    A `.keras` file is a zip of config.json, metadata.json and model.weights.h5, the same
    HDF5 layout that `save_weights` writes; copying that file in (uncompressed, as Keras
    does) avoids serialising hundreds of MB of weights a second time.
    """
    import datetime
    import zipfile

    import keras

    config = json.dumps(keras.saving.serialize_keras_object(model))
    metadata = json.dumps({"keras_version": keras.__version__,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", metadata)
        archive.writestr("config.json", config)
        archive.write(weights_path, "model.weights.h5")


def save_models(stage, stem, classifier, backbone):
    """Save `.weights.h5` and `.keras` for the classifier (if any) and the backbone."""
    pieces = [(backbone, f"{stem}_backbone")]
    if classifier is not None:
        pieces.insert(0, (classifier, stem))
    for model, base in pieces:
        weights = os.path.join(stage, f"{base}.weights.h5")
        model.save_weights(weights)
        keras_archive(model, weights, os.path.join(stage, f"{base}.keras"))
    return names(stem, classifier is not None)
