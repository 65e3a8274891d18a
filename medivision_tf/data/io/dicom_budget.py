"""DICOM under the memory budget: headers read and pixels sized before anything is inflated.

pydicom inflates a whole Deflated Explicit VR Little Endian file before it
parses even the header (a 1.5 MB file of 40000 x 40000 pixels: 1.6 GB), and
decodes every frame of compressed pixel data at once. Here:

- `read_dicom_header`: a data set without its pixels; a deflated one is
  inflated only up to its image attributes (group 0028, at most
  `memory_budget.HEADER_CAP` bytes).
- `dicom_decoded_bytes` / `check_dicom_budget`: Rows x Columns x frames x
  samples x bytes per sample against `max_bytes`.
- `check_encapsulated_frames`: the sizes the JPEG / JPEG-LS / JPEG 2000 code
  streams of compressed pixel data claim, from each frame's own header.
- `inflated_dicom`: a deflated file as the same data set in Explicit VR
  Little Endian, after the header checks, inflated as a stream that stops at
  the budget.

This module imports neither TensorFlow nor Keras.

Example:

```python
from pydicom.data import get_testdata_file
from medivision_tf.data.io.dicom_budget import check_dicom_budget, read_dicom_header

header = read_dicom_header(get_testdata_file("image_dfl.dcm"))   # deflated, 512 x 512
check_dicom_budget(header, max_bytes=2 ** 20)                   # fine: 256 KiB of pixels
```
"""

import io
import os
import struct

from medivision_tf.data.io.memory_budget import (
    DEFAULT_MAX_BYTES,
    HEADER_CAP,
    TooLargeError,
    _refuse,
    _size_text,
    check_max_bytes,
    inflate,
)

_DEFLATED = "1.2.840.10008.1.2.1.99"


def _open(source):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        return open(os.fspath(source), "rb"), True
    return source, False


