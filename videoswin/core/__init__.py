"""Pure facts about Video Swin: no Keras, torch or mmengine import anywhere below.

- `archs`: the named architectures (tiny, small, base, large).
- `geometry`: size rules shared by the model and the cost model (triples, window clamping,
  padding).
- `flops`: analytic multiply-accumulates and parameter counts.
- `pipelines`: the official test pipelines and input normalisation.
- `datasets`: the datasets of the published models (names, classes, label files, notes).
- `labels`: class-name maps.
- `spec`: `ModelSpec`, what a config says about one model.
- `presets`: the published models as data (keras-hub style presets).
- `naming`: artifact file names of a conversion folder, and safe names.
- `manifest`: the versioned `Manifest` schema of a conversion folder.
- `backends`: the Keras backends and how entry points choose one.
"""
