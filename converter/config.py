"""Read an mmengine config into a `ModelSpec`: our configs, mmaction2 1.x and official 0.x ones.

The three dialects differ only in how they spell the backbone:
- official 0.x (Video-Swin-Transformer): `embed_dim`, `depths`, `num_heads`, `in_chans`; test
  pipeline in `data.test`, mean/std in a `Normalize` step, `average_clips` in `model.test_cfg`;
- mmaction2 1.x: `arch='tiny'` (or a dict with `embed_dims`), `in_channels`; test pipeline in
  `test_dataloader.dataset`, mean/std in `model.data_preprocessor`, `average_clips` in the head;
- ours (`configs/`): 0.x-style backbone keys, 1.x-style preprocessing, plus metadata
  (`origin`, `dataset`, `pretrain`, `checkpoint=dict(...)`, `metrics=dict(...)`).
Missing keys take the defaults of the dialect's own SwinTransformer3D class. The model fields
never depend on the clip size: the window is clamped at run time, not here.
"""

import ast
import difflib
import re
from pathlib import Path

from videoswin.core import archs, geometry
from videoswin.core.pipelines import ORIGINS, TestPipeline
from videoswin.core.spec import CheckpointSource, Metrics, ModelSpec

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"

# Defaults of each dialect's SwinTransformer3D.__init__ (they differ: 0.x builds a 4x4x4-patch,
# 2x7x7-window model without patch norm unless told otherwise).
_OFFICIAL_DEFAULTS = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                          patch_size=(4, 4, 4), window_size=(2, 7, 7), mlp_ratio=4.0,
                          qkv_bias=True, qk_scale=None, drop_path_rate=0.2, patch_norm=False,
                          in_channels=3)
_MMACTION2_DEFAULTS = dict(patch_size=(2, 4, 4), window_size=(8, 7, 7), mlp_ratio=4.0,
                           qkv_bias=True, qk_scale=None, drop_path_rate=0.1, patch_norm=True,
                           in_channels=3)
# Keys that do not change the inference graph (training, init and memory options).
_INERT_KEYS = {"type", "pretrained", "pretrained2d", "drop_rate", "attn_drop_rate",
               "frozen_stages", "init_cfg"}
_OFFICIAL_KEYS = _INERT_KEYS | {"embed_dim", "depths", "num_heads", "patch_size", "in_chans",
                                "window_size", "mlp_ratio", "qkv_bias", "qk_scale",
                                "drop_path_rate", "patch_norm", "norm_layer", "use_checkpoint"}
_MMACTION2_KEYS = _INERT_KEYS | {"arch", "patch_size", "in_channels", "window_size", "mlp_ratio",
                                 "qkv_bias", "qk_scale", "drop_path_rate", "patch_norm",
                                 "act_cfg", "norm_cfg", "with_cp", "out_indices",
                                 "out_after_downsample"}
_CROPS = {"ThreeCrop": 3, "CenterCrop": 1, "TenCrop": 10}
_CHECKPOINT_KEYS = {"filename", "url", "sha256"}
_METRICS_KEYS = {"top1", "top5", "source", "views"}


class ConfigError(ValueError):
    """A config that cannot describe a Video Swin model; names the file and the key at fault.

    Attributes: `path` (the config file), `key` (dotted key, or None when the file as a whole
    is at fault) and `problem` (what is wrong and what was expected).
    """

    def __init__(self, path, key, problem):
        self.path, self.key, self.problem = str(path), key, problem
        where = f"config {self.path}" + (f", key `{key}`" if key else "")
        super().__init__(f"{where}: {problem}")


def list_configs(root=CONFIG_ROOT):
    """Paths (str, sorted) of the model configs under `root`, `_base_` folders excluded."""
    root = Path(root)
    return sorted(str(p) for p in root.rglob("*.py")
                  if "_base_" not in p.relative_to(root).parts and p.name != "__init__.py")


