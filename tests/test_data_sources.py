"""Sources and decoding on small real files written here (PNG, 16-bit PNG,
JPEG, BMP, GIF, TIFF, DICOM, .npz, CSV)."""

import io
import os

import cv2
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tifffile
from sklearn.datasets import load_digits

import medivision_tf
from medivision_tf import data

from dicom_files import write_dicom  # tests/dicom_files.py


def gradient(height=24, width=32, channels=3):
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 255 // (width - 1)), (y * 255 // (height - 1)), np.full_like(x, 100)]
    return np.stack(planes[:channels], -1).astype("uint8")


def test_png_jpeg_bmp_gif_decode_to_rgb_float(tmp_path):
    from PIL import Image

    image = gradient()
    cv2.imwrite(str(tmp_path / "a.png"), image[..., ::-1])
    cv2.imwrite(str(tmp_path / "a.jpg"), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(str(tmp_path / "a.bmp"), image[..., ::-1])
    Image.fromarray(image).save(tmp_path / "a.gif")
    for name, tolerance in (("a.png", 0), ("a.bmp", 0), ("a.jpg", 6), ("a.gif", 40)):
        decoded = data.load_image(str(tmp_path / name)).numpy()
        assert decoded.dtype == np.float32 and decoded.shape == (24, 32, 3), name
        assert np.abs(decoded - image).mean() <= tolerance, name
    gray = data.load_image(str(tmp_path / "a.png"), channels=1).numpy()
    assert gray.shape == (24, 32, 1)
    expected = image @ np.array([0.2989, 0.587, 0.114])
    np.testing.assert_allclose(gray[..., 0], expected, atol=1.0)


def test_16bit_png_scaled_and_minmax(tmp_path):
    raw = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype("uint16")
    path = str(tmp_path / "x16.png")
    cv2.imwrite(path, raw)
    decoded = data.load_image(path).numpy()
    assert decoded.shape == (24, 32, 3)
    np.testing.assert_allclose(decoded[..., 0], raw / 257.0, atol=1e-3)
    twelve_bit = (raw // 16).astype("uint16")  # 12-bit data in a 16-bit file
    cv2.imwrite(path, twelve_bit)
    dark = data.load_image(path, bit_depth_16="scale").numpy()  # /257 on request
    stretched = data.load_image(path, bit_depth_16="minmax").numpy()
    assert dark.max() < 16.0
    assert stretched.min() == 0.0 and stretched.max() == pytest.approx(255.0)


def test_rgba_and_grayscale_png_channels(tmp_path):
    rgba = np.dstack([gradient(), np.full((24, 32), 128, "uint8")])
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    decoded = data.load_image(str(tmp_path / "rgba.png")).numpy()
    np.testing.assert_array_equal(decoded, gradient())  # alpha dropped
    cv2.imwrite(str(tmp_path / "g.png"), gradient(channels=1)[..., 0])
    rgb = data.load_image(str(tmp_path / "g.png")).numpy()
    assert rgb.shape == (24, 32, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_tiff_8_and_16_bit_via_python_decoder(tmp_path):
    image = gradient()
    tifffile.imwrite(tmp_path / "rgb.tif", image)
    np.testing.assert_array_equal(data.load_image(str(tmp_path / "rgb.tif")).numpy(), image)
    raw = (np.arange(24 * 32).reshape(24, 32) * 80).astype("uint16")
    tifffile.imwrite(tmp_path / "gray16.tiff", raw)
    decoded = data.load_image(str(tmp_path / "gray16.tiff"), channels=1).numpy()
    np.testing.assert_allclose(decoded[..., 0], np.round(raw / 257.0), atol=0)
    # The pipeline decodes TIFF inside tf.data (tf.numpy_function).
    table = data.from_csv(pd.DataFrame({"path": ["rgb.tif"], "label": ["x"]}), root=tmp_path)
    images, _ = next(iter(data.make_dataset(table, image_size=(24, 32), batch_size=1)))
    np.testing.assert_allclose(images[0].numpy(), image, atol=0.5)


def test_dicom_rescale_window_and_monochrome1(tmp_path):
    raw = np.array([[0, 1024 + 40], [1024 - 160, 2000]] * 4, "uint16")  # 8 x 2
    path = str(tmp_path / "ct.dcm")
    write_dicom(path, raw)
    image = data.read_dicom(path)  # HU = raw - 1024, window 40/400 -> [-160, 240]
    np.testing.assert_array_equal(image[:2], [[0, 128], [0, 255]])
    custom = data.read_dicom(path, window=(0, 2000))  # [-1000, 1000]
    assert custom[0, 1] == round((40 + 1000) / 2000 * 255)
    minmax = data.read_dicom(path, window="minmax")
    assert minmax.min() == 0 and minmax.max() == 255
    inverted = str(tmp_path / "mono1.dcm")
    write_dicom(inverted, raw, photometric="MONOCHROME1")
    assert data.read_dicom(inverted)[0, 0] == 255
    # In the graph, from a class-folder tree of DICOM files without extension.
    os.makedirs(tmp_path / "tree" / "ct")
    write_dicom(str(tmp_path / "tree" / "ct" / "1.2.3"), raw)
    table = data.from_dicom(tmp_path / "tree", window=(0, 2000))
    assert table.attrs["dicom_window"] == (0.0, 2000.0) and len(table) == 1
    images, _ = next(iter(data.make_dataset(table, image_size=(8, 2), batch_size=1)))
    assert images.shape == (1, 8, 2, 3)
    assert float(images[0, 0, 1, 0]) == custom[0, 1]
    with pytest.raises(ValueError, match="window"):
        data.read_dicom(path, window=(40, -1))


def test_from_directory_flat_and_presplit(tmp_path):
    for split in ("train", "valid", "test"):
        for cls in ("NORMAL", "PNEUMONIA"):
            os.makedirs(tmp_path / "xr" / split / cls)
            cv2.imwrite(str(tmp_path / "xr" / split / cls / f"{cls}-1.png"), gradient())
    (tmp_path / "xr" / "train" / "NORMAL" / "notes.txt").write_text("not an image")
    table = data.from_directory(tmp_path / "xr")
    assert table.attrs["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert sorted(table["split"].unique()) == ["test", "train", "val"]
    assert len(table) == 6 and table["path"].map(os.path.isabs).all()
    train, val, test = data.by_split(table)
    assert len(train) == len(val) == len(test) == 2
    flat = data.from_directory(tmp_path / "xr" / "train", class_names=["PNEUMONIA", "NORMAL"])
    assert "split" not in flat and list(flat["label"]) == [0, 1]  # given order
    os.makedirs(tmp_path / "xr" / "train" / "EMPTY")
    with pytest.raises(ValueError, match="EMPTY"):
        data.from_directory(tmp_path / "xr" / "train")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.from_directory(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="No class folders"):
        data.from_directory(tmp_path / "xr" / "train" / "NORMAL")


def test_from_csv_single_and_multi_label(tmp_path):
    frame = pd.DataFrame(
        {
            "file": ["a.png", "b.png", "c.png"],
            "finding": ["mass", "normal", "mass"],
            "patient": ["p1", "p1", "p2"],
            "effusion": [1, 0, 1],
            "nodule": [1, 0, 0],
            "findings": ["nodule|effusion", "", "effusion"],
        }
    )
    frame.to_csv(tmp_path / "labels.csv", index=False)
    table = data.from_csv(tmp_path / "labels.csv", path_column="file", label_column="finding",
                          group_column="patient")
    assert table.attrs["class_names"] == ["mass", "normal"]
    assert list(table["label"]) == [0, 1, 0] and list(table["group"]) == ["p1", "p1", "p2"]
    assert table["path"][0] == str(tmp_path / "a.png")
    hot = data.from_csv(frame, root=tmp_path, path_column="file",
                        label_columns=["nodule", "effusion"])
    assert data.is_multi_label(hot) and list(hot["labels"]) == [(0, 1), (), (1,)]
    assert hot.attrs["class_names"] == ["nodule", "effusion"]
    separated = data.from_csv(frame, root=tmp_path, path_column="file",
                              label_column="findings", label_separator="|")
    assert separated.attrs["class_names"] == ["effusion", "nodule"]
    assert list(separated["labels"]) == [(0, 1), (), (0,)]
    numeric = data.from_csv(pd.DataFrame({"path": ["a.png", "b.png"], "label": [2, 0]}),
                            root=tmp_path)
    assert numeric.attrs["class_names"] == ["0", "1", "2"] and list(numeric["label"]) == [2, 0]
    with pytest.raises(ValueError, match="nope"):
        data.from_csv(frame, root=tmp_path, path_column="nope")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        data.from_csv(tmp_path / "missing.csv")
    # Patient and split columns are found without being named (regression:
    # a CSV's `group` column was dropped, so the CLI could not group copies).
    found = data.from_csv(frame, root=tmp_path, path_column="file", label_column="finding")
    assert list(found["group"]) == ["p1", "p1", "p2"]
    assert "group" not in data.from_csv(frame, root=tmp_path, path_column="file",
                                        label_column="finding", group_column=False)
    split = pd.DataFrame({"path": ["a.png", "b.png"], "label": ["x", "y"],
                          "group": ["g1", "g2"], "patient_id": ["q", "q"],
                          "split": ["train", "Test"]})
    split.to_csv(tmp_path / "split.csv", index=False)
    table = data.as_table(str(tmp_path / "split.csv"))
    assert list(table["group"]) == ["g1", "g2"] and list(table["split"]) == ["train", "test"]
    assert "split" not in data.from_csv(split, root=tmp_path, split_column=False)


def test_multi_label_pipeline_gives_multi_hot(tmp_path):
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), gradient())
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "labels": ["x;z", "y"]})
    table = data.from_csv(frame, root=tmp_path, label_column="labels", label_separator=";")
    images, labels = next(iter(data.make_dataset(table, image_size=16, batch_size=2)))
    assert labels.dtype == tf.float32
    np.testing.assert_array_equal(labels.numpy(), [[1, 0, 1], [0, 1, 0]])