def _read_meta(handle):
    """`(file meta Dataset or None, offset of the data set)` of an open file."""
    from pydicom.filereader import read_dataset, read_preamble

    start = handle.tell()
    try:
        preamble = read_preamble(handle, True)
    except Exception:
        handle.seek(start)
        return None, start
    if preamble is None:
        return None, handle.tell()
    meta = read_dataset(handle, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    return meta, handle.tell()


def _is_deflated(meta):
    return meta is not None and str(meta.get("TransferSyntaxUID", "")).rstrip("\0 ") == _DEFLATED


def read_dicom_header(source):
    """A DICOM data set without its pixel data (header only), from a path,
    bytes or an open binary file.

    Plain files are read by pydicom with `stop_before_pixels=True`. A
    Deflated Explicit VR Little Endian file is inflated only as far as its
    image attributes (group 0028), at most `HEADER_CAP` bytes, where pydicom
    would inflate the whole file first.

    Raises:
        TooLargeError: a deflated header larger than `HEADER_CAP`.
        Exception: pydicom's own errors for files that are not DICOM.

    Example:

    ```python
    from pydicom.data import get_testdata_file
    read_dicom_header(get_testdata_file("CT_small.dcm")).Rows        # 128
    ```
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.filereader import read_dataset

    handle, own = _open(source)
    try:
        start = handle.tell()
        meta, offset = _read_meta(handle)
        if not _is_deflated(meta):
            handle.seek(start)
            return pydicom.dcmread(handle, stop_before_pixels=True, force=True)
        handle.seek(offset)
        stream = handle.read()
    finally:
        if own:
            handle.close()
    size = 65536
    while True:
        head = inflate(stream, size, what="deflated DICOM", truncate=True)
        complete = len(head) < size
        passed = []  # set once an element past group 0028 (the image attributes) is seen

        def stop(tag, vr, length):
            if tag > 0x0028FFFF:
                passed.append(tag)
                return True
            return False

        try:
            dataset = read_dataset(io.BytesIO(head), False, True, stop_when=stop)
            if complete or passed:
                break
        except Exception:
            if complete:
                raise
        if size >= HEADER_CAP:
            raise TooLargeError(
                f"deflated DICOM header larger than {_size_text(HEADER_CAP)} inflated: refused "
                "while inflating.")
        size = min(size * 8, HEADER_CAP)
    dataset.file_meta = FileMetaDataset(meta)
    dataset.set_original_encoding(False, True, dataset.get("SpecificCharacterSet", "iso8859"))
    return dataset


def dicom_decoded_bytes(dataset):
    """Rows x Columns x frames x samples x bytes per sample of a DICOM header;
    None when it has no image attributes."""
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except Exception:
        return None
    frames = _int(dataset.get("NumberOfFrames"), 1)
    samples = _int(dataset.get("SamplesPerPixel"), 1)
    bits = _int(dataset.get("BitsAllocated"), 8)
    return rows * columns * frames * samples * max(1, (bits + 7) // 8)


def _int(value, default):
    try:
        return max(1, int(value)) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def check_dicom_budget(dataset, max_bytes=DEFAULT_MAX_BYTES):
    """Refuses a DICOM header whose pixel data would take more than
    `max_bytes` decoded (`dicom_decoded_bytes`).

    Raises:
        TooLargeError: over the budget.
    """
    if check_max_bytes(max_bytes) is None:
        return
    nbytes = dicom_decoded_bytes(dataset)
    if nbytes is not None and nbytes > max_bytes:
        frames = _int(dataset.get("NumberOfFrames"), 1)
        what = (f"DICOM of {int(dataset.Columns)}x{int(dataset.Rows)} pixels"
                + (f" x {frames} frames" if frames > 1 else ""))
        _refuse(what, nbytes, max_bytes)


def inflated_dicom(source, max_bytes=DEFAULT_MAX_BYTES, max_pixels=None):
    """A DICOM file ready for `pydicom.dcmread` under the memory budget.

    A Deflated Explicit VR Little Endian file comes back as a `BytesIO` of
    the same data set in Explicit VR Little Endian: its header is checked
    against `max_bytes` first (`read_dicom_header`), then the stream is
    inflated in chunks and refused past the header plus the budget. Any
    other source comes back unchanged.

    Raises:
        TooLargeError: the pixels, or the inflated stream, exceed the budget.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    handle, own = _open(source)
    try:
        start = handle.tell()
        meta, offset = _read_meta(handle)
        handle.seek(start)
        if not _is_deflated(meta):
            return source if own else handle
        header = read_dicom_header(handle)
        check_dicom_budget(header, max_bytes)
        if max_pixels is not None and "Rows" in header and "Columns" in header:
            if int(header.Rows) * int(header.Columns) > max_pixels:
                raise TooLargeError(
                    f"Image of {int(header.Columns)}x{int(header.Rows)} pixels exceeds the pixel "
                    f"budget max_pixels={max_pixels} (checked from the header, not decoded).")
        handle.seek(offset)
        stream = handle.read()
    finally:
        if own:
            handle.close()
    limit = HEADER_CAP + (max_bytes if max_bytes is not None else 2 ** 40)
    body = inflate(stream, limit, what="deflated DICOM")
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    plain = FileMetaDataset(meta)
    plain.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    write_file_meta_info(out, plain, enforce_standard=True)
    out.write(body)
    out.seek(0)
    return out


def _codestream_size(frame):
    """(height, width) a JPEG, JPEG-LS or JPEG 2000 code stream claims, or None."""
    head = bytes(frame[:65536])
    if head[:4] == b"\xff\x4f\xff\x51" and len(head) >= 16:  # J2K SOC + SIZ
        width, height, x0, y0 = struct.unpack(">IIII", head[8:24])
        return height - y0, width - x0
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # JP2 box: find its SIZ
        at = head.find(b"\xff\x4f\xff\x51")
        return _codestream_size(head[at:]) if at >= 0 else None
    if head[:2] != b"\xff\xd8":
        return None
    offset = 2
    while offset + 9 < len(head):
        if head[offset] != 0xFF:
            return None
        marker = head[offset + 1]
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            offset += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", head[offset + 2:offset + 4])
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            return struct.unpack(">HH", head[offset + 5:offset + 9])
        offset += 2 + length
    return None


def check_encapsulated_frames(dataset, max_bytes=DEFAULT_MAX_BYTES):
    """Refuses compressed (encapsulated) pixel data whose JPEG / JPEG-LS /
    JPEG 2000 code streams claim more than `max_bytes` decoded, or another
    size than the header's Rows x Columns, from each frame's own header.

    Raises:
        TooLargeError: a frame's code stream over the budget.
        ValueError: a code stream of another size than Rows x Columns.
    """
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_encapsulated or "PixelData" not in dataset:
        return
    from pydicom.encaps import generate_frames

    frames = _int(dataset.get("NumberOfFrames"), 1)
    samples = _int(dataset.get("SamplesPerPixel"), 1)
    bits = _int(dataset.get("BitsAllocated"), 8)
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        frame_list = generate_frames(dataset.PixelData, number_of_frames=frames)
        for index, frame in enumerate(frame_list):
            size = _codestream_size(frame)
            if size is None:
                continue
            nbytes = size[0] * size[1] * samples * max(1, (bits + 7) // 8) * frames
            if max_bytes is not None and nbytes > max_bytes:
                _refuse(f"compressed DICOM frame {index} of {size[1]}x{size[0]} pixels "
                        f"(x {frames} frames)", nbytes, max_bytes)
            if size != (rows, columns):
                raise ValueError(
                    f"compressed DICOM frame {index} claims {size[1]}x{size[0]} pixels, the "
                    f"header {columns}x{rows}: refused before decoding.")
    except ValueError:
        raise
    except Exception:  # a broken fragment table: pydicom's decoder names it
        return