def load_spec(path, trust=False):
    """Parse a config file (or the stem of one of ours) into a `ModelSpec`.

    The file is read without executing it (`converter.config_reader`); `trust=True` runs it
    through mmengine instead, which executes it: only for files you trust. Raises
    `ConfigError` for a missing file, a syntax error, a construct the safe reader refuses, a
    config without a SwinTransformer3D backbone, an unknown arch or an unsupported option.
    """
    path = _resolve(path)
    cfg = _read(path, trust)

    def err(key, problem):
        return ConfigError(path, key, problem)

    model = cfg.get("model")
    if not isinstance(model, dict):
        raise err("model", "no `model` dict; expected model.backbone of type SwinTransformer3D")
    fields = _backbone(model.get("backbone"), err)
    fields.update(_head(model, fields, err))
    average_clips = fields.pop("average_clips")
    fields["arch_name"] = archs.arch_name(fields["embed_dim"], fields["depths"],
                                          fields["num_heads"])

    origin = cfg.get("origin", fields.pop("dialect"))
    if origin not in ORIGINS:
        raise err("origin", f"{origin!r} is not one of {ORIGINS}")
    pipeline = _pipeline(cfg, model, average_clips, err)
    return ModelSpec(name=path.stem, path=str(path), origin=origin, pipeline=pipeline,
                     **_metadata(cfg, path, pipeline, err), **fields)


def pretrained_2d(path, trust=False):
    """The 2D checkpoint (a path or URL) a config's backbone inflates, or None.

    As in SwinTransformer3D, the backbone's `pretrained` is a 2D (image) checkpoint to
    inflate when `pretrained2d` is true, which is its default in both dialects."""
    path = _resolve(path)
    model = _read(path, trust).get("model")
    backbone = model.get("backbone") if isinstance(model, dict) else None
    if not isinstance(backbone, dict) or not backbone.get("pretrained"):
        return None
    if not backbone.get("pretrained2d", True):
        return None
    if not isinstance(backbone["pretrained"], str):
        raise ConfigError(path, "model.backbone.pretrained",
                          f"expected a path or URL, found {backbone['pretrained']!r}")
    return backbone["pretrained"]


# -- reading -------------------------------------------------------------------------------

