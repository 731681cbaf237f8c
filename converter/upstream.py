"""mmaction2's own `SwinTransformer3D`, when installed: the strongest parity reference.

mmaction2 1.2.0's package `__init__` chain needs modules its wheel lacks, so the backbone
module is imported by file path, with a stand-in for the registry decorator it uses.
"""

import functools
import importlib.metadata
import importlib.util
import os
import sys
import types
import warnings


def source_path():
    """Path of mmaction2's swin.py, or None when mmaction2 is not installed."""
    try:
        path = importlib.metadata.distribution("mmaction2").locate_file(
            "mmaction/models/backbones/swin.py")
    except importlib.metadata.PackageNotFoundError:
        return None
    return str(path) if os.path.exists(path) else None


def available():
    """True when mmaction2 and what its swin.py imports (mmcv, mmengine, einops) exist."""
    return source_path() is not None and all(
        importlib.util.find_spec(n) is not None for n in ("mmcv", "mmengine", "einops"))


@functools.lru_cache(maxsize=None)
def swin_module():
    """The module object of `mmaction/models/backbones/swin.py` (cached).

    The file needs `mmaction.registry.MODELS` only for its decorator: a private mmengine
    registry stands in while it executes, then the previous entry is restored, so the
    real `mmaction` package and its registry are never touched.
    """
    from mmengine.registry import Registry

    path = source_path()
    if path is None:
        raise ImportError("mmaction2 is not installed")
    stub = types.ModuleType("mmaction.registry")
    stub.MODELS = Registry("videoswin-oracle-models")
    saved = sys.modules.get("mmaction.registry")
    sys.modules["mmaction.registry"] = stub
    try:
        module_spec = importlib.util.spec_from_file_location("_mmaction_swin", path)
        module = importlib.util.module_from_spec(module_spec)
        with warnings.catch_warnings():   # mmcv's imports use deprecated torch.jit APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            module_spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["mmaction.registry"]
        else:
            sys.modules["mmaction.registry"] = saved
    return module


def build(spec):
    """An eval-mode (backbone, head) pair of torch modules shaped by a `ModelSpec`."""
    import torch

    module = swin_module()
    with warnings.catch_warnings():     # its torch.meshgrid call lacks `indexing=`
        warnings.filterwarnings("ignore", message=".*meshgrid.*", category=UserWarning)
        backbone = _swin(module, spec)
    features = spec.embed_dim * 2 ** (len(spec.depths) - 1)
    head = torch.nn.Linear(features, spec.num_classes) if spec.num_classes else None
    backbone.eval()
    return backbone, head


def _swin(module, spec):
    return module.SwinTransformer3D(
        arch=dict(embed_dims=spec.embed_dim, depths=list(spec.depths),
                  num_heads=list(spec.num_heads)),
        pretrained=None, pretrained2d=False, patch_size=tuple(spec.patch_size),
        in_channels=spec.in_channels, window_size=tuple(spec.window_size),
        mlp_ratio=spec.mlp_ratio, qkv_bias=spec.qkv_bias, qk_scale=spec.qk_scale,
        drop_path_rate=0.0, patch_norm=spec.patch_norm, out_indices=(len(spec.depths) - 1,))


def load(spec, canonical):
    """mmaction2 modules holding a canonical state dict (strict on the backbone)."""
    import torch

    from converter import layouts

    backbone, head = build(spec)
    state = {key[len("backbone."):]: torch.from_numpy(value.copy()) for key, value in
             layouts.export(canonical, layouts.MMACTION2, len(spec.depths)).items()
             if key.startswith("backbone.")}
    backbone.load_state_dict(state, strict=True)
    if head is not None and "cls_head.fc_cls.weight" in canonical:
        head.load_state_dict({"weight": torch.from_numpy(canonical["cls_head.fc_cls.weight"]),
                              "bias": torch.from_numpy(canonical["cls_head.fc_cls.bias"])})
    else:
        head = None
    return backbone, head


def forward(modules, clips):
    """(features channels-last, logits or None) for (B, T, H, W, C) NumPy clips."""
    import torch

    backbone, head = modules
    with torch.no_grad():
        x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous()
        features = backbone(x)                                  # (B, C, T', H', W')
        logits = head(features.mean(dim=(2, 3, 4))) if head is not None else None
        features = features.permute(0, 2, 3, 4, 1).numpy()
    return features, (logits.numpy() if logits is not None else None)
