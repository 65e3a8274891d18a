"""Synthetic lesion data: shapes, boxes, determinism, the on-disk layout."""

import cv2
import numpy as np
import pandas as pd
import pytest

from medivision_tf.data import LESION_PATTERNS, make_synthetic_lesions


def test_shapes_labels_and_boxes():
    data = make_synthetic_lesions(num_images=30, image_size=64, num_classes=3, seed=3)
    assert data.images.shape == (30, 64, 64, 1) and data.images.dtype == np.uint8
    assert data.labels.shape == (30,) and set(data.labels) == {0, 1, 2}
    assert np.bincount(data.labels).tolist() == [10, 10, 10]  # balanced
    assert data.class_names == LESION_PATTERNS[:3]
    y0, x0, y1, x1 = data.boxes.T
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y1 <= 64).all() and (x1 <= 64).all()
    assert ((y1 - y0) >= 0.2 * 64).all() and ((x1 - x0) == (y1 - y0)).all()
    assert len(data) == 30


def test_lesion_is_visible_inside_its_box():
    data = make_synthetic_lesions(num_images=40, image_size=64, num_classes=6, seed=4)
    # The lesion changes the pixels in its box: their deviation from the smoothed
    # tissue is far larger than in a random box of tissue of the same size that
    # does not overlap the lesion's box.
    smooth = [cv2.GaussianBlur(img[..., 0].astype("float32"), (0, 0), 6) for img in data.images]
    inside, elsewhere = [], []
    rng = np.random.default_rng(0)
    for img, background, (y0, x0, y1, x1) in zip(data.images, smooth, data.boxes):
        residual = np.abs(img[..., 0] - background)
        inside.append(residual[y0:y1, x0:x1].mean())
        side = y1 - y0
        for _ in range(1000):  # a box of tissue clear of the lesion's box
            ry, rx = rng.integers(0, 64 - side + 1, 2)
            if ry >= y1 or ry + side <= y0 or rx >= x1 or rx + side <= x0:
                break
        else:
            pytest.fail(f"no free {side}x{side} box beside the lesion box {(y0, x0, y1, x1)}")
        elsewhere.append(residual[ry:ry + side, rx:rx + side].mean())
    assert np.mean(inside) > 1.5 * np.mean(elsewhere)
    assert np.mean(np.greater(inside, elsewhere)) >= 0.9  # image by image, too


def test_same_seed_same_data_other_seed_other_data():
    a = make_synthetic_lesions(8, 48, 2, seed=1)
    b = make_synthetic_lesions(8, 48, 2, seed=1)
    c = make_synthetic_lesions(8, 48, 2, seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.images, c.images)


def test_rgb_images_are_tinted():
    data = make_synthetic_lesions(4, 32, 2, grayscale=False, seed=0)
    assert data.images.shape == (4, 32, 32, 3)
    red, green = data.images[..., 0].mean(), data.images[..., 1].mean()
    assert red > green


def test_to_directory_writes_class_folders(tmp_path):
    data = make_synthetic_lesions(6, 32, 3, seed=0)
    frame = data.to_directory(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(data.class_names)
    table = pd.read_csv(tmp_path / "boxes.csv")
    assert list(table.columns) == ["path", "label", "class_name", "y_min", "x_min", "y_max", "x_max"]
    first = cv2.imread(str(tmp_path / table.path[0]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(first, data.images[0][..., 0])
    assert frame.shape[0] == 6


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes=1"),
        ({"num_classes": 7}, "num_classes=7"),
        ({"image_size": 16}, "image_size=16"),
        ({"num_images": 0}, "num_images=0"),
        ({"lesion_size": (0.5, 0.9)}, "lesion_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make_synthetic_lesions(**kwargs)
