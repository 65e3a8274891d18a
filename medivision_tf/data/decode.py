"""Decoding image files into float32 0-255 pixels, inside the tf.data graph.

TensorFlow decodes JPEG, PNG (8- and 16-bit), BMP, GIF and WebP in the graph.
TIFF (tifffile/OpenCV), DICOM (pydicom's modality LUT, VOI LUT, palette and
MONOCHROME1 handling) and NIfTI slices (nibabel) go through
`tf.numpy_function` into `medivision_tf.data.formats`, where the readers and
the exact windowing rules live. The format is sniffed from the file's first
bytes, not its extension (a `DICM` marker at byte 128 wins over a TIFF-looking
preamble), so a mislabelled or extension-less file still decodes.

Every decoder returns `float32` pixels in `[0, 255]` with the requested number
of channels: grayscale is repeated to RGB, RGB is averaged to grayscale
(`tf.image.rgb_to_grayscale`), an alpha channel is dropped. 16-bit images are
scaled to 0-255 (`bit_depth_16="auto"`: divide by 257, or `"minmax"`: stretch
each image's own min..max, useful for 12-bit data stored in 16-bit files).

`finish_image` (channels, resize, round, clip) is the one definition of an
image as the model gets it; `make_dataset` uses it. `load_images` (resized,
one array: prediction, evaluation) and `read_images` (each at its own size:
explanation) are the one reader of image files outside `tf.data` pipelines;
both go through `load_image`, like `make_dataset`.

Example:

```python
import numpy as np, cv2, tempfile, os
from medivision_tf.data import decode

path = os.path.join(tempfile.mkdtemp(), "x.png")
cv2.imwrite(path, np.full((40, 60), 1000, "uint16"))     # 16-bit grayscale
image = decode.load_image(path, channels=3)              # (40, 60, 3) float32
small = decode.resize_image(image, (32, 32), mode="pad") # (32, 32, 3)
ready = decode.finish_image(image, 32)                   # + round and clip
batch = decode.load_images([path, path], 32)             # (2, 32, 32, 3) numpy
own = decode.read_images([path], channels=1)             # [(40, 60, 1) numpy]
```
"""

import os
import re
import stat

import numpy as np
import tensorflow as tf

from medivision_tf.data import formats
from medivision_tf.data.budget import (  # noqa: F401
    check_max_pixels,
    check_pixel_budget,
    header_pixels,
)
from medivision_tf.data.formats import (  # noqa: F401  (re-exported)
    BIT_DEPTH_16_MODES,
    DEFAULT_MAX_PIXELS,
    DICOM_WINDOWS,
    MIN_IMAGE_SIZE,
    check_window,
    read_dicom,
    read_tiff,
    sniff_format,
)

RESIZE_MODES = ("pad", "stretch", "crop")
# Formats TensorFlow decodes in the graph, and the ones we read in Python.
TF_FORMATS = ("jpeg", "png", "bmp", "gif", "webp")
PYTHON_FORMATS = ("tiff", "dicom", "nifti")

_KIND_TF, _KIND_PNG16, _KIND_PYTHON = 0, 1, 2


def _sniff_kind(contents):
    """0: TensorFlow decodes it; 1: 16-bit PNG; 2: Python (`formats`).

    `DICM` at byte 128 is tested first, so a DICOM whose preamble looks like
    TIFF goes to pydicom. Bytes that are none of TensorFlow's formats go to
    Python too (raw DICOM without preamble, NIfTI, TIFF, or not an image:
    `formats.python_decode` then names the reason).

    Plain ops on the first 132 bytes padded with zeros (no magic number
    tested here holds a zero byte, so the padding never makes a short file
    match), without `tf.cond`: a conditional costs more than these few
    comparisons in a `tf.data` map.
    """
    head = tf.strings.join([tf.strings.substr(contents, 0, 132, unit="BYTE"), b"\0" * 132])

    def at(offset, expected):
        return tf.equal(tf.strings.substr(head, offset, len(expected)), expected)

    is_dicom = at(128, b"DICM")
    is_png = at(0, b"\x89PNG\r\n\x1a\n")
    is_webp = tf.logical_and(at(0, b"RIFF"), at(8, b"WEBP"))
    is_tf = tf.reduce_any(
        tf.stack([at(0, b"\xff\xd8\xff"), is_png, at(0, b"BM"), at(0, b"GIF87a"),
                  at(0, b"GIF89a"), is_webp])
    )
    is_png16 = tf.logical_and(is_png, at(24, b"\x10"))
    # The first that holds: DICOM, 16-bit PNG, TensorFlow's, else Python.
    return tf.where(is_dicom, _KIND_PYTHON, tf.where(
        is_png16, _KIND_PNG16, tf.where(is_tf, _KIND_TF, _KIND_PYTHON)))


