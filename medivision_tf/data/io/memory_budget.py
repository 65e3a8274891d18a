"""The memory budget of medical files, checked before anything is decompressed.

The pixel budget (`headers`, `budget`) bounds one 2-D image's height x width.
A NIfTI volume or a multi-frame DICOM can hold many such planes, and a
compressed file can claim far more than it holds: a 1 MB `.nii.gz` whose
header says 6000 x 6000 x 300 int16 voxels, or a 1.5 MB Deflated Explicit VR
Little Endian DICOM of 40000 x 40000 pixels. Here the bytes a file's pixels
will take once decoded are read from its header, and the file is refused
(`TooLargeError`, a `ValueError`) before any of it is inflated or decoded:

- `nifti_decoded_bytes`: voxels x bytes per voxel (at least 4: the float32
  the reader converts to) from the NIfTI-1/2 header; of a `.nii.gz` only the
  header's bytes are inflated.
- `inflate`: zlib/gzip streams inflated in chunks, never past a limit.
- `check_file_budget`: either format's budget from a file's header.
- DICOM (`dicom_budget`): `read_dicom_header` (a deflated file inflated only
  up to its image attributes), `check_dicom_budget` (Rows x Columns x frames
  x samples x bytes), `check_encapsulated_frames` (the sizes JPEG / JPEG-LS /
  JPEG 2000 code streams claim) and `inflated_dicom` (a deflated file as the
  same data set in Explicit VR Little Endian, inflated as a capped stream).

`DEFAULT_MAX_BYTES` is the budget (1 GiB of decoded pixel data per file).
This module imports neither TensorFlow nor Keras.

Example:

```python
import gzip, struct
from medivision_tf.data.io.memory_budget import TooLargeError, check_nifti_budget

header = bytearray(352)
header[0:4] = struct.pack("<i", 348)
header[40:56] = struct.pack("<8h", 3, 6000, 6000, 300, 1, 1, 1, 1)
header[70:74] = struct.pack("<hh", 4, 16)            # int16
header[108:112] = struct.pack("<f", 352.0)
header[344:348] = b"n+1\\x00"
try:
    check_nifti_budget(gzip.compress(bytes(header)))
except TooLargeError as error:
    print(error)                                      # ... refused before decompressing
```
"""

import math
import os
import struct
import zlib

#: The memory budget: the most bytes one file's decoded pixel data may take
#: (1 GiB: a 512 x 512 x 1000 int16 CT volume takes half of it).
DEFAULT_MAX_BYTES = 2 ** 30
#: The most bytes of a deflated DICOM inflated to read its header.
HEADER_CAP = 64 * 2 ** 20
_CHUNK = 2 ** 20
# NIfTI datatype codes -> names (bytes per voxel come from bitpix).
_NIFTI_TYPES = {2: "uint8", 4: "int16", 8: "int32", 16: "float32", 32: "complex64",
                64: "float64", 128: "rgb24", 256: "int8", 512: "uint16", 768: "uint32",
                1024: "int64", 1280: "uint64", 1536: "float128", 1792: "complex128",
                2048: "complex256", 2304: "rgba32"}


class TooLargeError(ValueError):
    """A file whose decoded pixels would exceed the memory or pixel budget
    (a `ValueError`: `scan` reports it as `too_large`)."""


def check_max_bytes(max_bytes):
    """Validates a memory budget: a positive int or None (no limit); returns it.

    Raises:
        ValueError: anything else.
    """
    if max_bytes is None:
        return None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(
            f"`max_bytes` must be a positive integer or None. Received: max_bytes={max_bytes!r}")
    return max_bytes


def _size_text(nbytes):
    return f"{nbytes / 2 ** 30:.1f} GiB" if nbytes >= 2 ** 30 else f"{nbytes / 2 ** 20:.1f} MiB"


def _refuse(what, nbytes, max_bytes):
    raise TooLargeError(
        f"{what} would take {_size_text(nbytes)} decoded: more than the memory budget "
        f"max_bytes={max_bytes} ({_size_text(max_bytes)}); refused from the header, "
        "before decompressing.")


# === Streams ===


def inflate(data, limit, wbits=-zlib.MAX_WBITS, *, what="compressed data", truncate=False):
    """Inflates a zlib, raw deflate (`wbits=-15`) or gzip (`wbits=31`) stream
    in 1 MiB chunks, never holding more than `limit` inflated bytes.

    Args:
        data: the compressed bytes (or a memoryview of them).
        limit: the most bytes to inflate.
        wbits: zlib's `wbits` (gzip: several members are read in turn).
        what: the data's name, for the error message.
        truncate: True: stop at `limit` and return what was inflated (a
            reader that needs only the first `limit` bytes); False: refuse a
            stream that inflates to more (`TooLargeError`).

    Returns:
        The inflated bytes (a truncated or damaged stream gives what it held).

    Raises:
        TooLargeError: the stream inflates to more than `limit` bytes.
        ValueError: not a valid stream at all.

    Example:

    ```python
    import gzip
    inflate(gzip.compress(b"x" * 100), 1000, wbits=31)   # b"xxx..."
    ```
    """
    view = memoryview(data)
    pieces, total, pos = [], 0, 0
    inflater = zlib.decompressobj(wbits)
    while True:
        if inflater.unconsumed_tail:
            source = inflater.unconsumed_tail
        elif pos < len(view):
            source, pos = view[pos:pos + _CHUNK], pos + _CHUNK
        else:
            break
        try:
            piece = inflater.decompress(source, limit + 1 - total)
        except zlib.error as error:
            if total:  # damaged after some data: the reader names the problem
                break
            raise ValueError(f"{what}: not a valid compressed stream ({error})") from error
        pieces.append(piece)
        total += len(piece)
        if total > limit:
            if truncate:
                pieces[-1] = piece[: len(piece) - (total - limit)]
                break
            raise TooLargeError(
                f"{what} inflates to more than {_size_text(limit)} (the memory budget): "
                "refused while inflating.")
        if inflater.eof:
            rest = inflater.unused_data + bytes(view[pos:])
            if wbits > 16 + 8 and rest[:2] == b"\x1f\x8b":  # another gzip member
                view, pos, inflater = memoryview(rest), 0, zlib.decompressobj(wbits)
                continue
            break
    return b"".join(pieces)


