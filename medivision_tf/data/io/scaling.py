"""Pixel values to uint8 0-255: 16-bit and 12-bit data, any range stretched.

**16-bit PNG/TIFF** (`to_uint8`): `bit_depth_16="auto"` (default) scales an
image whose maximum is <= 4095 as 12-bit data (`x / 4095 * 255`), otherwise
as 16-bit (`x / 257`); `"scale"` always divides by 257, `"12bit"` always by
4095/255, `"minmax"` stretches each image's own min..max. `scale` maps any
values linearly from `low..high` (a DICOM window, a NIfTI percentile range).
Large 8/16-bit images are mapped through a table of every possible value
(the same pixels for less work). This module imports neither TensorFlow nor
Keras.

Example:

```python
import numpy as np
from medivision_tf.data.io.scaling import to_uint8

to_uint8(np.array([0, 4095], "uint16"))            # array([  0, 255], dtype=uint8)
to_uint8(np.array([0, 4095], "uint16"), "scale")   # array([ 0, 16], dtype=uint8)
```
"""

import numpy as np

from medivision_tf.data.io.options import check_bit_depth_16

def scale(values, low, high):
    """`values` mapped linearly from `low..high` to uint8 0-255 (rounded, clipped)."""
    values = np.asarray(values)
    if high <= low:
        return np.zeros(values.shape, "uint8")
    table = small_int_table(values)
    if table is not None:  # 8/16-bit integers: map each possible value once
        offset, possible = table
        return np.take(scale(possible, low, high), table_index(values, offset))
    # The same float64 operations in the same order as
    # `clip(round((v - low) / (high - low) * 255))`, in place: one array, not five.
    scaled = np.array(values, "float64")
    scaled -= low
    scaled /= high - low
    scaled *= 255.0
    np.round(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype("uint8")


def small_int_table(values):
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


def table_index(values, offset):
    """Indices into a `small_int_table` table for `values`."""
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
    return scale(values, float(values.min()), float(values.max()))
