"""Fine-tuning helpers: freeze a backbone by stage, as mmaction2's `frozen_stages` does."""

from videoswin.model.backbone import VideoSwinBackbone


def _backbone_of(model):
    if isinstance(model, VideoSwinBackbone):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, VideoSwinBackbone):
        return backbone
    raise TypeError(f"expected a VideoSwinBackbone or a model with a `.backbone` attribute; "
                    f"got {type(model).__name__}")


def frozen_layer_names(num_stages, frozen_stages):
    """Names of the backbone layers that `frozen_stages` freezes.

    -1 freezes nothing, 0 the patch embedding, n >= 1 the patch embedding and stages
    `layers_0` .. `layers_{n-1}` (each with its patch merging). The final `norm` is never
    frozen.
    """
    if not -1 <= frozen_stages <= num_stages:
        raise ValueError(f"frozen_stages={frozen_stages} is out of range: use -1 (none) to "
                         f"{num_stages} (all {num_stages} stages)")
    if frozen_stages < 0:
        return []
    return ["patch_embed"] + [f"layers_{i}" for i in range(frozen_stages)]


def freeze_stages(model, frozen_stages):
    """Freeze the patch embedding and the first `frozen_stages` stages; unfreeze the rest.

    `model` is a `VideoSwinBackbone` or a model holding one as `.backbone` (such as
    `VideoSwinClassifier`). Every other backbone layer is made trainable, so the call sets
    the whole backbone's state. Call it before `compile()`: Keras reads trainability there.
    Returns the list of frozen layer names.

    Unlike mmaction2, which also switches frozen stages to eval mode, dropout and drop-path
    inside frozen stages still act under `training=True`.
    """
    backbone = _backbone_of(model)
    names = frozen_layer_names(len(backbone.depths), int(frozen_stages))
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name not in names
    return names


def without_optimizer(model):
    """A copy of `model` with the same architecture and weights but no optimizer or compile
    state, to save for inference: `without_optimizer(model).save("tuned.keras")` writes the
    weights alone, where `model.save` also stores the optimizer's state (AdamW: two moments
    per weight, so the file is three times as large)."""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy
