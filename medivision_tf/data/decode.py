"""Decoding image files into float32 0-255 pixels, inside the tf.data graph.

TensorFlow decodes JPEG, PNG (8- and 16-bit), BMP, GIF and WebP in the graph.
TIFF (OpenCV/tifffile) and DICOM (pydicom, with the modality's rescale and
window applied) go through `tf.numpy_function`. The format is sniffed from the
file's first bytes, not its extension, so a mislabelled file still decodes.

Every decoder returns `float32` pixels in `[0, 255]` with the requested number
of channels: grayscale is repeated to RGB, RGB is averaged to grayscale
(`tf.image.rgb_to_grayscale`), an alpha channel is dropped. 16-bit images are
scaled to 0-255 (`bit_depth_16="scale"`: divide by 257, or `"minmax"`: stretch
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

import io
import os
import re
import stat

import numpy as np
import tensorflow as tf

RESIZE_MODES = ("pad", "stretch", "crop")
BIT_DEPTH_16_MODES = ("scale", "minmax")
DICOM_WINDOWS = ("auto", "minmax")
# Formats TensorFlow decodes in the graph, and the ones we read in Python.
TF_FORMATS = ("jpeg", "png", "bmp", "gif", "webp")
PYTHON_FORMATS = ("tiff", "dicom")

_KIND_TF, _KIND_PNG16, _KIND_TIFF, _KIND_DICOM = 0, 1, 2, 3
#: The pixel budget (height x width) checked from the header before any
#: decode; Pillow's `Image.MAX_IMAGE_PIXELS`. Pass `max_pixels=` to change it.
DEFAULT_MAX_PIXELS = 89_478_485
#: Images with a side below this many pixels are refused by `scan`,
#: `load_images`/`read_images` (prediction, explanation) and the exported
#: `predict_images`: a 1x1 (or 1xN) image padded to the input size holds no
#: picture, yet would get a confident class. (2, not more: thin DICOM
#: localizers of 2xN are real images.)
MIN_IMAGE_SIZE = 2


def sniff_format(data):
    """The image format of a file's first bytes (Python, for scans and tools).

    Args:
        data: the file's bytes (at least its first 132 bytes).

    Returns:
        One of `"jpeg"`, `"png"`, `"bmp"`, `"gif"`, `"webp"`, `"tiff"`,
        `"dicom"`, or None when the bytes are not an image we can decode.
    """
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data[128:132] == b"DICM":
        return "dicom"
    return None


def read_dicom(source, window="auto"):
    """Reads a DICOM image as a radiologist would see it, as uint8.

    The modality LUT (Rescale Slope/Intercept, e.g. CT Hounsfield units) is
    applied, then the VOI LUT: with `window="auto"` the file's own Window
    Center/Width (or VOI LUT sequence), falling back to the image's min..max;
    with `window=(center, width)` that window (e.g. `(40, 400)` for CT soft
    tissue, `(-600, 1500)` for lung); with `window="minmax"` the image's own
    min..max range.
    MONOCHROME1 images (white = low) are inverted. Multi-frame files give
    their first frame.

    Args:
        source: a file path, or the file's bytes.
        window: `"auto"`, `"minmax"` or a `(center, width)` pair.

    Returns:
        `(H, W)` uint8 array for grayscale, `(H, W, 3)` for color DICOM.

    Raises:
        ValueError: the data is not a readable DICOM image, or `window` is
            not one of the allowed values.

    Example:

    ```python
    image = read_dicom("scan.dcm", window=(40, 400))   # CT soft-tissue window
    ```
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    window = check_window(window)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        dataset = pydicom.dcmread(source, force=True)
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for bad files
        raise ValueError(f"Unreadable DICOM ({type(error).__name__}: {error})") from error
    if getattr(dataset, "NumberOfFrames", 1) not in (None, 1) and pixels.ndim >= 3:
        if not (pixels.ndim == 3 and pixels.shape[-1] in (3, 4)):
            pixels = pixels[0]
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3:  # color (RGB/YBR converted by pydicom): no windowing
        return _to_uint8(pixels, "minmax" if pixels.dtype != np.uint8 else "scale")
    values = apply_modality_lut(pixels, dataset).astype("float64")
    if window == "auto" and "WindowCenter" in dataset and "WindowWidth" in dataset:
        window = (_first(dataset.WindowCenter), _first(dataset.WindowWidth))
        if window[1] <= 0:
            window = None
    elif window == "auto" and "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset).astype("float64")
    if isinstance(window, tuple):
        center, width = window
        low, high = center - width / 2.0, center + width / 2.0
    else:
        low, high = float(values.min()), float(values.max())
    scaled = _window(values, low, high)
    if photometric == "MONOCHROME1":
        scaled = 255 - scaled
    return scaled


