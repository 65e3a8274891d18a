"""Image sizes from TIFF/DICOM/NIfTI headers, and reading only regular files.

The Python half of the pixel budget (`decode.check_pixel_budget` reads PNG,
GIF, BMP and JPEG headers in the graph): `formats.python_decode` calls
`check_header_pixels` before any TIFF/DICOM/NIfTI pixel is read, and `scan`
reads sizes with `header_size`. `read_head` opens a file only when it is a
regular one (a FIFO named `x.dcm` would block the reader forever). This
module imports neither TensorFlow nor Keras.

Example:

```python
from medivision_tf.data import headers

headers.header_size("slide.tif", "tiff")       # (height, width)
headers.read_head("/dev/zero", 4)              # None: not a regular file
```
"""

import gzip
import io
import os
import stat
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


def read_head(path, length):
    """The first `length` bytes of a regular file, or None (not a regular
    file, or unreadable): opened non-blocking, checked again by `fstat`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with open(fd, "rb") as handle:  # owns and closes fd
        try:
            return handle.read(length) if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except OSError:
            return None


def header_size(source, fmt):
    """(height, width) a TIFF/DICOM header claims (NIfTI: its largest slice
    plane), from a path or bytes, no pixel read; None for other formats.
    The one Python header reader of `check_header_pixels` and `scan`."""
    if fmt in ("dicom", "tiff"):
        source = source if isinstance(source, (str, os.PathLike)) else io.BytesIO(bytes(source))
    if fmt == "dicom":
        import pydicom

        meta = pydicom.dcmread(source, stop_before_pixels=True, force=True)
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
    except Exception:  # a broken header: the decoder names the problem
        return
    check_size_budget(size, max_pixels)


def check_size_budget(size, max_pixels=DEFAULT_MAX_PIXELS):
    """Refuses a header's `(height, width)` over `max_pixels` (None: either
    unknown); the one message of the Python pixel budget.

    Raises:
        ValueError: `height * width > max_pixels`.
    """
    if max_pixels is not None and size is not None and size[0] * size[1] > max_pixels:
        raise ValueError(
            f"Image of {size[1]}x{size[0]} pixels exceeds the pixel budget "
            f"max_pixels={max_pixels} (checked from the header, not decoded)."
        )