def _python_decode(data, frame, options, slice_path=b""):
    """`formats.python_decode` on bytes from `tf.numpy_function` (the
    TIFF/DICOM/NIfTI pixel budget is checked there, from the header).

    `slice_path` (with empty `data`): a NIfTI file whose slice `frame` is read
    by path (`formats.read_nifti_slice_file`); a path that is not a local
    NIfTI file is read here (`tf.io.gfile`) and decoded from its bytes.
    """
    if isinstance(data, np.ndarray):
        data = data.item()
    if isinstance(slice_path, np.ndarray):
        slice_path = slice_path.item()
    data = bytes(data)
    if slice_path and not data:
        pixels = formats.read_nifti_slice_file(
            bytes(slice_path), int(frame), options["nifti_axis"],
            max_pixels=options["max_pixels"])
        if pixels is not None:
            return pixels[..., None]
        with tf.io.gfile.GFile(os.fsdecode(bytes(slice_path)), "rb") as handle:
            data = handle.read()
    fmt = sniff_format(data)
    if fmt not in PYTHON_FORMATS:
        raise ValueError(
            f"Not an image file we decode (first bytes {data[:12]!r}); "
            "allowed: PNG, JPEG, BMP, GIF, WebP, TIFF, DICOM, NIfTI."
        )
    # uint8 out (every Python reader gives uint8): the float32 cast runs in
    # the graph, in parallel, not under the Python lock numpy_function holds.
    return formats.python_decode(data, fmt, int(frame), dtype="uint8", **options)


def decode_image(
    contents,
    channels=3,
    dicom_window="auto",
    bit_depth_16="auto",
    *,
    frame=-1,
    frames="middle",
    nifti_axis="axial",
    max_pixels=DEFAULT_MAX_PIXELS,
    _slice_path=None,
):
    """Decodes one encoded image (a scalar string tensor) in the graph.

    Args:
        contents: scalar `tf.string`, the bytes of a JPEG, PNG (8/16-bit),
            BMP, GIF (first frame), WebP, TIFF, DICOM or NIfTI file.
        channels: 1 (grayscale) or 3 (RGB) output channels.
        dicom_window: see `formats.read_dicom`: `"auto"`, `"minmax"` or
            `(center, width)`.
        bit_depth_16: `"auto"` (12-bit data when max <= 4095, else /257),
            `"scale"` (/257), `"12bit"` or `"minmax"` for 16-bit PNG/TIFF.
        frame: int (or int tensor) frame/slice index of a multi-frame DICOM
            or NIfTI volume; -1: the `frames` choice.
        frames: `"first"` or `"middle"` (default; `"all"` reads the middle
            one here: sources list all frames as samples of their own).
        nifti_axis: `"axial"` (default), `"coronal"` or `"sagittal"`.
        max_pixels: the pixel budget, checked from the header before the
            decode (`check_pixel_budget`; TIFF/DICOM/NIfTI: by
            `formats.python_decode` before reading the pixels). None:
            no limit.

    Returns:
        float32 tensor `(H, W, channels)` with values in `[0, 255]`.

    Raises:
        tf.errors.InvalidArgumentError (when run): the bytes are not a
            decodable image, or the header claims more than `max_pixels`.
            `medivision_tf.data.scan` finds such files before training.

    Example:

    ```python
    image = decode_image(tf.io.read_file("ct.dcm"), 1, dicom_window=(40, 400))
    ```
    """
    channels = check_channels(channels)
    bit_depth_16 = formats.check_bit_depth_16(bit_depth_16)
    options = _python_options(dicom_window, bit_depth_16, frames, nifti_axis, max_pixels)
    contents = tf.convert_to_tensor(contents, tf.string)
    kind = _sniff_kind(contents)

    # The graph-side pixel budget (PNG/GIF/BMP/JPEG headers) in the branches
    # of TensorFlow's decoders; the Python formats check their own header.
    def tf_decode():
        image = tf.io.decode_image(check_pixel_budget(contents, max_pixels), channels=0,
                                   expand_animations=False)
        return tf.cast(image, tf.float32)

    def png16_decode():
        image = tf.cast(tf.io.decode_png(check_pixel_budget(contents, max_pixels), channels=0,
                                         dtype=tf.uint16), tf.float32)
        if bit_depth_16 == "minmax":
            low, high = tf.reduce_min(image), tf.reduce_max(image)
            return tf.math.divide_no_nan(image - low, high - low) * 255.0
        twelve = tf.constant(bit_depth_16 == "12bit")
        if bit_depth_16 == "auto":
            twelve = tf.reduce_max(image) <= 4095.0
        return image / tf.where(twelve, 4095.0 / 255.0, 257.0)

    def python_decode():
        return _numpy_decode(contents, frame, options, _slice_path)

    image = tf.switch_case(
        kind,
        branch_fns={_KIND_TF: tf_decode, _KIND_PNG16: png16_decode, _KIND_PYTHON: python_decode},
    )
    return to_channels(image, channels)


