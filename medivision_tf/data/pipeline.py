"""`make_dataset`: a sample table (or anything a source reads) -> tf.data.

```
paths/labels/index -> [shuffle, seeded] -> read + decode + resize (parallel, in graph)
  -> [cache: memory or file, uint8] -> [shuffle] -> [repeat]
  -> [augment: per-example stateless draws keyed by (seed, epoch, index)] -> batch
  -> [float32 + augment the batch (parallel: the draws travel with the examples)]
  -> prefetch(AUTOTUNE)
```
`augmentation_model` gives the same augmentation as a layer for the front
of a model (the accelerator does it; only in training).
Images come out as float32 raw pixels in 0-255, `(batch, H, W, channels)`;
the model does its own preprocessing. Labels are int32 `(batch,)` class ids,
or float32 `(batch, num_classes)` multi-hot for multi-label tables.

Example:

```python
import tempfile
from medivision_tf.data import make_synthetic_lesions, from_directory, make_dataset

root = tempfile.mkdtemp()
make_synthetic_lesions(12, 64, 3).to_directory(root)
train = make_dataset(from_directory(root), image_size=64, batch_size=4,
                     training=True, seed=0)
images, labels = next(iter(train))    # (4, 64, 64, 3) float32, (4,) int32
train.class_names                     # the table's class names
```
"""

import os

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.data import decode, shards
from medivision_tf.data.datasets import MANIFEST, is_prepared, load_prepared
from medivision_tf.data.sources import (
    class_names_of,
    from_csv,
    from_directory,
    from_npz,
    from_numpy,
    inside_root,
    is_multi_label,
)

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
}


