"""Synthetic lesion images with known lesion boxes.

Each image is textured "tissue" (multi-scale smoothed noise, an organ-like
bright region, a few vessels common to every class) with one lesion at a
random position. Each class has its own lesion pattern, so a classifier has to
look at the lesion to tell the classes apart, and the recorded bounding box
lets us check that heatmaps point at it (pointing game).

Example:

```python
from medivision_tf.data import make_synthetic_lesions

data = make_synthetic_lesions(num_images=8, image_size=64, num_classes=3, seed=0)
data.images.shape    # (8, 64, 64, 1), uint8
data.boxes[0]        # [y_min, x_min, y_max, x_max] in pixels
data.class_names     # ('solid_nodule', 'ring_lesion', 'calcification_cluster')
```
"""

import dataclasses
import os

import cv2
import numpy as np
import pandas as pd

LESION_PATTERNS = (
    "solid_nodule",
    "ring_lesion",
    "calcification_cluster",
    "cystic_lesion",
    "spiculated_mass",
    "striated_lesion",
)


@dataclasses.dataclass
class SyntheticLesions:
    """A batch of synthetic lesion images.

    Attributes:
        images: uint8 array `(n, size, size, 1 | 3)`, raw 0-255 pixels.
        labels: int32 array `(n,)` of class ids.
        boxes: int32 array `(n, 4)`: each lesion's `[y_min, x_min, y_max,
            x_max]` in pixels, max exclusive.
        class_names: one name per class id.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    class_names: tuple

    def __len__(self):
        return len(self.labels)

    def to_frame(self):
        """One row per image: label, class name and lesion box (pandas)."""
        return pd.DataFrame(
            {
                "label": self.labels,
                "class_name": [self.class_names[i] for i in self.labels],
                "y_min": self.boxes[:, 0],
                "x_min": self.boxes[:, 1],
                "y_max": self.boxes[:, 2],
                "x_max": self.boxes[:, 3],
            }
        )

    def to_directory(self, root):
        """Writes `root/CLASS_NAME/synthetic_00000.png` files (the usual Kaggle
        layout) and `root/boxes.csv` naming each file's lesion box.

        Returns:
            The `boxes.csv` table as a DataFrame (paths relative to `root`).
        """
        frame = self.to_frame()
        paths = []
        for index, (image, name) in enumerate(zip(self.images, frame["class_name"])):
            os.makedirs(os.path.join(root, name), exist_ok=True)
            relative = os.path.join(name, f"synthetic_{index:05d}.png")
            bgr = image if image.shape[-1] == 1 else image[..., ::-1]
            if not cv2.imwrite(os.path.join(root, relative), bgr):
                raise OSError(f"Could not write {os.path.join(root, relative)!r}")
            paths.append(relative)
        frame.insert(0, "path", paths)
        frame.to_csv(os.path.join(root, "boxes.csv"), index=False)
        return frame


def make_synthetic_lesions(
    num_images=256,
    image_size=64,
    num_classes=3,
    grayscale=True,
    lesion_size=(0.22, 0.32),
    seed=0,
):
    """Generates synthetic medical-looking images with one lesion each.

    Classes are balanced (labels cycle through the classes, then are
    shuffled). The same seed gives the same images.

    Args:
        num_images: number of images.
        image_size: side of the square images in pixels (>= 28).
        num_classes: number of classes, 2 to 6; class `i` has lesion pattern
            `LESION_PATTERNS[i]`.
        grayscale: 1-channel images (MRI/CT/X-ray-like) if True, else RGB
            with a stain-like tint (histology/fundus-like).
        lesion_size: (min, max) lesion side as a fraction of `image_size`.
        seed: seed of every random draw.

    Returns:
        A `SyntheticLesions`.
    """
    if not isinstance(num_classes, int) or not 2 <= num_classes <= len(LESION_PATTERNS):
        raise ValueError(
            f"`num_classes` must be an integer from 2 to {len(LESION_PATTERNS)}. "
            f"Received: num_classes={num_classes!r}"
        )
    if not isinstance(image_size, int) or image_size < 28:
        raise ValueError(
            f"`image_size` must be an integer >= 28. Received: image_size={image_size!r}"
        )
    if not isinstance(num_images, int) or num_images < 1:
        raise ValueError(
            f"`num_images` must be a positive integer. Received: num_images={num_images!r}"
        )
    low, high = lesion_size
    if not 0.05 <= low <= high <= 0.6:
        raise ValueError(
            "`lesion_size` must be (min, max) fractions with "
            f"0.05 <= min <= max <= 0.6. Received: lesion_size={lesion_size!r}"
        )
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_images) % num_classes).astype("int32")
    channels = 1 if grayscale else 3
    images = np.empty((num_images, image_size, image_size, channels), "uint8")
    boxes = np.empty((num_images, 4), "int32")
    for i, label in enumerate(labels):
        tissue = _tissue(rng, image_size)
        side = int(round(rng.uniform(low, high) * image_size))
        side = max(side, 8)
        y0 = int(rng.integers(0, image_size - side + 1))
        x0 = int(rng.integers(0, image_size - side + 1))
        lesion = _LESION_DRAWERS[label](rng, side)
        lesion = cv2.GaussianBlur(lesion, (3, 3), 0.7)
        contrast = rng.uniform(55, 80)
        tissue[y0 : y0 + side, x0 : x0 + side] += contrast * lesion
        image = np.clip(tissue, 0, 255)
        if not grayscale:
            tint = np.array([1.0, rng.uniform(0.7, 0.8), rng.uniform(0.8, 0.9)])
            image = np.clip(image[..., None] * tint, 0, 255)
        images[i] = image.reshape(image_size, image_size, channels).astype("uint8")
        boxes[i] = (y0, x0, y0 + side, x0 + side)
    return SyntheticLesions(
        images, labels, boxes, tuple(LESION_PATTERNS[:num_classes])
    )


def _tissue(rng, size):
    """Textured background: smooth noise at three scales, an organ, vessels."""
    image = np.zeros((size, size), "float32")
    for cells, weight in ((4, 30.0), (12, 14.0), (size, 6.0)):
        noise = rng.standard_normal((cells, cells)).astype("float32")
        image += weight * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    organ = np.zeros((size, size), "float32")
    center = tuple(int(c) for c in rng.integers(size // 3, 2 * size // 3, 2))
    axes = tuple(int(a) for a in rng.integers(size // 3, size // 2, 2))
    cv2.ellipse(organ, center, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    organ = cv2.GaussianBlur(organ, (0, 0), size / 12)
    image += 95.0 + 30.0 * organ
    vessels = np.zeros((size, size), "float32")
    for _ in range(2):  # present in every class, so not a class cue
        points = rng.integers(0, size, (3, 2)).astype("int32")
        cv2.polylines(vessels, [points], False, 1.0, thickness=max(1, size // 48))
    image += 14.0 * cv2.GaussianBlur(vessels, (0, 0), max(size / 96, 0.6))
    return image


def _disk(rng, side):
    mask = np.zeros((side, side), "float32")
    cv2.circle(mask, (side // 2, side // 2), side // 2 - 1, 1.0, -1)
    return mask


def _ring(rng, side):
    mask = np.zeros((side, side), "float32")
    cv2.circle(mask, (side // 2, side // 2), side // 2 - 1, 1.0, max(2, side // 6))
    return mask


def _calcifications(rng, side):
    mask = np.zeros((side, side), "float32")
    radius = max(1, side // 10)
    for _ in range(6):
        y, x = rng.integers(radius, side - radius, 2)
        cv2.circle(mask, (int(x), int(y)), radius, 1.2, -1)
    return mask


def _cyst(rng, side):
    # Dark (hypodense) center with a thin bright rim.
    mask = -_disk(rng, side)
    cv2.circle(mask, (side // 2, side // 2), side // 2 - 1, 0.8, 1)
    return mask


def _spiculated(rng, side):
    mask = np.zeros((side, side), "float32")
    center = (side // 2, side // 2)
    cv2.circle(mask, center, side // 5, 1.0, -1)
    for angle in rng.uniform(0, 2 * np.pi, 7):
        end = (
            int(center[0] + (side // 2 - 1) * np.cos(angle)),
            int(center[1] + (side // 2 - 1) * np.sin(angle)),
        )
        cv2.line(mask, center, end, 1.0, max(1, side // 12))
    return mask


def _stripes(rng, side):
    mask = np.zeros((side, side), "float32")
    period = max(3, side // 4)
    mask[:, (np.arange(side) % period) < period // 2] = 1.0
    if rng.random() < 0.5:
        mask = mask.T.copy()
    return mask


_LESION_DRAWERS = (_disk, _ring, _calcifications, _cyst, _spiculated, _stripes)