def _first(value):
    """A DICOM value that may be multi-valued (several windows): the first."""
    try:
        return float(value)
    except TypeError:
        return float(value[0])


def _window(values, low, high):
    if high <= low:
        return np.zeros(values.shape, "uint8")
    scaled = (values - low) / (high - low) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype("uint8")


def check_window(window):
    """Validates a DICOM window; returns it normalized.

    Args:
        window: `"auto"`, `"minmax"` or a `(center, width)` pair with
            width > 0.

    Returns:
        The string unchanged, or `(center, width)` as a tuple of floats.

    Raises:
        ValueError: any other value.

    Example:

    ```python
    check_window([40, 400])    # (40.0, 400.0)
    ```
    """
    if isinstance(window, str) and window in DICOM_WINDOWS:
        return window
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        center = width = None
    if width is None or width <= 0:
        raise ValueError(
            '`window` must be "auto", "minmax" or (center, width) with width > 0. '
            f"Received: window={window!r}"
        )
    return (center, width)


def _to_uint8(pixels, bit_depth_16="scale"):
    """Any integer/float array to uint8 0-255."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16 and bit_depth_16 == "scale":
        return np.round(pixels / 257.0).astype("uint8")
    values = pixels.astype("float64")
    return _window(values, float(values.min()), float(values.max()))


def read_tiff(source, bit_depth_16="scale"):
    """Reads a TIFF file (first page) as uint8 `(H, W)` or `(H, W, C)` RGB(A).

    tifffile reads it (any compression it supports); OpenCV is the fallback.
    16-bit pages follow `bit_depth_16`; float pages are stretched min..max.

    Args:
        source: a file path, or the file's bytes.
        bit_depth_16: `"scale"` (divide by 257) or `"minmax"`.

    Raises:
        ValueError: neither tifffile nor OpenCV can read it.
    """
    import tifffile

    if isinstance(source, (bytes, bytearray)):
        data = source
    else:
        with open(source, "rb") as handle:
            data = handle.read()
    try:
        pixels = tifffile.imread(io.BytesIO(data), key=0)
    except Exception as first_error:
        import cv2

        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise ValueError(
                f"Unreadable TIFF ({type(first_error).__name__}: {first_error})"
            ) from first_error
        if pixels.ndim == 3:  # OpenCV gives BGR(A)
            pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[-1]]]
    if pixels.ndim == 3 and pixels.shape[-1] not in (1, 2, 3, 4):
        pixels = pixels[0]  # (pages/samples, H, W) planar layouts
    return _to_uint8(np.asarray(pixels), bit_depth_16)


def _python_decode(data, kind, window, bit_depth_16, max_pixels=DEFAULT_MAX_PIXELS):
    """Decodes TIFF/DICOM bytes in Python (called through tf.numpy_function)."""
    if isinstance(data, np.ndarray):
        data = data.item()
    if max_pixels is not None:
        _check_python_header(bytes(data), int(kind), max_pixels)
    if int(kind) == _KIND_DICOM:
        pixels = read_dicom(bytes(data), window=window)
    else:
        pixels = read_tiff(bytes(data), bit_depth_16=bit_depth_16)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return pixels.astype("float32")


def _check_python_header(data, kind, max_pixels):
    """TIFF/DICOM pixel budget from the header (tifffile/pydicom, no pixels read)."""
    try:
        if kind == _KIND_DICOM:
            import pydicom

            meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            height, width = int(meta.Rows), int(meta.Columns)
        else:
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                shape = tif.pages[0].shape
            height, width = int(shape[0]), int(shape[1])
    except Exception:  # a broken header: the decoder names the problem
        return
    if height * width > max_pixels:
        raise ValueError(
            f"Image of {width}x{height} pixels exceeds the pixel budget "
            f"max_pixels={max_pixels} (checked from the header, not decoded)."
        )


def _be_uint(data, offset, length):
    """Big-endian unsigned integer of `length` bytes at `offset` (graph op)."""
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8)
    raw = tf.cast(raw, tf.int64)
    weights = tf.constant([256 ** (length - 1 - i) for i in range(length)], tf.int64)
    return tf.reduce_sum(raw * weights)


def _le_uint(data, offset, length):
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8)
    raw = tf.cast(raw, tf.int64)
    weights = tf.constant([256 ** i for i in range(length)], tf.int64)
    return tf.reduce_sum(raw * weights)


def header_pixels(contents):
    """Height x width read from a PNG, GIF, BMP or JPEG header (graph ops only).

    Reads the PNG IHDR, the GIF logical screen, the BMP info header or the
    JPEG frame header (`tf.image.extract_jpeg_shape`): nothing is decoded.

    Args:
        contents: scalar `tf.string`, an encoded image file.

    Returns:
        int64 scalar tensor: the pixel count the header claims, or 0 when
        the format is not one of these four (TIFF/DICOM/WebP) or the header
        is too short to say (the decoder then reports the file).

    Example:

    ```python
    png = tf.io.encode_png(tf.zeros((6, 4, 1), tf.uint8))
    int(header_pixels(png))    # 24
    ```
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    length = tf.strings.length(contents)
    head = tf.strings.substr(contents, 0, tf.minimum(8, length))
    zero = tf.constant(0, tf.int64)

    def png():
        return _be_uint(contents, 16, 4) * _be_uint(contents, 20, 4)

    def gif():
        return _le_uint(contents, 6, 2) * _le_uint(contents, 8, 2)

    def bmp():
        width = _le_uint(contents, 18, 4)
        height = _le_uint(contents, 22, 4)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # top-down BMP
        width = tf.where(width >= 2 ** 31, 2 ** 32 - width, width)
        return width * height

    def jpeg():
        # The frame header may come after large APPn blocks: this op walks the
        # markers; a truncated file without a frame header is left to decode.
        shape = tf.image.extract_jpeg_shape(contents, output_type=tf.int64)
        return shape[0] * shape[1]

    is_png = tf.logical_and(length >= 24, tf.equal(head, b"\x89PNG\r\n\x1a\n"))
    head6 = tf.strings.substr(contents, 0, tf.minimum(6, length))
    is_gif = tf.logical_and(
        length >= 10, tf.reduce_any(tf.equal(head6, tf.constant([b"GIF87a", b"GIF89a"])))
    )
    head2 = tf.strings.substr(contents, 0, tf.minimum(2, length))
    is_bmp = tf.logical_and(length >= 26, tf.equal(head2, b"BM"))
    is_jpeg = tf.logical_and(
        length >= 4, tf.equal(tf.strings.substr(contents, 0, tf.minimum(3, length)), b"\xff\xd8\xff")
    )
    return tf.case(
        [(is_png, png), (is_gif, gif), (is_bmp, bmp), (is_jpeg, jpeg)],
        default=lambda: zero,
        exclusive=False,
    )


