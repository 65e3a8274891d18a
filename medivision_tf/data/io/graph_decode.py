"""Decoding one image file into float32 0-255 pixels, inside the tf.data graph.

TensorFlow decodes JPEG, PNG (8- and 16-bit), BMP, GIF and WebP in the graph.
TIFF (tifffile/OpenCV), DICOM (pydicom's modality LUT, VOI LUT, palette and
MONOCHROME1 handling) and NIfTI slices (nibabel) go through
`tf.numpy_function` into `python_decode`, where the readers and the exact
windowing rules live. The format is sniffed from the file's first bytes, not
its extension (a `DICM` marker at byte 128 wins over a TIFF-looking
preamble), so a mislabelled or extension-less file still decodes.

Every decoder returns `float32` pixels in `[0, 255]` with the requested number
of channels (`finish.to_channels`): grayscale is repeated to RGB, RGB is
averaged to grayscale (`tf.image.rgb_to_grayscale`), an alpha channel is
dropped. 16-bit images are scaled to 0-255 (`bit_depth_16="auto"`: 12-bit data
when the maximum is <= 4095, else divided by 257; `"minmax"`: each image's
own min..max). `load_image` reads a path (`"x.nii.gz#frame=N"` names a slice)
and decodes it; `sample_reader` (tables in `tf.data`), `read_files`
(prediction, explanation) and the shard writer all decode through here.

Example:

```python
import numpy as np, cv2, tempfile, os
from medivision_tf.data.io.graph_decode import decode_image, load_image

path = os.path.join(tempfile.mkdtemp(), "x.png")
cv2.imwrite(path, np.full((40, 60), 1000, "uint16"))     # 16-bit grayscale
image = load_image(path, channels=3)                     # (40, 60, 3) float32
same = decode_image(open(path, "rb").read(), channels=3)
```
"""

import os

import numpy as np
import tensorflow as tf

from medivision_tf.data.io.budget import check_max_pixels, check_pixel_budget
from medivision_tf.data.io.finish import to_channels
from medivision_tf.data.io.frame_paths import split_frame
from medivision_tf.data.io.headers import DEFAULT_MAX_PIXELS
from medivision_tf.data.io.nifti import read_nifti_slice_file
from medivision_tf.data.io.options import (
    check_bit_depth_16,
    check_channels,
    check_frames,
    check_nifti_axis,
    check_window,
)
from medivision_tf.data.io.python_decode import PYTHON_FORMATS, python_decode
from medivision_tf.data.io.sniff import sniff_format

#: Formats TensorFlow decodes in the graph (the others: `PYTHON_FORMATS`).
# Formats TensorFlow decodes in the graph, and the ones we read in Python.
TF_FORMATS = ("jpeg", "png", "bmp", "gif", "webp")
KIND_TF, KIND_PNG16, KIND_PYTHON = 0, 1, 2


def sniff_kind(contents):
    """0: TensorFlow decodes it; 1: 16-bit PNG; 2: Python (`python_decode`).

    `DICM` at byte 128 is tested first, so a DICOM whose preamble looks like
    TIFF goes to pydicom. Bytes that are none of TensorFlow's formats go to
    Python too (raw DICOM without preamble, NIfTI, TIFF, or not an image:
    `python_decode` then names the reason).

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
    return tf.where(is_dicom, KIND_PYTHON, tf.where(
        is_png16, KIND_PNG16, tf.where(is_tf, KIND_TF, KIND_PYTHON)))


def _python_decode(data, frame, options, slice_path=b""):
    """`python_decode` on bytes from `tf.numpy_function` (the
    TIFF/DICOM/NIfTI pixel budget is checked there, from the header).

    `slice_path` (with empty `data`): a NIfTI file whose slice `frame` is read
    by path (`nifti.read_nifti_slice_file`); a path that is not a local
    NIfTI file is read here (`tf.io.gfile`) and decoded from its bytes.
    """
    if isinstance(data, np.ndarray):
        data = data.item()
    if isinstance(slice_path, np.ndarray):
        slice_path = slice_path.item()
    data = bytes(data)
    if slice_path and not data:
        pixels = read_nifti_slice_file(
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
    return python_decode(data, fmt, int(frame), dtype="uint8", **options)


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
        dicom_window: see `dicom.read_dicom`: `"auto"`, `"minmax"` or
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
            `python_decode` before reading the pixels). None:
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
    bit_depth_16 = check_bit_depth_16(bit_depth_16)
    options = python_options(dicom_window, bit_depth_16, frames, nifti_axis, max_pixels)
    contents = tf.convert_to_tensor(contents, tf.string)
    kind = sniff_kind(contents)

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
        branch_fns={KIND_TF: tf_decode, KIND_PNG16: png16_decode, KIND_PYTHON: python_decode},
    )
    return to_channels(image, channels)


def python_options(dicom_window, bit_depth_16, frames, nifti_axis, max_pixels):
    """The checked options of `python_decode` (bad values refused
    when the graph is built, not when it runs)."""
    check_max_pixels(max_pixels)
    return {
        "window": check_window(dicom_window),
        "bit_depth_16": check_bit_depth_16(bit_depth_16),
        "frames": check_frames(frames),
        "nifti_axis": check_nifti_axis(nifti_axis),
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
        options: `python_options`.
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
                file, frame = split_frame(os.fsdecode(bytes(path)))
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


def numpy_decode_group(paths, options, skip_errors, whole_files):
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


def load_image(
    path, channels=3, dicom_window="auto", bit_depth_16="auto", *, frames="middle",
    nifti_axis="axial",
):
    """Reads and decodes one image file (graph- or eager-mode).

    A path ending in `#frame=N` (`frame_paths.with_frame`) reads frame/slice N
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
    # Python (`nifti.read_nifti_slice_file`): its volume is read and decoded
    # once for all its slices, not read whole and hashed again for each.
    is_slice = tf.logical_and(named, tf.strings.regex_full_match(file, r"(?is).*\.nii(\.gz)?"))
    contents = tf.cond(is_slice, lambda: tf.constant(b""), lambda: tf.io.read_file(file))
    return decode_image(
        contents, channels, dicom_window, bit_depth_16,
        frame=frame, frames=frames, nifti_axis=nifti_axis,
        _slice_path=tf.where(is_slice, file, ""),
    )