# === NIfTI ===


def nifti_header_info(data):
    """`(dims, dtype name, bytes per voxel, vox_offset)` from NIfTI bytes
    (`.nii.gz`: only the header is inflated), or None when there is no
    readable NIfTI-1/2 header."""
    head = bytes(data[:65536])
    if head[:2] == b"\x1f\x8b":
        try:
            head = inflate(head, 544, 31, truncate=True)
        except ValueError:
            return None
    for order in "<>":
        if len(head) < 4:
            return None
        (sizeof_hdr,) = struct.unpack(order + "i", head[:4])
        if sizeof_hdr == 348 and len(head) >= 348:
            dims = struct.unpack(order + "8h", head[40:56])
            datatype, bitpix = struct.unpack(order + "hh", head[70:74])
            (offset,) = struct.unpack(order + "f", head[108:112])
        elif sizeof_hdr == 540 and len(head) >= 540:
            datatype, bitpix = struct.unpack(order + "hh", head[12:16])
            dims = struct.unpack(order + "8q", head[16:80])
            (offset,) = struct.unpack(order + "q", head[168:176])
        else:
            continue
        if not 1 <= dims[0] <= 7 or any(d < 0 for d in dims[1:dims[0] + 1]) or bitpix < 1:
            return None
        shape = tuple(max(1, int(d)) for d in dims[1:dims[0] + 1])
        if not math.isfinite(offset) or offset < 0:
            return None
        return shape, _NIFTI_TYPES.get(datatype, f"type {datatype}"), (bitpix + 7) // 8, int(offset)
    return None


def nifti_decoded_bytes(data):
    """The bytes a NIfTI volume takes once decoded: voxels x max(bytes per
    voxel, 4) (the reader converts to float32), from the header; None when
    the header is unreadable (the reader then names the problem)."""
    info = nifti_header_info(data)
    if info is None:
        return None
    shape, _, itemsize, _ = info
    return math.prod(shape) * max(itemsize, 4)


def check_nifti_budget(data, max_bytes=DEFAULT_MAX_BYTES):
    """Refuses NIfTI bytes (or a `.nii.gz`) whose header claims more decoded
    bytes than `max_bytes`, before any voxel is inflated or read.

    Returns:
        The header's `nifti_header_info` (None: unreadable header).

    Raises:
        TooLargeError: the volume would exceed the budget.
    """
    info = nifti_header_info(data)
    if info is None or check_max_bytes(max_bytes) is None:
        return info
    shape, dtype, itemsize, _ = info
    nbytes = math.prod(shape) * max(itemsize, 4)
    if nbytes > max_bytes:
        # Counted as read: voxels narrower than float32 become float32.
        read_as = "" if itemsize >= 4 else ", read as float32,"
        _refuse(f"NIfTI volume of {'x'.join(map(str, shape))} {dtype} voxels{read_as}", nbytes,
                max_bytes)
    return info


def nifti_raw_bytes(data, max_bytes=DEFAULT_MAX_BYTES):
    """The uncompressed NIfTI file (`.nii.gz` inflated), after the budget
    check, inflating no more than the header plus the voxels it claims."""
    info = check_nifti_budget(data, max_bytes)
    if data[:2] != b"\x1f\x8b":
        return bytes(data)
    if info is None:  # unreadable header: a little is enough for the reader's message
        return inflate(data, 65536, 31, what="gzip file", truncate=True)
    shape, _, itemsize, offset = info
    if offset > HEADER_CAP:
        raise TooLargeError(f"NIfTI header: voxels start at byte {offset}, after more than "
                            f"{_size_text(HEADER_CAP)} of extensions: refused before inflating.")
    needed = max(offset, 352) + math.prod(shape) * itemsize
    return inflate(data, needed, 31, what="NIfTI .nii.gz", truncate=True)


def check_file_budget(source, fmt, max_bytes=DEFAULT_MAX_BYTES):
    """The memory budget of a DICOM or NIfTI file from its header alone (a
    path, or bytes: for NIfTI the first 64 KB are enough); other formats and
    unreadable headers pass (their readers name the problem).

    Raises:
        TooLargeError: the decoded pixels would exceed `max_bytes`.

    Example:

    ```python
    check_file_budget("bomb.nii.gz", "nifti")      # TooLargeError: ... refused
    ```
    """
    if check_max_bytes(max_bytes) is None:
        return
    if fmt == "nifti":
        if isinstance(source, (str, os.PathLike)):
            with open(os.fspath(source), "rb") as handle:
                source = handle.read(65536)
        check_nifti_budget(source, max_bytes)
    elif fmt == "dicom":
        from medivision_tf.data.io.dicom_budget import check_dicom_budget, read_dicom_header

        try:
            header = read_dicom_header(source)
        except TooLargeError:
            raise
        except Exception:  # not a readable header: the reader says why
            return
        check_dicom_budget(header, max_bytes)
