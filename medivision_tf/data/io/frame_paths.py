"""Paths that name one frame or slice of a file: `"scan.dcm#frame=3"`.

Multi-frame DICOM and NIfTI volumes give one 2-D image per sample. A source
lists every frame (`frames="all"`) or NIfTI slice as a sample of its own by
naming it in the path (`with_frame`); the readers split the path again
(`split_frame`) and pick the frame (`frame_index`: an index, or the
`"first"`/`"middle"` choice for a path without one). This module imports
neither TensorFlow nor Keras.

Example:

```python
from medivision_tf.data.io.frame_paths import split_frame, with_frame

with_frame("ct.dcm", 3)            # 'ct.dcm#frame=3'
split_frame("ct.dcm#frame=3")      # ('ct.dcm', 3)
```
"""

import os
import re

_FRAME_SUFFIX = re.compile(r"#frame=(\d+)$")


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


def frame_index(count, frame):
    """The index of `frame` (`"first"`, `"middle"`, `"all"` (its middle), None or an
    index) among `count` frames; an index out of range is a ValueError."""
    if frame in (None, "first"):
        return 0
    if frame in ("middle", "all"):
        return count // 2
    index = int(frame)
    if not 0 <= index < count:
        raise ValueError(f"Frame {index} is out of range: the file has {count} frame(s).")
    return index
