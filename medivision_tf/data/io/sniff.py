"""The image format of a file's first bytes: sniffed, never read from the name.

`sniff_format` recognises JPEG, PNG, BMP, GIF, WebP, TIFF, DICOM (with or
without its 128-byte preamble) and NIfTI (plain or gzip-compressed). The
`DICM` marker at byte 128 is tested before any other magic number: many
DICOM files are "dual personality" and their preamble starts with a TIFF
header. (The graph-side twin of this test is `graph_decode._sniff_kind`.)
This module imports neither TensorFlow nor Keras.

Example:

```python
from medivision_tf.data.io.sniff import sniff_format

sniff_format(b"II*\\x00" + bytes(124) + b"DICM")   # 'dicom'
sniff_format(b"\\x89PNG\\r\\n\\x1a\\n")              # 'png'
```
"""

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