def test_npz_medmnist_layout_single_and_multi_label(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (count, 28, 28), dtype="uint8")
        arrays[f"{split}_labels"] = (np.arange(count) % 3).reshape(-1, 1)
    np.savez(tmp_path / "organmnist.npz", **arrays)
    table = data.from_npz(tmp_path / "organmnist.npz", class_names=["liver", "lung", "heart"])
    assert len(table) == 11 and table["split"].value_counts().to_dict() == {"train": 6, "test": 3, "val": 2}
    assert table.attrs["class_names"] == ["liver", "lung", "heart"]
    train = data.make_dataset(table, split="train", image_size=32, batch_size=6, shuffle=False)
    images, labels = next(iter(train))
    assert images.shape == (6, 32, 32, 3) and labels.dtype == tf.int32
    assert list(labels.numpy()) == [0, 1, 2, 0, 1, 2]
    small = data.make_dataset(table, split="val", image_size=28, batch_size=2, channels=1)
    np.testing.assert_array_equal(next(iter(small))[0].numpy()[..., 0], arrays["val_images"])
    chest = {"train_images": rng.integers(0, 255, (4, 28, 28, 3), dtype="uint8"),
             "train_labels": np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]])}
    np.savez(tmp_path / "chestmnist.npz", **chest)
    multi = data.from_npz(tmp_path / "chestmnist.npz")
    assert data.is_multi_label(multi) and multi["labels"][0] == (0, 2)
    _, hot = next(iter(data.make_dataset(multi, image_size=28, batch_size=4, training=False)))
    np.testing.assert_array_equal(hot.numpy(), chest["train_labels"])
    np.savez(tmp_path / "bad.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match="foo"):
        data.from_npz(tmp_path / "bad.npz")


def test_npz_class_names_key_names_the_classes(tmp_path):
    from medivision_tf.cli import main

    digits = load_digits()  # real handwriting (scikit-learn's copy of the UCI set)
    images = (digits.images[:300] * 16).astype("uint8")
    labels = digits.target[:300] % 3
    names = np.array(["zero_three", "one_four", "two_five"])
    np.savez(tmp_path / "named.npz", images=images, labels=labels, class_names=names)
    assert data.from_npz(tmp_path / "named.npz").attrs["class_names"] == list(names)
    # An explicit class_names wins over the key.
    assert data.from_npz(tmp_path / "named.npz", class_names=["a", "b", "c"]).attrs[
        "class_names"] == ["a", "b", "c"]
    np.savez(tmp_path / "short.npz", images=images, labels=labels, class_names=names[:2])
    with pytest.raises(ValueError, match=r"2 class names .* labels up to 2 \(3 classes\)"):
        data.from_npz(tmp_path / "short.npz")
    np.savez(tmp_path / "numbers.npz", images=images, labels=labels, class_names=np.arange(3))
    with pytest.raises(ValueError, match="1-D array of strings; received dtype int64"):
        data.from_npz(tmp_path / "numbers.npz")
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "named.npz"), "--out", str(run), "--image-size", "32",
                 "--backbone", "smallcnn", "--weights", "none", "--epochs", "1",
                 "--fine-tune-epochs", "0", "--batch-size", "32", "--steps-per-epoch", "2",
                 "--lstm-units", "8", "--attention-units", "8", "--quiet"]) == 0
    model = medivision_tf.load_model(str(run / "model.keras"), compile=False)
    assert list(medivision_tf.get_model_config(model).class_names) == list(names)


