"""End to end: oracle checkpoints on disk -> videoswin-convert -> artifacts equal to mmaction2.

Each pytest pass converts on its own backend and runs parity on that backend.
"""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import videoswin
from converter import artifacts, mapping, parity
from converter import checkpoint as ckpt
from converter.convert import convert
from converter.config import load_spec
from tests import oracle
from tests.converter.support import write_config
from videoswin.core.manifest import sha256
from videoswin.model import keras_private

BACKEND = keras.backend.backend()
CLIP = (5, 36, 44)     # odd: pads to patch and window multiples, clamps windows late


def _oracle_checkpoint(tmp_path, window=(2, 3, 3), layout="official", head=True, seed=11):
    model = oracle.make_oracle(16, (2, 2, 2, 2), (1, 2, 2, 4), window_size=window,
                               num_classes=7, seed=seed)
    exporter = {"official": oracle.official_state_dict, "mmaction": oracle.mmaction_state_dict,
                "torchvision": oracle.torchvision_state_dict}[layout]
    state = exporter(model)
    if not head:
        state = {k: v for k, v in state.items() if not k.startswith("cls_head.")}
    path = oracle.save_checkpoint(state, tmp_path / f"{layout}.pth",
                                  wrapper="bare" if layout == "torchvision" else layout)
    config = write_config(tmp_path / "swin_test.py", window_size=window, head=head)
    return model, str(path), config


@pytest.mark.parametrize("layout,window", [("official", (2, 3, 3)), ("mmaction", (8, 7, 7)),
                                           ("torchvision", (16, 7, 7))])
def test_convert_matches_mmaction2(tmp_path, layout, window):
    model, path, config = _oracle_checkpoint(tmp_path, window, layout)
    out = tmp_path / "out"
    manifest = convert(config, path, str(out), backends=[BACKEND], parity_clip=CLIP,
                       quiet=True)
    assert manifest["parity"]["status"] == "passed"
    assert manifest["layout"] == {"mmaction": "mmaction2"}.get(layout, layout)
    result = manifest["parity"]["backends"][BACKEND]
    assert result["max_abs_logits"] < 1e-5 and result["max_abs_features"] < 1e-5
    assert result["weights_h5_identical"]
    assert sorted(os.listdir(out)) == sorted(
        ["swin_test.weights.h5", "swin_test.keras", "swin_test_backbone.weights.h5",
         "swin_test_backbone.keras", "swin_test.parity.json", "swin_test.parity.md",
         "manifest.json"])
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["source_checkpoint"]["sha256"] == manifest["source_checkpoint"]["sha256"]
    assert on_disk["params"] == sum(p.numel() for p in model.parameters())
    assert on_disk["coverage"]["parameters_assigned"] == on_disk["params"]
    for name, info in on_disk["artifacts"].items():
        assert os.path.getsize(out / name) == info["size"]
        assert sha256(out / name) == info["sha256"], name

    # The emitted .keras, loaded here, gives the oracle's logits on a fresh odd clip.
    clips = np.random.default_rng(5).standard_normal((1, 3, 32, 32, 3)).astype("float32")
    loaded = keras.saving.load_model(out / "swin_test.keras")
    got = keras.ops.convert_to_numpy(loaded(clips))
    np.testing.assert_allclose(got, oracle.oracle_logits(model, clips), atol=1e-5)
    assert np.std(got) > 0.5   # realistic logits, not a near-zero signal


def test_backbone_only_checkpoint_writes_backbone_artifacts(tmp_path):
    _, path, config = _oracle_checkpoint(tmp_path, head=False)
    out = tmp_path / "out"
    manifest = convert(config, path, str(out), backends=[BACKEND], parity_clip=CLIP,
                       quiet=True)
    assert not manifest["with_head"]
    assert manifest["parity"]["status"] == "passed"
    assert "swin_test.keras" not in os.listdir(out)
    assert "swin_test_backbone.keras" in os.listdir(out)


