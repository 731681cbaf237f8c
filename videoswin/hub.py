"""Presets: load published Video Swin models by zoo name, `hf://` URI or local path.

Hub repository layout (what `videoswin-publish` uploads):

    README.md                       model card
    config.json, metadata.json,     Keras's own Hub layout for the main model (the classifier,
    model.weights.h5                or the backbone for a backbone-only conversion):
                                    `keras.saving.load_model("hf://ORG/NAME")` loads it
    backbone/config.json, backbone/metadata.json, backbone/model.weights.h5
                                    the same layout for the backbone alone (classifier
                                    conversions; a local `backbone/` folder loads directly)
    <stem>.keras, <stem>.weights.h5, <stem>_backbone.keras, <stem>_backbone.weights.h5
                                    the conversion's artifacts, byte for byte
    manifest.json, <stem>.parity.json, <stem>.parity.md
    label_map.json                  class index -> name (classifier conversions)

`hf://` loading goes through Keras (`keras.saving.load_model`), which downloads a snapshot of
the whole repository into the huggingface_hub cache (so later loads read the cache, also
offline). Keras's `hf://` takes no subfolder or revision, so a backbone is taken from the
loaded classifier (the same weights as `backbone/`); `model.weights.h5` and
`<stem>.weights.h5` are the same bytes, so the cache stores them once.
"""

import json
import os

import keras

from videoswin.backbone import VideoSwinBackbone
from videoswin.classifier import VideoSwinClassifier

HUB_ORG = "videoswin"

# Config stems of the zoo (configs/recognition/swin/*.py); each is published as ORG/<stem>.
PRESET_NAMES = (
    # official release v1.0.4 (SwinTransformer/Video-Swin-Transformer)
    "swin_tiny_patch244_window877_kinetics400_1k",
    "swin_small_patch244_window877_kinetics400_1k",
    "swin_base_patch244_window877_kinetics400_1k",
    "swin_base_patch244_window877_kinetics400_22k",
    "swin_base_patch244_window877_kinetics600_22k",
    "swin_base_patch244_window1677_kinetics400_22k",
    "swin_base_patch244_window1677_sthv2",
    # mmaction2 1.x model zoo
    "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb",
    "swin-small-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb",
    "swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb",
    "swin-large-p244-w877_in22k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb",
    "swin-large-p244-w877_in22k-pre_16xb8-amp-32x2x1-30e_kinetics700-rgb",
    "swin-small-p244-w877_in1k-pre_32xb4-amp-32x2x1-30e_kinetics710-rgb",
)
PRESETS = {name: f"hf://{HUB_ORG}/{name}" for name in PRESET_NAMES}

BACKBONE_DIR = "backbone"
CLASSIFIER_OPTIONS = ("num_classes", "dropout", "activation")


def resolve_preset(preset):
    """The `hf://` URI or local path a preset name, URI or path stands for."""
    preset = os.fspath(preset)
    if preset in PRESETS:
        return PRESETS[preset]
    if preset.startswith("hf://"):
        repo = preset[len("hf://"):]
        if repo.count("/") != 1 or "@" in repo or not all(repo.split("/")):
            raise ValueError(f"{preset!r}: Keras's Hub loading takes 'hf://ORG/NAME' only (no "
                             "subfolder or revision); for the backbone of a published "
                             "classifier use VideoSwinBackbone.from_preset('hf://ORG/NAME')")
        return preset
    if os.path.exists(preset):
        return preset
    hint = ""
    if preset.count("/") == 1 and not preset.startswith((".", "/")):
        hint = f" For a Hub repository write 'hf://{preset}'."
    raise ValueError(f"{preset!r} is not a preset name, an 'hf://ORG/NAME' URI or an existing "
                     f"file or folder.{hint} Presets: {', '.join(PRESET_NAMES)}.")


def load_preset(preset, kind="classifier", **kwargs):
    """Load a `VideoSwinClassifier` (kind='classifier') or `VideoSwinBackbone` (kind='backbone').

    `preset`: a zoo name (see `PRESETS`), `hf://ORG/NAME`, a `.keras` file, a folder in the
    Hub layout above, or a `videoswin-convert` output folder (found through its manifest).
    For a classifier, `num_classes` (with `dropout`, `activation`) different from the
    preset's puts a new, freshly initialised head on the pretrained backbone.
    """
    if kind not in ("classifier", "backbone"):
        raise ValueError(f"kind must be 'classifier' or 'backbone', not {kind!r}")
    allowed = CLASSIFIER_OPTIONS if kind == "classifier" else ()
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"from_preset() got unexpected keyword arguments {unknown}; "
                        f"a {kind} accepts {list(allowed) or 'none'}")
    source = resolve_preset(preset)
    model = _load(source, kind)
    if kind == "backbone":
        if isinstance(model, VideoSwinClassifier):
            return model.backbone
        if isinstance(model, VideoSwinBackbone):
            return model
    elif isinstance(model, VideoSwinClassifier):
        return _with_head(model, **kwargs)
    elif isinstance(model, VideoSwinBackbone):
        raise ValueError(f"{preset!r} holds a backbone only (no classification head); load it "
                         "with VideoSwinBackbone.from_preset, then add a head with "
                         "VideoSwinClassifier(backbone, num_classes)")
    raise ValueError(f"{source!r} holds a {type(model).__name__}, not a Video Swin model")


def _load(source, kind):
    if source.startswith("hf://"):
        return keras.saving.load_model(source, compile=False)
    if os.path.isfile(source):
        if not source.endswith(".keras"):
            raise ValueError(f"{source!r}: a preset file must be a .keras archive (a "
                             ".weights.h5 file holds no architecture; use model.load_weights)")
        return keras.saving.load_model(source, compile=False)
    return keras.saving.load_model(_model_in_folder(source, kind), compile=False)


def _model_in_folder(folder, kind):
    """The Keras folder or `.keras` file in `folder` that best serves `kind`."""
    if kind == "backbone" and os.path.isfile(os.path.join(folder, BACKBONE_DIR, "config.json")):
        return os.path.join(folder, BACKBONE_DIR)
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    manifest_path = os.path.join(folder, "manifest.json")
    if os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as handle:
            stem = json.load(handle).get("config")
        names = [f"{stem}.keras", f"{stem}_backbone.keras"]
        if kind == "backbone":
            names.reverse()
        for name in names:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
        raise ValueError(f"{folder!r}: manifest.json names config {stem!r} but neither "
                         f"{names[0]} nor {names[1]} is there")
    raise ValueError(f"{folder!r} holds neither a Keras model folder (config.json, "
                     "model.weights.h5) nor a videoswin-convert output (manifest.json)")


def _with_head(classifier, num_classes=None, dropout=None, activation=None):
    keep_head = num_classes is None or num_classes == classifier.num_classes
    if keep_head and dropout is None and activation is None:
        return classifier
    model = VideoSwinClassifier(
        classifier.backbone,
        classifier.num_classes if keep_head else num_classes,
        dropout=classifier.dropout if dropout is None else dropout,
        activation=classifier.activation if activation is None else activation)
    if keep_head:
        model.get_layer("fc_cls").set_weights(classifier.get_layer("fc_cls").get_weights())
    return model
