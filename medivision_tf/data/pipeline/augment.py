"""Training-time augmentation: per-example stateless draws, parallel and reproducible.

The same augmentation runs in the tf.data pipeline (`make_dataset(...,
augment=True)`) or, as the `Augmentation` layer from `augmentation_model`,
at the front of a model on the accelerator (active only in training). Each
example's random numbers come from stateless ops keyed by (seed, epoch,
example index), so a parallel map gives the same images every run.

Example:

```python
import numpy as np
from medivision_tf.data.pipeline.augment import augmentation_model

layer = augmentation_model(seed=0)
augmented = layer(np.zeros((2, 64, 64, 1), "float32"), training=True)
```
"""

import keras
import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE

# Medical-sensible defaults: small rotations and zooms, mild intensity
# changes, horizontal flips only (anatomy is rarely upside down). Set
# `flip=None` where laterality matters.
DEFAULT_AUGMENTATION = {
    "flip": "horizontal",
    "rotation": 0.04,  # fraction of a full turn: +-14 degrees
    "zoom": 0.1,
    "contrast": 0.1,
    "brightness": 0.1,
    "translation": 0.0,
}


def augmentation_layers(
    flip="horizontal",
    rotation=0.04,
    zoom=0.1,
    contrast=0.1,
    brightness=0.1,
    seed=0,
    fill_mode="constant",
    translation=0.0,
):
    """A `keras.Sequential` of random preprocessing layers for 0-255 images.

    Args:
        flip: `"horizontal"`, `"vertical"`, `"horizontal_and_vertical"` or
            None (no flips).
        rotation: max rotation as a fraction of a full turn (0 or None: off).
        zoom: max zoom in/out as a fraction (0 or None: off).
        contrast: max contrast change factor (0 or None: off).
        brightness: max brightness change as a fraction of 255 (0 or None).
        translation: max shift along each axis as a fraction of the image
            side (0 or None: off), e.g. 0.1: up to 2.8 pixels at 28x28.
        seed: seed of the layers; the same seed gives the same draws.
        fill_mode: how rotation/zoom fill new pixels (`"constant"`: black,
            like the padding of `resize="pad"`; or `"reflect"`, `"nearest"`).

    Returns:
        A `keras.Sequential` (possibly without layers), to call with
        `training=True`.

    Example:

    ```python
    augment = augmentation_layers(flip=None, rotation=0.02)
    ```
    """
    flips = ("horizontal", "vertical", "horizontal_and_vertical")
    if flip not in flips + (None,):
        raise ValueError(f"Unknown flip {flip!r}. Choose one of: {', '.join(flips)} or None.")
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode=fill_mode, seed=seed + 1))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode=fill_mode, seed=seed + 2))
    if translation:
        layers.append(keras.layers.RandomTranslation(
            translation, translation, fill_mode=fill_mode, seed=seed + 5))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 3))
    if brightness:
        layers.append(
            keras.layers.RandomBrightness(brightness, value_range=(0, 255), seed=seed + 4)
        )
    return keras.Sequential(layers, name="augmentation")



# --- Stateless, per-example augmentation ---------------------------------
# The same augmentations and strengths as `augmentation_layers`, as plain
# functions of a per-example parameter vector. The pipeline draws the vector
# with `tf.random.stateless_uniform` from a key of (seed, epoch, example), so
# the map that applies it may run in parallel and still give the same images
# every run; `Augmentation` (the layer in front of a model) draws it from a
# Keras `SeedGenerator` on the accelerator.
_FLIPS = ("horizontal", "vertical", "horizontal_and_vertical")
# Columns of the parameter vector: uniforms in [0, 1).
_U_FLIP_H, _U_FLIP_V, _U_ANGLE, _U_ZOOM, _U_CONTRAST, _U_BRIGHTNESS, _U_DX, _U_DY = range(8)
_DRAWS = 8


