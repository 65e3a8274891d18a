"""TIFF, DICOM and NIfTI bytes -> pixels: the one entry to the Python readers.

`graph_decode.decode_image` calls `python_decode` through
`tf.numpy_function` for the formats TensorFlow cannot decode in the graph;
`scan` calls it directly (so a failure's message is the reader's, not "Graph
execution error"). The header is checked against the pixel budget before any
pixel is read. This module imports neither TensorFlow nor Keras.

Example:

```python
from pydicom.data import get_testdata_file
from medivision_tf.data.io.python_decode import python_decode

data = open(get_testdata_file("CT_small.dcm"), "rb").read()
python_decode(data, "dicom", window=(40, 400)).shape     # (128, 128, 1) float32
```
"""

from medivision_tf.data.io.dicom import read_dicom
from medivision_tf.data.io.headers import DEFAULT_MAX_PIXELS, check_header_pixels
from medivision_tf.data.io.nifti import read_nifti
from medivision_tf.data.io.tiff import read_tiff

#: Formats read in Python (the others TensorFlow decodes in the graph).
PYTHON_FORMATS = ("tiff", "dicom", "nifti")


def python_decode(data, fmt, frame=None, window="auto", bit_depth_16="auto",
                  frames="middle", nifti_axis="axial", percentiles=(1.0, 99.0),
                  max_pixels=DEFAULT_MAX_PIXELS, dtype="float32"):
    """Decodes TIFF/DICOM/NIfTI bytes to float32 `(H, W, C)` (C = 1 or 3).

    `dtype="uint8"` gives the same values as uint8 (`graph_decode` casts them in
    the graph, outside the Python lock that `tf.numpy_function` holds).

    Used by `graph_decode.decode_image` through `tf.numpy_function` and by `scan`
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
