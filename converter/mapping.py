"""Key-by-key map from canonical checkpoint tensors to Keras variables, with an account.

Each rule names a canonical key pattern, the Keras variable path it fills and how the
tensor is laid out for Keras (a layout permutes axes, keeping the rank). `assign` uses
every source tensor exactly once, fills every Keras variable exactly once and checks every
shape and rank; anything else is a `MappingError`.
"""

import re
from dataclasses import dataclass, field

import numpy as np


def linear(w):
    """torch Linear (out, in) -> Keras Dense kernel (in, out)."""
    return w.T


def conv3d(w):
    """torch Conv3d (out, in, kd, kh, kw) -> Keras Conv3D kernel (kd, kh, kw, in, out)."""
    return w.transpose(2, 3, 4, 1, 0)


def same(w):
    return w


@dataclass(frozen=True)
class Rule:
    source: str        # regex over canonical keys; groups fill `target`
    target: str        # Keras variable path template
    layout: object = same

    def match(self, key):
        found = re.fullmatch(self.source, key)
        return self.target.format(*found.groups()) if found else None


_STAGE = r"backbone\.layers\.(\d+)"
_BLOCK = _STAGE + r"\.blocks\.(\d+)"

RULES = (
    Rule(r"backbone\.patch_embed\.proj\.weight", "patch_embed/proj/kernel", conv3d),
    Rule(r"backbone\.patch_embed\.proj\.bias", "patch_embed/proj/bias"),
    Rule(r"backbone\.patch_embed\.norm\.weight", "patch_embed/norm/gamma"),
    Rule(r"backbone\.patch_embed\.norm\.bias", "patch_embed/norm/beta"),
    Rule(_BLOCK + r"\.(norm1|norm2)\.weight", "layers_{0}/blocks_{1}/{2}/gamma"),
    Rule(_BLOCK + r"\.(norm1|norm2)\.bias", "layers_{0}/blocks_{1}/{2}/beta"),
    Rule(_BLOCK + r"\.attn\.relative_position_bias_table",
         "layers_{0}/blocks_{1}/attn/relative_position_bias_table"),
    Rule(_BLOCK + r"\.attn\.(qkv|proj)\.weight", "layers_{0}/blocks_{1}/attn/{2}/kernel", linear),
    Rule(_BLOCK + r"\.attn\.(qkv|proj)\.bias", "layers_{0}/blocks_{1}/attn/{2}/bias"),
    Rule(_BLOCK + r"\.mlp\.(fc1|fc2)\.weight", "layers_{0}/blocks_{1}/mlp/{2}/kernel", linear),
    Rule(_BLOCK + r"\.mlp\.(fc1|fc2)\.bias", "layers_{0}/blocks_{1}/mlp/{2}/bias"),
    Rule(_STAGE + r"\.downsample\.norm\.weight", "layers_{0}/downsample/norm/gamma"),
    Rule(_STAGE + r"\.downsample\.norm\.bias", "layers_{0}/downsample/norm/beta"),
    Rule(_STAGE + r"\.downsample\.reduction\.weight", "layers_{0}/downsample/reduction/kernel",
         linear),
    Rule(r"backbone\.norm\.weight", "norm/gamma"),
    Rule(r"backbone\.norm\.bias", "norm/beta"),
    Rule(r"cls_head\.fc_cls\.weight", "fc_cls/kernel", linear),
    Rule(r"cls_head\.fc_cls\.bias", "fc_cls/bias"),
)

INDEX_KEY = re.compile(_BLOCK + r"\.attn\.relative_position_index")


class MappingError(ValueError):
    """The checkpoint and the model do not correspond one-to-one."""


@dataclass
class Coverage:
    """What `assign` did: each source key once, each Keras variable once."""

    assigned: dict = field(default_factory=dict)        # source key -> keras path
    verified_buffers: list = field(default_factory=list)
    skipped_head: list = field(default_factory=list)    # head keys ignored for a backbone
    parameters: int = 0

    def summary(self):
        return {"tensors_assigned": len(self.assigned),
                "index_buffers_verified": len(self.verified_buffers),
                "head_tensors_skipped": len(self.skipped_head),
                "parameters_assigned": self.parameters}


def keras_variables(model):
    """Keras weights of `model` by path; paths must be unique for the map to be one-to-one."""
    found = {}
    for variable in model.weights:
        if variable.path in found:
            raise MappingError(f"two Keras variables share the path {variable.path!r}")
        found[variable.path] = variable
    return found


def _shape(a):
    return "x".join(str(n) for n in a.shape) or "scalar"