def _check_options(options):
    """The full option dict (defaults filled in); raises on unknown values."""
    unknown = set(options) - set(DEFAULT_AUGMENTATION) - {"fill_mode"}
    if unknown:
        raise ValueError(
            f"Unknown augmentation options {sorted(unknown)}. Allowed: "
            f"{sorted(DEFAULT_AUGMENTATION) + ['fill_mode']}."
        )
    options = {**DEFAULT_AUGMENTATION, "fill_mode": "constant", **options}
    if options["flip"] not in _FLIPS + (None,):
        raise ValueError(
            f"Unknown flip {options['flip']!r}. Choose one of: {', '.join(_FLIPS)} or None."
        )
    for name in ("rotation", "zoom", "contrast", "brightness", "translation"):
        value = options[name]
        if value is None:
            options[name] = 0.0
        elif not isinstance(value, (int, float, np.number)) or not 0 <= value < 1:
            raise ValueError(
                f"`{name}` must be a number in [0, 1) or None. Received: {name}={value!r}"
            )
    fills = ("constant", "reflect", "wrap", "nearest")
    if options["fill_mode"] not in fills:
        raise ValueError(
            f"Unknown fill_mode {options['fill_mode']!r}. Choose one of: {', '.join(fills)}."
        )
    return options


def apply_augmentation(images, draws, options, *, compiled=False):
    """Augments a float32 batch `(B, H, W, C)` of 0-255 pixels.

    `draws` is `(B, 8)` uniforms in [0, 1): one row per image, so an image's
    augmentation depends only on its own row. Order as in
    `augmentation_layers`: flip, rotation + zoom + translation (one bilinear
    warp about the center), contrast, brightness; values clipped to [0, 255].

    `compiled`: run it as one XLA kernel (the `tf.data` pipeline on CPU,
    where it is most of the pipeline's time). Keras' warp
    (`ImageProjectiveTransformV3`) has no XLA kernel, so with the default
    `fill_mode="constant"` the warp is the same bilinear sampling written as
    gathers (`_bilinear_warp`); other fill modes keep Keras' warp and compile
    the contrast/brightness step alone. Values may differ from the
    uncompiled ones by float32 rounding (under 0.05 of 255).
    """
    if compiled:
        key = _options_key(options)
        if options["fill_mode"] == "constant":
            return _compiled_augmentation(images, draws, key)
        return _compiled_photometric(_geometric(images, draws, options), draws, key)
    return _photometric(_geometric(images, draws, options), draws, options)


def _options_key(options):
    return tuple(sorted(options.items()))


@tf.function(jit_compile=True, reduce_retracing=True)
def _compiled_augmentation(images, draws, key):
    options = dict(key)
    return _photometric(_geometric(images, draws, options, warp=_bilinear_warp), draws, options)


@tf.function(jit_compile=True, reduce_retracing=True)
def _compiled_photometric(images, draws, key):
    return _photometric(images, draws, dict(key))


def _bilinear_warp(images, transform):
    """`keras.ops.image.affine_transform(images, transform, "bilinear",
    fill_mode="constant", fill_value=0)` as gathers that XLA compiles.

    Output pixel (x, y) samples the input at (a0 x + a1 y + a2, b0 x + b1 y
    + b2) (the first six columns of `transform`, one row per image),
    blending its four neighbours; a neighbour outside the image counts as 0.
    """
    batch, height, width, channels = tf.unstack(tf.shape(images))
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                         indexing="ij")
    a0, a1, a2, b0, b1, b2 = (transform[:, i][:, None, None] for i in range(6))
    source_x, source_y = a0 * xs + a1 * ys + a2, b0 * xs + b1 * ys + b2
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    fx, fy = source_x - x0, source_y - y0
    last_x, last_y = tf.cast(width - 1, tf.float32), tf.cast(height - 1, tf.float32)
    pixels = tf.reshape(images, [batch, height * width, channels])

    def neighbour(y, x):
        inside = (x >= 0.0) & (x <= last_x) & (y >= 0.0) & (y <= last_y)
        index = (tf.cast(tf.clip_by_value(y, 0.0, last_y), tf.int32) * width
                 + tf.cast(tf.clip_by_value(x, 0.0, last_x), tf.int32))
        values = tf.gather(pixels, tf.reshape(index, [batch, -1]), batch_dims=1)
        values = tf.reshape(values, [batch, height, width, channels])
        return tf.where(inside[..., None], values, 0.0)

    return (neighbour(y0, x0) * ((1.0 - fx) * (1.0 - fy))[..., None]
            + neighbour(y0, x0 + 1.0) * (fx * (1.0 - fy))[..., None]
            + neighbour(y0 + 1.0, x0) * ((1.0 - fx) * fy)[..., None]
            + neighbour(y0 + 1.0, x0 + 1.0) * (fx * fy)[..., None])


