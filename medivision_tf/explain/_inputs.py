"""Checks and conversions shared by the explanation methods.

Pure TensorFlow ops where a function may run inside a `tf.function` (the
native Grad-CAM is traced into exported signatures), NumPy elsewhere.
"""

import keras
import numpy as np
import tensorflow as tf

from medivision_tf.data.io.finish import finish_image
from medivision_tf.model import FEATURE_MAP_LAYER, get_model_config


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


def fit_to_model(images, model):
    """Converts a batch to the model's input channels and size.

    Images of another size are resized, not rejected, exactly as the data
    pipeline does by default (`medivision_tf.data.io.finish.finish_image` with
    `resize="pad"`, i.e. `tf.image.resize_with_pad`: bilinear, aspect ratio
    kept, black padding; then rounded and clipped to 0-255). RGB is converted to gray for 1-channel models (and gray
    repeated for 3-channel ones). Pure TF ops: safe inside a `tf.function`.

    Args:
        images: float tensor `(n, h, w, c)` with a known channel count.
        model: the model whose input the images must match.

    Returns:
        float32 tensor `(n, H, W, C)` of the model's input size.
    """
    height, width, channels = model_image_shape(model)
    images = tf.cast(images, tf.float32)
    if images.shape[-1] != channels:
        if channels == 1:
            images = tf.image.rgb_to_grayscale(images)
        else:
            images = tf.image.grayscale_to_rgb(images)
    if _same_size(images.shape[1:3], (height, width)):
        return images
    # Channels already match, so finish_image only resizes, rounds, clips.
    return finish_image(images, (height, width), channels, resize="pad")


def maps_to_images(cams, image_size, model):
    """Feature-map-level maps `(n, h, w)` -> `(n, *image_size)` in [0, 1].

    When the images had the model's size, this is one bilinear upsampling;
    otherwise the maps are upsampled to the model's input, the padded
    letterbox of `fit_to_model` is cut away and the rest resized to the
    original images. Pure TF ops.
    """
    height, width = model_image_shape(model)[:2]
    if _same_size(image_size, (height, width)):
        return upsample_and_normalize(cams, (height, width))
    top, left, inner_h, inner_w = _letterbox(image_size, (height, width))
    full = tf.image.resize(tf.cast(cams, tf.float32)[..., None], (height, width))
    inner = full[:, top : top + inner_h, left : left + inner_w, 0]
    return upsample_and_normalize(inner, image_size)


def _same_size(size, model_size):
    return all(isinstance(s, int) for s in size) and tuple(size) == tuple(model_size)


def _letterbox(image_size, model_size):
    """`(top, left, height, width)` of the image inside the padded model
    input, computed as `tf.image.resize_with_pad` does."""
    in_h, in_w = (tf.cast(s, tf.float32) for s in image_size)
    out_h, out_w = (float(s) for s in model_size)
    ratio = tf.maximum(in_w / out_w, in_h / out_h)
    inner_h, inner_w = in_h / ratio, in_w / ratio
    top = tf.maximum(0, tf.cast(tf.floor((out_h - inner_h) / 2), tf.int32))
    left = tf.maximum(0, tf.cast(tf.floor((out_w - inner_w) / 2), tf.int32))
    return top, left, tf.cast(inner_h, tf.int32), tf.cast(inner_w, tf.int32)


def upsample_and_normalize(maps, size):
    """Resizes `(n, h, w)` maps to `size` and min-max scales each to [0, 1].

    Bilinear with half-pixel centers (`tf.image.resize`), so a feature-map
    cell lands on the image pixels it covers. The scaling does not depend on
    the map's magnitude; a constant map becomes zeros. Pure TF ops.
    """
    maps = tf.cast(maps, tf.float32)[..., None]
    maps = tf.image.resize(maps, size, method="bilinear")[..., 0]
    low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
    # No epsilon: Grad-CAM on confident softmax outputs gives maps of order
    # 1e-6 that a fixed epsilon would flatten; divide_no_nan keeps the scale
    # free and maps a constant map to zeros.
    return tf.math.divide_no_nan(maps - low, high - low)


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