def _build(spec):
    backbone = videoswin.VideoSwinBackbone(**spec.backbone_kwargs())
    return videoswin.VideoSwinClassifier(backbone, spec.num_classes)


class _SwappedNorms(mapping.Rule):
    """norm1 <-> norm2: equal shapes, so only the oracle can tell."""

    def match(self, key):
        found = re.fullmatch(self.source, key)
        if not found:
            return None
        i, j, norm = found.groups()
        return f"layers_{i}/blocks_{j}/{'norm2' if norm == 'norm1' else 'norm1'}/" + \
            self.target.rsplit("/", 1)[1]


def _swap_norms(rules):
    return tuple(_SwappedNorms(r.source, r.target, r.layout) if "(norm1|norm2)" in r.source
                 else r for r in rules)


@pytest.mark.parametrize("sabotage", ["norm1_norm2_swapped", "attn_proj_not_transposed"])
def test_sabotaged_mapping_is_caught_by_the_oracle(tmp_path, sabotage):
    model, path, config = _oracle_checkpoint(tmp_path)
    spec = load_spec(config)
    state = ckpt.load(path).state
    if sabotage == "norm1_norm2_swapped":
        rules = _swap_norms(mapping.RULES)
    else:
        # proj is square (C x C): without the transpose every shape still checks out.
        proj = mapping.Rule(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.weight",
                            "layers_{0}/blocks_{1}/attn/proj/kernel", mapping.same)
        rules = (proj,) + mapping.RULES
    keras_model = _build(spec)
    coverage = mapping.assign(keras_model, state, spec.window_size, rules=rules)
    assert len(coverage.assigned) == 121        # the account alone cannot see it...
    clips = parity.make_clips(2, CLIP, 0)
    got = keras.ops.convert_to_numpy(keras_model(clips))
    want = oracle.oracle_logits(model, clips)
    assert np.abs(got - want).max() > 1e-2      # ...the oracle does

    # Through the parity machinery: the report says FAIL on this backend.
    out = tmp_path / "sabotaged"
    out.mkdir()
    artifacts.save_models(str(out), "swin_test", keras_model, keras_model.backbone)
    report = parity.check(spec, state, str(out), "swin_test", backends=[BACKEND],
                          clip_shape=CLIP, log=lambda *_: None)
    assert report["status"] == "failed"
    assert report["backends"][BACKEND]["max_abs_logits"] > 1e-2
    assert "FAIL" in parity.markdown(report)


