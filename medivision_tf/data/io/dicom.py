"""Reading DICOM pixels as a radiologist would see them (pydicom), as uint8.

**Windowing** (`read_dicom`), pydicom's own pipeline, in this order:

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

**Frames**: a multi-frame file gives one 2-D image per call; `frame` picks
it (`"first"`, `"middle"` or an index; see `frame_paths`). A compressed
transfer syntax without a working decoder plugin is refused with the pip
command that installs one (`DICOM_EXTRA`). This module imports neither
TensorFlow nor Keras.

Example:

```python
from pydicom.data import get_testdata_file
from medivision_tf.data.io.dicom import read_dicom

path = get_testdata_file("CT_small.dcm")
image = read_dicom(path)                         # (128, 128) uint8, the file's own window
soft = read_dicom(path, window=(40, 400))        # CT soft tissue
```
"""

import io
import re

import numpy as np

from medivision_tf.data.io.frame_paths import frame_index
from medivision_tf.data.io.headers import check_header_pixels, check_size_budget
from medivision_tf.data.io.dicom_budget import (
    check_dicom_budget,
    check_encapsulated_frames,
    inflated_dicom,
    read_dicom_header,
)
from medivision_tf.data.io.memory_budget import DEFAULT_MAX_BYTES, TooLargeError
from medivision_tf.data.io.options import check_window
from medivision_tf.data.io.scaling import scale, small_int_table, table_index, to_uint8

#: The optional extra that brings pydicom's decoders for compressed DICOM.
DICOM_EXTRA = ("pip install python-gdcm pylibjpeg pylibjpeg-openjpeg pylibjpeg-rle (the [dicom] "
               "extra: pip install -e '.[dicom]' in a checkout)")


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
    dataset = read_dicom_header(source)
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def read_dicom(source, window="auto", frame="middle", max_pixels=None,
               max_bytes=DEFAULT_MAX_BYTES):
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
        max_bytes: the memory budget (`memory_budget.DEFAULT_MAX_BYTES`, 1
            GiB; None: no limit): a file whose decoded pixels (all frames)
            would take more is refused from its header; a deflated file is
            inflated as a stream that stops at the budget, and compressed
            frames are refused from their code streams' headers.

    Returns:
        `(H, W)` uint8 array for grayscale, `(H, W, 3)` for color DICOM.

    Raises:
        TooLargeError: (a ValueError) over `max_bytes` or `max_pixels`.
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
        # Deflated: both budgets from the header, then stream-inflated (capped).
        source = inflated_dicom(source, max_bytes, max_pixels)
        dataset = pydicom.dcmread(source, force=True)
    except TooLargeError:
        raise
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
    check_dicom_budget(dataset, max_bytes)  # all frames, before pixel_array
    check_encapsulated_frames(dataset, max_bytes)
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
        pixels = pixels[frame_index(frames, frame)]
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        return _palette_to_uint8(pixels, dataset, apply_color_lut)
    if pixels.ndim == 3:  # color: BitsStored bits to 0-255
        if pixels.dtype == np.uint8:
            return pixels
        bits = int(dataset.get("BitsStored", 16) or 16)
        return scale(pixels, 0.0, float(2**bits - 1))
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
    scaled = scale(values, low, high)
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
    table = small_int_table(pixels)
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
            return np.take(colors, table_index(pixels, offset), axis=0)
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