def check_pixel_budget(contents, max_pixels=DEFAULT_MAX_PIXELS):
    """Refuses (in the graph) an encoded image whose header claims too many pixels.

    A decompression bomb (a few KB of PNG claiming 20000x20000 pixels) is
    refused before `tf.io.decode_*` allocates its pixels: the header is read
    with `header_pixels`. `decode_image` calls it; so do the exported
    `predict_images` signature and the server.

    Args:
        contents: scalar `tf.string`, an encoded image.
        max_pixels: the largest allowed height x width (default
            `DEFAULT_MAX_PIXELS`, Pillow's limit); None: no check.

    Returns:
        `contents`, with the check as a control dependency.

    Raises:
        tf.errors.InvalidArgumentError (when run): the header claims more
            than `max_pixels` pixels.

    Example:

    ```python
    data = tf.io.read_file("scan.png")
    image = tf.io.decode_png(check_pixel_budget(data, max_pixels=10_000_000))
    ```
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    if max_pixels is None:
        return contents
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(
            f"`max_pixels` must be a positive integer or None. Received: max_pixels={max_pixels!r}"
        )
    pixels = header_pixels(contents)
    check = tf.debugging.Assert(
        pixels <= int(max_pixels),
        [tf.strings.format(
            "Image header claims {} pixels: more than the pixel budget "
            f"max_pixels={int(max_pixels)} (not decoded)", pixels)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(contents)


def _sniff_kind(contents):
    length = tf.strings.length(contents)
    head8 = tf.strings.substr(contents, 0, tf.minimum(8, length))
    head4 = tf.strings.substr(contents, 0, tf.minimum(4, length))
    is_tiff = tf.reduce_any(
        tf.equal(head4, tf.constant([b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"]))
    )
    is_dicom = tf.cond(
        length >= 132,
        lambda: tf.equal(tf.strings.substr(contents, 128, 4), b"DICM"),
        lambda: tf.constant(False),
    )
    is_png16 = tf.cond(
        length >= 25,
        lambda: tf.logical_and(
            tf.equal(head8, b"\x89PNG\r\n\x1a\n"),
            tf.equal(tf.strings.substr(contents, 24, 1), b"\x10"),
        ),
        lambda: tf.constant(False),
    )
    return tf.case(
        [
            (is_tiff, lambda: tf.constant(_KIND_TIFF)),
            (is_dicom, lambda: tf.constant(_KIND_DICOM)),
            (is_png16, lambda: tf.constant(_KIND_PNG16)),
        ],
        default=lambda: tf.constant(_KIND_TF),
    )


def decode_image(contents, channels=3, dicom_window="auto", bit_depth_16="scale",
                 max_pixels=DEFAULT_MAX_PIXELS):
    """Decodes one encoded image (a scalar string tensor) in the graph.

    Args:
        contents: scalar `tf.string`, the bytes of a JPEG, PNG (8/16-bit),
            BMP, GIF (first frame), WebP, TIFF or DICOM file.
        channels: 1 (grayscale) or 3 (RGB) output channels.
        dicom_window: see `read_dicom`: `"auto"`, `"minmax"` or `(center, width)`.
        bit_depth_16: `"scale"` or `"minmax"` for 16-bit PNG/TIFF.
        max_pixels: the pixel budget, checked from the header before the
            decode (`check_pixel_budget`; TIFF/DICOM: by tifffile/pydicom
            before reading the pixels). None: no limit.

    Returns:
        float32 tensor `(H, W, channels)` with values in `[0, 255]`.

    Raises:
        tf.errors.InvalidArgumentError (when run): the bytes are not a
            decodable image, or the header claims more than `max_pixels`.
            `medivision_tf.data.scan` finds such files before training.
    """
    channels = check_channels(channels)
    if bit_depth_16 not in BIT_DEPTH_16_MODES:
        raise ValueError(
            f"Unknown bit_depth_16 {bit_depth_16!r}. Choose one of: "
            f"{', '.join(BIT_DEPTH_16_MODES)}."
        )
    window = check_window(dicom_window)
    contents = check_pixel_budget(contents, max_pixels)
    kind = _sniff_kind(contents)

    def tf_decode():
        image = tf.io.decode_image(contents, channels=0, expand_animations=False)
        return tf.cast(image, tf.float32)

    def png16_decode():
        image = tf.cast(tf.io.decode_png(contents, channels=0, dtype=tf.uint16), tf.float32)
        if bit_depth_16 == "minmax":
            low, high = tf.reduce_min(image), tf.reduce_max(image)
            return tf.math.divide_no_nan(image - low, high - low) * 255.0
        return image / 257.0

    def python_decode():
        image = tf.numpy_function(
            lambda data, kind: _python_decode(data, kind, window, bit_depth_16, max_pixels),
            [contents, kind],
            tf.float32,
            stateful=False,
        )
        image.set_shape([None, None, None])
        return image

    image = tf.switch_case(
        kind,
        branch_fns={
            _KIND_TF: tf_decode,
            _KIND_PNG16: png16_decode,
            _KIND_TIFF: python_decode,
            _KIND_DICOM: python_decode,
        },
    )
    return to_channels(image, channels)


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


def load_image(path, channels=3, dicom_window="auto", bit_depth_16="scale"):
    """Reads and decodes one image file (graph- or eager-mode).

    Args:
        path: file path (str or scalar string tensor).
        channels, dicom_window, bit_depth_16: see `decode_image`.

    Returns:
        float32 `(H, W, channels)`, values in `[0, 255]`.
    """
    return decode_image(tf.io.read_file(path), channels, dicom_window, bit_depth_16)


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
        return tf.image.resize_with_pad(
            image, height, width, method=interpolation, antialias=antialias
        )
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
    bit_depth_16="scale",
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
        bit_depth_16: `"scale"` or `"minmax"` for 16-bit PNG/TIFF.

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

    images = _decode_files(paths, channels, window, bit_depth_16, finish, batch_size)
    return np.concatenate(images).astype("float32", copy=False)


def read_images(paths, channels=3, *, dicom_window="auto", bit_depth_16="scale"):
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
        bit_depth_16: `"scale"` or `"minmax"` for 16-bit PNG/TIFF.

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
    return [image[0] for image in _decode_files(paths, channels, window, bit_depth_16, None, 1)]


def clean_assert_message(message):
    """The reason in a `tf.debugging.Assert` error, without TF's wrapping."""
    match = re.search(r"Summarized data: b'(.*?)'|assertion failed: \[(.*?)\]", message, re.S)
    return next(g for g in match.groups() if g is not None) if match else message


