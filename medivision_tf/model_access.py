"""Reading a built MediVision model: load a `.keras` file, its stored config and class names, its named layers, attention weights.

The layers every MediVision model has are named `FEATURE_MAP_LAYER`
(Grad-CAM's target), `ATTENTION_LAYER` (not in pooling baselines) and
`CLASS_LABELS_LAYER` (the class names and the `ModelConfig`).

Example:

```python
import medivision_tf
from medivision_tf.model_access import get_model_config, named_layer

model = medivision_tf.build_medivision(2, backbone="smallcnn", weights=None,
                                       input_shape=(64, 64, 1))
get_model_config(model).class_names        # ('class_0', 'class_1')
named_layer(model, "feature_map").output.shape
```
"""

import os

import keras
import numpy as np

from medivision_tf.config import ModelConfig

FEATURE_MAP_LAYER = "feature_map"
ATTENTION_LAYER = "attention"
CLASS_LABELS_LAYER = "class_labels"
INPUT_LAYERS = ("image", "to_rgb", "preprocessing")


def load_model(filepath, compile=True):
    """Loads a `.keras` MediVision model (safe mode on).

    Importing `medivision_tf` registers the custom layers, so this works in a
    fresh process.

    Args:
        filepath: path of a `.keras` file written by `model.save()`.
        compile: whether to restore the training configuration too.

    Returns:
        The `keras.Model`.

    Example:

    ```python
    model.save("medivision.keras")
    same = medivision_tf.load_model("medivision.keras")
    ```
    """
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Model file not found: {path!r}")
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def get_class_names(model):
    """The class names stored in a MediVision model, in output order."""
    return list(named_layer(model, CLASS_LABELS_LAYER).class_names)


def get_model_config(model):
    """The `ModelConfig` a MediVision model was built with.

    It is stored in the model (and so in `.keras` files and exports). Models
    saved by release 0.1.0, before the config was stored, get one rebuilt
    from their layers (backbone and weights then read `None`: unknown).

    Args:
        model: a model from `build_medivision`, `build_pooling_baseline` or
            `load_model`.

    Returns:
        A `ModelConfig`.

    Raises:
        TypeError: a path instead of a model (load it with `load_model` first).

    Example:

    ```python
    model = build_medivision(2, backbone="smallcnn", weights=None, input_shape=(64, 64, 1))
    get_model_config(model).sequence    # 'spatial'
    ```
    """
    if isinstance(model, (str, bytes, os.PathLike)):
        raise TypeError(
            f"get_model_config takes a model, not a path; received {model!r}. Load it "
            "first: get_model_config(medivision_tf.load_model(path, compile=False))."
        )
    labels = named_layer(model, CLASS_LABELS_LAYER)
    if labels.model_config:
        return ModelConfig.from_dict(labels.model_config)
    return _inferred_config(model, labels)


def _inferred_config(model, labels):
    """A `ModelConfig` for a model saved before configs were stored (0.1.0)."""
    names = {layer.name for layer in model.layers}
    values = dict(
        num_classes=len(labels.class_names), backbone=None, weights=None,
        input_shape=tuple(model.inputs[0].shape[1:]), multi_label=labels.multi_label,
        class_names=tuple(labels.class_names), name=model.name,
        dropout=float(model.get_layer("dropout").rate) if "dropout" in names else 0.0,
    )
    if ATTENTION_LAYER not in names:
        return ModelConfig(head="pooling", **values)
    height, width = named_layer(model, FEATURE_MAP_LAYER).output.shape[1:3]
    steps = named_layer(model, ATTENTION_LAYER).output[1].shape[1]
    lstm = model.get_layer("lstm")
    return ModelConfig(
        sequence="spatial" if steps == height * width and height * width != height else "rows",
        lstm_units=lstm.units, lstm_unroll=bool(lstm.unroll),
        projection_units=model.get_layer("projection").units if "projection" in names else None,
        attention_units=named_layer(model, ATTENTION_LAYER).units, **values,
    )


def is_multi_label(model):
    """Whether a MediVision model has independent sigmoid outputs."""
    return named_layer(model, CLASS_LABELS_LAYER).multi_label


def backbone_layers(model):
    """The backbone's layers in a MediVision model, input side first.

    These are the layers between the preprocessing and the `"feature_map"`
    layer: what `set_backbone_trainable` freezes and unfreezes.
    """
    feature_map = named_layer(model, FEATURE_MAP_LAYER)
    upstream = keras.Model(model.inputs, feature_map.output)
    skip = set(INPUT_LAYERS) | {FEATURE_MAP_LAYER}
    return [layer for layer in upstream.layers if layer.name not in skip]


def attention_weights(model, images, batch_size=32):
    """The attention layer's weights over the sequence for each image.

    Args:
        model: a model from `build_medivision`.
        images: array of shape `(n, height, width, channels)`, raw 0-255.
        batch_size: images per forward pass.

    Returns:
        NumPy array `(n, steps)`; each row sums to 1. Reshape a row to
        `sequence_grid(model)` to lay it over the feature map.
    """
    attention = named_layer(model, ATTENTION_LAYER)
    probe = keras.Model(model.inputs, attention.output[1])
    return np.asarray(probe.predict(np.asarray(images), batch_size=batch_size, verbose=0))


def sequence_grid(model):
    """`(rows, cols)` grid of the attention sequence over the feature map.

    `"spatial"` models give the feature map's `(h, w)`; `"rows"` models
    give `(h, 1)` (one weight per feature-map row).
    """
    height, width = named_layer(model, FEATURE_MAP_LAYER).output.shape[1:3]
    return (height, width) if get_model_config(model).sequence == "spatial" else (height, 1)


def all_layers(model):
    """Every layer of `model`, nested models' layers included (depth first)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model
            yield from all_layers(layer)


def named_layer(model, name):
    """`model.get_layer(name)`, with an error that says the model is no MediVision model."""
    try:
        return model.get_layer(name)
    except ValueError as error:
        raise ValueError(
            f"Model {model.name!r} has no layer {name!r}: it was not built by "
            "medivision_tf.build_medivision."
        ) from error