def test_resize_pad_keeps_aspect_and_stretch_does_not():
    image = tf.fill([20, 40, 3], 200.0)
    padded = data.resize_image(image, (40, 40), mode="pad").numpy()
    assert padded.shape == (40, 40, 3)
    assert padded[:10].max() == 0 and padded[30:].max() == 0  # black bars
    np.testing.assert_allclose(padded[10:30], 200.0)
    stretched = data.resize_image(image, (40, 40), mode="stretch").numpy()
    np.testing.assert_allclose(stretched, 200.0)
    cropped = data.resize_image(tf.reshape(tf.range(20 * 40 * 1, dtype=tf.float32), [20, 40, 1]),
                                (10, 10), mode="crop")
    assert cropped.shape == (10, 10, 1)
    with pytest.raises(ValueError, match="squash"):
        data.resize_image(image, (8, 8), mode="squash")


def test_from_csv_integer_labels_index_class_names():
    """Regression: integer labels plus class_names gave label -1 everywhere."""
    frame = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": [0, 1, 1]})
    table = data.from_csv(frame, class_names=["normal", "tumor"])
    assert list(table["label"]) == [0, 1, 1]
    assert list(table["class_name"]) == ["normal", "tumor", "tumor"]
    # Out-of-range ids stay unknown (scan reports them); CSV strings too.
    frame = pd.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": ["2", "1", "-1"]})
    table = data.from_csv(frame, class_names=["normal", "tumor"])
    assert list(table["label"]) == [-1, 1, -1]
    with pytest.raises(ValueError, match="'unknown_label': 2"):
        data.scan(table, decode=False, verbose=False)
    # Names that are digits still match by name first.
    by_name = data.from_csv(frame.assign(label=["1", "0", "1"]), class_names=["1", "0"])
    assert list(by_name["label"]) == [0, 1, 0]
    assert list(data.from_csv(frame.assign(label=[0, 2, 1]))["label"]) == [0, 2, 1]