def augmentation_layers(
    flip="horizontal",
    rotation=0.04,
    zoom=0.1,
    contrast=0.1,
    brightness=0.1,
    seed=0,
    fill_mode="constant",
):
    """A `keras.Sequential` of random preprocessing layers for 0-255 images.

    Args:
        flip: `"horizontal"`, `"vertical"`, `"horizontal_and_vertical"` or
            None (no flips).
        rotation: max rotation as a fraction of a full turn (0 or None: off).
        zoom: max zoom in/out as a fraction (0 or None: off).
        contrast: max contrast change factor (0 or None: off).
        brightness: max brightness change as a fraction of 255 (0 or None).
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
_U_FLIP_H, _U_FLIP_V, _U_ANGLE, _U_ZOOM, _U_CONTRAST, _U_BRIGHTNESS = range(6)
_DRAWS = 6


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
    for name in ("rotation", "zoom", "contrast", "brightness"):
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


def _apply_augmentation(images, draws, options):
    """Augments a float32 batch `(B, H, W, C)` of 0-255 pixels.

    `draws` is `(B, 6)` uniforms in [0, 1): one row per image, so an image's
    augmentation depends only on its own row. Order as in
    `augmentation_layers`: flip, rotation + zoom (one bilinear warp about the
    center), contrast, brightness; values clipped to [0, 255].
    """
    flip = options["flip"]
    flip_x = flip in ("horizontal", "horizontal_and_vertical")
    flip_y = flip in ("vertical", "horizontal_and_vertical")
    rotation, zoom = options["rotation"], options["zoom"]
    batch = tf.shape(draws)[0]
    sign_x = tf.where(draws[:, _U_FLIP_H] < 0.5, -1.0, 1.0) if flip_x else tf.ones([batch])
    sign_y = tf.where(draws[:, _U_FLIP_V] < 0.5, -1.0, 1.0) if flip_y else tf.ones([batch])
    if rotation or zoom:
        shape = tf.shape(images)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        # Output pixel p samples the input at M p: a zoom by `scale` about
        # the center, a rotation by `angle` about the center, then the flips
        # (mirror x and/or y about the center): what RandomFlip,
        # RandomRotation and RandomZoom do, in one bilinear warp.
        angle = (2.0 * draws[:, _U_ANGLE] - 1.0) * (rotation * 2.0 * np.pi)
        scale = 1.0 + (2.0 * draws[:, _U_ZOOM] - 1.0) * zoom
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        zeros = tf.zeros_like(cos)
        transform = tf.stack(
            [sign_x * cos, -sign_x * sin, cx + sign_x * (sin * cy - cos * cx),
             sign_y * sin, sign_y * cos, cy - sign_y * (sin * cx + cos * cy),
             zeros, zeros],
            axis=1,
        )
        images = keras.ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode=options["fill_mode"],
            fill_value=0, data_format="channels_last",
        )
    else:  # flips only: exact mirror images
        if flip_x:
            images = tf.where((sign_x < 0)[:, None, None, None], tf.reverse(images, [2]), images)
        if flip_y:
            images = tf.where((sign_y < 0)[:, None, None, None], tf.reverse(images, [1]), images)
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
    elif (rotation or zoom) and options["fill_mode"] != "constant":
        images = tf.clip_by_value(images, 0.0, 255.0)
    return images


def _example_draws(seed, epoch_key, index):
    """The 6 uniforms of one example, keyed by (seed, epoch, example index)."""
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
        flip, rotation, zoom, contrast, brightness, fill_mode: see
            `augmentation_layers` (defaults: `DEFAULT_AUGMENTATION`).
        seed: int seed of the draws.
        **kwargs: `keras.layers.Layer` arguments (`name`, ...).

    Example:

    ```python
    import numpy as np
    from medivision_tf.data.pipeline import Augmentation

    layer = Augmentation(rotation=0.02, seed=0)
    images = np.full((2, 32, 32, 3), 128.0, "float32")
    layer(images, training=True).shape      # (2, 32, 32, 3), augmented
    layer(images, training=False)           # unchanged
    ```
    """

    def __init__(self, flip="horizontal", rotation=0.04, zoom=0.1, contrast=0.1,
                 brightness=0.1, fill_mode="constant", seed=0, **kwargs):
        super().__init__(**kwargs)
        self.options = _check_options(
            dict(flip=flip, rotation=rotation, zoom=zoom, contrast=contrast,
                 brightness=brightness, fill_mode=fill_mode)
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
        return _apply_augmentation(images, draws, self.options)

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
            `contrast`, `brightness`) and `fill_mode`.

    Returns:
        An `Augmentation` layer, or a `keras.Model` named `"augmentation"`.

    Example:

    ```python
    import keras
    from medivision_tf.data.pipeline import augmentation_model

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


def _augmenter(augment):
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


def as_table(source, root=None):
    """Any supported source -> sample table.

    | source | read with |
    |--------|-----------|
    | a sample table (DataFrame) | returned as is |
    | `(images, labels)` arrays | `from_numpy` |
    | a folder holding `manifest.csv` (from `prepare_dataset`) | `load_prepared`: keeps its `split` and `group` |
    | a `manifest.csv` of such a folder | `load_prepared` on its folder |
    | any other folder | `from_directory` (class folders, pre-split folders) |
    | any other `.csv` file | `from_csv(path, root=root)` |
    | a `.npz` file | `from_npz` (MedMNIST layout) |
    | a folder (or gfile URL) holding `shards.json` | `shards.load_shards` (read from TFRecords) |

    Args:
        source: one of the above (str or `os.PathLike` paths).
        root: folder the paths of a plain `.csv` are relative to (default:
            the CSV's folder); ignored for other sources.

    Returns:
        The sample table.

    Raises:
        FileNotFoundError: a path that is not a folder, `.csv` or `.npz` file.
        TypeError: any other kind of source.

    Example:

    ```python
    table = as_table("data/oct")                  # prepared: split + group kept
    table = as_table("chest_xray/")               # class folders
    table = as_table("labels.csv", root="images/")
    ```
    """
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, tuple) and len(source) == 2:
        return from_numpy(*source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if shards.is_shard_folder(path):  # local or gs://, ram://...
            return shards.load_shards(path)
        if os.path.isdir(path):
            if is_prepared(path):
                return load_prepared(path)
            return from_directory(path)
        if os.path.basename(path) == MANIFEST and is_prepared(os.path.dirname(path) or "."):
            return load_prepared(os.path.dirname(path) or ".")
        if path.lower().endswith(".csv"):
            return from_csv(path, root=root)
        if path.lower().endswith(".npz"):
            return from_npz(path)
        raise FileNotFoundError(
            f"Not a folder, .csv or .npz file: {path!r}"
        )
    raise TypeError(
        "`source` must be a sample table (DataFrame), a folder, a .csv/.npz "
        f"path or an (images, labels) pair. Received: {type(source).__name__}"
    )


def _validate(table, split):
    if split is not None:
        if "split" not in table:
            raise ValueError(f"split={split!r} given but the table has no 'split' column.")
        table = table[table["split"] == split]
    if table.empty:
        raise ValueError(
            "The dataset is empty" + (f" (no rows with split={split!r})" if split else "") + "."
        )
    names = class_names_of(table)
    if not names:
        raise ValueError("The table has no classes (attrs['class_names'] is empty).")
    if is_multi_label(table):
        ids = [i for labels in table["labels"] for i in labels]
        bad = [i for i in ids if not 0 <= i < len(names)]
    else:
        bad = table.loc[(table["label"] < 0) | (table["label"] >= len(names)), "class_name"]
        bad = list(bad)
    if bad:
        raise ValueError(
            f"{len(bad)} samples have labels outside the {len(names)} classes "
            f"(e.g. {bad[:5]}). Run medivision_tf.data.scan(table) to skip them."
        )
    root = table.attrs.get("root")
    if root is not None and "image" not in table:
        outside = [p for p in table["path"] if not p or not inside_root(p, root)]
        if outside:
            raise ValueError(
                f"Refusing {len(outside)} paths outside the root {root!r}: "
                f"{outside[:5]}. Run medivision_tf.data.scan(table) to skip them."
            )
    return table


def _label_array(table, names):
    if is_multi_label(table):
        hot = np.zeros((len(table), len(names)), "float32")
        for row, ids in enumerate(table["labels"]):
            hot[row, list(ids)] = 1.0
        return hot
    return table["label"].to_numpy("int32")



# Interpolations whose output stays within its input's range (convex
# combinations of pixels): no clip needed after rounding.
_CONVEX_INTERPOLATIONS = ("bilinear", "area", "nearest")


def _load_file(path, size, channels, resize, interpolation, antialias, dicom_window,
               bit_depth_16, dtype):
    """`finish_image(load_image(path))`, with the same pixels, for less work.

    RGB output from an 8-bit format TensorFlow decodes (JPEG, PNG, BMP, GIF,
    WebP): decoded straight to 3 channels (the decoders repeat gray and drop
    alpha as `to_channels` does) and resized from uint8, skipping the
    full-size float cast and the channel shuffle. Other formats, 16-bit PNG
    and grayscale output take `decode.decode_image`.
    """
    def resized(image):
        return decode.resize_image(image, size, resize, interpolation, antialias)

    def general():  # also reads `#frame=N` paths (DICOM frames, NIfTI slices)
        return resized(decode.load_image(path, channels, dicom_window, bit_depth_16))

    if channels == 3:
        def by_format():
            contents = tf.io.read_file(path)

            def direct():
                image = tf.io.decode_image(contents, channels=3, expand_animations=False)
                image.set_shape([None, None, 3])
                return resized(image)

            def decoded():
                return resized(decode.decode_image(contents, channels, dicom_window,
                                                   bit_depth_16))

            return tf.cond(
                tf.equal(decode._sniff_kind(contents), decode._KIND_TF), direct, decoded
            )

        framed = tf.strings.regex_full_match(path, r"(?s).*#frame=[0-9]+")
        image = tf.cond(framed, general, by_format)
    else:
        image = general()
    image = tf.round(image)
    if interpolation not in _CONVEX_INTERPOLATIONS:
        image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.cast(image, dtype)


