"""`make_dataset`: a sample table (or anything a source reads) -> tf.data.

```
passes 0, 1, ... (each shuffled by a seed keyed by its number) of paths/labels/index
  -> read + decode + resize (parallel, in graph)
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

import os
import re

import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.data import decode, shard_folder, shard_reader
from medivision_tf.data.augment import (  # noqa: F401 (also public here, as before)
    DEFAULT_AUGMENTATION,
    Augmentation,
    apply_augmentation,
    augmentation_layers,
    augmentation_model,
    augmenter,
    example_draws,
)
from medivision_tf.data.datasets import MANIFEST, is_prepared, load_prepared
from medivision_tf.data.arrays import from_npz, from_numpy
from medivision_tf.data.files import inside_root
from medivision_tf.data.sources import from_csv, from_directory
from medivision_tf.data.table import class_names_of, is_multi_label

AUTOTUNE = tf.data.AUTOTUNE
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
        if shard_folder.is_shard_folder(path):  # local or gs://, ram://...
            return shard_folder.load_shards(path)
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
        links = bool(table.attrs.get("trusted_links", False))
        outside = [p for p in table["path"] if not p or not inside_root(p, root, links)]
        if outside:
            raise ValueError(
                f"Refusing {len(outside)} paths outside the root {root!r}: "
                f"{outside[:5]}. Run medivision_tf.data.scan(table) to skip them."
            )
    if "image" not in table and not shard_folder.is_shard_table(table):  # shards: read as records
        special = _not_regular(table["path"])
        if special:
            raise ValueError(
                f"Refusing {len(special)} paths that are not regular files (FIFO, device, "
                f"socket, folder; reading one can block forever): {special[:5]}. "
                "Run medivision_tf.data.scan(table) to skip them."
            )
    return table


def _not_regular(paths):
    """Existing paths that are not regular files (`os.stat` only, nothing
    opened; a `#frame=N` path is its file's)."""
    import stat

    special = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(decode.formats.split_frame(path)[0]).st_mode):
                special.append(path)
        except OSError:  # missing: skipped by skip_errors, reported by scan
            pass
    return special


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


def _load_file(path, size, channels, resize, interpolation, antialias, python_options, dtype):
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
        return resized(decode.load_image(path, channels, **python_options))

    if channels == 3:
        def by_format():
            contents = tf.io.read_file(path)

            def direct():  # the pixel budget from the header, as decode_image does
                image = tf.io.decode_image(
                    decode.check_pixel_budget(contents), channels=3, expand_animations=False
                )
                image.set_shape([None, None, 3])
                return resized(image)

            def decoded():
                return resized(decode.decode_image(contents, channels, **python_options))

            return tf.cond(
                tf.equal(decode._sniff_kind(contents), decode._KIND_TF), direct, decoded
            )

        framed = tf.strings.regex_full_match(path, r"(?s).*#frame=[0-9]+")
        image = tf.cond(framed, general, by_format)
    else:
        image = general()
    return _rounded(image, interpolation, dtype)


# PNG colour types whose 8-bit decode is one gray channel (IHDR byte 25).
_PNG_GRAY = 0
# Sample paths naming a NIfTI slice (`volumes.expand_volumes`).
_NIFTI_SLICE = r"(?is).*\.nii(\.gz)?#frame=[0-9]+"


def _one_format(paths, channels):
    """The one format of every sample, when a single decoder reads them all
    with `_load_file`'s pixels, else None:

    - `"png"`: local 8-bit PNG files (gray output: gray ones only);
    - `"jpeg"`: local JPEG files, RGB output;
    - `"dicom"`: local DICOM files (whole files; frame paths are not);
    - `"nifti_slice"`: slices (`x.nii.gz#frame=N`) of local NIfTI files.

    Read from each file's first bytes (`formats.sniff_format`, as `scan`
    does), once, when the dataset is built: the map can then call that one
    decoder (and that one header reader), without the conditionals every
    element pays otherwise (frame path? format? which header?): about half
    of the map's time on small images. A file rewritten in another format
    after the build fails to decode (skipped with `skip_errors`).
    """
    found, volumes = None, set()
    slice_pattern = re.compile(_NIFTI_SLICE)
    for path in paths:
        if slice_pattern.fullmatch(path):
            fmt = "nifti_slice"
            volumes.add(decode.formats.split_frame(path)[0])
        elif decode.formats.split_frame(path)[1] is not None:
            return None  # a DICOM frame path
        else:
            head = decode.formats.read_head(path, 352)
            fmt = decode.formats.sniff_format(head) if head else None
            if fmt == "png":
                if len(head) < 26 or head[24] != 8 or (channels == 1 and head[25] != _PNG_GRAY):
                    return None  # 16-bit (scaled in Python), or colour to gray (`to_channels`)
            elif (fmt == "jpeg" and channels != 3) or fmt not in ("jpeg", "dicom"):
                return None
        if found not in (None, fmt):
            return None
        found = fmt
    if volumes and not all(os.path.isfile(volume) for volume in volumes):
        return None
    return found


