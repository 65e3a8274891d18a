"""A decoded image as the model gets it: channels, size, whole 0-255 values.

`finish_image` (`to_channels`, then `resize_image`, then round and clip) is
the one definition of what happens to an image after decoding: the tf.data
pipeline, `load_images` (prediction, evaluation), the shard writer and the
exported serving signatures all call it. `resize_image` keeps the aspect ratio
and pads with black by default (`"pad"`: nothing of a medical image is cut),
or stretches, or crops the center. Graph-safe: call these inside `tf.data`
maps and `tf.function`s.

Example:

```python
import tensorflow as tf
from medivision_tf.data.io.finish import finish_image, resize_image, to_channels

image = tf.random.uniform((40, 60, 1), 0, 255)
rgb = to_channels(image, 3)                          # (40, 60, 3)
small = resize_image(rgb, (32, 32), mode="pad")      # (32, 32, 3), black bars
ready = finish_image(image, 32, channels=3)          # + round and clip
```
"""

import tensorflow as tf

from medivision_tf.data.io.options import check_channels, check_resize, check_size

def to_channels(image, channels):
    """Drops alpha and converts an image to 1 (gray) or 3 (RGB) channels.

    Gray is repeated to RGB; RGB becomes gray with `tf.image.rgb_to_grayscale`
    (ITU-R 601 weights); a second or fourth channel (alpha) is dropped. Works
    in the graph, also when the channel count is only known at run time.

    Args:
        image: float tensor `(H, W, 1|2|3|4)` or `(batch, H, W, 1|2|3|4)`.
        channels: 1 or 3, the channels wanted.

    Returns:
        The image with `channels` channels, same dtype and spatial shape.

    Example:

    ```python
    rgb = to_channels(tf.zeros((8, 8, 1)), 3)     # (8, 8, 3)
    gray = to_channels(tf.zeros((8, 8, 4)), 1)    # RGBA -> (8, 8, 1)
    ```
    """
    channels = check_channels(channels)
    static = image.shape[-1]
    if static is not None:  # known channel count: plain Python branches
        if static in (2, 4):
            image = image[..., : static - 1]
        if channels == 3 and image.shape[-1] == 1:
            image = tf.concat([image] * 3, axis=-1)
        elif channels == 1 and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
        return image
    count = tf.shape(image)[-1]
    image = image[..., : tf.where(count % 2 == 0, count - 1, count)]  # drop alpha
    if channels == 3:
        image = tf.cond(
            tf.shape(image)[-1] == 1, lambda: tf.concat([image] * 3, axis=-1), lambda: image
        )
    else:
        image = tf.cond(
            tf.shape(image)[-1] == 3,
            lambda: tf.image.rgb_to_grayscale(image),
            lambda: image,
        )
    if image.shape.rank is not None:
        image.set_shape(image.shape[:-1].concatenate([channels]))
    return image


def resize_image(image, size, mode="pad", interpolation="bilinear", antialias=False):
    """Resizes `(H, W, C)` or `(batch, H, W, C)` images to `size`.

    Args:
        image: float tensor.
        size: `(height, width)`.
        mode: `"pad"` keeps the aspect ratio and pads with black (nothing of
            the image is lost: the safe choice for medical images),
            `"stretch"` resizes to `size` ignoring the aspect ratio, `"crop"`
            keeps the aspect ratio and crops the center.
        interpolation: a `tf.image.ResizeMethod` name (`"bilinear"`, `"area"`,
            `"bicubic"`, `"nearest"`, ...).
        antialias: low-pass filter when downsampling (sharper small images,
            slower).

    Returns:
        float32 tensor with spatial size `size`.
    """
    height, width = check_size(size)
    check_resize(mode)
    if mode == "pad":
        return _resize_with_pad(image, height, width, interpolation, antialias)
    if mode == "crop":
        shape = tf.shape(image)
        in_h, in_w = shape[-3], shape[-2]
        scale = tf.minimum(
            tf.cast(in_h, tf.float32) / height, tf.cast(in_w, tf.float32) / width
        )
        crop_h = tf.maximum(1, tf.cast(tf.round(scale * height), tf.int32))
        crop_w = tf.maximum(1, tf.cast(tf.round(scale * width), tf.int32))
        image = tf.image.crop_to_bounding_box(
            image, (in_h - crop_h) // 2, (in_w - crop_w) // 2,
            tf.minimum(crop_h, in_h), tf.minimum(crop_w, in_w),
        )
    return tf.image.resize(image, (height, width), method=interpolation, antialias=antialias)