def make_dataset(
    source,
    *,
    image_size=(224, 224),
    channels=3,
    batch_size=32,
    training=None,
    shuffle=None,
    seed=0,
    augment=None,
    cache=False,
    resize="pad",
    split=None,
    interpolation="bilinear",
    antialias=False,
    prefetch=True,
    num_parallel_calls=AUTOTUNE,
    shuffle_buffer=None,
    drop_remainder=False,
    repeat=False,
    skip_errors=True,
    dicom_window=None,
    bit_depth_16="scale",
    root=None,
):
    """Builds a batched `tf.data.Dataset` of (images, labels) from a source.

    Args:
        source: a sample table, a class-folder path, a `.csv`/`.npz` path,
            a shard folder (`medivision shard`; read with graph ops only, see
            `medivision_tf.data.shards`) or an `(images, labels)` pair of arrays.
        image_size: int or `(height, width)` of the output images.
        channels: 1 (grayscale) or 3 (RGB).
        batch_size: images per batch.
        training: a training dataset (shuffled and augmented by default).
            Default: True when `split="train"` or every row's split is
            `"train"`, else False.
        shuffle: shuffle the samples each epoch (default: `training`).
        seed: seed of the shuffle and of the augmentation; the same seed
            gives the same order and the same first batch.
        augment: True (the `DEFAULT_AUGMENTATION`), False, a dict of
            `augmentation_layers` options overriding the defaults, or your
            own Keras layer. Default: True for training, else False.
        cache: False, True / `"memory"` (decoded, resized images kept in
            memory after the first epoch) or a file path prefix (an on-disk
            cache; delete it when the data changes).
        resize: `"pad"` (keep the aspect ratio, pad with black), `"stretch"`
            or `"crop"` (keep the aspect ratio, crop the center).
        split: keep only rows whose `split` column equals this.
        interpolation: resize method (`"bilinear"`, `"area"`, `"bicubic"`...).
        antialias: anti-aliased downsampling (slower, smoother).
        prefetch: overlap input with training (`prefetch(AUTOTUNE)`).
        num_parallel_calls: parallel decodes (default AUTOTUNE).
        shuffle_buffer: buffer size when shuffling after a file cache
            (default 2048); otherwise the whole dataset is shuffled.
        drop_remainder: drop the last incomplete batch.
        repeat: repeat forever (use `steps_per_epoch` in `fit`).
        skip_errors: a file that fails to decode mid-epoch is skipped with
            a logged warning instead of stopping training (run `scan` first
            to find such files).
        dicom_window: DICOM window (`"auto"`, `"minmax"`, `(center, width)`);
            default: the table's `attrs["dicom_window"]` or `"auto"`.
        bit_depth_16: `"scale"` or `"minmax"` for 16-bit PNG/TIFF files.
        root: folder relative CSV paths start from (CSV-path sources only).

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 images `(batch,
        H, W, channels)` with values in 0-255, int32 labels `(batch,)` or
        float32 multi-hot `(batch, num_classes)`. Its `class_names`
        attribute lists the class names.

    Raises:
        ValueError: the dataset is empty, labels are unknown, paths point
            outside the table's root, or an option is not allowed.

    Example:

    ```python
    import numpy as np
    from medivision_tf.data import make_dataset

    images = np.random.randint(0, 255, (10, 28, 28), "uint8")
    labels = np.arange(10) % 2
    ds = make_dataset((images, labels), image_size=32, batch_size=5)
    next(iter(ds))[0].shape     # (5, 32, 32, 3)
    ```
    """
    size = decode.check_size(image_size)
    channels = decode.check_channels(channels)
    if resize not in decode.RESIZE_MODES:
        raise ValueError(
            f"Unknown resize mode {resize!r}. Choose one of: {', '.join(decode.RESIZE_MODES)}."
        )
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    if cache not in (False, True, "memory", None) and not isinstance(cache, (str, os.PathLike)):
        raise ValueError(
            '`cache` must be False, True, "memory" or a file path. '
            f"Received: cache={cache!r}"
        )
    table = as_table(source, root=root)
    names = class_names_of(table)
    table = _validate(table, split)
    if training is None:
        training = split == "train" or (
            split is None and "split" in table and set(table["split"]) == {"train"}
        )
    shuffle = training if shuffle is None else bool(shuffle)
    augmenter = _augmenter(training if augment is None else augment)
    kind, augment_with = augmenter if augmenter else (None, None)
    stateless = kind == "stateless"
    if dicom_window is None:
        dicom_window = table.attrs.get("dicom_window", "auto")
    labels = _label_array(table, names)
    count = len(table)
    # uint8 takes a quarter of the memory of float32 in caches and batches;
    # without a cache or augmentation the load map gives float32 directly
    # (no second map).
    after_batch = bool(cache) or augmenter is not None
    load_dtype = tf.uint8 if after_batch else tf.float32
    indices = np.arange(count, dtype="int64")  # the example index: a draw key

    def finish(image):
        return decode.finish_image(
            image, size, channels, resize, interpolation, antialias, dtype=load_dtype
        )

    if shards.is_shard_table(table):  # TFRecord shards: graph ops only (data/shards.py)
        dataset = shards.shard_examples(
            table, finish, image_size=size, channels=channels, shuffle=shuffle and not cache,
            seed=seed, shuffle_buffer=shuffle_buffer, by_file=not cache)
        # The draw key of a shard example is its position in the (seeded)
        # read order: shards carry no row index.
        dataset = dataset.enumerate().map(
            lambda index, example: (tf.cast(example[0], load_dtype), example[1], index))
        load = None
    elif "image" in table:  # array sources: the pixels are already decoded
        shapes = {np.asarray(i).shape for i in table["image"]}
        if len(shapes) != 1:
            raise ValueError(
                f"Array images must share one shape; found {sorted(shapes)[:5]}."
            )
        images = np.stack([np.asarray(i) for i in table["image"]])
        dataset = tf.data.Dataset.from_tensor_slices((images, labels, indices))

        def load(image, label, index):
            return finish(image), label, index

    else:
        dataset = tf.data.Dataset.from_tensor_slices(
            (table["path"].to_numpy(str), labels, indices)
        )

        def load(path, label, index):
            return _load_file(path, size, channels, resize, interpolation, antialias,
                              dicom_window, bit_depth_16, load_dtype), label, index

    in_memory = cache in (True, "memory")
    if load is not None:
        if shuffle and not cache:  # shuffle cheap path strings, the whole set
            dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    if skip_errors and load is not None:  # shards hold decoded images only
        dataset = dataset.ignore_errors(log_warning=True)
    if cache:
        dataset = dataset.cache("" if in_memory else os.fspath(cache))
        if shuffle:
            buffer = count if in_memory else min(count, shuffle_buffer or 2048)
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if stateless:
        # Per-example draws keyed by (seed, epoch, example index): a seeded
        # random stream, new each epoch (each iteration, or each repetition),
        # is zipped with the examples, so the augmentation map may run in
        # parallel and any order and still give the same images every run.
        draw_seed = int(seed) if seed is not None else int(np.random.randint(2**31))
        epoch_keys = tf.data.Dataset.random(seed=draw_seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, epoch_keys).map(
            lambda example, key: (
                example[0], example[1], _example_draws(draw_seed, key, example[2])
            ),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    else:
        dataset = dataset.map(lambda image, label, index: (image, label))
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    if stateless:
        options = augment_with

        def augment_batch(images, labels, draws):
            images = _apply_augmentation(tf.cast(images, tf.float32), draws, options)
            return images, labels

        dataset = dataset.map(augment_batch, num_parallel_calls=AUTOTUNE, deterministic=True)
    elif kind == "layer":
        # Your own layer draws from its own state: in order (not in
        # parallel) so that its seeded draws give the same batches every run.
        dataset = dataset.map(
            lambda images, labels: (augment_with(tf.cast(images, tf.float32), training=True),
                                    labels)
        )
    elif cache:
        dataset = dataset.map(
            lambda images, labels: (tf.cast(images, tf.float32), labels),
            num_parallel_calls=AUTOTUNE, deterministic=True,
        )
    if prefetch:
        dataset = dataset.prefetch(AUTOTUNE)
    dataset.class_names = names
    return dataset
