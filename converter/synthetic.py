"""Random but realistic official-layout weights: parity and conversion without downloads.

Every tensor is drawn from one seeded generator, so all values are distinct and a seed
reproduces the same weights. Scales keep activations sane (logits std about 1-5): LayerNorm
gammas near 1, small biases, fan-in scaled weights, relative-position tables large enough
to shape attention. `relative_position_index` buffers are the real int64 indices.
This powers `videoswin-convert --random-weights SEED`.
"""

from collections import OrderedDict

import torch

from converter.reference import VideoSwinReference, relative_position_index, spec_kwargs

TABLE_STD = 0.5          # relative-position bias: visible in attention, not dominating it
GAMMA_STD = 0.2          # LayerNorm weight = 1 + GAMMA_STD * N(0, 1)
BIAS_STD = 0.1           # LayerNorm and Linear/Conv biases
HEAD_GAIN = 3.0          # pooled features are small; lift the logits to std ~3


def random_value(name, shape, generator):
    """A float32 tensor for parameter `name` (any layout) of `shape`, drawn from `generator`."""
    shape = tuple(shape)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if name.endswith("relative_position_bias_table"):
        return noise * TABLE_STD
    if name.endswith("bias"):
        return noise * BIAS_STD
    if len(shape) == 1:                                  # a LayerNorm weight
        return 1.0 + noise * GAMMA_STD
    fan_in = 1
    for n in shape[1:]:
        fan_in *= n
    gain = HEAD_GAIN if name.endswith(("fc_cls.weight", "head.weight")) else 1.0
    return noise * (gain / fan_in ** 0.5)


def random_state_dict(spec_or_kwargs, seed):
    """A canonical official-layout state dict with random weights for a spec or kwargs.

    `spec_or_kwargs` is a `ModelSpec` or a mapping of `VideoSwinReference` arguments.
    """
    with torch.device("meta"):              # shapes only: no memory for a large model
        model = VideoSwinReference(**spec_kwargs(spec_or_kwargs))
    template = model.state_dict()
    index = relative_position_index(model.config["window_size"])
    generator = torch.Generator().manual_seed(int(seed))
    out = OrderedDict()
    for name, tensor in template.items():
        if name.endswith("relative_position_index"):
            out[name] = index.clone()
        else:
            out[name] = random_value(name, tensor.shape, generator)
    return out


def random_checkpoint(spec, seed, path):
    """Save `{'meta': {...}, 'state_dict': random_state_dict(spec, seed)}` to `path`; returns path."""
    kwargs = spec_kwargs(spec)
    meta = {"synthetic": True, "seed": int(seed),
            "arch": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}}
    name = getattr(spec, "name", None)
    if name:
        meta["config"] = name
    torch.save({"meta": meta, "state_dict": random_state_dict(kwargs, seed)}, path)
    return path
