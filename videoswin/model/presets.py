"""Loading presets: published Video Swin models by zoo name, `hf://` URI or local path.

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

import os

import keras

from videoswin.core import naming
from videoswin.core.manifest import Manifest
from videoswin.core.presets import PRESETS

BACKBONE_DIR = "backbone"


def resolve(preset):
    """The `hf://` URI or local path a preset name, URI or path stands for."""
    preset = os.fspath(preset)
    if preset in PRESETS:
        return PRESETS[preset].hub_handle
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
                     f"file or folder.{hint} Presets: {', '.join(PRESETS)}.")


def load(preset, prefer_backbone=False):
    """The Keras model a preset holds (classifier or backbone, as saved).

    `preset`: a zoo name (see `videoswin.core.presets.PRESETS`), `hf://ORG/NAME`, a `.keras`
    file, a folder in the Hub layout above, or a `videoswin-convert` output folder (found
    through its manifest, whose sizes and hashes are checked first). `prefer_backbone`
    picks the backbone file where a folder holds both.
    """
    source = resolve(preset)
    if source.startswith("hf://"):
        return keras.saving.load_model(source, compile=False)
    if os.path.isfile(source):
        if not source.endswith(".keras"):
            raise ValueError(f"{source!r}: a preset file must be a .keras archive (a "
                             ".weights.h5 file holds no architecture; use model.load_weights)")
        return keras.saving.load_model(source, compile=False)
    return keras.saving.load_model(_model_in_folder(source, prefer_backbone), compile=False)


def _model_in_folder(folder, prefer_backbone):
    """The Keras folder or `.keras` file in `folder` that best serves the request."""
    if prefer_backbone and os.path.isfile(os.path.join(folder, BACKBONE_DIR, "config.json")):
        return os.path.join(folder, BACKBONE_DIR)
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    if os.path.isfile(os.path.join(folder, naming.MANIFEST)):
        manifest = Manifest.read(folder)
        names = [manifest.keras_file(), manifest.keras_file(backbone=True)]
        if prefer_backbone or not manifest.with_head:
            names.reverse()
        for name in names:
            if name in manifest["artifacts"]:
                manifest.verify(folder, [name])
                return os.path.join(folder, name)
        raise ValueError(f"{folder!r}: manifest.json lists neither {names[0]} nor {names[1]}")
    raise ValueError(f"{folder!r} holds neither a Keras model folder (config.json, "
                     "model.weights.h5) nor a videoswin-convert output (manifest.json)")
