"""What `videoswin.model.keras_private` assumes about Keras internals, checked on the installed
Keras: each test fails naming the Keras version and the private API that no longer behaves
as assumed."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest

from videoswin.model import keras_private
from videoswin.model.backbone import VideoSwinBackbone
from videoswin.model.classifier import VideoSwinClassifier

KERAS = f"Keras {keras.__version__} ({keras.backend.backend()} backend)"
TINY = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=(2, 3, 3))
CLIP = (1, 3, 17, 19, 3)


def _version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def _clip(seed=0):
    return np.random.default_rng(seed).standard_normal(CLIP).astype("float32")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _classifier(seed=0):
    keras.utils.set_random_seed(seed)
    return VideoSwinClassifier(VideoSwinBackbone(**TINY, name="backbone"), 5, name="classifier")


def test_installed_keras_is_in_the_checked_range():
    low, high = keras_private.CHECKED_RANGE
    if not _version(low) <= _version(keras.__version__) <= _version(high):
        pytest.fail(f"Keras {keras.__version__} is outside keras_private.CHECKED_RANGE "
                    f"{keras_private.CHECKED_RANGE}: re-check every assumption of "
                    "videoswin/model/keras_private.py against this Keras (this file's tests), "
                    "then widen CHECKED_RANGE.")


def test_stateless_scope_defers_variables_until_defer_to_and_scope_exit():
    api = ("keras.StatelessScope(initialize_variables=False) / Variable._value / "
           "Variable._initializer (keras_private.is_deferred, defer_to)")
    eager = VideoSwinBackbone(**TINY)
    assert not any(keras_private.is_deferred(v) for v in eager.weights), (
        f"{KERAS}: is_deferred is True for a variable built eagerly; {api} changed")

    # converter.mapping.build_deferred: build without running any initialiser.
    with keras.StatelessScope(initialize_variables=False):
        model = VideoSwinBackbone(**TINY)
    variables = model.weights
    assert variables and all(keras_private.is_deferred(v) for v in variables), (
        f"{KERAS}: variables built under StatelessScope(initialize_variables=False) are not "
        f"deferred (Variable._value is not None); {api} changed")

    # converter.mapping.assign: each variable (but one) takes its value from an initialiser.
    calls = {}

    class Constant:
        def __init__(self, path, value):
            self.path, self.value = path, value

        def __call__(self, shape, dtype=None):
            calls[self.path] = tuple(shape)
            return np.full(shape, self.value, dtype="float32")

    kept = variables[-1]
    wanted = {}
    for i, variable in enumerate(variables[:-1]):
        wanted[variable.path] = float(i + 1)
        keras_private.defer_to(variable, Constant(variable.path, float(i + 1)))
    assert all(keras_private.is_deferred(v) for v in variables), (
        f"{KERAS}: defer_to initialised a variable before the scope exit; {api} changed")
    assert not calls, f"{KERAS}: an initialiser ran before the scope exit; {api} changed"
    with keras.StatelessScope():   # on exit Keras initialises every deferred variable
        pass
    assert not any(keras_private.is_deferred(v) for v in variables), (
        f"{KERAS}: leaving a StatelessScope() left deferred variables uninitialised; "
        f"{api} changed")
    assert calls == {v.path: tuple(v.shape) for v in variables[:-1]}, (
        f"{KERAS}: the initialisers set by defer_to were not each called once with the "
        f"variable's shape; {api} changed")
    for variable in variables[:-1]:
        value = _numpy(variable)
        assert value.shape == tuple(variable.shape) and (value == wanted[variable.path]).all(), (
            f"{KERAS}: {variable.path} did not take the value of the initialiser given by "
            f"defer_to; {api} changed")
    # A variable left alone gets its own initialiser (LayerNorm beta: zeros).
    assert np.isfinite(_numpy(kept)).all() and kept.path == "norm/beta"
    np.testing.assert_array_equal(_numpy(kept), np.zeros(kept.shape, "float32"))
    # The model computes with the assigned values.
    assert np.isfinite(_numpy(model(_clip()))).all()


TENSORFLOW_PROBE = textwrap.dedent("""
    import json, sys
    import keras
    import videoswin.model
    from keras.src.utils import module_utils
    from videoswin.model import keras_private
    from videoswin.model.backbone import VideoSwinBackbone

    out = {"backend": keras.backend.backend()}
    model = VideoSwinBackbone(embed_dim=8, depths=(2, 2), num_heads=(1, 2),
                              window_size=(2, 3, 3))
    out["before"] = "tensorflow" in sys.modules
    with keras_private.tensorflow_left_unimported():
        config = json.dumps(keras.saving.serialize_keras_object(model))
        out["inside"] = "tensorflow" in sys.modules
    out["after"] = "tensorflow" in sys.modules
    out["lazy_reset"] = getattr(module_utils.tensorflow, "_available", "missing") is None
    # Control: without the helper Keras's serialiser imports TensorFlow (seconds).
    if sys.argv[1:] == ["control"]:
        out["same_config"] = json.dumps(keras.saving.serialize_keras_object(model)) == config
        out["control"] = "tensorflow" in sys.modules
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.backend_independent
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_tensorflow_left_unimported_while_serialising(backend):
    api = ("keras.src.utils.module_utils.tensorflow (a LazyModule with `_available`) "
           "asked by keras.saving.serialize_keras_object (keras_private."
           "tensorflow_left_unimported)")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    control = backend == "torch"   # once is enough: importing TensorFlow takes seconds
    args = ["control"] if control else []
    proc = subprocess.run([sys.executable, "-c", TENSORFLOW_PROBE, *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["backend"] == backend
    version = f"Keras {keras.__version__} ({backend} backend)"
    assert not out["before"], (f"{version}: tensorflow was imported before serialising "
                               "(by keras, videoswin.model or building the model)")
    assert not out["inside"] and not out["after"], (
        f"{version}: serialising under tensorflow_left_unimported imported tensorflow; "
        f"{api} changed")
    assert out["lazy_reset"], (f"{version}: tensorflow_left_unimported did not leave "
                               f"module_utils.tensorflow._available as None; {api} changed")
    if not control:
        return
    assert out["same_config"], (f"{version}: serialising under tensorflow_left_unimported "
                                "gave another config than without it")
    try:
        import importlib.util

        installed = importlib.util.find_spec("tensorflow") is not None
    except ValueError:
        installed = True
    if installed:
        assert out["control"], (
            f"{version}: serialize_keras_object no longer imports tensorflow; "
            "keras_private.tensorflow_left_unimported may be unnecessary now (re-check)")


def _tree(path):
    """{h5 path: (attrs, array or None)} of a weights file."""
    found = {}
    with h5py.File(path, "r") as f:
        def visit(name, item):
            value = item[()] if isinstance(item, h5py.Dataset) else None
            found[name] = (dict(item.attrs), value)
        f.visititems(visit)
        found["/"] = (dict(f.attrs), None)
    return found


def test_write_archive_is_a_keras_file(tmp_path):
    api = "the .keras archive layout (keras_private.write_archive)"
    model = _classifier()
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    target = tmp_path / "written.keras"
    digest = keras_private.write_archive(model, weights, target)
    assert digest == hashlib.sha256(weights.read_bytes()).hexdigest()

    saved = tmp_path / "saved.keras"
    model.save(saved)
    with zipfile.ZipFile(target) as ours, zipfile.ZipFile(saved) as theirs:
        assert sorted(ours.namelist()) == sorted(theirs.namelist()) \
            == sorted(keras_private.ARCHIVE_FILES), (
            f"{KERAS}: model.save writes {theirs.namelist()}, write_archive "
            f"{ours.namelist()}; {api} changed")
        assert {i.compress_type for i in ours.infolist()} == {zipfile.ZIP_STORED}
        assert json.loads(ours.read("config.json")) == json.loads(theirs.read("config.json")), (
            f"{KERAS}: model.save's config.json is no longer serialize_keras_object(model); "
            f"{api} changed")
        assert set(json.loads(ours.read("metadata.json"))) == \
            set(json.loads(theirs.read("metadata.json"))), (
            f"{KERAS}: model.save's metadata.json has other keys; {api} changed")
        assert ours.read("model.weights.h5") == weights.read_bytes()

    loaded = keras.saving.load_model(target)
    assert type(loaded) is VideoSwinClassifier
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(_numpy(a), _numpy(b), err_msg=f"{KERAS}: {a.path}")
    np.testing.assert_array_equal(_numpy(loaded(_clip())), _numpy(model(_clip())))


def test_copy_layer_weights_gives_the_backbone_weights_file(tmp_path):
    api = ("the .weights.h5 layout layers/<name>/vars with a `name` attribute "
           "(keras_private.copy_layer_weights)")
    model = _classifier(seed=0)
    model.save_weights(tmp_path / "classifier.weights.h5")
    target = tmp_path / "backbone.weights.h5"
    keras_private.copy_layer_weights(tmp_path / "classifier.weights.h5", model.backbone.name,
                                     target)
    # The same file as backbone.save_weights writes, group for group.
    model.backbone.save_weights(tmp_path / "direct.weights.h5")
    copied, direct = _tree(target), _tree(tmp_path / "direct.weights.h5")
    assert sorted(copied) == sorted(direct), (
        f"{KERAS}: the copied backbone file has groups {sorted(set(copied) ^ set(direct))} "
        f"that backbone.save_weights does not (or lacks them); {api} changed")
    for name, (attrs, value) in direct.items():
        if name == "/":
            continue   # the file's own attributes (none today) may differ
        assert copied[name][0] == attrs, f"{KERAS}: attributes of {name}; {api} changed"
        if value is not None:
            np.testing.assert_array_equal(copied[name][1], value)

    fresh = _classifier(seed=1).backbone
    assert any(not np.array_equal(_numpy(a), _numpy(b))
               for a, b in zip(fresh.weights, model.backbone.weights))
    fresh.load_weights(target)
    for a, b in zip(fresh.weights, model.backbone.weights):
        np.testing.assert_array_equal(_numpy(a), _numpy(b), err_msg=f"{KERAS}: {a.path}")

    with pytest.raises(ValueError, match="0 layers named 'nope'"):
        keras_private.copy_layer_weights(tmp_path / "classifier.weights.h5", "nope",
                                         tmp_path / "nope.weights.h5")


def test_read_archive_config(tmp_path):
    model = _classifier()
    path = tmp_path / "model.keras"
    model.save(path)
    config, files = keras_private.read_archive_config(path)
    with zipfile.ZipFile(path) as archive:
        assert config == json.loads(archive.read("config.json"))
        assert files == {name: archive.read(name) for name in ("config.json", "metadata.json")}
    assert config["registered_name"] == "videoswin>VideoSwinClassifier"
    assert json.loads(files["metadata.json"])["keras_version"] == keras.__version__

    (tmp_path / "not.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Keras archive"):
        keras_private.read_archive_config(tmp_path / "not.keras")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="not a Keras archive"):
        keras_private.read_archive_config(tmp_path / "empty.keras")
