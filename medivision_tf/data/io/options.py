"""The decode options' allowed values and their checks, and the output geometry's.

One place for what `medivision_tf.config.DecodeOptions` holds (the DICOM
window, the 16-bit mode, the frame choice, the NIfTI axis) and for the image
size, channel count and resize mode of a finished image: every reader checks
its options here, so a bad value is refused with the same message wherever
it enters (when a graph is built, not when it runs). This module imports
neither TensorFlow nor Keras (`config.py` repeats the first choices: it
imports nothing from `data`).

Example:

```python
from medivision_tf.data.io.options import check_size, check_window

check_window("40,400")     # (40.0, 400.0)
check_size(224)            # (224, 224)
```
"""

import numpy as np

BIT_DEPTH_16_MODES = ("auto", "scale", "12bit", "minmax")
DICOM_WINDOWS = ("auto", "minmax")
FRAME_CHOICES = ("first", "middle", "all")
NIFTI_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
RESIZE_MODES = ("pad", "stretch", "crop")


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


def check_nifti_axis(axis):
    """`"axial"` (default), `"coronal"`, `"sagittal"` or 0-2 -> the axis index."""
    if isinstance(axis, str) and axis in NIFTI_AXES:
        return NIFTI_AXES[axis]
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and 0 <= axis <= 2:
        return int(axis)
    raise ValueError(
        f"Unknown NIfTI axis {axis!r}. Choose one of: {', '.join(NIFTI_AXES)} (or 0, 1, 2)."
    )


def check_size(size):
    """Validates an image size: an int or `(height, width)` of positive ints.

    Returns:
        `(height, width)` as ints.

    Raises:
        ValueError: anything else (the message echoes the value).
    """
    if isinstance(size, (int, np.integer)):
        size = (size, size)
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise ValueError(
            "`image_size` must be an int or (height, width) of positive integers. "
            f"Received: image_size={size!r}"
        )
    return height, width


def check_channels(channels):
    """Validates a channel count: 1 (grayscale) or 3 (RGB); returns it.

    Raises:
        ValueError: anything else.
    """
    if channels not in (1, 3):
        raise ValueError(
            f"`channels` must be 1 (grayscale) or 3 (RGB). Received: channels={channels!r}"
        )
    return channels


def check_resize(resize):
    """Validates a resize mode: `"pad"`, `"stretch"` or `"crop"`; returns it."""
    if resize not in RESIZE_MODES:
        raise ValueError(
            f"Unknown resize mode {resize!r}. Choose one of: {', '.join(RESIZE_MODES)}."
        )
    return resize
