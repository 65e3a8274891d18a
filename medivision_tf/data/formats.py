"""File-format readers in Python: format sniffing, DICOM, TIFF, NIfTI, 16-bit.

`decode` calls these through `tf.numpy_function` for the formats TensorFlow
cannot decode in the graph; scans and tools call them directly. This module
imports neither TensorFlow nor Keras.

**DICOM windowing** (`read_dicom`), pydicom's own pipeline, in this order:

1. PALETTE COLOR images become RGB with `pydicom.pixels.apply_color_lut`;
   color images (RGB, YBR converted to RGB by pydicom) are scaled from
   `BitsStored` bits to 0-255 and never windowed.
2. Grayscale: `apply_modality_lut` (Rescale Slope/Intercept, Modality LUT).
3. `window="auto"`: `apply_voi_lut` (the VOI LUT Sequence if present, else
   the file's first Window Center/Width with its `VOILUTFunction`: LINEAR,
   LINEAR_EXACT or SIGMOID), then the VOI output range (the LUT's
   0..largest entry, or pydicom's window output range from BitsStored and
   the rescale) is mapped linearly to 0-255. A file without VOI information
   is stretched over its own min..max. `window="minmax"`: min..max of the
   modality values. `window=(center, width)`: a linear window
   `[center - width/2, center + width/2]` on the modality values.
4. MONOCHROME1 (white = low) is inverted: `255 - x`.
5. Rounded and clipped to uint8.

**Frames**: multi-frame DICOM and NIfTI volumes give one 2-D image per call;
`frame` picks it (`"first"`, `"middle"` or an index). A path may name a frame
as `"scan.dcm#frame=3"` (`with_frame` / `split_frame`): that is how sources
list every frame (`frames="all"`) or NIfTI slice as a sample of its own.

**16-bit PNG/TIFF** (`to_uint8`): `bit_depth_16="auto"` (default) scales an
image whose maximum is <= 4095 as 12-bit data (`x / 4095 * 255`), otherwise
as 16-bit (`x / 257`); `"scale"` always divides by 257, `"12bit"` always by
4095/255, `"minmax"` stretches each image's own min..max.

Example:

```python
import numpy as np, pydicom
from pydicom.data import get_testdata_file
from medivision_tf.data import formats

path = get_testdata_file("CT_small.dcm")
with open(path, "rb") as handle:
    formats.sniff_format(handle.read(132))       # 'dicom' (its preamble looks like TIFF)
image = formats.read_dicom(path)                 # (128, 128) uint8, the file's own window
soft = formats.read_dicom(path, window=(40, 400))
formats.to_uint8(np.array([0, 4095], "uint16"))  # array([  0, 255], dtype=uint8)
```
"""

import gzip
import io
import os
import re
import stat
import threading

import numpy as np

from medivision_tf.data.headers import (  # noqa: F401  (re-exported)
    DEFAULT_MAX_PIXELS,
    MIN_IMAGE_SIZE,
    check_header_pixels,
    check_size_budget,
    header_size,
    read_head,
)

BIT_DEPTH_16_MODES = ("auto", "scale", "12bit", "minmax")
DICOM_WINDOWS = ("auto", "minmax")
FRAME_CHOICES = ("first", "middle", "all")
NIFTI_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
#: The optional extra that brings pydicom's decoders for compressed DICOM.
DICOM_EXTRA = ("pip install python-gdcm pylibjpeg pylibjpeg-openjpeg pylibjpeg-rle (the [dicom] "
               "extra: pip install -e '.[dicom]' in a checkout)")
