"""Reading TIFF files (tifffile, OpenCV as the fallback) as uint8.

The first page is read; 16-bit pages follow `bit_depth_16` (see
`scaling.to_uint8`), float pages are stretched over their min..max, planar
`(samples, H, W)` layouts give their first plane. This module imports neither
TensorFlow nor Keras.

Example:

```python
import numpy as np, tifffile, tempfile, os
from medivision_tf.data.io.tiff import read_tiff

path = os.path.join(tempfile.mkdtemp(), "x.tif")
tifffile.imwrite(path, np.full((8, 10), 4095, "uint16"))
read_tiff(path)[0, 0]              # 255: 12-bit data in a 16-bit page
```
"""

import io

import numpy as np

from medivision_tf.data.io.scaling import to_uint8

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