def _resize_with_pad(image, height, width, interpolation, antialias):
    """`tf.image.resize_with_pad`'s pixels (its size and offset arithmetic,
    then `tf.image.resize` and a zero `tf.pad`), without its shape asserts
    and `pad_to_bounding_box`'s checks: in a `tf.data` map they cost more
    per image than the pad itself (the sizes here are checked already)."""
    shape = tf.shape(image)
    geometry = pad_geometry(shape[-3], shape[-2], height, width)
    return resize_and_pad(image, geometry, height, width, interpolation, antialias)


def pad_geometry(in_h, in_w, height, width):
    """`resize_image(mode="pad")`'s arithmetic: `(resized_h, resized_w, top,
    left)` int32 for input sizes `in_h, in_w` (scalars, or vectors: the
    pipeline computes a whole group's at once, not per image)."""
    in_h, in_w = tf.cast(in_h, tf.float32), tf.cast(in_w, tf.float32)
    ratio = tf.maximum(in_w / width, in_h / height)
    new_h, new_w = in_h / ratio, in_w / ratio
    resized_h = tf.cast(tf.floor(new_h), tf.int32)
    resized_w = tf.cast(tf.floor(new_w), tf.int32)
    top = tf.maximum(0, tf.cast(tf.floor((height - new_h) / 2), tf.int32))
    left = tf.maximum(0, tf.cast(tf.floor((width - new_w) / 2), tf.int32))
    return resized_h, resized_w, top, left


def resize_and_pad(image, geometry, height, width, interpolation, antialias):
    """Resizes to `geometry`'s `(resized_h, resized_w)` and zero-pads to
    `(height, width)` at `(top, left)` (`pad_geometry`)."""
    resized_h, resized_w, top, left = geometry
    image = tf.image.resize(image, tf.stack([resized_h, resized_w]), method=interpolation,
                            antialias=antialias)
    spatial = [[top, height - resized_h - top], [left, width - resized_w - left], [0, 0]]
    padded = tf.pad(image, [[0, 0]] * (image.shape.rank - 3) + spatial)
    padded.set_shape(image.shape[:-3].concatenate([height, width]).concatenate(image.shape[-1:]))
    return padded


def finish_image(
    image,
    size,
    channels=3,
    resize="pad",
    interpolation="bilinear",
    antialias=False,
    dtype=tf.float32,
):
    """A decoded image as the model gets it: channels, size, 0-255 integers.

    The one definition of what `make_dataset` does after decoding (and what
    prediction, explanation and export should do with their images):
    `to_channels`, then `resize_image`, then round and clip to `[0, 255]`.
    Graph-safe: call it inside `tf.data` maps and `tf.function`s.

    Args:
        image: `(H, W, C)` or `(batch, H, W, C)` tensor of 0-255 pixels (any
            numeric dtype; C in 1-4).
        size: int or `(height, width)`.
        channels: 1 (grayscale) or 3 (RGB).
        resize: `"pad"`, `"stretch"` or `"crop"` (see `resize_image`).
        interpolation: resize method (`"bilinear"`, `"area"`, `"bicubic"`...).
        antialias: anti-aliased downsampling.
        dtype: output dtype: `tf.float32` (default) or `tf.uint8` (the same
            values in a quarter of the memory; `make_dataset` caches these).

    Returns:
        `(height, width, channels)` (or batched) tensor of `dtype` holding
        whole numbers in `[0, 255]`.

    Example:

    ```python
    image = load_image("scan.png", channels=3)            # any size
    ready = finish_image(image, 224, channels=3)          # (224, 224, 3)
    ```
    """
    size = check_size(size)
    channels = check_channels(channels)
    check_resize(resize)
    image = to_channels(tf.cast(image, tf.float32), channels)
    image = resize_image(image, size, resize, interpolation, antialias)
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
    return tf.cast(image, dtype)


# Interpolations whose output stays within its input's range (convex
# combinations of pixels): no clip needed after rounding.
_CONVEX_INTERPOLATIONS = ("bilinear", "area", "nearest")


def resized(image, size, resize, interpolation, antialias, dtype):
    """A decoded image resized, rounded and cast as `finish_image` does."""
    return rounded(resize_image(image, size, resize, interpolation, antialias),
                   interpolation, dtype)


def rounded(image, interpolation, dtype):
    """A resized image rounded to whole 0-255 values and cast to `dtype`."""
    image = tf.round(image)
    if interpolation not in _CONVEX_INTERPOLATIONS:
        image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.cast(image, dtype)