_FRAME_SUFFIX = re.compile(r"#frame=(\d+)$")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def sniff_format(data):
    """The image format of a file's first bytes (Python, for scans and tools).

    The DICOM marker (`DICM` at byte 128) wins over whatever the 128-byte
    preamble looks like: many DICOM files are "dual personality" and their
    preamble starts with a TIFF header. A DICOM data set without preamble
    (raw, as some archives store it) is recognised by its first group-0008
    or group-0002 element.

    Args:
        data: the file's bytes (at least its first 352 bytes).

    Returns:
        One of `"jpeg"`, `"png"`, `"bmp"`, `"gif"`, `"webp"`, `"tiff"`,
        `"dicom"`, `"nifti"` (also gzip-compressed), or None when the bytes
        are not an image we can decode.

    Example:

    ```python
    sniff_format(b"II*\\x00" + bytes(124) + b"DICM")   # 'dicom'
    sniff_format(b"\\x89PNG\\r\\n\\x1a\\n")              # 'png'
    ```
    """
    data = bytes(data[:352])
    if data[128:132] == b"DICM":
        return "dicom"
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
    if data[:4] in _TIFF_MAGIC:
        return "tiff"
    if is_raw_dicom(data):
        return "dicom"
    if data[:2] == b"\x1f\x8b" or is_nifti_header(data):
        return "nifti"  # gzip: only NIfTI is read from gzip files
    return None


def is_raw_dicom(data):
    """Whether bytes start like a DICOM data set without preamble.

    The first element is a group 0x0002 or 0x0008 tag, little endian, with
    an explicit VR (two upper-case letters) or a plausible implicit length.
    """
    if len(data) < 8:
        return False
    group = int.from_bytes(data[0:2], "little")
    element = int.from_bytes(data[2:4], "little")
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return False
    vr = data[4:6]
    if vr.isalpha() and vr.isupper():
        return True
    return int.from_bytes(data[4:8], "little") < 1024


