"""Conversions of images and maps for the TensorFlow explanation path.

Pure TensorFlow ops (the native Grad-CAM is traced into exported
signatures). The checks shared with the other backends (`check_layer`,
`check_class_index`, `to_batch`, ...) live in `_checks` and are re-exported
here; `_inputs_keras` is the same conversions in `keras.ops` for JAX and
PyTorch.
"""

import tensorflow as tf

from medivision_tf.data.io.finish import finish_image
from medivision_tf.explain._checks import (  # noqa: F401 (re-exported)
    check_class_index,
    check_layer,
    model_image_shape,
    num_classes,
    spatial_layer_names,
    to_batch,
)


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