def _geometric(images, draws, options, warp=None):
    """Flips, then rotation + zoom + translation as one bilinear warp
    (Keras' `affine_transform`, or `warp(images, transform)`)."""
    flip = options["flip"]
    flip_x = flip in ("horizontal", "horizontal_and_vertical")
    flip_y = flip in ("vertical", "horizontal_and_vertical")
    rotation, zoom, shift = options["rotation"], options["zoom"], options["translation"]
    batch = tf.shape(draws)[0]
    sign_x = tf.where(draws[:, _U_FLIP_H] < 0.5, -1.0, 1.0) if flip_x else tf.ones([batch])
    sign_y = tf.where(draws[:, _U_FLIP_V] < 0.5, -1.0, 1.0) if flip_y else tf.ones([batch])
    if rotation or zoom or shift:
        shape = tf.shape(images)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        # Output pixel p samples the input at M p: a zoom by `scale` about
        # the center, a rotation by `angle` about the center, then the flips
        # (mirror x and/or y about the center), then a shift by up to
        # `shift` of the side: what RandomFlip, RandomRotation, RandomZoom
        # and RandomTranslation do, in one bilinear warp.
        angle = (2.0 * draws[:, _U_ANGLE] - 1.0) * (rotation * 2.0 * np.pi)
        scale = 1.0 + (2.0 * draws[:, _U_ZOOM] - 1.0) * zoom
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        dx = (2.0 * draws[:, _U_DX] - 1.0) * (shift * width)
        dy = (2.0 * draws[:, _U_DY] - 1.0) * (shift * height)
        zeros = tf.zeros_like(cos)
        transform = tf.stack(
            [sign_x * cos, -sign_x * sin, cx + sign_x * (sin * cy - cos * cx) + dx,
             sign_y * sin, sign_y * cos, cy - sign_y * (sin * cx + cos * cy) + dy,
             zeros, zeros],
            axis=1,
        )
        if warp is not None:
            images = warp(images, transform)
        else:
            images = keras.ops.image.affine_transform(
                images, transform, interpolation="bilinear", fill_mode=options["fill_mode"],
                fill_value=0, data_format="channels_last",
            )
    else:  # flips only: exact mirror images
        if flip_x:
            images = tf.where((sign_x < 0)[:, None, None, None], tf.reverse(images, [2]), images)
        if flip_y:
            images = tf.where((sign_y < 0)[:, None, None, None], tf.reverse(images, [1]), images)
    return images


def _photometric(images, draws, options):
    """Contrast about each image's mean, brightness, clip to [0, 255]."""
    rotation, zoom, shift = options["rotation"], options["zoom"], options["translation"]
    contrast, brightness = options["contrast"], options["brightness"]
    if contrast or brightness:
        # (x - mean) * factor + mean + delta, as one multiply and one add.
        factor = 1.0 + (2.0 * draws[:, _U_CONTRAST] - 1.0) * contrast
        delta = (2.0 * draws[:, _U_BRIGHTNESS] - 1.0) * (brightness * 255.0)
        factor = factor[:, None, None, None]
        offset = delta[:, None, None, None]
        if contrast:
            mean = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
            offset = offset + mean * (1.0 - factor)
        images = tf.clip_by_value(images * factor + offset, 0.0, 255.0)
    elif (rotation or zoom or shift) and options["fill_mode"] != "constant":
        images = tf.clip_by_value(images, 0.0, 255.0)
    return images