def test_finish_image_and_load_images_match_make_dataset(tmp_path):
    wide = gradient(20, 60, 3)                     # 1:3 aspect, padded to a square
    cv2.imwrite(str(tmp_path / "wide.png"), wide[..., ::-1])
    raw = np.array([[0, 1024 + 40], [1024 - 160, 2000]] * 4, "uint16")
    write_dicom(str(tmp_path / "ct.dcm"), raw)
    tifffile.imwrite(tmp_path / "x.tif", gradient(24, 32, 3))
    paths = [str(tmp_path / n) for n in ("wide.png", "ct.dcm", "x.tif")]
    images = data.load_images(paths, 16, channels=3, batch_size=2)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.float32
    assert np.all(images == np.round(images)) and images.min() >= 0 and images.max() <= 255
    assert np.all(images[0, :5] == 0) and np.all(images[0, -5:] == 0)   # pad rows
    assert images[1].max() == 255                                          # DICOM window
    table = data.from_csv(pd.DataFrame({"path": paths, "label": [0, 1, 1]}), root=tmp_path)
    batch, _ = next(iter(data.make_dataset(table, image_size=16, batch_size=3)))
    np.testing.assert_array_equal(images, batch.numpy())
    # finish_image is graph-safe and the one definition make_dataset uses.
    finish = tf.function(lambda image: data.finish_image(image, (16, 16), channels=1))
    gray = finish(tf.constant(wide, tf.uint8)).numpy()
    assert gray.shape == (16, 16, 1) and gray.dtype == np.float32
    np.testing.assert_array_equal(
        data.load_images(paths[0], 16, channels=1)[0], gray)
    assert data.finish_image(np.zeros((2, 8, 8, 4)), 4, 3, "stretch", dtype=tf.uint8).shape == (
        2, 4, 4, 3)
    # Unreadable and missing files are named.
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"1 of 2 image files cannot be decoded.*bad\.png"):
        data.load_images([paths[0], str(tmp_path / "bad.png")], 16)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        data.load_images([str(tmp_path / "nope.png")], 16)
    assert data.load_images([], 8, channels=1).shape == (0, 8, 8, 1)