def _python_options(dicom_window, bit_depth_16, frames, nifti_axis, max_pixels):
    """The checked options of `formats.python_decode` (bad values refused
    when the graph is built, not when it runs)."""
    check_max_pixels(max_pixels)
    return {
        "window": check_window(dicom_window),
        "bit_depth_16": formats.check_bit_depth_16(bit_depth_16),
        "frames": formats.check_frames(frames),
        "nifti_axis": formats.check_nifti_axis(nifti_axis),
        "max_pixels": max_pixels,
    }


def _numpy_decode(contents, frame, options, slice_path=None):
    """float32 `(H, W, C)` from `_python_decode` through `tf.numpy_function`."""
    inputs = [contents, tf.cast(frame, tf.int64)]
    if slice_path is not None:  # a NIfTI slice read by path
        inputs.append(slice_path)
    image = tf.numpy_function(
        lambda data, index, *path: _python_decode(data, index, options, *path),
        inputs,
        tf.uint8,
        stateful=False,
    )
    image.set_shape([None, None, None])
    return tf.cast(image, tf.float32)


def _python_decode_group(paths, options, skip_errors, whole_files):
    """`_python_decode` of several samples in one `tf.numpy_function` call.

    Each call into Python from a `tf.data` thread costs about half a
    millisecond before any pixel is read (a trivial `numpy_function` map runs
    at 1-2k elements/s on 2 cores), as much as decoding a small DICOM file and
    far more than reading a NIfTI slice from its cached volume; one call per
    group pays it once for the group.

    Args:
        paths: the sample paths: local files, read here (a read error is the
            sample's own, not its group's), or NIfTI slices `file#frame=N`,
            read from their decoded volume.
        options: `_python_options`.
        skip_errors: log and mark a failing sample instead of raising.
        whole_files: the paths are whole files (DICOM), not slices.

    Returns `(pixels, shapes, ok)`: the uint8 images, their `(H, W, C)`
    shapes, and whether each decoded. Slices (of one size within a volume)
    come as the rows of a zero-padded `(k, longest)` array: dense rows split
    apart in the graph about twice as fast as a ragged tensor's. Whole files
    (sizes that differ by up to 100x in one group: padding would copy the
    largest k times) come flattened one after the other.
    """
    images, ok = [], []
    for path in paths:
        try:
            if whole_files:
                with open(os.fsdecode(bytes(path)), "rb") as handle:
                    image = _python_decode(handle.read(), -1, options)
            else:
                file, frame = formats.split_frame(os.fsdecode(bytes(path)))
                image = _python_decode(b"", frame, options, os.fsencode(file))
            if image.ndim == 2:
                image = image[..., None]
        except Exception as error:  # the readers raise many types for bad files
            if not skip_errors:
                raise
            tf.get_logger().warning(f"Skipped {os.fsdecode(bytes(path))}: {error}")
            image = np.zeros((0, 0, 1), np.uint8)
        images.append(image)
        ok.append(image.size > 0)
    shapes = np.array([image.shape for image in images], np.int32).reshape(-1, 3)
    if whole_files:
        pixels = (np.concatenate([image.ravel() for image in images]) if images
                  else np.zeros(0, np.uint8))
    else:
        pixels = np.zeros((len(images), max((i.size for i in images), default=0)), np.uint8)
        for row, image in zip(pixels, images):
            row[: image.size] = image.ravel()
    return pixels, shapes, np.array(ok, bool)