@pytest.mark.parametrize("budget", [1, 2 * 1 * 18 * 18 * 4 * 3])
def test_attention_split_into_calls_gives_the_oracle_logits(tmp_path, monkeypatch, budget):
    """`attention.LOGITS_PER_CALL` (JAX's default; forced here on every backend): one window
    per call (a 1-byte budget), or a few (three at stage 1's one head, with remainders)."""
    from videoswin.model import attention

    model, path, config = _oracle_checkpoint(tmp_path)
    spec = load_spec(config)
    keras_model = _build(spec)
    mapping.assign(keras_model, ckpt.load(path).state, spec.window_size)
    clips = parity.make_clips(2, CLIP, 0)
    calls = []                                  # (batch x windows, N, heads) of each call
    fused = attention.ops.dot_product_attention
    explicit = attention.WindowAttention3D._explicit_attention
    monkeypatch.setattr(attention.ops, "dot_product_attention",
                        lambda q, *a, **k: calls.append(q.shape[:3]) or fused(q, *a, **k))
    monkeypatch.setattr(attention.WindowAttention3D, "_explicit_attention",
                        lambda self, q, *a: calls.append(q.shape[:3]) or explicit(self, q, *a))

    def run(limit):
        calls.clear()
        monkeypatch.setattr(attention, "LOGITS_PER_CALL", limit)
        return keras.ops.convert_to_numpy(keras_model(clips)), list(calls)

    whole, whole_calls = run(None)
    got, split_calls = run(budget)
    np.testing.assert_allclose(got, oracle.oracle_logits(model, clips), atol=1e-5)
    np.testing.assert_allclose(got, whole, atol=1e-5)
    # The same windows, in more and smaller calls: one window (of both clips) per call, or
    # calls whose float32 logits (rows x heads x N x N) fit the budget.
    assert sum(c[0] for c in split_calls) == sum(c[0] for c in whole_calls)
    assert len(split_calls) > len(whole_calls)
    for rows, n, heads in split_calls:
        assert rows == 2 or rows * heads * n * n * 4 <= budget, (rows, n, heads)
    if budget == 1:
        assert {c[0] for c in split_calls} == {2}
    else:
        assert max(c[0] for c in split_calls) == 6          # 3 windows at stage 1


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
def test_both_attention_forms_give_the_oracle_logits(tmp_path, monkeypatch, fused):
    """Keras's fused `ops.dot_product_attention` (TensorFlow's and torch's default) and the
    explicit form normalised after the second product (JAX's default, and torch's before
    Keras 3.14), each forced on this backend and held to mmaction2's logits."""
    from videoswin.model import attention

    if fused and not attention.fused_takes_bias(keras.backend.backend(), keras.__version__):
        pytest.skip(f"Keras {keras.__version__}'s fused attention on "
                    f"{keras.backend.backend()} takes no bias; the explicit case runs here")
    model, path, config = _oracle_checkpoint(tmp_path)
    spec = load_spec(config)
    keras_model = _build(spec)
    mapping.assign(keras_model, ckpt.load(path).state, spec.window_size)
    clips = parity.make_clips(2, CLIP, 0)
    monkeypatch.setattr(attention, "FUSED_ATTENTION", fused)
    got = keras.ops.convert_to_numpy(keras_model(clips))
    np.testing.assert_allclose(got, oracle.oracle_logits(model, clips), atol=1e-5)


@pytest.mark.backend_independent   # the command line; parity per backend is tested above
def test_wrong_variant_lists_keys_and_shapes(tmp_path):
    _, path, _ = _oracle_checkpoint(tmp_path)
    config = write_config(tmp_path / "wider.py", embed_dim=32, window_size=(2, 3, 3))
    out = tmp_path / "out"
    with pytest.raises(mapping.MappingError) as err:
        convert(config, path, str(out), backends=[], quiet=True)
    message = str(err.value)
    assert "shape mismatches" in message
    assert "backbone.patch_embed.proj.weight: checkpoint 16x3x2x4x4" in message
    assert "patch_embed/proj/kernel 2x4x4x3x32" in message
    assert not out.exists() or not [p for p in os.listdir(out) if not p.startswith(".")]


@pytest.mark.backend_independent   # the command line; parity per backend is tested above
def test_wrong_window_fails_the_index_check(tmp_path):
    _, path, _ = _oracle_checkpoint(tmp_path, window=(2, 3, 3))
    config = write_config(tmp_path / "other_window.py", window_size=(2, 3, 3))
    spec = load_spec(config)
    state = ckpt.load(path).state
    with pytest.raises(mapping.MappingError, match="relative_position_index"):
        mapping.plan(_build(spec), state, (4, 3, 3))