def test_read_tiff_and_to_channels(tmp_path, monkeypatch):
    from medivision_tf.data.io import tiff as tiff_reader  # the TIFF reader lives in data/io/tiff.py

    image = gradient(8, 10, 3)
    tifffile.imwrite(tmp_path / "x.tif", image)
    opened = []

    def tracking_open(*args, **kwargs):
        handle = open(*args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(tiff_reader, "open", tracking_open, raising=False)
    np.testing.assert_array_equal(data.read_tiff(str(tmp_path / "x.tif")), image)
    assert opened and all(h.closed for h in opened)   # regression: it leaked
    planar = (np.arange(2 * 8 * 10) * 300).reshape(2, 8, 10).astype("uint16")
    tifffile.imwrite(tmp_path / "p.tif", planar[0])
    np.testing.assert_array_equal(
        data.read_tiff((tmp_path / "p.tif").read_bytes(), bit_depth_16="minmax")[0, :2],
        [0, round(300 / planar[0].max() * 255)])
    assert data.to_channels(tf.zeros((5, 6, 4)), 1).shape == (5, 6, 1)
    assert data.to_channels(tf.zeros((2, 5, 6, 1)), 3).shape == (2, 5, 6, 3)
    with pytest.raises(ValueError, match="channels=2"):
        data.to_channels(tf.zeros((5, 6, 3)), 2)
    assert data.check_window([40, 400]) == (40.0, 400.0)
    assert data.inside_root("/data/x/../y.png", "/data")
    assert not data.inside_root("/data/../etc/passwd", "/data")


def test_in_memory_frame_without_root_accepts_absolute_paths(tmp_path):
    import cv2
    import pandas as pd

    from medivision_tf.data import from_csv, make_dataset

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    paths = []
    for i in range(2):
        path = folder / f"img{i}.png"
        cv2.imwrite(str(path), np.full((8, 8), 40 * i, np.uint8))
        paths.append(str(path))
    table = from_csv(pd.DataFrame({"path": paths, "label": ["a", "b"]}))
    images, labels = next(iter(make_dataset(table, image_size=8, channels=1, batch_size=2, shuffle=False)))
    assert images.shape == (2, 8, 8, 1) and sorted(labels.numpy().tolist()) == [0, 1]
