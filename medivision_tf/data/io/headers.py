"""Image sizes from file headers, without decoding: the Python half of the pixel budget.

`image_dimensions` reads `(height, width)` from a PNG, GIF, BMP, JPEG, TIFF,
DICOM or NIfTI header; `header_size` is its TIFF/DICOM/NIfTI part (tifffile
and pydicom read only the header; NIfTI: the largest slice plane of `dim`).
`python_decode` calls `check_header_pixels` before any TIFF/DICOM/NIfTI pixel
is read, and `scan` refuses too large and too small images from these sizes.
(The graph reads PNG/GIF/BMP/JPEG headers itself: `budget.check_pixel_budget`.)
This module imports neither TensorFlow nor Keras.

Example:

```python
from medivision_tf.data.io.headers import header_size, image_dimensions

header_size("slide.tif", "tiff")                          # (height, width)
image_dimensions(open("x.png", "rb").read(64), "png")     # (height, width)
```
"""

import gzip
import io
import os
import struct

#: The pixel budget (height x width) checked from the header before any
#: decode; Pillow's `Image.MAX_IMAGE_PIXELS`. Pass `max_pixels=` to change it.
DEFAULT_MAX_PIXELS = 89_478_485
#: Images with a side below this many pixels are refused by `scan`,
#: `load_images`/`read_images` (prediction, explanation) and the exported
#: `predict_images`: a 1x1 (or 1xN) image padded to the input size holds no
#: picture, yet would get a confident class. (2, not more: thin DICOM
#: localizers of 2xN are real images.)
MIN_IMAGE_SIZE = 2


def header_size(source, fmt):
    """(height, width) a TIFF/DICOM header claims (NIfTI: its largest slice
    plane), from a path or bytes, no pixel read; None for other formats.
    The one Python header reader of `check_header_pixels` and `scan`."""
    if fmt in ("dicom", "tiff"):
        source = source if isinstance(source, (str, os.PathLike)) else io.BytesIO(bytes(source))
    if fmt == "dicom":  # a deflated file is inflated only up to its header
        from medivision_tf.data.io.dicom_budget import read_dicom_header

        meta = read_dicom_header(source)
        return int(meta.Rows), int(meta.Columns)
    if fmt == "tiff":
        import tifffile

        with tifffile.TiffFile(source) as tif:
            shape = tif.pages[0].shape
        return int(shape[0]), int(shape[1])
    if fmt != "nifti":
        return None
    if isinstance(source, (str, os.PathLike)):
        with open(os.fspath(source), "rb") as handle:
            head = handle.read(65536)
    else:
        head = bytes(source)[:65536]
    if head[:2] == b"\x1f\x8b":  # only the header is inflated
        head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(540)
    for order in "<>":
        (sizeof_hdr,) = struct.unpack(order + "i", head[:4])
        if sizeof_hdr in (348, 540):  # NIfTI-1: int16 dim at 40; NIfTI-2: int64 dim at 16
            dims = struct.unpack(order + ("8h" if sizeof_hdr == 348 else "8q"),
                                 head[40:56] if sizeof_hdr == 348 else head[16:80])
            x, y, z = (max(1, int(d)) for d in dims[1:4])
            return max((x, y), (x, z), (y, z), key=lambda hw: hw[0] * hw[1])
    return None


def check_header_pixels(data, fmt, max_pixels=DEFAULT_MAX_PIXELS):
    """Refuses TIFF/DICOM/NIfTI bytes whose header claims more than `max_pixels`.

    tifffile/pydicom read only the header (NIfTI: `dim` of the header, the
    largest of its three slice planes): no pixel is decoded. A header too
    broken to say is left to the decoder, which names the problem.

    Raises:
        ValueError: the header claims more than `max_pixels` pixels.

    Example:

    ```python
    check_header_pixels(open("slide.tif", "rb").read(), "tiff", max_pixels=10_000_000)
    ```
    """
    if max_pixels is None:
        return
    try:
        size = header_size(bytes(data), fmt)
    except ValueError as error:  # a deflated DICOM header over its cap
        if type(error).__name__ == "TooLargeError":
            raise
        return
    except Exception:  # a broken header: the decoder names the problem
        return
    check_size_budget(size, max_pixels)


def check_size_budget(size, max_pixels=DEFAULT_MAX_PIXELS):
    """Refuses a header's `(height, width)` over `max_pixels` (None: either
    unknown); the one message of the Python pixel budget.

    Raises:
        TooLargeError: (a ValueError) `height * width > max_pixels`.
    """
    if max_pixels is not None and size is not None and size[0] * size[1] > max_pixels:
        from medivision_tf.data.io.memory_budget import TooLargeError

        raise TooLargeError(
            f"Image of {size[1]}x{size[0]} pixels exceeds the pixel budget "
            f"max_pixels={max_pixels} (checked from the header, not decoded)."
        )


def image_dimensions(data, fmt):
    """(height, width) from an image file's header, without decoding it.

    Args:
        data: the file's bytes (the first 64 KB are enough except for
            some JPEGs), or, for TIFF and DICOM, also the file's path.
        fmt: its format as given by `sniff.sniff_format`.

    Returns:
        (height, width), or None when the header does not say.
    """
    try:
        if fmt == "png":
            width, height = struct.unpack(">II", data[16:24])
            return height, width
        if fmt == "gif":
            width, height = struct.unpack("<HH", data[6:10])
            return height, width
        if fmt == "bmp":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(height), width
        if fmt == "jpeg":
            return _jpeg_dimensions(data)
        if fmt in ("tiff", "dicom", "nifti"):
            return header_size(data, fmt)
    except Exception:  # a broken header is found by the decode step
        return None
    return None


def _jpeg_dimensions(data):
    offset = 2
    while offset + 9 < len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return height, width
        offset += 2 + length
    return None