def plan(model, state, window_size, rules=RULES, ignore_head=False):
    """Match source tensors to Keras variables without assigning; returns (pairs, coverage).

    `pairs` maps keras path -> laid-out NumPy view (no copy yet). Raises `MappingError` listing every
    unmapped key, unfilled variable and shape mismatch together.
    """
    from videoswin.model import windows   # here: the CLI's error classes import no keras

    variables = keras_variables(model)
    coverage = Coverage()
    pairs, sources = {}, {}
    unmapped, mismatched, duplicated, bad_index = [], [], [], []
    expected_index = windows.relative_position_index(tuple(window_size))
    for key, value in state.items():
        if INDEX_KEY.fullmatch(key):
            # A buffer, not a parameter: verify it equals the index the model computes.
            index = np.asarray(value).reshape(expected_index.shape) \
                if value.size == expected_index.size else None
            if index is None or not np.array_equal(index, expected_index):
                bad_index.append(f"{key} ({_shape(value)})")
            else:
                coverage.verified_buffers.append(key)
            continue
        if ignore_head and key.startswith("cls_head."):
            coverage.skipped_head.append(key)
            continue
        rule = next((r for r in rules if r.match(key) is not None), None)
        path = rule.match(key) if rule else None
        if path not in variables:
            unmapped.append(f"{key} ({_shape(value)})")
            continue
        if path in pairs:
            duplicated.append(f"{key} and {sources[path]} -> {path}")
            continue
        value = np.asarray(value)
        want = tuple(variables[path].shape)
        # A layout keeps the rank; one of the wrong rank is not laid out (transpose raises).
        array = rule.layout(value) if value.ndim == len(want) else None
        if array is None or array.shape != want:
            keras_shape = _shape(array) if array is not None else \
                f"none: {value.ndim}-D, needs {len(want)}-D"
            mismatched.append(f"{key}: checkpoint {_shape(value)} (as Keras "
                              f"{keras_shape}) vs model {path} "
                              f"{'x'.join(map(str, want))}")
            continue
        pairs[path], sources[path] = array, key
        coverage.assigned[key] = path
        coverage.parameters += array.size
    missing = [f"{p} ({'x'.join(map(str, v.shape))})" for p, v in variables.items()
               if p not in pairs]
    problems = []
    for title, items in (("shape mismatches", mismatched), ("checkpoint keys with no Keras "
                         "variable", unmapped), ("Keras variables with no checkpoint key",
                         missing), ("several keys for one variable", duplicated),
                         ("relative_position_index buffers that differ from the index the "
                          f"model computes for window {tuple(window_size)}", bad_index)):
        if items:
            shown = "\n    ".join(items[:12])
            more = f"\n    ... and {len(items) - 12} more" if len(items) > 12 else ""
            problems.append(f"  {len(items)} {title}:\n    {shown}{more}")
    if problems:
        raise MappingError("the checkpoint does not match the model built from the config "
                           "(wrong variant, window or class count?):\n" + "\n".join(problems))
    return pairs, coverage


def build_deferred(factory):
    """`factory()` with every Keras variable left uninitialised: no random initialiser runs
    for values the checkpoint overwrites (on Swin-B, seconds and a few hundred MB of
    temporaries). `assign` then initialises each variable from its tensor."""
    import keras

    with keras.StatelessScope(initialize_variables=False):
        return factory()


class _FromSource:
    """Initialiser giving a variable its laid-out checkpoint tensor, copied once, then
    releasing the source (Keras initialises deferred variables one by one)."""

    def __init__(self, array, release):
        self.array, self.release = array, release

    def __call__(self, shape, dtype=None):
        value = np.array(self.array, dtype=np.float32, order="C")
        self.release(self.array)
        self.array = None
        return value


def assign(model, state, window_size, rules=RULES, ignore_head=False, release=None):
    """Fill `model`'s variables from a canonical state dict; returns the `Coverage`.

    One variable at a time, each source tensor copied once; `release(array)` is called
    with each source tensor once copied (see `checkpoint.LoadedCheckpoint.release`). Variables
    of a model made by `build_deferred` are initialised here, all of them, even on a
    `MappingError`, so no uninitialised variable is left behind.
    """
    import keras

    from videoswin.model import keras_private

    release = release or (lambda array: None)
    variables = keras_variables(model)
    try:
        pairs, coverage = plan(model, state, window_size, rules, ignore_head)
        for path, array in pairs.items():
            variable = variables[path]
            if keras_private.is_deferred(variable):   # initialise straight from the tensor
                keras_private.defer_to(variable, _FromSource(array, release))
            else:
                variable.assign(np.ascontiguousarray(array, dtype=np.float32))
                release(array)
    finally:
        with keras.StatelessScope():   # on exit Keras initialises every deferred variable
            pass
    return coverage
