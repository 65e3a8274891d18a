"""`make_dataset`: a sample table (or anything a source reads) -> tf.data.

```
paths/labels -> [shuffle, seeded] -> read + decode + resize (parallel, in graph)
  -> [cache: memory or file] -> [shuffle] -> batch -> float32
  -> [augment: Keras preprocessing layers] -> prefetch(AUTOTUNE)
```
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


def _augmenter(augment, seed):
    if augment is False or augment is None:
        return None
    if augment is True:
        return augmentation_layers(**DEFAULT_AUGMENTATION, seed=seed)
    if isinstance(augment, dict):
        unknown = set(augment) - set(DEFAULT_AUGMENTATION) - {"fill_mode"}
        if unknown:
            raise ValueError(
                f"Unknown augmentation options {sorted(unknown)}. Allowed: "
                f"{sorted(DEFAULT_AUGMENTATION) + ['fill_mode']}."
            )
        return augmentation_layers(**{**DEFAULT_AUGMENTATION, **augment, "seed": seed})
    if isinstance(augment, keras.layers.Layer) or callable(augment):
        return augment
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
    augmenter = _augmenter(training if augment is None else augment, seed)
    if dicom_window is None:
        dicom_window = table.attrs.get("dicom_window", "auto")
    labels = _label_array(table, names)
    count = len(table)

    def finish(image):
        # uint8 takes a quarter of the memory of float32 in caches and buffers.
        return decode.finish_image(
            image, size, channels, resize, interpolation, antialias, dtype=tf.uint8
        )

    if shards.is_shard_table(table):  # TFRecord shards: graph ops only (data/shards.py)
        dataset = shards.shard_examples(
            table, finish, image_size=size, channels=channels, shuffle=shuffle and not cache,
            seed=seed, shuffle_buffer=shuffle_buffer, by_file=not cache)
        load = None
    elif "image" in table:  # array sources: the pixels are already decoded
        shapes = {np.asarray(i).shape for i in table["image"]}
        if len(shapes) != 1:
            raise ValueError(
                f"Array images must share one shape; found {sorted(shapes)[:5]}."
            )
        images = np.stack([np.asarray(i) for i in table["image"]])
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))

        def load(image, label):
            return finish(image), label

    else:
        dataset = tf.data.Dataset.from_tensor_slices((table["path"].to_numpy(str), labels))

        def load(path, label):
            image = decode.load_image(path, channels, dicom_window, bit_depth_16)
            return finish(image), label

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
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(images, labels):
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = augmenter(images, training=True)
        return images, labels

    # Augmentation runs in order (not in parallel) so the seeded draws give
    # the same batches every run; it is vectorized over the batch.
    dataset = dataset.map(to_float, num_parallel_calls=None if augmenter else AUTOTUNE)
    if prefetch:
        dataset = dataset.prefetch(AUTOTUNE)
    dataset.class_names = names
    return dataset