def _load_one_format(path, fmt, size, channels, resize, interpolation, antialias, dtype):
    """`_load_file` for a table whose samples are all `fmt` (`"png"` or
    `"jpeg"`, see `_one_format`): the same pixels and the same pixel budget,
    without conditionals. (DICOM files and NIfTI slices: `_load_python_groups`.)"""
    contents = decode.check_pixel_budget(tf.io.read_file(path), fmt=fmt)
    decoder = tf.io.decode_png if fmt == "png" else tf.io.decode_jpeg
    image = decoder(contents, channels=channels)
    image.set_shape([None, None, channels])
    return _resized(image, size, resize, interpolation, antialias, dtype)


def _resized(image, size, resize, interpolation, antialias, dtype):
    """A decoded image resized, rounded and cast as `finish_image` does."""
    return _rounded(decode.resize_image(image, size, resize, interpolation, antialias),
                    interpolation, dtype)


def _rounded(image, interpolation, dtype):
    """A resized image rounded to whole 0-255 values and cast to `dtype`."""
    image = tf.round(image)
    if interpolation not in _CONVEX_INTERPOLATIONS:
        image = tf.clip_by_value(image, 0.0, 255.0)
    return tf.cast(image, dtype)


# Samples of a Python-decoded format (DICOM files, NIfTI slices) per
# `tf.numpy_function` call (`decode._python_decode_group`).
_PYTHON_GROUP = 32
_GROUPED_FORMATS = ("dicom", "nifti_slice")


