"""Every use of Keras internals in videoswin, in one place.

Checked on Keras 3.11 to 3.15 (`CHECKED_RANGE`); `tests/videoswin/model/test_keras_private.py`
fails loudly when an installed Keras no longer behaves as assumed here.

- Deferred variables: a model built under `keras.StatelessScope(initialize_variables=False)`
  holds variables whose `_value` is None until the scope's exit initialises them from their
  `_initializer`. The converter sets that initialiser to the checkpoint tensor, so no random
  initialiser runs for values that are overwritten anyway.
- Keras's serialiser imports TensorFlow, when installed, to recognise TF types;
  `tensorflow_left_unimported` keeps it from doing so in a process on another backend.
- The `.keras` archive is a zip of `config.json`, `metadata.json` and `model.weights.h5`
  (stored, not compressed), and `.weights.h5` keeps each top-level layer under
  `layers/<name>` with a `vars` group. Writing these directly saves serialising the
  weights twice during conversion.
"""

import contextlib
import datetime
import hashlib
import json
import os
import sys
import time
import zipfile

import keras

CHECKED_RANGE = ("3.11", "3.15")
ARCHIVE_FILES = ("config.json", "metadata.json", "model.weights.h5")


def is_deferred(variable):
    """Whether `variable` was created without a value (under a deferring StatelessScope)."""
    return variable._value is None


def defer_to(variable, initializer):
    """Make the deferred `variable` take its value from `initializer(shape, dtype)`."""
    variable._initializer = initializer


@contextlib.contextmanager
def tensorflow_left_unimported():
    """Keep Keras's serialiser from importing TensorFlow in a process on another backend.

    `serialize_keras_object` asks its lazy `tensorflow` module whether TensorFlow is
    available (to recognise `tf.TensorShape`, `tf.DType`, `tf.TypeSpec`), which imports it
    whenever it is installed: seconds and ~450 MB. No such object can exist while
    TensorFlow is not imported, so for the duration the lazy module answers "unavailable",
    and afterwards it asks again.
    """
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


def write_archive(model, weights_path, target):
    """Write the `.keras` archive `target` from `model`'s config and its already written
    `.weights.h5`; returns the sha256 of `weights_path`, read once for both."""
    with tensorflow_left_unimported():
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


def read_archive_config(path):
    """(`config.json` as a dict, {name: bytes} of config.json and metadata.json) of a
    `.keras` archive; `ValueError` for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            files = {name: archive.read(name) for name in ARCHIVE_FILES[:2]}
        return json.loads(files["config.json"]), files
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as err:
        raise ValueError(f"{path} is not a Keras archive ({err})") from None


def copy_layer_weights(model_weights, layer_name, target):
    """Write `target`: the `.weights.h5` that `layer.save_weights` writes, copied out of
    `model_weights`, the file of a model whose top-level layer `layer_name` is that layer."""
    import h5py

    with h5py.File(model_weights, "r") as source:
        found = [group for group in source["layers"].values()
                 if group.get("vars") is not None
                 and group["vars"].attrs.get("name") == layer_name]
        if len(found) != 1:
            raise ValueError(f"{model_weights} holds {len(found)} layers named "
                             f"{layer_name!r}, not one")
        with h5py.File(target, "w") as sink:
            sink.attrs.update(found[0].attrs)
            for name in found[0]:
                source.copy(found[0][name], sink, name=name)
