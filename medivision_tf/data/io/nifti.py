"""Reading NIfTI volumes (nibabel) as 2-D uint8 slices, each volume decoded once.

The volume is reoriented to the closest canonical (RAS) orientation,
clipped to its own percentiles of the non-zero voxels (per-volume
normalisation), scaled to 0-255 and cut into slices along `axis`; 4-D series
give their first volume. A decoded volume is cached (least recently used
first out, within a memory budget): each slice is a sample of its own, and
`read_nifti_slice_file` finds the volume of a slice again by the file's
identity without reading and hashing the file again. `nifti_slices` picks the
slices a source lists as samples. This module imports neither TensorFlow nor
Keras.

Example:

```python
import nibabel.testing, os
from medivision_tf.data.io.nifti import nifti_slices, read_nifti

path = os.path.join(nibabel.testing.data_path, "example4d.nii.gz")
read_nifti(path).shape                     # the middle axial slice, uint8
nifti_slices(path, select="middle")        # [k]: the middle slice's index
```
"""

import os
import stat
import threading

import numpy as np

from medivision_tf.data.io.frame_paths import frame_index
from medivision_tf.data.io.headers import (
    DEFAULT_MAX_PIXELS,
    check_header_pixels,
    check_size_budget,
    header_size,
)
from medivision_tf.data.io.memory_budget import DEFAULT_MAX_BYTES, TooLargeError, nifti_raw_bytes
from medivision_tf.data.io.options import check_nifti_axis
from medivision_tf.data.io.scaling import scale
from medivision_tf.data.io.sniff import is_nifti_header, sniff_format

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


def _nifti_volume(data, axis, percentiles, key=None, max_bytes=DEFAULT_MAX_BYTES):
    """The normalised uint8 volume `(slices, H, W)` of NIfTI bytes (cached:
    each slice of a volume is a sample, the volume is decoded once).

    The memory budget `max_bytes` is checked from the header before any
    voxel is inflated (`memory_budget.nifti_raw_bytes`: a `.nii.gz` is
    inflated as a stream, only as far as the voxels its header claims)."""
    import nibabel

    key = key or _nifti_key(data, axis, percentiles)
    cached = _cached_volume(key)
    if cached is not None:
        return cached
    try:
        raw = nifti_raw_bytes(data, max_bytes)  # TooLargeError before any voxel
        if not is_nifti_header(raw[:352]):
            raise ValueError(f"no NIfTI header (first bytes {raw[:8]!r})")
        image = nibabel.Nifti1Image if raw[344:348] in (b"n+1\x00", b"ni1\x00") else nibabel.Nifti2Image
        volume = nibabel.as_closest_canonical(image.from_bytes(raw))
        values = np.asarray(volume.dataobj, dtype="float32")
    except TooLargeError:
        raise
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
    # `scale` clips to 0-255 after scaling: values outside low..high come out
    # as 0 or 255 without clipping them first.
    volume8 = scale(values, float(low), float(high))
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
    return volume[frame_index(len(volume), frame)]


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
    return volume[frame_index(len(volume), frame)]


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