def _load_python_groups(dataset, fmt, size, channels, resize, interpolation, antialias, dtype,
                        python_options, skip_errors, num_parallel_calls):
    """`(path, *rest)` elements -> `(image, *rest)`, in order, for a table
    whose samples are all `fmt` (a `_GROUPED_FORMATS` one, local files):
    `_load_file`'s pixels, read and decoded `_PYTHON_GROUP` samples to one
    call into Python.

    A sample that fails to decode is skipped with a logged warning
    (`skip_errors`; nothing after the Python call can fail, so the stream
    needs no `ignore_errors`, which costs a few percent), else the error
    stops the iteration, as with one call per sample.
    """
    options = decode._python_options(max_pixels=decode.DEFAULT_MAX_PIXELS, **python_options)
    finite = dataset.cardinality()
    height, width = size
    padded = resize == "pad"

    def decode_group(paths, *rest):
        return (*decode._numpy_decode_group(paths, options, skip_errors, fmt == "dicom"), *rest)

    def plan_group(pixels, shapes, ok, *rest):
        # The pad arithmetic for the whole group in a few vector ops: per
        # image it was most of the graph work (a slice costs ~0.1 ms here).
        geometry = tf.stack(decode._pad_geometry(shapes[:, 0], shapes[:, 1], height, width), 1)
        return (pixels, shapes, ok, geometry, *rest)

    def finish(pixels, shape, ok, *rest):
        if padded:
            geometry, *rest = rest
        if fmt == "nifti_slice":
            # A padded row (`decode._python_decode_group`). Slices are gray:
            # a static channel count spares `to_channels` its run-time branches.
            image = tf.reshape(pixels[: tf.reduce_prod(shape)], tf.stack([shape[0], shape[1], 1]))
            image.set_shape([None, None, 1])
        else:  # a DICOM file's pixels: gray or RGB
            image = tf.reshape(pixels, shape)
        image = decode.to_channels(tf.cast(image, tf.float32), channels)
        if padded:
            image = decode._resize_and_pad(image, tf.unstack(geometry), height, width,
                                          interpolation, antialias)
            return (_rounded(image, interpolation, dtype), *rest)
        return (_resized(image, size, resize, interpolation, antialias, dtype), *rest)

    # One group in Python at a time, ahead of the graph maps: the calls hold
    # the interpreter lock, so two at once only take turns (each then took
    # twice as long), and the second core is left to the graph work.
    python_calls = None if num_parallel_calls is None else 1
    dataset = dataset.batch(_PYTHON_GROUP).map(
        decode_group, num_parallel_calls=python_calls, deterministic=True)
    if padded:
        dataset = dataset.map(plan_group, num_parallel_calls=num_parallel_calls,
                              deterministic=True)
    dataset = dataset.unbatch()
    if skip_errors:
        dataset = dataset.filter(lambda pixels, shape, ok, *rest: ok)
    elif finite >= 0 or finite == tf.data.INFINITE_CARDINALITY:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(finite))
    return dataset.map(finish, num_parallel_calls=num_parallel_calls, deterministic=True)


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
        dicom_window: DICOM window (`"auto"`, `"minmax"`, `(center, width)`);
            default: the table's `attrs["dicom_window"]` or `"auto"`.
        bit_depth_16: `"scale"` or `"minmax"` for 16-bit PNG/TIFF files.
        root: folder relative CSV paths start from (CSV-path sources only).

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
    chosen = augmenter(training if augment is None else augment)
    kind, augment_with = chosen if chosen else (None, None)
    stateless = kind == "stateless"
    if dicom_window is None:
        dicom_window = table.attrs.get("dicom_window", "auto")
    labels = _label_array(table, names)
    count = len(table)
    # uint8 takes a quarter of the memory of float32 in caches and batches;
    # without a cache or augmentation the load map gives float32 directly
    # (no second map).
    after_batch = bool(cache) or chosen is not None
    load_dtype = tf.uint8 if after_batch else tf.float32
    indices = np.arange(count, dtype="int64")  # the example index: a draw key

    def finish(image):
        return decode.finish_image(
            image, size, channels, resize, interpolation, antialias, dtype=load_dtype
        )

    grouped = None  # DICOM files / NIfTI slices: `_load_python_groups`
    # Only files can fail to decode; arrays keep a known length without
    # `ignore_errors` (Keras then shows the steps of an epoch).
    skip_errors = skip_errors and "image" not in table
    if shard_folder.is_shard_table(table):  # TFRecord shards: graph ops only (data/shard_reader.py)
        dataset = shard_reader.shard_examples(
            table, finish, image_size=size, channels=channels, shuffle=shuffle and not cache,
            seed=seed, shuffle_buffer=shuffle_buffer, by_file=not cache)
        # Shards carry no row index: the draw key is a hash of the pixels (an
        # `enumerate` would add a source dataset that breaks sharding by file).
        dataset = dataset.map(lambda image, label: (
            tf.cast(image, load_dtype), label,
            tf.strings.to_hash_bucket_fast(tf.io.serialize_tensor(image), 2**62)))
        load = None
    elif "image" in table:  # array sources: the pixels are already decoded
        shapes = {np.asarray(i).shape for i in table["image"]}
        if len(shapes) != 1:
            raise ValueError(
                f"Array images must share one shape; found {sorted(shapes)[:5]}."
            )
        images = np.stack([np.asarray(i) for i in table["image"]])
        columns = (images, labels, indices)

        def load(image, label, index):
            return finish(image), label, index

    else:
        columns = (table["path"].to_numpy(str), labels, indices)
        fmt = _one_format(columns[0], channels)
        # Frames and slices as the table's source listed them (`expand_volumes`).
        python_options = dict(
            dicom_window=dicom_window, bit_depth_16=bit_depth_16,
            frames=table.attrs.get("frames", "middle"),
            nifti_axis=table.attrs.get("nifti_axis", "axial"))

        def load(path, label, index):
            if fmt in ("png", "jpeg"):
                return _load_one_format(path, fmt, size, channels, resize, interpolation,
                                        antialias, load_dtype), label, index
            return _load_file(path, size, channels, resize, interpolation, antialias,
                              python_options, load_dtype), label, index

        if fmt in _GROUPED_FORMATS:
            def grouped(dataset):
                return _load_python_groups(dataset, fmt, size, channels, resize, interpolation,
                                           antialias, load_dtype, python_options, skip_errors,
                                           num_parallel_calls)

    in_memory = cache in (True, "memory")
    draw_seed = int(seed) if seed is not None else int(np.random.randint(2**31))
    resumable = None
    if load is not None and not cache:
        # Passes keyed by their number: resumable at any example.
        columns = tuple(tf.convert_to_tensor(column) for column in columns)

        def passes(start):
            stream = _passes(columns, count, shuffle=shuffle, seed=draw_seed, repeat=repeat,
                             start=start)
            if grouped is not None:  # skips what fails in Python, where it is decoded
                stream = grouped(stream)
            else:
                stream = stream.map(
                    lambda image, label, index, key: (*load(image, label, index), key),
                    num_parallel_calls=num_parallel_calls, deterministic=True)
                if skip_errors:
                    stream = stream.ignore_errors(log_warning=True)
            return stream

        dataset = passes(0)
        if repeat:
            resumable = passes
    else:
        if load is not None:  # a cache: decoded once, in table order
            dataset = tf.data.Dataset.from_tensor_slices(columns)
            if grouped is not None:
                dataset = grouped(dataset)
            else:
                dataset = dataset.map(load, num_parallel_calls=num_parallel_calls,
                                      deterministic=True)
                if skip_errors:
                    dataset = dataset.ignore_errors(log_warning=True)
        if cache:
            dataset = dataset.cache("" if in_memory else os.fspath(cache))
        base = dataset

        def passes(start):
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

        dataset = passes(0)
        if repeat and load is not None:  # cached tables and arrays; not shards
            resumable = passes

    def finish_stream(dataset):
        return _finish_stream(dataset, stateless=stateless, draw_seed=draw_seed,
                              batch_size=batch_size, drop_remainder=drop_remainder,
                              kind=kind, augment_with=augment_with, cache=cache,
                              prefetch=prefetch, names=names)

    result = finish_stream(dataset)
    if resumable is not None:
        # `dataset.start_at(n)`: the same repeated stream after its first n
        # examples (resuming `fit` at epoch e: n = e * steps * batch_size).
        result.start_at = lambda start: finish_stream(resumable(_check_start(start)))
    return result


