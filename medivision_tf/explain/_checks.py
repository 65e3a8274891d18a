"""Checks shared by the explanation methods, on every Keras backend.

NumPy and Keras only (no TensorFlow): which layers a map can be computed on,
the model's input shape and classes, images as a batch, class indices.
`_inputs` (TensorFlow ops, traceable) and `_inputs_keras` (`keras.ops`, any
backend) convert images and maps; both use these checks.
"""

import keras
import numpy as np

from medivision_tf.model_access import FEATURE_MAP_LAYER, get_model_config


def spatial_layer_names(model):
    """Names of the model's layers with a 4-D `(batch, h, w, c)` output.

    These are the layers a class activation map can be computed on, output
    side first (the input layer itself is left out).
    """
    names = []
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        output = layer.output
        if not isinstance(output, (list, tuple)) and len(output.shape) == 4:
            names.append(layer.name)
    return names


def check_layer(model, layer_name):
    """Returns the layer `layer_name` (default `"feature_map"`) of `model`.

    Raises:
        ValueError: no such layer, or its output is not a `(batch, h, w, c)`
            feature map; the message lists the layers that can be used.
    """
    if layer_name is None:
        layer_name = FEATURE_MAP_LAYER
    valid = spatial_layer_names(model)
    if layer_name not in valid:
        known = {layer.name for layer in model.layers}
        reason = (
            "has no 4-D (batch, h, w, c) output"
            if layer_name in known
            else "is not a layer of the model"
        )
        raise ValueError(
            f"Unknown layer name {layer_name!r} for model {model.name!r}: it "
            f"{reason}. Choose one of: {', '.join(valid)}."
        )
    return model.get_layer(layer_name)


def model_image_shape(model):
    """`(height, width, channels)` of the model's image input (its `ModelConfig`)."""
    return tuple(get_model_config(model).input_shape)


def num_classes(model):
    """Number of the model's classes (its `ModelConfig`)."""
    return len(get_model_config(model).class_names)


def to_batch(images):
    """`images` as a float32 NumPy batch `(n, h, w, c)`.

    Accepts `(n, h, w, c)` or `(n, h, w)` (grayscale) arrays of raw 0-255
    pixels, uint8 or float.
    """
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[0] == 0 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "`images` must be a non-empty batch (n, height, width[, 1|3|4 "
            f"channels]) of raw 0-255 pixels. Received shape: {array.shape}"
        )
    if array.shape[-1] == 4:  # RGBA: drop alpha
        array = array[..., :3]
    return array.astype("float32")


def check_class_index(class_index, num_images, num_classes):
    """Validates `class_index` and returns an int32 array `(num_images,)`, or
    None (meaning: each image's top class).

    Args:
        class_index: None, one class id for every image, or one per image.

    Raises:
        ValueError: an index outside `[0, num_classes)`, or a per-image list
            of the wrong length.
    """
    if class_index is None:
        return None
    indices = np.asarray(class_index)
    if indices.dtype.kind not in "iu" or indices.ndim > 1:
        raise ValueError(
            "`class_index` must be None, an integer or one integer per image. "
            f"Received: class_index={class_index!r}"
        )
    indices = np.broadcast_to(indices, (num_images,)) if indices.ndim == 0 else indices
    if len(indices) != num_images:
        raise ValueError(
            f"`class_index` has {len(indices)} entries for {num_images} images. "
            "Pass one integer, or one per image."
        )
    bad = indices[(indices < 0) | (indices >= num_classes)]
    if bad.size:
        raise ValueError(
            f"Class index {int(bad[0])} is out of range: the model has "
            f"{num_classes} classes, so indices go from 0 to {num_classes - 1}. "
            f"Received: class_index={class_index!r}"
        )
    return indices.astype("int32")
