"""Artifact files: names, hashes, atomic staging and the manifest."""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time


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


def describe(path, digest=None):
    """Size and sha256 of a file; `digest` if already computed from its final bytes."""
    return {"size": os.path.getsize(path), "sha256": digest or sha256(path)}


def settle(path):
    """Flush a finished file to disk and drop it from the page cache.

    A conversion writes GBs; settled one by one, its artifacts hold about one file's
    worth of page cache instead of all of it (new pages are slow to come by under memory
    pressure, in a VM especially), and they are durable before they move into place.
    """
    handle = os.open(path, os.O_RDWR)
    try:
        getattr(os, "fdatasync", os.fsync)(handle)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(handle)


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


@contextlib.contextmanager
def _tensorflow_left_unimported():
    """Keep Keras's serialiser from importing TensorFlow in a process on another backend.

    `serialize_keras_object` asks its lazy `tensorflow` module whether TensorFlow is
    available (to recognise `tf.TensorShape`, `tf.DType`, `tf.TypeSpec`), which imports it
    whenever it is installed: seconds and ~450 MB here. No such object can exist while
    TensorFlow is not imported, so for the duration the lazy module answers "unavailable",
    and afterwards it asks again. Process-wide `sys.modules["tensorflow"] = None` would
    instead hide TensorFlow from everything after (parity's backend list, later imports).
    """
    import keras
    from keras.src.utils import module_utils

    lazy = getattr(module_utils, "tensorflow", None)
    if (keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules
            or getattr(lazy, "_available", False) is not None):
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        lazy._available = None


def keras_archive(model, weights_path, target):
    """Write `target` (.keras) from `model`'s config and its already written `.weights.h5`;
    returns the sha256 of `weights_path`, read once for both.

    A `.keras` file is a zip of config.json, metadata.json and model.weights.h5, the same
    HDF5 layout that `save_weights` writes; copying that file in (uncompressed, as Keras
    does) avoids serialising hundreds of MB of weights a second time.
    """
    import datetime
    import zipfile

    import keras

    with _tensorflow_left_unimported():
        config = json.dumps(keras.saving.serialize_keras_object(model))
    metadata = json.dumps({"keras_version": keras.__version__,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
    entry = zipfile.ZipInfo("model.weights.h5", date_time=time.localtime()[:6])
    entry.file_size = os.path.getsize(weights_path)
    digest = hashlib.sha256()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", metadata)
        archive.writestr("config.json", config)
        with open(weights_path, "rb") as source, archive.open(entry, "w") as sink:
            while block := source.read(1 << 20):   # ZipFile.write copies 8 KiB at a time
                sink.write(block)
                digest.update(block)
    return digest.hexdigest()


def backbone_weights(model_weights, backbone, target):
    """Write `target`: the `.weights.h5` that `backbone.save_weights` writes, copied out of
    `model_weights`, the file of a model holding `backbone` (HDF5 copies the datasets)."""
    import h5py

    with h5py.File(model_weights, "r") as source:
        found = [group for group in source["layers"].values()
                 if group.get("vars") is not None
                 and group["vars"].attrs.get("name") == backbone.name]
        if len(found) != 1:
            raise ValueError(f"{model_weights} holds {len(found)} layers named "
                             f"{backbone.name!r}, not one")
        with h5py.File(target, "w") as sink:
            sink.attrs.update(found[0].attrs)
            for name in found[0]:
                source.copy(found[0][name], sink, name=name)


def save_models(stage, stem, classifier, backbone):
    """Save `.weights.h5` and `.keras` for the classifier (if any) and the backbone.

    Keras serialises the weights once; the backbone's `.weights.h5` is copied out of the
    classifier's and each `.keras` zips its `.weights.h5`. Each file is hashed and settled
    once nothing reads it any more, on a second thread while the next one is written (both
    mostly wait outside the GIL). Returns `describe` of each artifact, in `names` order.
    """
    from concurrent.futures import ThreadPoolExecutor

    files = names(stem, classifier is not None)
    paths = dict(zip(files, (os.path.join(stage, name) for name in files)))

    def finish(name, digest=None):
        described = describe(paths[name], digest)
        settle(paths[name])
        return name, described

    done = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="settle") as worker:
        if classifier is not None:
            weights, archive = files[:2]
            classifier.save_weights(paths[weights])
            digest = keras_archive(classifier, paths[weights], paths[archive])
            done.append(worker.submit(finish, archive))
            backbone_weights(paths[weights], backbone, paths[files[2]])
            done.append(worker.submit(finish, weights, digest))
        weights, archive = files[-2:]
        if classifier is None:
            backbone.save_weights(paths[weights])
        digest = keras_archive(backbone, paths[weights], paths[archive])
        done += [worker.submit(finish, weights, digest), worker.submit(finish, archive)]
    described = dict(future.result() for future in done)
    return {name: described[name] for name in files}