def _numpy_decode_group(paths, options, skip_errors, whole_files):
    """`_python_decode_group` through `tf.numpy_function`: `(pixels, shapes,
    ok)`, `pixels` holding image i in the first `prod(shapes[i])` values of
    row i: a zero-padded uint8 `(k, longest)` for slices, a ragged
    `(k, None)` for whole files."""
    pixels, shapes, ok = tf.numpy_function(
        lambda group: _python_decode_group(group, options, skip_errors, whole_files),
        [paths], (tf.uint8, tf.int32, tf.bool), stateful=False)
    shapes.set_shape([None, 3])
    ok.set_shape([None])
    if whole_files:
        pixels.set_shape([None])
        lengths = tf.reduce_prod(tf.cast(shapes, tf.int64), axis=1)
        return tf.RaggedTensor.from_row_lengths(pixels, lengths), shapes, ok
    pixels.set_shape([None, None])
    return pixels, shapes, ok


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


def load_image(
    path, channels=3, dicom_window="auto", bit_depth_16="auto", *, frames="middle",
    nifti_axis="axial",
):
    """Reads and decodes one image file (graph- or eager-mode).

    A path ending in `#frame=N` (`formats.with_frame`) reads frame/slice N
    of a multi-frame DICOM or NIfTI volume.

    Args:
        path: file path (str or scalar string tensor).
        channels, dicom_window, bit_depth_16, frames, nifti_axis: see
            `decode_image`.

    Returns:
        float32 `(H, W, channels)`, values in `[0, 255]`.

    Example:

    ```python
    slice_12 = load_image("brain.nii.gz#frame=12", channels=1)
    ```
    """
    path = tf.convert_to_tensor(path, tf.string)
    named = tf.strings.regex_full_match(path, r"(?s).*#frame=[0-9]+")
    file = tf.strings.regex_replace(path, r"#frame=[0-9]+$", "")
    digits = tf.where(named, tf.strings.regex_replace(path, r"(?s)^.*#frame=", ""), "-1")
    frame = tf.strings.to_number(digits, tf.int64)

    # A slice of a NIfTI volume (a sample of its own) is read by path in
    # Python (`formats.read_nifti_slice_file`): its volume is read and decoded
    # once for all its slices, not read whole and hashed again for each.
    is_slice = tf.logical_and(named, tf.strings.regex_full_match(file, r"(?is).*\.nii(\.gz)?"))
    contents = tf.cond(is_slice, lambda: tf.constant(b""), lambda: tf.io.read_file(file))
    return decode_image(
        contents, channels, dicom_window, bit_depth_16,
        frame=frame, frames=frames, nifti_axis=nifti_axis,
        _slice_path=tf.where(is_slice, file, ""),
    )


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
    if mode not in RESIZE_MODES:
        raise ValueError(
            f"Unknown resize mode {mode!r}. Choose one of: {', '.join(RESIZE_MODES)}."
        )
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
    geometry = _pad_geometry(shape[-3], shape[-2], height, width)
    return _resize_and_pad(image, geometry, height, width, interpolation, antialias)


def _pad_geometry(in_h, in_w, height, width):
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


def _resize_and_pad(image, geometry, height, width, interpolation, antialias):
    """Resizes to `geometry`'s `(resized_h, resized_w)` and zero-pads to
    `(height, width)` at `(top, left)` (`_pad_geometry`)."""
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
    if resize not in RESIZE_MODES:
        raise ValueError(
            f"Unknown resize mode {resize!r}. Choose one of: {', '.join(RESIZE_MODES)}."
        )
    image = to_channels(tf.cast(image, tf.float32), channels)
    image = resize_image(image, size, resize, interpolation, antialias)
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
    return tf.cast(image, dtype)


