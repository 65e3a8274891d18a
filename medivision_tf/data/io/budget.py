"""The pixel budget in the graph: image sizes read from PNG/GIF/BMP/JPEG headers.

A decompression bomb (a few KB of PNG claiming 20000x20000 pixels) is refused
before `tf.io.decode_*` allocates its pixels. `graph_decode.decode_image`
calls `check_pixel_budget`; so do the exported `predict_images` signature and
the server. TIFF, DICOM and NIfTI headers are checked in Python, by
`headers.check_header_pixels`, before their pixels are read.

Example:

```python
import tensorflow as tf
from medivision_tf.data.io.budget import check_pixel_budget, header_pixels

png = tf.io.encode_png(tf.zeros((6, 4, 1), tf.uint8))
int(header_pixels(png))                              # 24
tf.io.decode_png(check_pixel_budget(png, max_pixels=100))
```
"""

import numpy as np
import tensorflow as tf

from medivision_tf.data.io.headers import DEFAULT_MAX_PIXELS

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


def header_pixels(contents, fmt=None):
    """Height x width read from a PNG, GIF, BMP or JPEG header (graph ops only).

    Reads the PNG IHDR, the GIF logical screen, the BMP info header or the
    JPEG frame header (`tf.image.extract_jpeg_shape`): nothing is decoded.

    Args:
        contents: scalar `tf.string`, an encoded image file.
        fmt: None (the format is read from the bytes), or `"png"`, `"gif"`,
            `"bmp"` or `"jpeg"` when every file is known to be one (a
            `tf.data` map then runs that reader alone, without `tf.case`).

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

    readers = {"png": png, "gif": gif, "bmp": bmp, "jpeg": jpeg}
    if fmt is not None:
        if fmt not in readers:
            raise ValueError(
                f"Unknown header format {fmt!r}. Choose one of: {', '.join(readers)} or None."
            )
        return readers[fmt]()
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


def check_max_pixels(max_pixels):
    """Validates a pixel budget: a positive int or None; returns it.

    Raises:
        ValueError: anything else.
    """
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(
            f"`max_pixels` must be a positive integer or None. Received: max_pixels={max_pixels!r}"
        )
    return max_pixels


def check_pixel_budget(contents, max_pixels=DEFAULT_MAX_PIXELS, fmt=None):
    """Refuses (in the graph) an encoded image whose header claims too many pixels.

    A decompression bomb (a few KB of PNG claiming 20000x20000 pixels) is
    refused before `tf.io.decode_*` allocates its pixels: the header is read
    with `header_pixels`. `decode_image` calls it; so do the exported
    `predict_images` signature and the server.

    Args:
        contents: scalar `tf.string`, an encoded image.
        max_pixels: the largest allowed height x width (default
            `DEFAULT_MAX_PIXELS`, Pillow's limit); None: no check.
        fmt: the format, when known (see `header_pixels`).

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
    if check_max_pixels(max_pixels) is None:
        return contents
    pixels = header_pixels(contents, fmt)
    check = tf.debugging.Assert(
        pixels <= int(max_pixels),
        [tf.strings.format(
            "Image header claims {} pixels: more than the pixel budget "
            f"max_pixels={int(max_pixels)} (not decoded)", pixels)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(contents)
