"""`make_dataset`: a sample table (or anything a source reads) -> tf.data.

```
passes 0, 1, ... (each shuffled by a seed keyed by its number) of paths/labels/index
  -> read + decode + resize (io.sample_reader: parallel, in graph, one DecodeOptions)
     (with a cache, memory or file, uint8: decoded once, then the passes shuffle it)
  -> [augment: per-example stateless draws keyed by (seed, pass, index)] -> batch
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

import dataclasses
import os
import warnings

import numpy as np
import tensorflow as tf

from medivision_tf.config import DecodeOptions
from medivision_tf.data.checks.validate import check_slicing, validate_table
from medivision_tf.data.io.finish import finish_image
from medivision_tf.data.io.options import check_channels, check_resize, check_size
from medivision_tf.data.io.sample_reader import sample_reader
from medivision_tf.data.pipeline.augment import augmenter
from medivision_tf.data.pipeline.streams import finish_stream, passes
from medivision_tf.data.shards.folder import is_shard_table
from medivision_tf.data.shards.reader import shard_examples
from medivision_tf.data.sources.any_source import as_table
from medivision_tf.data.sources.table import class_names_of, decode_options_of, is_multi_label

AUTOTUNE = tf.data.AUTOTUNE
#: The decode options `make_dataset` took one by one before `decode=`.
LEGACY_DECODE_ARGUMENTS = ("dicom_window", "bit_depth_16")


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
    decode=None,
    root=None,
    **legacy,
):
    """Builds a batched `tf.data.Dataset` of (images, labels) from a source.

    Args:
        source: a sample table, a class-folder path, a `.csv`/`.npz` path,
            a shard folder (`medivision shard`; read with graph ops only, see
            `medivision_tf.data.shards`) or an `(images, labels)` pair of arrays
            (anything `as_table` reads).
        image_size: int or `(height, width)` of the output images.
        channels: 1 (grayscale) or 3 (RGB).
        batch_size: images per batch.
        training: a training dataset (shuffled and augmented by default).
            Default: True when `split="train"` or every row's split is
            `"train"`, else False.
        shuffle: shuffle the samples each epoch (default: `training`).
        seed: seed of the shuffle and of the augmentation; the same seed
            gives the same order and the same first batch (of a new
            dataset: each iteration is a new epoch, with new draws).
        augment: True (the `DEFAULT_AUGMENTATION`), False, a dict of
            `augmentation_layers` options overriding the defaults, or your
            own Keras layer. Default: True for training, else False. True
            and dicts draw per example from stateless random ops keyed by
            (seed, epoch, example index), so the map runs in parallel and
            still repeats; your own layer keeps its own random state and
            runs in order, on one core.
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
            to find such files). The dataset's length is then unknown
            (`cardinality() == -2`; `fit` learns the epoch's steps after the
            first epoch); `False` keeps it (array sources always do).
        decode: the one `medivision_tf.config.DecodeOptions` image files are
            read with (DICOM window, 16-bit mode, frame choice, NIfTI axis;
            the model's `get_model_config(model).decode`), or a dict of its
            fields. Default None: the table's own (`decode_options_of`: the
            window `from_dicom` recorded, the frames and axis its volumes
            were cut with; `bit_depth_16="auto"`). A table whose NIfTI
            slices were cut along another axis than `decode.nifti_axis` is
            refused (`reexpand_volumes` cuts it again).
        root: folder relative CSV paths start from (CSV-path sources only).
        **legacy: `dicom_window=` and `bit_depth_16=`, the decode options
            `make_dataset` took one by one before `decode`: still accepted,
            with a `DeprecationWarning`, and set on `decode`. (Their old
            default `bit_depth_16="scale"` is gone: None now reads 16-bit
            files as everything else does, `"auto"`.)

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 images `(batch,
        H, W, channels)` with values in 0-255, int32 labels `(batch,)` or
        float32 multi-hot `(batch, num_classes)`. Its `class_names`
        attribute lists the class names. With `repeat` (tables and arrays),
        `dataset.start_at(n)` gives the same stream after its first `n`
        examples (pass `n // len` of the data, shuffled and augmented as an
        uninterrupted iteration would have it): `train` resumes a killed
        `fit` at epoch `e` with `n = e * steps_per_epoch * batch_size`.
        Without a cache it starts there at once; with a cache it reads and
        drops the first `n` cached examples.

    Raises:
        ValueError: the dataset is empty, labels are unknown, paths point
            outside the table's root, or an option is not allowed.
        TypeError: `decode` is not a `DecodeOptions`, dict or None.

    Example:

    ```python
    import numpy as np
    from medivision_tf.config import DecodeOptions
    from medivision_tf.data import make_dataset

    images = np.random.randint(0, 255, (10, 28, 28), "uint8")
    labels = np.arange(10) % 2
    ds = make_dataset((images, labels), image_size=32, batch_size=5)
    next(iter(ds))[0].shape     # (5, 32, 32, 3)
    ct = make_dataset("ct_scans/", image_size=224, decode=DecodeOptions(dicom_window=(40, 400)))
    ```
    """
    size = check_size(image_size)
    channels = check_channels(channels)
    check_resize(resize)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    if cache not in (False, True, "memory", None) and not isinstance(cache, (str, os.PathLike)):
        raise ValueError(
            '`cache` must be False, True, "memory" or a file path. '
            f"Received: cache={cache!r}"
        )
    table = as_table(source, root=root)
    names = class_names_of(table)
    table = validate_table(table, split)
    decode = _decode_options(table, decode, legacy)
    if training is None:
        training = split == "train" or (
            split is None and "split" in table and set(table["split"]) == {"train"}
        )
    shuffle = training if shuffle is None else bool(shuffle)
    chosen = augmenter(training if augment is None else augment)
    kind, augment_with = chosen if chosen else (None, None)
    stateless = kind == "stateless"
    labels = _label_array(table, names)
    count = len(table)
    # uint8 takes a quarter of the memory of float32 in caches and batches;
    # without a cache or augmentation the load map gives float32 directly
    # (no second map).
    after_batch = bool(cache) or chosen is not None
    load_dtype = tf.uint8 if after_batch else tf.float32
    indices = np.arange(count, dtype="int64")  # the example index: a draw key

    def finish(image):
        return finish_image(
            image, size, channels, resize, interpolation, antialias, dtype=load_dtype
        )

    # Only files can fail to decode; arrays keep a known length without
    # `ignore_errors` (Keras then shows the steps of an epoch).
    skip_errors = skip_errors and "image" not in table
    if is_shard_table(table):  # TFRecord shards: graph ops only (data/shards/reader.py)
        dataset = shard_examples(
            table, finish, image_size=size, channels=channels, shuffle=shuffle and not cache,
            seed=seed, shuffle_buffer=shuffle_buffer, by_file=not cache)
        # Shards carry no row index: the draw key is a hash of the pixels (an
        # `enumerate` would add a source dataset that breaks sharding by file).
        dataset = dataset.map(lambda image, label: (
            tf.cast(image, load_dtype), label,
            tf.strings.to_hash_bucket_fast(tf.io.serialize_tensor(image), 2**62)))
        read = None
    elif "image" in table:  # array sources: the pixels are already decoded
        shapes = {np.asarray(i).shape for i in table["image"]}
        if len(shapes) != 1:
            raise ValueError(
                f"Array images must share one shape; found {sorted(shapes)[:5]}."
            )
        images = np.stack([np.asarray(i) for i in table["image"]])
        columns = (images, labels, indices)

        def read(dataset):  # (image, *rest) -> (finished image, *rest)
            return dataset.map(lambda image, *rest: (finish(image), *rest),
                               num_parallel_calls=num_parallel_calls, deterministic=True)

    else:  # files: read and finished by `io`, with the one `DecodeOptions`
        columns = (table["path"].to_numpy(str), labels, indices)
        read = sample_reader(
            columns[0], size=size, channels=channels, decode=decode, resize=resize,
            interpolation=interpolation, antialias=antialias, dtype=load_dtype,
            skip_errors=skip_errors, num_parallel_calls=num_parallel_calls)

    in_memory = cache in (True, "memory")
    draw_seed = int(seed) if seed is not None else int(np.random.randint(2**31))
    resumable = None
    if read is not None and not cache:
        # Passes keyed by their number: resumable at any example.
        columns = tuple(tf.convert_to_tensor(column) for column in columns)

        def stream_from(start):
            return read(passes(columns, count, shuffle=shuffle, seed=draw_seed, repeat=repeat,
                               start=start))

        dataset = stream_from(0)
        if repeat:
            resumable = stream_from
    else:
        if read is not None:  # a cache: decoded once, in table order
            dataset = read(tf.data.Dataset.from_tensor_slices(columns))
        if cache:
            dataset = dataset.cache("" if in_memory else os.fspath(cache))
        base = dataset

        def stream_from(start):
            # New shuffle and random ops over the one cache: their seed
            # generators start afresh, so every stream built here is the same
            # (`reshuffle_each_iteration` would give each iterator of one
            # dataset another order). Resumed by reading and dropping examples.
            stream = base
            if cache and shuffle:
                buffer = count if in_memory else min(count, shuffle_buffer or 2048)
                stream = stream.shuffle(buffer, seed=draw_seed, reshuffle_each_iteration=True)
            if repeat:
                stream = stream.repeat()
            if stateless:  # a seeded random stream, new each iteration, keys the draws
                keys = tf.data.Dataset.random(seed=draw_seed, rerandomize_each_iteration=True)
                stream = tf.data.Dataset.zip(stream, keys).map(
                    lambda example, key: (*example, key))
            else:  # no draws; a zip would also hide the shard files from auto-sharding
                stream = stream.map(lambda *example: (*example, tf.constant(0, tf.int64)))
            return stream.skip(start) if start else stream

        dataset = stream_from(0)
        if repeat and read is not None:  # cached tables and arrays; not shards
            resumable = stream_from

    def batched(dataset):
        return finish_stream(dataset, stateless=stateless, draw_seed=draw_seed,
                             batch_size=batch_size, drop_remainder=drop_remainder,
                             kind=kind, augment_with=augment_with, cache=cache,
                             prefetch=prefetch, names=names)

    result = batched(dataset)
    if resumable is not None:
        # `dataset.start_at(n)`: the same repeated stream after its first n
        # examples (resuming `fit` at epoch e: n = e * steps * batch_size).
        result.start_at = lambda start: batched(resumable(_check_start(start)))
    return result


def _decode_options(table, decode, legacy):
    """The one `DecodeOptions` the table's files are read with: `decode` (a
    `DecodeOptions`, a dict of its fields, or None: the table's own), with
    the legacy `dicom_window=`/`bit_depth_16=` arguments set on it, checked
    against how the table's volumes were cut (`check_slicing`)."""
    unknown = sorted(set(legacy) - set(LEGACY_DECODE_ARGUMENTS))
    if unknown:
        raise TypeError(
            f"make_dataset() got unexpected keyword argument(s): {', '.join(unknown)}"
        )
    if legacy:
        warnings.warn(
            "make_dataset(dicom_window=..., bit_depth_16=...) is deprecated: pass the decode "
            "options as one object, make_dataset(..., decode=DecodeOptions(dicom_window=..., "
            "bit_depth_16=...)) (medivision_tf.config.DecodeOptions).",
            DeprecationWarning, stacklevel=3)
    if decode is None:
        decode = decode_options_of(table)
    elif isinstance(decode, dict):
        decode = DecodeOptions.from_dict(decode)
    elif not isinstance(decode, DecodeOptions):
        raise TypeError(
            "`decode` must be a medivision_tf.config.DecodeOptions, a dict of its fields or "
            f"None (the table's own options). Received: {type(decode).__name__}"
        )
    given = {name: value for name, value in legacy.items() if value is not None}
    if given:
        decode = dataclasses.replace(decode, **given)
    check_slicing(table, decode)
    return decode


def _label_array(table, names):
    if is_multi_label(table):
        hot = np.zeros((len(table), len(names)), "float32")
        for row, ids in enumerate(table["labels"]):
            hot[row, list(ids)] = 1.0
        return hot
    return table["label"].to_numpy("int32")


def _check_start(start):
    if not isinstance(start, (int, np.integer)) or isinstance(start, bool) or start < 0:
        raise ValueError(
            f"`start` must be a non-negative integer count of examples. Received: {start!r}"
        )
    return int(start)