def is_nifti_header(data):
    """Whether bytes start with a NIfTI-1 or NIfTI-2 header (either endian)."""
    sizes = {int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")}
    if 348 in sizes and len(data) >= 348:
        return data[344:348] in (b"n+1\x00", b"ni1\x00")
    if 540 in sizes and len(data) >= 8:
        return data[4:8] in (b"n+2\x00", b"ni2\x00")
    return False


def with_frame(path, index):
    """`path` naming one frame (DICOM) or slice (NIfTI): `"x.dcm#frame=3"`."""
    return f"{os.fspath(path)}#frame={int(index)}"


def split_frame(path):
    """`(file_path, frame_index or None)` of a path from `with_frame`.

    Example:

    ```python
    split_frame("ct.dcm#frame=3")   # ('ct.dcm', 3)
    split_frame("ct.dcm")           # ('ct.dcm', None)
    ```
    """
    path = os.fspath(path)
    match = _FRAME_SUFFIX.search(path)
    if match is None:
        return path, None
    return path[: match.start()], int(match.group(1))


def check_frames(frames):
    """Validates a frame choice: `"first"`, `"middle"` or `"all"`."""
    if frames not in FRAME_CHOICES:
        raise ValueError(
            f"Unknown frames {frames!r}. Choose one of: {', '.join(FRAME_CHOICES)}."
        )
    return frames


def check_bit_depth_16(mode):
    """Validates a 16-bit scaling mode (see the module docstring)."""
    if mode not in BIT_DEPTH_16_MODES:
        raise ValueError(
            f"Unknown bit_depth_16 {mode!r}. Choose one of: {', '.join(BIT_DEPTH_16_MODES)}."
        )
    return mode


def check_window(window):
    """Validates a DICOM window; returns it normalized.

    Args:
        window: `"auto"`, `"minmax"` or a `(center, width)` pair with
            width > 0 (also the string `"40,400"`).

    Returns:
        The string unchanged, or `(center, width)` as a tuple of floats.

    Raises:
        ValueError: any other value.

    Example:

    ```python
    check_window([40, 400])    # (40.0, 400.0)
    check_window("40,400")     # (40.0, 400.0)
    ```
    """
    if isinstance(window, str) and window in DICOM_WINDOWS:
        return window
    if isinstance(window, str) and "," in window:
        window = window.split(",")
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


def _frame_index(count, frame):
    if frame in (None, "first"):
        return 0
    if frame in ("middle", "all"):
        return count // 2
    index = int(frame)
    if not 0 <= index < count:
        raise ValueError(f"Frame {index} is out of range: the file has {count} frame(s).")
    return index


def _scale(values, low, high):
    """`values` mapped linearly from `low..high` to uint8 0-255 (rounded, clipped)."""
    values = np.asarray(values)
    if high <= low:
        return np.zeros(values.shape, "uint8")
    table = _small_int_table(values)
    if table is not None:  # 8/16-bit integers: map each possible value once
        offset, possible = table
        return np.take(_scale(possible, low, high), _table_index(values, offset))
    # The same float64 operations in the same order as
    # `clip(round((v - low) / (high - low) * 255))`, in place: one array, not five.
    scaled = np.array(values, "float64")
    scaled -= low
    scaled /= high - low
    scaled *= 255.0
    np.round(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype("uint8")


def _small_int_table(values):
    """`(offset, every value of the dtype)` for 8/16-bit integer arrays larger
    than their dtype's range, else None: an elementwise map is then computed
    on the possible values and indexed (`table[values - offset]`), giving the
    same result for less work on large images."""
    if values.dtype.kind not in "ui" or values.dtype.itemsize > 2:
        return None
    info = np.iinfo(values.dtype)
    if values.size <= 2 * (int(info.max) - int(info.min) + 1):
        return None
    return int(info.min), np.arange(int(info.min), int(info.max) + 1).astype(values.dtype)


def _table_index(values, offset):
    """Indices into a `_small_int_table` table for `values`."""
    return values.astype("int32") - offset if offset else values


def _uint16_table(divisor):
    return np.clip(np.round(np.arange(65536, dtype="uint16") / divisor), 0, 255).astype("uint8")


# uint16 -> uint8 of `to_uint8` for every uint16 value: 16-bit scaling (False)
# and 12-bit scaling (True).
_UINT16_TABLES = {False: _uint16_table(257.0), True: _uint16_table(4095.0 / 255.0)}


def to_uint8(pixels, bit_depth_16="auto"):
    """Any integer/float array to uint8 0-255 (see the module docstring).

    uint8 is returned as is; uint16 follows `bit_depth_16`; anything else
    (int32, float) is stretched over its own min..max.

    Example:

    ```python
    to_uint8(np.array([0, 4095], "uint16"))            # [0, 255]: 12-bit data
    to_uint8(np.array([0, 4095], "uint16"), "scale")   # [0, 16]
    ```
    """
    check_bit_depth_16(bit_depth_16)
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16 and bit_depth_16 != "minmax":
        twelve = bit_depth_16 == "12bit" or (
            bit_depth_16 == "auto" and pixels.size and int(pixels.max()) <= 4095
        )
        divisor = 4095.0 / 255.0 if twelve else 257.0
        if pixels.size > 2 * 65536:  # large: the map of every uint16 value, indexed
            return np.take(_UINT16_TABLES[twelve], pixels)
        return np.clip(np.round(pixels / divisor), 0, 255).astype("uint8")
    values = pixels.astype("float64")
    if values.size == 0:
        return values.astype("uint8")
    return _scale(values, float(values.min()), float(values.max()))


def decoder_plugins(syntax):
    """The pydicom decoder plugins installed for a transfer syntax (names,
    e.g. `("gdcm", "pylibjpeg")`; empty when none, or pydicom has no
    decoder for it)."""
    from pydicom.pixels import get_decoder

    try:
        return tuple(get_decoder(syntax).available_plugins)
    except (NotImplementedError, ValueError, AttributeError):
        return ()


def _dicom_error(dataset, error):
    """A ValueError for a DICOM whose pixels pydicom cannot decode."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    if syntax is not None and syntax.is_compressed and re.search(
        r"plugin|No pixel data decoders|missing required dependencies|not installed|"
        r"is not supported|does not support|Unable to decode", text, re.I
    ):
        plugins = decoder_plugins(syntax)
        twelve_bit = str(syntax) == "1.2.840.10008.1.2.4.51"
        # A plugin that can decode the syntax is installed and failed on the
        # data itself: installing more would not help, the file is damaged.
        capable = "pylibjpeg" in plugins if twelve_bit else bool(plugins)
        if capable and re.search(r"error code|marker|corrupt|truncat|invalid|premature|"
                                 r"unexpected end|damaged", text, re.I):
            return ValueError(
                f"DICOM transfer syntax '{syntax.name}' ({syntax}): the installed decoder "
                f"plugin(s) ({', '.join(plugins)}) failed on this file's compressed pixel data, "
                f"which is damaged or malformed. pydicom said: {text[:300]}"
            )
        if twelve_bit:  # the extra's decoders lack 12-bit
            advice = ("12-bit JPEG Extended needs the pylibjpeg-libjpeg plugin, which the DICOM "
                      "extra does not include (GPLv3): if its licence suits you, "
                      "pip install pylibjpeg pylibjpeg-libjpeg.")
        else:
            advice = f"Install the DICOM extra: {DICOM_EXTRA}."
        # The advice first: reports and consoles may show only the start.
        return ValueError(
            f"DICOM transfer syntax '{syntax.name}' ({syntax}) cannot be decoded: no "
            f"working decoder plugin is installed for it. {advice} pydicom said: {text[:300]}"
        )
    name = f" (transfer syntax '{syntax.name}')" if syntax is not None else ""
    return ValueError(f"Unreadable DICOM{name}: {text[:300]}")


def dicom_frame_count(source):
    """Number of frames of a DICOM file (header only; 1 when not given)."""
    import pydicom

    dataset = pydicom.dcmread(source, force=True, stop_before_pixels=True)
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def read_dicom(source, window="auto", frame="middle", max_pixels=None):
    """Reads one DICOM frame as a radiologist would see it, as uint8.

    See the module docstring for the exact windowing (pydicom's modality LUT,
    VOI LUT / window with its VOILUTFunction, PALETTE COLOR, MONOCHROME1).

    Args:
        source: a file path, or the file's bytes.
        window: `"auto"`, `"minmax"` or a `(center, width)` pair, e.g.
            `(40, 400)` for CT soft tissue, `(-600, 1500)` for lung.
        frame: for multi-frame files: `"first"`, `"middle"` (default) or a
            frame index.
        max_pixels: refuse a header claiming more than this many pixels
            (Rows x Columns) before any pixel is decoded; None (default): no
            limit. `python_decode` passes its budget here, so the header is
            parsed once, not once for the budget and again for the pixels.

    Returns:
        `(H, W)` uint8 array for grayscale, `(H, W, 3)` for color DICOM.

    Raises:
        ValueError: the data is not a readable DICOM image (a compressed
            transfer syntax without decoder names the syntax and the extra
            to install), or `window` is not one of the allowed values.

    Example:

    ```python
    image = read_dicom("scan.dcm", window=(40, 400))   # CT soft-tissue window
    ```
    """
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

    window = check_window(window)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    dataset = None
    try:
        dataset = pydicom.dcmread(source, force=True)
    except Exception as error:  # pydicom raises many types for bad files
        if max_pixels is not None and isinstance(source, io.BytesIO):
            # A header pydicom reads up to the pixels may still claim too much.
            check_header_pixels(source.getvalue(), "dicom", max_pixels)
        raise _dicom_error(dataset, error) from error
    if max_pixels is not None:  # from the parsed header: pixel_array is lazy
        try:
            size = int(dataset.Rows), int(dataset.Columns)
        except Exception:  # a broken header: pydicom names the problem below
            size = None
        check_size_budget(size, max_pixels)
    try:
        if "PixelData" not in dataset and "FloatPixelData" not in dataset and (
            "DoubleFloatPixelData" not in dataset
        ):
            kind = getattr(dataset.get("SOPClassUID"), "name", None) or "unknown SOP class"
            raise ValueError(f"the file has no pixel data ({kind}: not an image)")
        # The function `Dataset.pixel_array` calls, without the property's
        # cache bookkeeping (an id of the pixel data, computed twice per read).
        pixels = pixel_array(dataset)
    except Exception as error:  # pydicom raises many types for bad files
        raise _dicom_error(dataset, error) from error
    frames = max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if frames > 1 and pixels.ndim == (4 if samples > 1 else 3):
        pixels = pixels[_frame_index(frames, frame)]
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        return _palette_to_uint8(pixels, dataset, apply_color_lut)
    if pixels.ndim == 3:  # color: BitsStored bits to 0-255
        if pixels.dtype == np.uint8:
            return pixels
        bits = int(dataset.get("BitsStored", 16) or 16)
        return _scale(pixels, 0.0, float(2**bits - 1))
    # Every step below maps each pixel value on its own, so on a large
    # integer image it runs once per value in the image's min..max and the
    # result is looked up (`_GrayLookup`): the same pixels for less work.
    lookup = _GrayLookup.for_pixels(pixels, dataset)
    values = apply_modality_lut(pixels if lookup is None else lookup.values, dataset)
    if window == "auto":
        low_high = _voi_range(dataset)
        if low_high is not None:
            values = apply_voi_lut(values, dataset)
            low, high = low_high
        else:
            low, high = _min_max(values)
    elif window == "minmax":
        low, high = _min_max(values)
    else:
        center, width = window
        low, high = center - width / 2.0, center + width / 2.0
    scaled = _scale(values, low, high)
    if photometric == "MONOCHROME1":
        scaled = 255 - scaled
    return scaled if lookup is None else lookup.apply(scaled)


class _GrayLookup:
    """The values `min..max` of a large 8/16-bit grayscale image, to run
    `read_dicom`'s per-pixel steps on each value once, then look the image up.

    Exact: the modality LUT, VOI LUT, window, scaling and MONOCHROME1
    inversion each map a pixel by its value alone, and the min..max of the
    modality values that `minmax` needs is reached at the image's own extreme
    values, because Rescale Slope/Intercept is monotonic. A Modality LUT
    Sequence need not be, so such files take the direct path. Written here
    because pydicom applies its LUTs to every pixel.
    """

    def __init__(self, pixels, low):
        self.pixels, self.low = pixels, low
        self.values = np.arange(low, int(pixels.max()) + 1).astype(pixels.dtype)

    @classmethod
    def for_pixels(cls, pixels, dataset):
        """A lookup, or None where the direct path costs no more (small
        images, wide value ranges, other dtypes, a Modality LUT Sequence)."""
        if pixels.dtype.kind not in "ui" or pixels.dtype.itemsize > 2 or pixels.ndim != 2:
            return None
        if pixels.size < 4096 or dataset.get("ModalityLUTSequence"):
            return None
        low = int(pixels.min())
        if int(pixels.max()) - low + 1 > pixels.size // 4:
            return None
        return cls(pixels, low)

    def apply(self, table):
        """The image through `table` (uint8, one entry per value of `values`)."""
        if self.pixels.dtype == np.uint8:  # OpenCV's LUT: several times np.take's speed
            import cv2

            full = np.zeros(256, np.uint8)
            full[self.low: self.low + len(table)] = table
            return cv2.LUT(np.ascontiguousarray(self.pixels), full)
        unsigned = self.pixels.view(np.uint16)  # int16 - low, wrapped into 0..max-low
        return np.take(table, unsigned - np.uint16(self.low % 65536))


def _palette_rgb8(rgb):
    """pydicom's palette output to uint8: 16-bit entries / 257, 8-bit as is."""
    return to_uint8(rgb, "scale") if rgb.dtype == np.uint16 else to_uint8(rgb, "minmax")


def _palette_to_uint8(pixels, dataset, apply_color_lut):
    """PALETTE COLOR indices to uint8 RGB(A) with pydicom's `apply_color_lut`.

    The palette maps each index to a color on its own, and so does the
    conversion of 8/16-bit entries to uint8: for an image larger than its
    index range, the LUT is applied to every possible index once (a table of
    256 or 65536 colors) and the table indexed, the same colors for less work.
    """
    table = _small_int_table(pixels)
    if table is not None:
        offset, possible = table
        colors = apply_color_lut(possible, dataset)
        if colors.dtype in (np.uint8, np.uint16):
            colors = _palette_rgb8(colors)
            if pixels.dtype == np.uint8 and colors.shape[1] in (3, 4):
                # OpenCV's LUT, one channel at a time: about twice np.take's speed.
                import cv2

                pixels = np.ascontiguousarray(pixels)
                return cv2.merge([cv2.LUT(pixels, np.ascontiguousarray(colors[:, c]))
                                  for c in range(colors.shape[1])])
            return np.take(colors, _table_index(pixels, offset), axis=0)
    return _palette_rgb8(apply_color_lut(pixels, dataset))


def _min_max(values):
    values = np.asarray(values)
    if values.dtype.kind not in "uib":  # integers: exact in float64 as they are
        values = values.astype("float64")
    return float(values.min()), float(values.max())


def _voi_range(dataset):
    """The output range of `apply_voi_lut` on this data set, or None when
    it has no usable VOI LUT Sequence or Window Center/Width."""
    sequence = dataset.get("VOILUTSequence")
    if sequence and None not in (sequence[0].get("LUTDescriptor"), sequence[0].get("LUTData")):
        from pydicom.pixels import apply_voi_lut

        # Every entry of the LUT, as pydicom reads LUTData (US values or OW
        # bytes in the file's byte order): the LUT applied to its input range.
        entries, first = int(sequence[0].LUTDescriptor[0]) or 65536, int(
            sequence[0].LUTDescriptor[1])
        data = apply_voi_lut(np.arange(first, first + entries), dataset)
        return (0.0, float(data.max())) if data.size else None
    if dataset.get("WindowCenter") is None or dataset.get("WindowWidth") is None:
        return None
    width = dataset.WindowWidth
    width = float(width[0] if isinstance(width, pydicom_multi()) else width)
    if width <= 0:
        return None
    if dataset.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(dataset.BitsStored)
    if int(dataset.get("PixelRepresentation", 0) or 0) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return (low, high) if low <= high else (high, low)


def pydicom_multi():
    from pydicom.multival import MultiValue

    return (MultiValue, list, tuple)


def read_tiff(source, bit_depth_16="auto"):
    """Reads a TIFF file (first page) as uint8 `(H, W)` or `(H, W, C)` RGB(A).

    tifffile reads it (any compression it supports); OpenCV is the fallback.
    16-bit pages follow `bit_depth_16` (`to_uint8`); float pages are
    stretched min..max.

    Args:
        source: a file path, or the file's bytes.
        bit_depth_16: `"auto"`, `"scale"`, `"12bit"` or `"minmax"`.

    Raises:
        ValueError: neither tifffile nor OpenCV can read it.

    Example:

    ```python
    image = read_tiff("slide.tif")   # uint8
    ```
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
    return to_uint8(np.asarray(pixels), bit_depth_16)


# --- NIfTI ---------------------------------------------------------------

_NIFTI_CACHE = {}  # insertion-ordered: least recently used first
_NIFTI_CACHE_BYTES = 512 * 2**20
_NIFTI_LOCK = threading.Lock()


def _nifti_key(data, axis, percentiles):
    """The cache key of NIfTI bytes: a hash of the contents and the options."""
    import hashlib

    return (hashlib.blake2b(data, digest_size=16).digest(), axis, tuple(percentiles))


def _cached_volume(key):
    """The cached volume under `key` (now the most recently used), or None."""
    with _NIFTI_LOCK:  # tf.data's parallel map calls this from several threads
        if key in _NIFTI_CACHE:
            _NIFTI_CACHE[key] = _NIFTI_CACHE.pop(key)  # most recently used last
            return _NIFTI_CACHE[key]
    return None


def _nifti_volume(data, axis, percentiles, key=None):
    """The normalised uint8 volume `(slices, H, W)` of NIfTI bytes (cached:
    each slice of a volume is a sample, the volume is decoded once)."""
    import nibabel

    key = key or _nifti_key(data, axis, percentiles)
    cached = _cached_volume(key)
    if cached is not None:
        return cached
    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        if not is_nifti_header(raw[:352]):
            raise ValueError(f"no NIfTI header (first bytes {raw[:8]!r})")
        image = nibabel.Nifti1Image if raw[344:348] in (b"n+1\x00", b"ni1\x00") else nibabel.Nifti2Image
        volume = nibabel.as_closest_canonical(image.from_bytes(raw))
        values = np.asarray(volume.dataobj, dtype="float32")
    except Exception as error:
        raise ValueError(f"Unreadable NIfTI ({type(error).__name__}: {error})") from error
    while values.ndim > 3:  # 4-D series: the first volume
        values = values[..., 0]
    if values.ndim < 3:
        values = values.reshape(values.shape + (1,) * (3 - values.ndim))
    if values.size == 0:
        raise ValueError(f"Empty NIfTI volume (shape {values.shape})")
    if not np.isfinite(values).all():  # a check costs a fraction of the copy
        values = np.nan_to_num(values)
    inside = values[values != 0]
    if inside.size:  # `inside` is a copy: percentile may sort it in place
        low, high = np.percentile(inside, percentiles, overwrite_input=True)
    else:
        low, high = np.percentile(values, percentiles)
    if high <= low:
        # One value inside (a binary mask, 0/255): the percentile range
        # collapses; scale from the volume's minimum so the mask stays visible.
        low, high = float(values.min()), float(max(high, values.max()))
    # `_scale` clips to 0-255 after scaling: values outside low..high come out
    # as 0 or 255 without clipping them first.
    volume8 = _scale(values, float(low), float(high))
    # Slices along `axis`, each shown the usual way (rows top to bottom).
    volume8 = np.moveaxis(volume8, axis, 0)
    volume8 = np.ascontiguousarray(np.rot90(volume8, axes=(1, 2)))
    # Least recently used volumes leave first, within a memory budget: a
    # shuffled epoch visits slices of many volumes in turn, and clearing the
    # whole cache would decode a volume again for nearly every slice.
    with _NIFTI_LOCK:
        _NIFTI_CACHE[key] = volume8
        while len(_NIFTI_CACHE) > 1 and (
                sum(v.nbytes for v in _NIFTI_CACHE.values()) > _NIFTI_CACHE_BYTES):
            _NIFTI_CACHE.pop(next(iter(_NIFTI_CACHE)))
    return volume8


# File identity (path, device, inode, size, mtime) + options -> (contents key
# of `_NIFTI_CACHE`, header size): a slice read by path finds its decoded
# volume without reading and hashing the whole file again.
_NIFTI_FILES = {}
_NIFTI_FILE_LOCKS = {}  # one lock per file: its slices wait for one decode


def read_nifti_slice_file(path, frame, axis="axial", percentiles=(1.0, 99.0),
                          max_pixels=DEFAULT_MAX_PIXELS):
    """Slice `frame` of a NIfTI file named by path, as `read_nifti` gives it
    from the file's bytes, reading and decoding the volume once for all its
    slices (the `tf.data` pipeline reads each slice as a sample of its own).

    The decoded volume is found again by the file's identity (path, device,
    inode, size and modification time, as `os.stat` gives them): a file
    changed on disk is read again. The pixel budget is checked on each call,
    from the header size recorded when the volume was read.

    Args:
        path: a local file path (str or bytes).
        frame: a slice index.
        axis, percentiles: see `read_nifti`.
        max_pixels: the pixel budget (`check_header_pixels`; None: no limit).

    Returns:
        `(H, W)` uint8 array, or None when the path is not a regular local
        file holding NIfTI bytes (the caller then decodes the bytes as usual).

    Raises:
        ValueError: an unreadable or empty volume, a slice out of range, or a
            header over the pixel budget, with `python_decode`'s messages.
    """
    path = os.fsdecode(path)
    axis = check_nifti_axis(axis)
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    file_key = (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, axis,
                tuple(percentiles))
    with _NIFTI_LOCK:
        lock = _NIFTI_FILE_LOCKS.setdefault(file_key, threading.Lock())
    with lock:  # slices of one volume decoded in parallel: the first decodes it
        known = _NIFTI_FILES.get(file_key)
        volume = _cached_volume(known[0]) if known else None
        if volume is None:
            with open(path, "rb") as handle:
                data = handle.read()
            if sniff_format(data) != "nifti":
                return None
            check_header_pixels(data, "nifti", max_pixels)
            try:
                size = header_size(data, "nifti")
            except Exception:  # a broken header: the decoder names the problem
                size = None
            key = _nifti_key(data, axis, percentiles)
            volume = _nifti_volume(data, axis, percentiles, key)
            with _NIFTI_LOCK:
                _NIFTI_FILES[file_key] = (key, size)
        else:
            check_size_budget(known[1], max_pixels)
    return volume[_frame_index(len(volume), frame)]


def check_nifti_axis(axis):
    """`"axial"` (default), `"coronal"`, `"sagittal"` or 0-2 -> the axis index."""
    if isinstance(axis, str) and axis in NIFTI_AXES:
        return NIFTI_AXES[axis]
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and 0 <= axis <= 2:
        return int(axis)
    raise ValueError(
        f"Unknown NIfTI axis {axis!r}. Choose one of: {', '.join(NIFTI_AXES)} (or 0, 1, 2)."
    )


def read_nifti(source, axis="axial", frame="middle", percentiles=(1.0, 99.0)):
    """One 2-D slice of a NIfTI volume (`.nii` / `.nii.gz`) as uint8.

    The volume is reoriented to the closest canonical (RAS) orientation,
    clipped to its own `percentiles` of the non-zero voxels (per-volume
    normalisation) and scaled to 0-255; 4-D series give their first volume.

    Args:
        source: a file path, or the file's bytes (gzip-compressed or not).
        axis: `"axial"` (default), `"coronal"`, `"sagittal"` or 0-2.
        frame: `"first"`, `"middle"` (default) or a slice index.
        percentiles: `(low, high)` percentiles clipped to.

    Returns:
        `(H, W)` uint8 array.

    Raises:
        ValueError: not a NIfTI file, an empty volume, or a slice out of range.

    Example:

    ```python
    import nibabel.testing, os
    path = os.path.join(nibabel.testing.data_path, "example4d.nii.gz")
    read_nifti(path).shape
    ```
    """
    data = _read_bytes(source)
    volume = _nifti_volume(data, check_nifti_axis(axis), percentiles)
    return volume[_frame_index(len(volume), frame)]


def nifti_slices(source, axis="axial", select="nonempty", percentiles=(1.0, 99.0)):
    """Slice indices of a NIfTI volume to use as samples.

    Args:
        source: file path or bytes.
        axis: see `read_nifti`.
        select: `"all"`, `"nonempty"` (slices with any non-black pixel after
            normalisation; default), `"middle"` (one) or an int k (the middle
            k slices).

    Returns:
        A list of slice indices (may be empty for an all-black volume).

    Example:

    ```python
    nifti_slices("brain.nii.gz", select=5)   # e.g. [43, 44, 45, 46, 47]
    ```
    """
    data = _read_bytes(source)
    check_header_pixels(data, "nifti")  # before the volume is decoded (ValueError)
    volume = _nifti_volume(data, check_nifti_axis(axis), percentiles)
    count = len(volume)
    if select == "all":
        return list(range(count))
    if select == "nonempty":
        return [i for i in range(count) if volume[i].max() > 0]
    if select == "middle":
        select = 1
    if isinstance(select, (int, np.integer)) and not isinstance(select, bool) and select >= 1:
        k = min(int(select), count)
        start = (count - k) // 2
        return list(range(start, start + k))
    raise ValueError(
        f"Unknown NIfTI slice selection {select!r}. Choose 'all', 'nonempty', 'middle' "
        "or a positive int k (the middle k slices)."
    )


def _read_bytes(source):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    with open(os.fspath(source), "rb") as handle:
        return handle.read()


def python_decode(data, fmt, frame=None, window="auto", bit_depth_16="auto",
                  frames="middle", nifti_axis="axial", percentiles=(1.0, 99.0),
                  max_pixels=DEFAULT_MAX_PIXELS, dtype="float32"):
    """Decodes TIFF/DICOM/NIfTI bytes to float32 `(H, W, C)` (C = 1 or 3).

    `dtype="uint8"` gives the same values as uint8 (`decode` casts them in
    the graph, outside the Python lock that `tf.numpy_function` holds).

    Used by `decode.decode_image` through `tf.numpy_function` and by `scan`
    (so a failure's message is the real reason, not "Graph execution error").
    `frame` (an index, or None: the `frames` choice) picks a frame/slice.
    The header is checked against `max_pixels` before any pixel is decoded
    (`check_header_pixels`; DICOM: `read_dicom` checks Rows x Columns of the
    data set it parses, so the header is parsed once; None: no limit): the
    one pixel-budget check of the Python formats.
    """
    which = frames if frame is None or int(frame) < 0 else int(frame)
    if fmt == "dicom":  # the budget from the header read_dicom parses anyway
        pixels = read_dicom(data, window=window, frame=which, max_pixels=max_pixels)
    elif fmt == "nifti":
        check_header_pixels(data, fmt, max_pixels)
        pixels = read_nifti(data, axis=nifti_axis, frame=which, percentiles=percentiles)
    elif fmt == "tiff":
        check_header_pixels(data, fmt, max_pixels)
        pixels = read_tiff(data, bit_depth_16=bit_depth_16)
    else:
        raise ValueError(f"Not a Python-decoded format: {fmt!r} (tiff, dicom, nifti)")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return pixels.astype(dtype, copy=False)