def load_images(
    paths,
    image_size,
    channels=3,
    resize="pad",
    batch_size=32,
    *,
    interpolation="bilinear",
    antialias=False,
    dicom_window="auto",
    bit_depth_16="auto",
    frames="middle",
    nifti_axis="axial",
):
    """Reads image files into one float32 array, the way `make_dataset` does.

    Every format the pipeline reads (JPEG, PNG 8/16-bit, BMP, GIF, WebP,
    TIFF, DICOM), decoded in parallel by a `tf.data` map (AUTOTUNE) with
    `load_image` and `finish_image`, so the pixels equal `make_dataset`'s
    for the same options (without augmentation).

    Args:
        paths: a file path or a sequence of file paths.
        image_size: int or `(height, width)` of the output images.
        channels: 1 (grayscale) or 3 (RGB).
        resize: `"pad"` (default), `"stretch"` or `"crop"`.
        batch_size: images decoded per step (memory, not results).
        interpolation, antialias: see `resize_image`.
        dicom_window: `"auto"`, `"minmax"` or `(center, width)`.
        bit_depth_16: `"auto"`, `"scale"`, `"12bit"` or `"minmax"` for
            16-bit PNG/TIFF (see `decode_image`).
        frames, nifti_axis: see `decode_image` (`model_config.decode`
            holds a model's choices: `DecodeOptions.image_kwargs()`).

    Returns:
        float32 array `(n, height, width, channels)`, raw pixels 0-255, in
        the order of `paths`.

    Raises:
        FileNotFoundError: some paths are not files (all are listed).
        ValueError: some files cannot be decoded (all are listed, with the
            decoder's message for the first ones).

    Example:

    ```python
    images = load_images(["a.png", "b.dcm"], image_size=224)   # (2, 224, 224, 3)
    probabilities = model.predict(images)
    ```
    """
    paths = _check_paths(paths)
    size = check_size(image_size)
    channels = check_channels(channels)
    if resize not in RESIZE_MODES:
        raise ValueError(
            f"Unknown resize mode {resize!r}. Choose one of: {', '.join(RESIZE_MODES)}."
        )
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    window = check_window(dicom_window)
    if not paths:
        return np.zeros((0, *size, channels), "float32")

    def finish(image):
        return finish_image(image, size, channels, resize, interpolation, antialias)

    options = {"frames": frames, "nifti_axis": nifti_axis}
    images = _decode_files(paths, channels, window, bit_depth_16, finish, batch_size, options)
    return np.concatenate(images).astype("float32", copy=False)


def read_images(
    paths, channels=3, *, dicom_window="auto", bit_depth_16="auto", frames="middle",
    nifti_axis="axial",
):
    """Reads image files at their own sizes, decoded exactly as for training.

    The same decoder as `make_dataset` and `load_images` (`load_image`:
    format sniffed from the bytes, DICOM window, 16-bit scaling, alpha
    dropped, channels converted), without the resize: for explanations drawn
    at each image's own size. Files are decoded in parallel (`tf.data`).

    Args:
        paths: a file path or a sequence of file paths.
        channels: 1 (grayscale) or 3 (RGB); pass the model's input channels
            to see the images as the model does.
        dicom_window: `"auto"`, `"minmax"` or `(center, width)` (see
            `read_dicom`).
        bit_depth_16: `"auto"`, `"scale"`, `"12bit"` or `"minmax"` for
            16-bit PNG/TIFF (see `decode_image`).

    Returns:
        A list of float32 arrays `(height, width, channels)` in [0, 255], in
        the order of `paths`.

    Raises:
        FileNotFoundError: some paths are not files (all are listed).
        ValueError: some files cannot be decoded (all are listed).

    Example:

    ```python
    images = read_images(["a.png", "ct.dcm"], channels=1)   # [(h1, w1, 1), (h2, w2, 1)]
    ```
    """
    paths = _check_paths(paths)
    channels = check_channels(channels)
    window = check_window(dicom_window)
    if not paths:
        return []
    options = {"frames": frames, "nifti_axis": nifti_axis}
    decoded = _decode_files(paths, channels, window, bit_depth_16, None, 1, options)
    return [image[0] for image in decoded]