def _check_paths(paths):
    """`paths` as a list of str; every missing file named in one error."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    paths = [os.fsdecode(p) for p in paths]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} image files not found: {missing[:10]}"
            + (" ..." if len(missing) > 10 else "")
        )
    # Only regular files are opened: reading a FIFO named x.png blocks forever.
    special = [p for p in paths if not stat.S_ISREG(os.stat(p).st_mode)]
    if special:
        raise ValueError(
            f"{len(special)} of {len(paths)} paths are not regular files (FIFO, device, "
            f"socket or folder), not opened: {special[:10]}"
            + (" ..." if len(special) > 10 else "")
        )
    return paths


def _decode_files(paths, channels, window, bit_depth_16, finish, batch_size):
    """The one file reader: `load_image` (+ `finish`) over `paths` in a
    parallel `tf.data` map; NumPy batches of `batch_size` in path order."""

    def checked(path):
        image = load_image(path, channels, window, bit_depth_16)
        shape = tf.shape(image)
        check = tf.debugging.Assert(
            tf.reduce_min(shape[:2]) >= MIN_IMAGE_SIZE,
            [tf.strings.format(
                "Image of {}x{} pixels is too small: at least "
                f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} needed", (shape[1], shape[0]))],
        )
        with tf.control_dependencies([check]):
            return tf.identity(image)

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
            f"be decoded (not a PNG, JPEG, BMP, GIF, WebP, TIFF or DICOM image, over the "
            f"pixel budget or under {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels): "
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