def example_draws(seed, epoch_key, index):
    """The 8 uniforms of one example, keyed by (seed, epoch, example index)."""
    key = tf.stack([tf.cast(seed, tf.int64), epoch_key])
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))
    return tf.random.stateless_uniform([_DRAWS], seed=key, dtype=tf.float32)


@keras.saving.register_keras_serializable(package="medivision_tf")
class Augmentation(keras.layers.Layer):
    """Random flips, rotations, zooms, contrast and brightness for 0-255 images.

    The same augmentations and strengths as the pipeline's `augment=True`,
    as a layer to put in front of a model so that the accelerator does the
    work. Active only in training (`training=True`, as `fit` calls it);
    at inference it returns its input unchanged. Draws come from a Keras
    `SeedGenerator`: `keras.utils.set_random_seed` plus `seed` repeat them.

    Args:
        flip, rotation, zoom, contrast, brightness, fill_mode, translation: see
            `augmentation_layers` (defaults: `DEFAULT_AUGMENTATION`).
        seed: int seed of the draws.
        **kwargs: `keras.layers.Layer` arguments (`name`, ...).

    Example:

    ```python
    import numpy as np
    from medivision_tf.data import Augmentation

    layer = Augmentation(rotation=0.02, seed=0)
    images = np.full((2, 32, 32, 3), 128.0, "float32")
    layer(images, training=True).shape      # (2, 32, 32, 3), augmented
    layer(images, training=False)           # unchanged
    ```
    """

    def __init__(self, flip="horizontal", rotation=0.04, zoom=0.1, contrast=0.1,
                 brightness=0.1, fill_mode="constant", seed=0, translation=0.0, **kwargs):
        super().__init__(**kwargs)
        self.options = _check_options(
            dict(flip=flip, rotation=rotation, zoom=zoom, contrast=contrast,
                 brightness=brightness, fill_mode=fill_mode, translation=translation)
        )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, images, training=None):
        if not training:
            return images
        images = tf.cast(images, tf.float32)
        draws = keras.random.uniform(
            (tf.shape(images)[0], _DRAWS), seed=self.seed_generator
        )
        return apply_augmentation(images, draws, self.options)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.options, "seed": self.seed}


def augmentation_model(input_shape=None, *, seed=0, **options):
    """The pipeline's augmentation as a Keras layer or model for the accelerator.

    Put it in front of the model you train (`keras.Sequential([augment,
    model])`), fit that, and save or export the inner model: the exported
    model then has no augmentation. With `make_dataset(..., augment=False)`
    the CPU only decodes and resizes.

    Args:
        input_shape: `(H, W, C)`: return a functional `keras.Model` with this
            input; None (default): return the `Augmentation` layer.
        seed: seed of the draws.
        **options: `DEFAULT_AUGMENTATION` keys (`flip`, `rotation`, `zoom`,
            `contrast`, `brightness`, `translation`) and `fill_mode`.

    Returns:
        An `Augmentation` layer, or a `keras.Model` named `"augmentation"`.

    Example:

    ```python
    import keras
    from medivision_tf.data import augmentation_model

    classifier = keras.Sequential([keras.Input((64, 64, 3)),
                                   keras.layers.GlobalAveragePooling2D(),
                                   keras.layers.Dense(2)])
    trainable = keras.Sequential([augmentation_model(seed=0), classifier])
    # trainable.fit(make_dataset(..., augment=False)); classifier.save(...)
    ```
    """
    layer = Augmentation(**options, seed=seed, name="augmentation")
    if input_shape is None:
        return layer
    inputs = keras.Input(tuple(input_shape), name="image")
    return keras.Model(inputs, layer(inputs), name="augmentation")


def augmenter(augment):
    """None, ("stateless", options) or ("layer", a Keras layer / callable)."""
    if augment is False or augment is None:
        return None
    if augment is True:
        return "stateless", _check_options({})
    if isinstance(augment, dict):
        return "stateless", _check_options(augment)
    if isinstance(augment, keras.layers.Layer) or callable(augment):
        return "layer", augment
    raise TypeError(
        "`augment` must be True, False, None, a dict of augmentation_layers "
        f"options or a Keras layer. Received: {augment!r}"
    )
