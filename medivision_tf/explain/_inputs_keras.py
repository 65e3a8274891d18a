"""`_inputs`' conversions in `keras.ops`, for the JAX and PyTorch backends.

The same pixels as the TensorFlow path (`_inputs`, which calls
`medivision_tf.data.io.finish.finish_image` and `tf.image.resize`): channels
converted with ITU-R 601 weights, a letterbox resize (aspect ratio kept,
bilinear with half-pixel centers, no antialiasing, black padding, rounded and
clipped to 0-255), maps upsampled bilinearly and min-max scaled per image.
The geometry (sizes, offsets) is plain Python: the images' size is known
when these run.
"""

import math

import numpy as np
from keras import ops

from medivision_tf.explain._checks import model_image_shape


def fit_to_model(images, model):
    """`(n, h, w, c)` images -> the model's input `(n, H, W, C)`, float32.

    Args:
        images: NumPy array or backend tensor of 0-255 pixels, 1 or 3 channels.
        model: the model whose input the images must match.
    """
    height, width, channels = model_image_shape(model)
    images = ops.cast(ops.convert_to_tensor(images), "float32")
    if images.shape[-1] != channels:
        if channels == 1:
            images = ops.image.rgb_to_grayscale(images)
        else:
            images = ops.repeat(images, 3, axis=-1)
    in_h, in_w = images.shape[1:3]
    if (in_h, in_w) == (height, width):
        return images
    resized_h, resized_w, top, left = _pad_geometry((in_h, in_w), (height, width))
    images = ops.image.resize(
        images, (resized_h, resized_w), interpolation="bilinear", antialias=False
    )
    images = ops.pad(
        images,
        [[0, 0], [top, height - resized_h - top], [left, width - resized_w - left], [0, 0]],
    )
    return ops.clip(ops.round(images), 0.0, 255.0)


def maps_to_images(cams, image_size, model):
    """Feature-map-level maps `(n, h, w)` -> `(n, *image_size)` in [0, 1].

    As `_inputs.maps_to_images`: one bilinear upsampling when the images had
    the model's size; otherwise up to the model's input, the letterbox of
    `fit_to_model` cut away, and the rest resized to the images' size.
    """
    height, width = model_image_shape(model)[:2]
    image_size = tuple(int(s) for s in image_size)
    if image_size == (height, width):
        return upsample_and_normalize(cams, (height, width))
    resized_h, resized_w, top, left = _pad_geometry(image_size, (height, width))
    full = ops.image.resize(
        ops.cast(cams, "float32")[..., None], (height, width), interpolation="bilinear"
    )
    inner = full[:, top : top + resized_h, left : left + resized_w, 0]
    return upsample_and_normalize(inner, image_size)


def upsample_and_normalize(maps, size):
    """`(n, h, w)` maps resized (bilinear, half-pixel centers) to `size` and
    min-max scaled per map to [0, 1]; a constant map becomes zeros."""
    maps = ops.cast(maps, "float32")[..., None]
    maps = ops.image.resize(maps, tuple(size), interpolation="bilinear")[..., 0]
    low = ops.min(maps, axis=(1, 2), keepdims=True)
    high = ops.max(maps, axis=(1, 2), keepdims=True)
    span = high - low
    # divide_no_nan, as the TensorFlow path: no epsilon (tiny maps keep their shape).
    safe = ops.where(span > 0, span, ops.ones_like(span))
    return ops.where(span > 0, (maps - low) / safe, ops.zeros_like(maps))


def _pad_geometry(image_size, model_size):
    """`(resized_h, resized_w, top, left)` of an image inside the letterboxed
    model input: `medivision_tf.data.io.finish.pad_geometry`'s float32
    arithmetic, in Python."""
    in_h, in_w = (float(s) for s in image_size)
    out_h, out_w = (float(s) for s in model_size)
    ratio = _f32(max(_f32(in_w / out_w), _f32(in_h / out_h)))
    new_h, new_w = _f32(in_h / ratio), _f32(in_w / ratio)
    top = max(0, math.floor(_f32(out_h - new_h) / 2))
    left = max(0, math.floor(_f32(out_w - new_w) / 2))
    return math.floor(new_h), math.floor(new_w), top, left


def _f32(value):
    """`value` rounded to float32, as TensorFlow's float32 arithmetic gives it."""
    return float(np.float32(value))