def _resolve(path):
    """The config file for `path`, also accepting the stem of one of our configs."""
    p = Path(path)
    if p.is_file():
        return p.resolve()
    ours = {Path(c).stem: Path(c) for c in list_configs()}
    if p.name.removesuffix(".py") in ours and p.parent == Path("."):
        return ours[p.name.removesuffix(".py")]
    close = difflib.get_close_matches(p.stem, ours, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else (
        f"; our configs live in {CONFIG_ROOT} (see converter.config.list_configs())")
    raise ConfigError(path, None, "no such config file" + hint)


def _read(path, trust=False):
    from converter.config_reader import UnsafeConfigError, read_config

    if not trust:
        try:
            return read_config(path)
        except UnsafeConfigError as e:
            where = "" if Path(e.path).resolve() == path else f"in its base file {e.path}, "
            line = f"line {e.line}: " if e.line else ""
            raise ConfigError(path, None, f"{where}{line}{e.problem}; configs are read without "
                              "running them: pass --trust-config to run it through mmengine "
                              "(only for files you trust)") from None
        except SyntaxError as e:
            where = "" if Path(e.filename or path).resolve() == path else \
                f" in its base file {e.filename}"
            raise ConfigError(path, None, f"Python syntax error{where}, line {e.lineno}: "
                              f"{e.msg}") from None
        except FileNotFoundError as e:
            raise ConfigError(path, "_base_",
                              f"a base file it inherits does not exist: {e.filename}") from None
        except ValueError as e:
            raise ConfigError(path, None, str(e)) from None
    from mmengine.config import Config

    try:
        # to_dict() leaves lazy imports (new-style configs) as dotted strings, unbuilt.
        return Config.fromfile(str(path), import_custom_modules=False).to_dict()
    except SyntaxError as e:
        bad, line, msg = _find_syntax_error(path) or (path, e.lineno, e.msg)
        where = "" if Path(bad) == path else f" in its base file {bad}"
        raise ConfigError(path, None, f"Python syntax error{where}, line {line}: {msg}") from e
    except FileNotFoundError as e:
        raise ConfigError(path, "_base_",
                          f"a base file it inherits does not exist: {e.filename}") from e
    except Exception as e:  # mmengine raises many kinds; all mean "cannot evaluate the file"
        raise ConfigError(path, None,
                          f"mmengine cannot evaluate it: {type(e).__name__}: {e}") from e


def _find_syntax_error(path, seen=None):
    """(file, line, message) of the first syntax error in `path` or its `_base_` chain."""
    seen = set() if seen is None else seen
    path = Path(path).resolve()
    if path in seen or not path.is_file():
        return None
    seen.add(path)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        return path, e.lineno, e.msg
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_"
                                                for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            for base in [bases] if isinstance(bases, str) else bases:
                found = _find_syntax_error(path.parent / base, seen)
                if found:
                    return found
    return None


def _type_name(value):
    """'SwinTransformer3D' for 'SwinTransformer3D', 'mmaction.SwinTransformer3D' or a class."""
    name = value if isinstance(value, str) else getattr(value, "__name__", None)
    return name.rsplit(".", 1)[-1] if isinstance(name, str) else None


# -- backbone ------------------------------------------------------------------------------

def _backbone(backbone, err):
    """ModelSpec's backbone fields, plus the config's dialect ('official' or 'mmaction2')."""
    if not isinstance(backbone, dict):
        raise err("model.backbone",
                  f"expected a SwinTransformer3D backbone dict, found {backbone!r}")
    if _type_name(backbone.get("type")) != "SwinTransformer3D":
        raise err("model.backbone.type",
                  f"expected a SwinTransformer3D backbone, found {backbone.get('type')!r}")
    dialect = _dialect(backbone, err)
    arch = _official_arch(backbone) if dialect == "official" else _mmaction2_arch(backbone, err)
    _check_stages(arch, err)
    defaults = _OFFICIAL_DEFAULTS if dialect == "official" else _MMACTION2_DEFAULTS

    def value(key, cast, spelled=None):
        spelled = spelled or key
        raw = backbone.get(spelled, defaults[key])
        try:
            return None if raw is None and key == "qk_scale" else cast(raw)
        except (TypeError, ValueError):
            raise err(f"model.backbone.{spelled}",
                      f"expected {cast.__name__}, found {raw!r}") from None

    return dict(
        arch, dialect=dialect,
        patch_size=_triple(backbone.get("patch_size", defaults["patch_size"]),
                           "model.backbone.patch_size", err),
        window_size=_triple(backbone.get("window_size", defaults["window_size"]),
                            "model.backbone.window_size", err),
        mlp_ratio=value("mlp_ratio", float), qkv_bias=value("qkv_bias", bool),
        qk_scale=value("qk_scale", float), drop_path_rate=value("drop_path_rate", float),
        patch_norm=value("patch_norm", bool),
        in_channels=value("in_channels", int,
                          "in_chans" if dialect == "official" else "in_channels"))


def _dialect(backbone, err):
    if "arch" in backbone and ({"embed_dim", "in_chans"} & set(backbone)):
        raise err("model.backbone", "mixes mmaction2 1.x `arch` with official 0.x keys "
                  "(embed_dim/in_chans); use one style")
    dialect = "mmaction2" if "arch" in backbone else "official"
    allowed = _MMACTION2_KEYS if dialect == "mmaction2" else _OFFICIAL_KEYS
    unknown = sorted(set(backbone) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = (f"did you mean {close[0]}?" if close
                else f"known options: {', '.join(sorted(allowed))}")
        raise err(f"model.backbone.{unknown[0]}",
                  f"not an option of the {dialect} SwinTransformer3D (a typo, or an option "
                  f"this converter cannot reproduce); {hint}")
    if dialect == "mmaction2":
        _check_mmaction2_options(backbone, err)
    return dialect


def _check_mmaction2_options(backbone, err):
    act = backbone.get("act_cfg", {"type": "GELU"})
    if not isinstance(act, dict) or _type_name(act.get("type")) != "GELU":
        raise err("model.backbone.act_cfg", f"only GELU is supported, found {act!r}")
    norm = backbone.get("norm_cfg", {"type": "LN"})
    if not isinstance(norm, dict) or _type_name(norm.get("type")) not in ("LN", "LayerNorm"):
        raise err("model.backbone.norm_cfg", f"only LN is supported, found {norm!r}")
    if backbone.get("out_after_downsample", False):
        raise err("model.backbone.out_after_downsample",
                  "True is not supported: the classifier reads the last stage, not downsampled")


def _official_arch(backbone):
    d = _OFFICIAL_DEFAULTS
    return dict(embed_dim=int(backbone.get("embed_dim", d["embed_dim"])),
                depths=tuple(int(v) for v in backbone.get("depths", d["depths"])),
                num_heads=tuple(int(v) for v in backbone.get("num_heads", d["num_heads"])))


def _mmaction2_arch(backbone, err):
    arch = backbone["arch"]
    if isinstance(arch, str):
        try:
            a = archs.arch(arch)
        except ValueError:
            raise err("model.backbone.arch",
                      f"unknown arch {arch!r}; expected one of {', '.join(sorted(archs.ARCHS))} "
                      "(or t/s/b/l), or a dict with embed_dims, depths and num_heads") from None
        arch_fields = dict(embed_dim=a["embed_dim"], depths=a["depths"], num_heads=a["num_heads"])
    elif isinstance(arch, dict) and set(arch) == {"embed_dims", "depths", "num_heads"}:
        arch_fields = dict(embed_dim=arch["embed_dims"], depths=arch["depths"],
                           num_heads=arch["num_heads"])
    else:
        raise err("model.backbone.arch", f"expected an arch name or a dict with exactly "
                  f"embed_dims, depths and num_heads, found {arch!r}")
    out = backbone.get("out_indices", (len(arch_fields["depths"]) - 1,))
    if list(out) != [len(arch_fields["depths"]) - 1]:
        raise err("model.backbone.out_indices",
                  f"only the last stage can be the output, found {out!r}")
    return dict(embed_dim=int(arch_fields["embed_dim"]),
                depths=tuple(int(v) for v in arch_fields["depths"]),
                num_heads=tuple(int(v) for v in arch_fields["num_heads"]))


def _check_stages(arch, err):
    depths, heads = arch["depths"], arch["num_heads"]
    if not 1 <= len(depths) <= 4:
        raise err("model.backbone.depths", f"depths {depths}: 1 to 4 stages are supported")
    try:
        archs.check_stages(arch["embed_dim"], depths, heads)
    except ValueError as e:
        text = str(e)
        key = next((f"model.backbone.{k}" for k in ("embed_dim", "num_heads") if k in text),
                   "model.backbone.depths")
        raise err(key, str(e)) from None


def _triple(value, key, err):
    try:
        return geometry.triple(value, key)
    except (TypeError, ValueError):
        raise err(key, f"expected an int or 3 positive ints (T, H, W), found {value!r}") from None


# -- head ----------------------------------------------------------------------------------

def _head(model, fields, err):
    test_cfg = model.get("test_cfg") or {}
    head = model.get("cls_head")
    if head is None:  # backbone-only config
        return dict(num_classes=None, head_dropout=0.5,
                    average_clips=test_cfg.get("average_clips", "prob"))
    if not isinstance(head, dict) or _type_name(head.get("type")) != "I3DHead":
        found = head.get("type") if isinstance(head, dict) else head
        raise err("model.cls_head.type", f"only I3DHead is supported, found {found!r}")
    if head.get("spatial_type", "avg") != "avg":
        raise err("model.cls_head.spatial_type",
                  f"only 'avg' pooling is supported, found {head['spatial_type']!r}")
    if not isinstance(head.get("num_classes"), int) or head["num_classes"] < 1:
        raise err("model.cls_head.num_classes",
                  f"expected a positive int, found {head.get('num_classes')!r}")
    width = fields["embed_dim"] * 2 ** (len(fields["depths"]) - 1)
    if "in_channels" in head and head["in_channels"] != width:
        raise err("model.cls_head.in_channels", f"{head['in_channels']} does not match the "
                  f"backbone's output width {width} (embed_dim x 2^(stages-1))")
    # 1.x keeps average_clips in the head, 0.x in model.test_cfg.
    average = head.get("average_clips", test_cfg.get("average_clips", "prob"))
    return dict(num_classes=head["num_classes"],
                head_dropout=float(head.get("dropout_ratio", 0.5)), average_clips=average)


# -- test pipeline -------------------------------------------------------------------------

def _find_pipeline(cfg):
    """(steps, dotted key) of the test pipeline, or (None, None)."""
    def from_dataset(ds, key):
        if not isinstance(ds, dict):
            return None, None
        if isinstance(ds.get("pipeline"), list):
            return ds["pipeline"], f"{key}.pipeline"
        for i, sub in enumerate(ds.get("datasets") or []):  # ConcatDataset: the first one
            found = from_dataset(sub, f"{key}.datasets.{i}")
            if found[0] is not None:
                return found
        return from_dataset(ds.get("dataset"), f"{key}.dataset")  # wrappers (RepeatDataset)

    for ds, key in ((cfg.get("test_dataloader", {}) or {}).get("dataset"),
                    "test_dataloader.dataset"), \
                   ((cfg.get("data", {}) or {}).get("test"), "data.test"):
        found = from_dataset(ds, key)
        if found[0] is not None:
            return found
    if isinstance(cfg.get("test_pipeline"), list):
        return cfg["test_pipeline"], "test_pipeline"
    return None, None


def _pipeline(cfg, model, average_clips, err):
    steps, key = _find_pipeline(cfg)
    out = {"average_clips": average_clips}
    pre = model.get("data_preprocessor") or {}
    if "mean" in pre and "std" in pre:
        out.update(mean=_floats(pre["mean"], "model.data_preprocessor.mean", err),
                   std=_floats(pre["std"], "model.data_preprocessor.std", err))
    for i, step in enumerate(steps or []):
        if not isinstance(step, dict):
            continue
        kind, at = _type_name(step.get("type")), f"{key}.{i}"

        def count(name, default=None):
            value = step.get(name, default)
            if not isinstance(value, int) or value < 1:
                raise err(f"{at}.{name}", f"expected a positive int, found {value!r}")
            return value

        if kind == "SampleFrames":
            uniform = bool(step.get("frame_uniform", False))
            # The uniform sampler takes one frame per segment: no frame interval.
            out.update(clip_len=count("clip_len"), num_clips=count("num_clips", 1),
                       frame_interval=1 if uniform else count("frame_interval", 1),
                       uniform_sampling=uniform)
        elif kind == "UniformSample":
            out.update(clip_len=count("clip_len"), num_clips=count("num_clips", 1),
                       frame_interval=1, uniform_sampling=True)
        elif kind and "Sample" in kind:
            raise err(f"{at}.type", f"sampler {kind!r} is not supported; expected "
                      "SampleFrames or UniformSample")
        elif kind == "Resize":
            out["short_side"] = _short_side(step.get("scale"), f"{at}.scale", err)
        elif kind in _CROPS:
            out.update(crop_size=_square(step.get("crop_size"), f"{at}.crop_size", err),
                       num_crops=_CROPS[kind])
        elif kind == "Normalize" and "mean" not in pre:  # 0.x: statistics in the pipeline
            out.update(mean=_floats(step.get("mean"), f"{at}.mean", err),
                       std=_floats(step.get("std"), f"{at}.std", err))
    return TestPipeline(**out)


def _floats(values, key, err):
    try:
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        result = ()
    if len(result) != 3:
        raise err(key, f"expected 3 numbers (R, G, B), found {values!r}")
    return result


def _short_side(scale, key, err):
    if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(
            isinstance(v, int) for v in scale):
        positive = [v for v in scale if v > 0]
        if positive:
            # (-1, S) keeps the aspect ratio with short side S; (W, H) bounds both sides.
            return positive[0] if len(positive) == 1 else min(positive)
    raise err(key, f"expected (-1, short_side) or (W, H) in pixels, found {scale!r}")


def _square(size, key, err):
    if isinstance(size, int) and size > 0:
        return size
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        return int(size[0])
    raise err(key, f"expected one square crop size, found {size!r}")


# -- metadata ------------------------------------------------------------------------------

def _metadata(cfg, path, pipeline, err):
    """dataset, pretrain, checkpoint and metrics: the config's own, else the mmaction2
    metafile.yml beside it, else our config of the same name (an upstream copy of one of
    ours), else the file name (dataset, pretrain) or nothing."""
    upstream = _metafile_entry(path, err) or _our_metadata(path)
    views = f"{pipeline.clip_len}x{pipeline.num_clips}x{pipeline.num_crops}"

    ckpt = cfg.get("checkpoint", upstream.get("checkpoint"))
    if ckpt is None and isinstance(cfg.get("load_from"), str) and "://" in cfg["load_from"]:
        ckpt = cfg["load_from"]
    if isinstance(ckpt, str):  # a bare URL or file name
        ckpt = dict(url=ckpt) if "://" in ckpt else dict(filename=ckpt)
    ckpt = _record(ckpt, "checkpoint", _CHECKPOINT_KEYS, err)
    if ckpt.get("url") and not ckpt.get("filename"):
        ckpt["filename"] = ckpt["url"].rsplit("/", 1)[-1]

    metrics = _record(cfg.get("metrics", upstream.get("metrics")), "metrics", _METRICS_KEYS, err)
    if "metrics" not in cfg and metrics:
        metrics.setdefault("views", views)

    stem = path.stem.lower()
    # Upstream configs may use these names for other things (a dataset dict): only strings count.
    dataset, pretrain = (cfg.get(k) if isinstance(cfg.get(k), str) else upstream.get(k)
                         for k in ("dataset", "pretrain"))
    dataset, pretrain = dataset or _dataset_from(stem), pretrain or _pretrain_from(stem)
    return dict(dataset=dataset, pretrain=pretrain, checkpoint=CheckpointSource(**ckpt),
                metrics=Metrics(**metrics))


def _our_metadata(path):
    ours = {Path(c).stem: Path(c) for c in list_configs()}
    twin = ours.get(path.stem)
    if twin is None or twin.resolve() == path.resolve():
        return {}
    cfg = _read(twin)
    return {k: cfg[k] for k in ("checkpoint", "metrics", "dataset", "pretrain") if k in cfg}


def _record(value, key, allowed, err):
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - allowed:
        raise err(key, f"expected dict(...) with keys among {sorted(allowed)}, found {value!r}")
    return dict(value)


def _dataset_from(text):
    text = re.sub(r"[^a-z0-9]", "", text.lower())
    if m := re.search(r"kinetics(\d{3})", text):
        return f"kinetics{m.group(1)}"
    if "sthv2" in text or "ssv2" in text or ("something" in text and text.endswith("v2")):
        return "sthv2"
    return None


def _pretrain_from(stem):
    if re.search(r"(in|_)22k", stem):
        return "ImageNet-22K"
    if re.search(r"(in|_)1k", stem):
        return "ImageNet-1K"
    return None


def _metafile_entry(path, err):
    """What an mmaction2 `metafile.yml` beside the config says about it (empty if none)."""
    metafile = path.parent / "metafile.yml"
    if not metafile.is_file():
        return {}
    import yaml

    try:
        models = (yaml.safe_load(metafile.read_text()) or {}).get("Models") or []
    except (yaml.YAMLError, AttributeError) as e:
        raise err(None, f"the metafile.yml beside it cannot be read: {e}") from e
    entry = next((m for m in models if isinstance(m, dict) and m.get("Name") == path.stem), None)
    if entry is None:
        return {}
    out = {}
    if entry.get("Weights"):
        out["checkpoint"] = dict(url=entry["Weights"])
    results = entry.get("Results") or []
    scores = results[0].get("Metrics", {}) if results else {}
    top1, top5 = scores.get("Top 1 Accuracy"), scores.get("Top 5 Accuracy")
    if top1 is not None:
        out["metrics"] = dict(top1=float(top1), top5=None if top5 is None else float(top5),
                              source=str(metafile))
    meta = entry.get("Metadata") or {}
    out["dataset"] = _dataset_from(str(meta.get("Training Data", ""))) or None
    out["pretrain"] = meta.get("Pretrained")
    return out