def _check_paths(paths):
    """`paths` as a list of str; every missing file named in one error."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    paths = [os.fsdecode(p) for p in paths]
    files = [formats.split_frame(p)[0] for p in paths]
    missing = [p for p, f in zip(paths, files) if not os.path.exists(f)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} image files not found: {missing[:10]}"
            + (" ..." if len(missing) > 10 else "")
        )
    # Only regular files are opened: reading a FIFO named x.png blocks forever.
    special = [p for p, f in zip(paths, files) if not stat.S_ISREG(os.stat(f).st_mode)]
    if special:
        raise ValueError(
            f"{len(special)} of {len(paths)} paths are not regular files (FIFO, device, "
            f"socket or folder), not opened: {special[:10]}"
            + (" ..." if len(special) > 10 else "")
        )
    return paths


def clean_assert_message(message):
    """The reason in a `tf.debugging.Assert` error, without TF's wrapping."""
    match = re.search(r"Summarized data: b'(.*?)'|assertion failed: \[(.*?)\]", message, re.S)
    return next(g for g in match.groups() if g is not None) if match else message


def check_min_size(image):
    """`image` (H, W, C), after asserting (graph op) it is at least MIN_IMAGE_SIZE a side.

    A 1x1 image would get a confident class; it is refused with its size named.
    """
    shape = tf.shape(image)
    check = tf.debugging.Assert(
        tf.reduce_min(shape[:2]) >= MIN_IMAGE_SIZE,
        [tf.strings.format(
            "Image of {}x{} pixels is too small: at least "
            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} needed", (shape[1], shape[0]))],
    )
    with tf.control_dependencies([check]):
        return tf.identity(image)


def _decode_files(paths, channels, window, bit_depth_16, finish, batch_size, options=None):
    """The one file reader: `load_image` (+ `finish`) over `paths` in a
    parallel `tf.data` map; NumPy batches of `batch_size` in path order."""

    def checked(path):
        return check_min_size(load_image(path, channels, window, bit_depth_16,
                                         **(options or {})))

    def load(index, path):
        image = checked(path)
        return index, (image if finish is None else finish(image))

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Errors are collected, not raised mid-way, so every bad file is named.
    dataset = dataset.ignore_errors().batch(batch_size)
    indices, images = [], []
    for index, batch in dataset:
        indices.append(index.numpy())
        images.append(batch.numpy().astype("float32", copy=False))
    done = np.concatenate(indices) if indices else np.zeros(0, int)
    if len(done) != len(paths):
        bad = sorted(set(range(len(paths))) - set(done.tolist()))
        details = []
        for i in bad[:3]:
            try:
                checked(paths[i])
            except (tf.errors.OpError, ValueError) as error:
                message = str(getattr(error, "message", error))
                message = clean_assert_message(message)
                message = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", message).strip().splitlines()
                details.append(f"{paths[i]}: {message[0] if message else type(error).__name__}")
        raise ValueError(
            f"Could not decode image files: {len(bad)} of {len(paths)} image files cannot "
            f"be decoded (not a PNG, JPEG, BMP, GIF, WebP, TIFF, DICOM or NIfTI image, over "
            f"the pixel budget or under {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels): "
            f"{[paths[i] for i in bad[:10]]}" + (" ..." if len(bad) > 10 else "")
            + ("\n" + "\n".join(d[:300] for d in details) if details else "")
            + "\nRun medivision_tf.data.scan to check files before use."
        )
    return images


def check_size(size):
    """Validates an image size: an int or `(height, width)` of positive ints.

    Returns:
        `(height, width)` as ints.

    Raises:
        ValueError: anything else (the message echoes the value).
    """
    if isinstance(size, (int, np.integer)):
        size = (size, size)
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise ValueError(
            "`image_size` must be an int or (height, width) of positive integers. "
            f"Received: image_size={size!r}"
        )
    return height, width


def check_channels(channels):
    """Validates a channel count: 1 (grayscale) or 3 (RGB); returns it.

    Raises:
        ValueError: anything else.
    """
    if channels not in (1, 3):
        raise ValueError(
            f"`channels` must be 1 (grayscale) or 3 (RGB). Received: channels={channels!r}"
        )
    return channels
