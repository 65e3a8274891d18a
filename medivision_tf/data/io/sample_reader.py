"""A stream of sample paths -> finished images, with the fastest decoder for the table.

`sample_reader(paths, ...)` looks at a table's files once, when a dataset is
built, and returns `read(dataset)`: a `tf.data` transformation of `(path,
*rest)` elements into `(image, *rest)`, every image read, decoded
(`graph_decode`), resized and rounded (`finish`) the way `finish_image(load_image(path))`
gives it. The pipeline hands its stream of paths over here once and gets
images back: no decode step calls back into the pipeline.

When one decoder reads every file (`_one_format`: 8-bit PNG, JPEG, whole
DICOM files or NIfTI slices), the map calls that decoder without the
per-element conditionals (frame path? format? which header?); DICOM files
and NIfTI slices are decoded `_PYTHON_GROUP` to one call into Python. Any
other mix takes `_load_file`, which still decodes RGB output of TensorFlow's
8-bit formats straight to 3 channels.

Example:

```python
import tensorflow as tf
from medivision_tf.config import DecodeOptions
from medivision_tf.data.io.sample_reader import sample_reader

paths = ["a.png", "b.png"]
read = sample_reader(paths, size=(64, 64), channels=3, decode=DecodeOptions())
images = read(tf.data.Dataset.from_tensor_slices((paths, [0, 1])))   # (image, label)
```
"""

import os
import re

import tensorflow as tf

from medivision_tf.data.io.budget import check_pixel_budget
from medivision_tf.data.io.finish import (
    pad_geometry,
    resize_and_pad,
    resize_image,
    resized,
    rounded,
    to_channels,
)
from medivision_tf.data.io.frame_paths import split_frame
from medivision_tf.data.io.graph_decode import (
    KIND_TF,
    decode_image,
    load_image,
    numpy_decode_group,
    python_options,
    sniff_kind,
)
from medivision_tf.data.io.headers import DEFAULT_MAX_PIXELS
from medivision_tf.data.io.regular_files import read_head
from medivision_tf.data.io.sniff import sniff_format


def sample_reader(paths, *, size, channels, decode, resize="pad", interpolation="bilinear",
                  antialias=False, dtype=tf.float32, skip_errors=True,
                  num_parallel_calls=tf.data.AUTOTUNE):
    """The reader of a table's files: `read(dataset)`, `(path, *rest)` -> `(image, *rest)`.

    Args:
        paths: the sample paths the datasets given to `read` hold (local
            files, `"x.nii.gz#frame=N"` slices, `"x.dcm#frame=N"` frames);
            their first bytes pick the decoder, once, here.
        size: `(height, width)` of the output images.
        channels: 1 (grayscale) or 3 (RGB).
        decode: the `medivision_tf.config.DecodeOptions` the files are read
            with (DICOM window, 16-bit mode, frame choice, NIfTI axis).
        resize, interpolation, antialias: see `finish.resize_image`.
        dtype: `tf.float32` or `tf.uint8` (the same whole 0-255 values).
        skip_errors: a sample that fails to decode is skipped with a logged
            warning; False: the error stops the iteration.
        num_parallel_calls: parallel decodes (`Dataset.map`).

    Returns:
        `read(dataset)`: the dataset's elements with each path replaced by
        its finished image, in order.

    Example:

    ```python
    read = sample_reader(table["path"].to_numpy(str), size=(224, 224), channels=3,
                         decode=DecodeOptions(dicom_window=(40, 400)))
    images = read(tf.data.Dataset.from_tensor_slices((paths, labels)))
    ```
    """
    options = decode.image_kwargs()
    fmt = _one_format(paths, channels)

    if fmt in _GROUPED_FORMATS:
        def read(dataset):
            return _load_python_groups(dataset, fmt, size, channels, resize, interpolation,
                                       antialias, dtype, options, skip_errors,
                                       num_parallel_calls)
        return read

    def load(path):
        if fmt in ("png", "jpeg"):
            return _load_one_format(path, fmt, size, channels, resize, interpolation,
                                    antialias, dtype)
        return _load_file(path, size, channels, resize, interpolation, antialias, options,
                          dtype)

    def read(dataset):
        dataset = dataset.map(lambda path, *rest: (load(path), *rest),
                              num_parallel_calls=num_parallel_calls, deterministic=True)
        if skip_errors:
            dataset = dataset.ignore_errors(log_warning=True)
        return dataset

    return read