def _cli(*args, cwd=None):
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    return subprocess.run([sys.executable, "-m", "videoswin_tools.convert", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.backend_independent   # the command line; parity per backend is tested above
def test_cli_errors_are_clear_and_leave_nothing(tmp_path):
    _, path, config = _oracle_checkpoint(tmp_path)
    out = tmp_path / "out"
    cases = [
        (["--config", str(tmp_path / "missing.py")], "missing.py"),
        (["--config", config, "--checkpoint", str(tmp_path / "none.pth")], "none.pth"),
        (["--config", config, "--checkpoint", path, "--backends", "theano"], "theano"),
    ]
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    cases.append((["--config", config, "--checkpoint", str(tmp_path / "junk.pth")],
                  "not a PyTorch checkpoint"))
    for args, needle in cases:
        proc = _cli(*args, "--output-dir", str(out))
        assert proc.returncode != 0, args
        assert needle in proc.stderr, (args, proc.stderr)
        assert not out.exists() or not [p for p in os.listdir(out) if not p.startswith(".")]


@pytest.mark.backend_independent   # the command line; parity per backend is tested above
def test_cli_unwritable_output_dir(tmp_path):
    _, path, config = _oracle_checkpoint(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    proc = _cli("--config", config, "--checkpoint", path, "--output-dir", str(blocker / "x"),
                "--backends", "none")
    assert proc.returncode != 0
    assert "not writable" in proc.stderr and str(blocker / "x") in proc.stderr


@pytest.mark.backend_independent   # the command line; parity per backend is tested above
def test_cli_random_weights_runs_offline(tmp_path):
    config = write_config(tmp_path / "swin_rand.py")
    out = tmp_path / "out"
    proc = _cli("--config", config, "--random-weights", "3", "--output-dir", str(out),
                "--backends", BACKEND, "--parity-clip", *map(str, CLIP))
    assert proc.returncode == 0, proc.stderr
    assert "[5/5] parity" in proc.stderr
    assert "| " + BACKEND in proc.stdout and "pass" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_checkpoint"]["random_weights_seed"] == 3
    assert manifest["parity"]["status"] == "passed"
    # The demo can be re-checked: its checkpoint is fabricated again from the seed, and the
    # manifest's sha256 check proves it is the same file.
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    proc = subprocess.run([sys.executable, "-c", "from videoswin_tools.convert import "
                           "parity_main; parity_main()", str(out), "--backends", BACKEND,
                           "--parity-clip", *map(str, CLIP)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "manifest.json").read_text())["parity"]["status"] == "passed"


@pytest.mark.backend_independent   # the command line; parity per backend is tested above
def test_parity_command_reruns_on_existing_artifacts(tmp_path):
    model, path, config = _oracle_checkpoint(tmp_path)
    out = tmp_path / "out"
    convert(config, path, str(out), backends=[], quiet=True)
    assert json.loads((out / "manifest.json").read_text())["parity"] == {"status": "skipped"}
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    proc = subprocess.run([sys.executable, "-c", "from videoswin_tools.convert import parity_main; "
                           "parity_main()", str(out), "--checkpoint", path, "--backends",
                           BACKEND, "--parity-clip", *map(str, CLIP)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["status"] == "passed"
    assert manifest["parity"]["backends"][BACKEND]["max_abs_logits"] < 1e-5
    assert manifest["flops"]["macs_per_view"] > 0
    # A different checkpoint (other seed) is refused before any parity run: its sha256 is
    # not the manifest's source.
    _, other, _ = _oracle_checkpoint(tmp_path / "x" if (tmp_path / "x").mkdir() is None
                                     else tmp_path, seed=99)
    proc = subprocess.run([sys.executable, "-c", "from videoswin_tools.convert import parity_main; "
                           "parity_main()", str(out), "--checkpoint", other, "--backends",
                           BACKEND, "--parity-clip", *map(str, CLIP)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert sha256(other) in proc.stderr and manifest["source_checkpoint"]["sha256"] in proc.stderr
    # A real conversion needs its checkpoint.
    proc = subprocess.run([sys.executable, "-c", "from videoswin_tools.convert import "
                           "parity_main; parity_main()", str(out), "--backends", BACKEND],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2 and "pass it with --checkpoint" in proc.stderr


def test_conversion_runs_no_random_initialiser_and_copies_every_weight(tmp_path):
    _, path, config = _oracle_checkpoint(tmp_path)
    out = tmp_path / "out"

    def refuse(self, *args, **kwargs):
        raise AssertionError("a random initialiser ran")

    with pytest.MonkeyPatch.context() as patch:
        for initializer in (keras.initializers.VarianceScaling,
                            keras.initializers.TruncatedNormal):
            patch.setattr(initializer, "__call__", refuse)
        with pytest.raises(AssertionError, match="initialiser ran"):
            _build(load_spec(config))            # a plain build runs them: the patch bites
        convert(config, path, str(out), backends=[], quiet=True)
    model = keras.saving.load_model(out / "swin_test.keras")
    pairs, _ = mapping.plan(model, ckpt.load(path).state, (2, 3, 3))
    variables = mapping.keras_variables(model)
    assert len(pairs) == len(variables) == 121
    for name, array in pairs.items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variables[name]), array,
                                      err_msg=name)


def test_a_failed_deferred_mapping_leaves_no_variable_uninitialised(tmp_path):
    _, path, _ = _oracle_checkpoint(tmp_path)
    spec = load_spec(write_config(tmp_path / "wider.py", embed_dim=32))
    model = mapping.build_deferred(lambda: _build(spec))
    assert all(v._value is None for v in model.weights)
    with pytest.raises(mapping.MappingError, match="shape mismatches"):
        mapping.assign(model, ckpt.load(path).state, spec.window_size)
    assert all(v._value is not None for v in model.weights)


def _h5_tree(path):
    """Every group and dataset of an HDF5 file: attributes, dtype, shape and bytes."""
    import h5py

    tree = {}

    def visit(name, item):
        attrs = {k: str(v) for k, v in item.attrs.items()}
        data = ((item.dtype.str, item.shape, item[()].tobytes())
                if isinstance(item, h5py.Dataset) else None)
        tree[name] = (attrs, data)

    with h5py.File(path, "r") as handle:
        visit("/", handle)
        handle.visititems(visit)
    return tree


def test_backbone_weights_copied_from_the_model_file_are_those_keras_writes(tmp_path):
    spec = load_spec(write_config(tmp_path / "swin_test.py"))
    model = _build(spec)                        # random weights, all distinct
    model.save_weights(tmp_path / "model.weights.h5")
    keras_private.copy_layer_weights(tmp_path / "model.weights.h5", model.backbone.name,
                                     tmp_path / "copied.weights.h5")
    model.backbone.save_weights(tmp_path / "keras.weights.h5")
    copied = _h5_tree(tmp_path / "copied.weights.h5")
    own = _h5_tree(tmp_path / "keras.weights.h5")
    assert len(own) > 100 and copied == own

    fresh = videoswin.VideoSwinBackbone(**spec.backbone_kwargs())
    fresh.load_weights(tmp_path / "copied.weights.h5")
    assert len(fresh.weights) == len(model.backbone.weights) == 119
    for want, got in zip(model.backbone.weights, fresh.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got),
                                      keras.ops.convert_to_numpy(want), err_msg=want.path)


@pytest.mark.skipif(BACKEND == "tensorflow" or not parity.installed_backends().count(
    "tensorflow"), reason="TensorFlow is the backend, or not installed")
def test_conversion_on_another_backend_leaves_tensorflow_unimported(tmp_path):
    _, path, config = _oracle_checkpoint(tmp_path)
    out = tmp_path / "out"
    script = f"""if True:
        import json, sys, zipfile
        from converter.convert import convert
        convert({config!r}, {path!r}, {str(out)!r}, backends=[], quiet=True)
        print("after conversion:", "tensorflow" in sys.modules)
        import keras, videoswin
        with zipfile.ZipFile({str(out / "swin_test.keras")!r}) as archive:
            written = json.loads(archive.read("config.json"))
        model = keras.saving.load_model({str(out / "swin_test.keras")!r})
        plain = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
        print("config as Keras writes it:", plain == written)
        print("after plain serialisation:", "tensorflow" in sys.modules)
        """
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, KERAS_BACKEND=BACKEND), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "after conversion: False" in proc.stdout
    assert "config as Keras writes it: True" in proc.stdout
    # Keras's own serialiser imports it: what the conversion avoided.
    assert "after plain serialisation: True" in proc.stdout