def _check_start(start):
    if not isinstance(start, (int, np.integer)) or isinstance(start, bool) or start < 0:
        raise ValueError(
            f"`start` must be a non-negative integer count of examples. Received: {start!r}"
        )
    return int(start)


def _passes(columns, count, *, shuffle, seed, repeat, start=0):
    """Passes over the rows of `columns`, each ordered by a seed keyed by its number.

    Elements are the rows plus the pass key (for the augmentation draws).
    With `repeat`, pass k is a permutation drawn from (seed, k) alone, so the
    stream can start at any example (`start`) and give what an uninterrupted
    iteration gives there: a resumed `fit` sees the batches the killed one
    would have seen. (`Dataset.shuffle(reshuffle_each_iteration=True)` cannot:
    its order depends on how many passes the same iterator made, and it
    takes no per-pass tensor seed once a global seed of 0 is set.) Without
    `repeat`, one pass whose key is drawn anew each iteration: a new order
    each epoch.
    """

    # Paths, labels and indices are gathered whole each pass; an image array
    # (array sources) is gathered one row at a time, never copied whole.
    small_columns = all(column.shape.rank is not None and column.shape.rank <= 2
                        for column in columns)

    def one_pass(key):
        if shuffle:
            noise = tf.random.stateless_uniform(
                [count], seed=tf.stack([tf.constant(seed, tf.int64), key]))
            order = tf.argsort(noise, stable=True)
        else:
            order = tf.range(count)
        if small_columns:  # one gather per pass instead of a map per example
            return tf.data.Dataset.from_tensor_slices(
                (*(tf.gather(column, order) for column in columns), tf.fill([count], key)))
        return tf.data.Dataset.from_tensor_slices(order).map(
            lambda row: (*(tf.gather(column, row) for column in columns), key))

    if repeat:
        first, skip = divmod(start, count)
        stream = tf.data.Dataset.range(first, 2**62).flat_map(one_pass)
        stream = stream.apply(tf.data.experimental.assert_cardinality(
            tf.data.INFINITE_CARDINALITY))
        return stream.skip(skip) if skip else stream
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return keys.flat_map(one_pass).apply(tf.data.experimental.assert_cardinality(count))


def _finish_stream(dataset, *, stateless, draw_seed, batch_size, drop_remainder, kind,
                   augment_with, cache, prefetch, names):
    """(image, label, index, key) stream -> augmented, batched (images, labels)."""
    if stateless:
        # Per-example draws keyed by (seed, pass key, example index): the
        # augmentation map may run in parallel and in any order and still
        # give the same images every run.
        dataset = dataset.map(
            lambda image, label, index, key: (
                image, label, example_draws(draw_seed, key, index)
            ),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if not stateless:  # the index and key columns dropped per batch, not per example
        dataset = dataset.map(lambda images, labels, index, key: (images, labels))

    if stateless:
        options = augment_with

        def augment_batch(images, labels, draws):
            images = apply_augmentation(tf.cast(images, tf.float32), draws, options,
                                        compiled=True)
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