def _load_file(path, size, channels, resize, interpolation, antialias, decode_kwargs, dtype):
    """`finish_image(load_image(path))`, with the same pixels, for less work.

    RGB output from an 8-bit format TensorFlow decodes (JPEG, PNG, BMP, GIF,
    WebP): decoded straight to 3 channels (the decoders repeat gray and drop
    alpha as `to_channels` does) and resized from uint8, skipping the
    full-size float cast and the channel shuffle. Other formats, 16-bit PNG
    and grayscale output take `graph_decode.decode_image`.
    """
    def to_size(image):
        return resize_image(image, size, resize, interpolation, antialias)

    def general():  # also reads `#frame=N` paths (DICOM frames, NIfTI slices)
        return to_size(load_image(path, channels, **decode_kwargs))

    if channels == 3:
        def by_format():
            contents = tf.io.read_file(path)

            def direct():  # the pixel budget from the header, as decode_image does
                image = tf.io.decode_image(
                    check_pixel_budget(contents), channels=3, expand_animations=False
                )
                image.set_shape([None, None, 3])
                return to_size(image)

            def decoded():
                return to_size(decode_image(contents, channels, **decode_kwargs))

            return tf.cond(
                tf.equal(sniff_kind(contents), KIND_TF), direct, decoded
            )

        framed = tf.strings.regex_full_match(path, r"(?s).*#frame=[0-9]+")
        image = tf.cond(framed, general, by_format)
    else:
        image = general()
    return rounded(image, interpolation, dtype)


# PNG colour types whose 8-bit decode is one gray channel (IHDR byte 25).
_PNG_GRAY = 0
# Sample paths naming a NIfTI slice (`sources.volumes.expand_volumes`).
_NIFTI_SLICE = r"(?is).*\.nii(\.gz)?#frame=[0-9]+"


def _one_format(paths, channels):
    """The one format of every sample, when a single decoder reads them all
    with `_load_file`'s pixels, else None:

    - `"png"`: local 8-bit PNG files (gray output: gray ones only);
    - `"jpeg"`: local JPEG files, RGB output;
    - `"dicom"`: local DICOM files (whole files; frame paths are not);
    - `"nifti_slice"`: slices (`x.nii.gz#frame=N`) of local NIfTI files.

    Read from each file's first bytes (`sniff.sniff_format`, as `scan`
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
            volumes.add(split_frame(path)[0])
        elif split_frame(path)[1] is not None:
            return None  # a DICOM frame path
        else:
            head = read_head(path, 352)
            fmt = sniff_format(head) if head else None
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
    contents = check_pixel_budget(tf.io.read_file(path), fmt=fmt)
    decoder = tf.io.decode_png if fmt == "png" else tf.io.decode_jpeg
    image = decoder(contents, channels=channels)
    image.set_shape([None, None, channels])
    return resized(image, size, resize, interpolation, antialias, dtype)


# Samples of a Python-decoded format (DICOM files, NIfTI slices) per
# `tf.numpy_function` call (`graph_decode._python_decode_group`).
_PYTHON_GROUP = 32
_GROUPED_FORMATS = ("dicom", "nifti_slice")


def _load_python_groups(dataset, fmt, size, channels, resize, interpolation, antialias, dtype,
                        decode_kwargs, skip_errors, num_parallel_calls):
    """`(path, *rest)` elements -> `(image, *rest)`, in order, for a table
    whose samples are all `fmt` (a `_GROUPED_FORMATS` one, local files):
    `_load_file`'s pixels, read and decoded `_PYTHON_GROUP` samples to one
    call into Python.

    A sample that fails to decode is skipped with a logged warning
    (`skip_errors`; nothing after the Python call can fail, so the stream
    needs no `ignore_errors`, which costs a few percent), else the error
    stops the iteration, as with one call per sample.
    """
    options = python_options(max_pixels=DEFAULT_MAX_PIXELS, **decode_kwargs)
    finite = dataset.cardinality()
    height, width = size
    padded = resize == "pad"

    def decode_group(paths, *rest):
        return (*numpy_decode_group(paths, options, skip_errors, fmt == "dicom"), *rest)

    def plan_group(pixels, shapes, ok, *rest):
        # The pad arithmetic for the whole group in a few vector ops: per
        # image it was most of the graph work (a slice costs ~0.1 ms here).
        geometry = tf.stack(pad_geometry(shapes[:, 0], shapes[:, 1], height, width), 1)
        return (pixels, shapes, ok, geometry, *rest)

    def finish(pixels, shape, ok, *rest):
        if padded:
            geometry, *rest = rest
        if fmt == "nifti_slice":
            # A padded row (`graph_decode._python_decode_group`). Slices are gray:
            # a static channel count spares `to_channels` its run-time branches.
            image = tf.reshape(pixels[: tf.reduce_prod(shape)], tf.stack([shape[0], shape[1], 1]))
            image.set_shape([None, None, 1])
        else:  # a DICOM file's pixels: gray or RGB
            image = tf.reshape(pixels, shape)
        image = to_channels(tf.cast(image, tf.float32), channels)
        if padded:
            image = resize_and_pad(image, tf.unstack(geometry), height, width,
                                   interpolation, antialias)
            return (rounded(image, interpolation, dtype), *rest)
        return (resized(image, size, resize, interpolation, antialias, dtype), *rest)

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
