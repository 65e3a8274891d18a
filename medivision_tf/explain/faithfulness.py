"""Faithfulness of explanation maps against known lesion boxes.

Boxes are `[y_min, x_min, y_max, x_max]` in pixels of the map, max exclusive
(the format of `medivision_tf.data.make_synthetic_lesions`).
"""

import numpy as np


def _check(maps, boxes):
    maps = np.asarray(maps, dtype="float64")
    boxes = np.asarray(boxes)
    if maps.ndim != 3:
        raise ValueError(
            f"`maps` must be (n, height, width). Received shape: {maps.shape}"
        )
    if boxes.shape != (len(maps), 4):
        raise ValueError(
            f"`boxes` must be (n, 4) [y_min, x_min, y_max, x_max] with n = "
            f"{len(maps)} (one per map). Received shape: {boxes.shape}"
        )
    return maps, boxes.astype("int64")


def _box_masks(boxes, height, width):
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    y0, x0, y1, x1 = (boxes[:, i, None, None] for i in range(4))
    return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)


def pointing_game(maps, boxes, tolerance=0):
    """Whether each map's peak lies inside its box (the pointing game).

    Args:
        maps: `(n, height, width)` explanation maps.
        boxes: `(n, 4)` boxes `[y_min, x_min, y_max, x_max]`, max exclusive.
        tolerance: pixels the box is grown by on each side (the original
            pointing game allows 15 at 224x224); 0 is strict.

    Returns:
        bool NumPy array `(n,)`; its mean is the hit rate. A map without a
        unique peak counts its first maximum (row-major), so an all-zero map
        points at the top-left corner.

    Example:

    ```python
    pointing_game(maps, data.boxes).mean()   # hit rate
    ```
    """
    maps, boxes = _check(maps, boxes)
    n, height, width = maps.shape
    peaks = maps.reshape(n, -1).argmax(axis=1)
    y, x = np.unravel_index(peaks, (height, width))
    grown = boxes + np.array([-tolerance, -tolerance, tolerance, tolerance])
    return (y >= grown[:, 0]) & (y < grown[:, 2]) & (x >= grown[:, 1]) & (x < grown[:, 3])


def energy_in_box(maps, boxes):
    """Share of each map's total value that falls inside its box.

    Args:
        maps: `(n, height, width)` non-negative explanation maps.
        boxes: `(n, 4)` boxes `[y_min, x_min, y_max, x_max]`, max exclusive.

    Returns:
        float NumPy array `(n,)` in [0, 1]; 0 for an all-zero map. A map
        spread evenly scores the box's share of the image (`box_area_share`).

    Example:

    ```python
    energy_in_box(maps, data.boxes).mean()
    ```
    """
    maps, boxes = _check(maps, boxes)
    inside = _box_masks(boxes, *maps.shape[1:])
    total = maps.sum(axis=(1, 2))
    kept = np.where(inside, maps, 0.0).sum(axis=(1, 2))
    return np.divide(kept, total, out=np.zeros_like(total), where=total > 0)


def box_area_share(boxes, image_size):
    """Each box's share of the image area: the chance level of both the
    pointing game (a random peak) and `energy_in_box` (a flat map).

    Args:
        boxes: `(n, 4)` boxes `[y_min, x_min, y_max, x_max]`.
        image_size: `(height, width)` of the image.
    """
    height, width = image_size
    boxes = np.asarray(boxes)
    return _box_masks(boxes, height, width).sum(axis=(1, 2)) / float(height * width)


def map_correlation(maps_a, maps_b):
    """Pearson correlation of two sets of maps, image by image.

    Returns:
        float NumPy array `(n,)`; 0 where a map is constant.

    Example:

    ```python
    map_correlation(explain(model, x, "gradcam"), attention_maps(model, x)).mean()
    ```
    """
    a = np.asarray(maps_a, "float64").reshape(len(maps_a), -1)
    b = np.asarray(maps_b, "float64").reshape(len(maps_b), -1)
    if a.shape != b.shape:
        raise ValueError(
            f"Maps must have the same shape. Received: {np.shape(maps_a)} and "
            f"{np.shape(maps_b)}"
        )
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.divide((a * b).sum(axis=1), norm, out=np.zeros(len(a)), where=norm > 0)
