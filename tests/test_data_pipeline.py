"""make_dataset: shapes and dtypes, seeded determinism, augmentation only
when asked, caching, and argument errors."""

import numpy as np
import pytest
import tensorflow as tf

from medivision_tf import data


@pytest.fixture(scope="module")
def lesion_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesions")
    data.make_synthetic_lesions(24, 40, 3, seed=3).to_directory(str(root))
    return data.from_directory(root)


def first_batch(dataset):
    images, labels = next(iter(dataset))
    return images.numpy(), labels.numpy()


def test_batches_are_raw_float_pixels_with_int_labels(lesion_table):
    dataset = data.make_dataset(lesion_table, image_size=(32, 48), batch_size=8)
    assert dataset.class_names == lesion_table.attrs["class_names"]
    assert dataset.element_spec[0].shape.as_list() == [None, 32, 48, 3]
    assert dataset.element_spec[1].dtype == tf.int32
    images, labels = first_batch(dataset)
    assert images.dtype == np.float32 and images.max() > 100 and images.min() >= 0
    # Not training: no shuffle, no augmentation -> table order and exact pixels.
    np.testing.assert_array_equal(labels, lesion_table["label"][:8])
    again, _ = first_batch(data.make_dataset(lesion_table, image_size=(32, 48), batch_size=8))
    np.testing.assert_array_equal(images, again)
    gray, _ = first_batch(data.make_dataset(lesion_table, image_size=32, channels=1))
    assert gray.shape == (24, 32, 32, 1)


def test_same_seed_same_first_batch_and_other_seed_differs(lesion_table):
    def run(seed, **options):
        return first_batch(
            data.make_dataset(lesion_table, image_size=32, batch_size=6, training=True,
                              seed=seed, **options)
        )

    images_a, labels_a = run(7)
    images_b, labels_b = run(7)
    np.testing.assert_array_equal(labels_a, labels_b)
    np.testing.assert_array_equal(images_a, images_b)
    images_c, labels_c = run(8)
    assert not np.array_equal(images_a, images_c) or not np.array_equal(labels_a, labels_c)
    cached_a, cached_labels = run(7, cache=True)
    np.testing.assert_array_equal(cached_a, run(7, cache=True)[0])
    assert sorted(cached_labels) != [] and cached_a.shape == images_a.shape


def test_epochs_reshuffle_and_cover_every_sample(lesion_table):
    dataset = data.make_dataset(lesion_table, image_size=32, batch_size=24, training=True,
                                augment=False)
    first = next(iter(dataset))[0].numpy()
    second = next(iter(dataset))[0].numpy()
    assert not np.array_equal(first, second)  # a new order each epoch
    plain = next(iter(data.make_dataset(lesion_table, image_size=32, batch_size=24)))[0].numpy()
    key = lambda batch: sorted(float(x) for x in batch.reshape(len(batch), -1).sum(1))
    assert key(first) == key(second) == key(plain)  # same images, no augmentation


def test_augmentation_defaults_configurable_and_off(lesion_table):
    layers = data.augmentation_layers()
    names = [type(layer).__name__ for layer in layers.layers]
    assert names == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast",
                     "RandomBrightness"]
    fewer = data.augmentation_layers(flip=None, zoom=0, brightness=None)
    assert [type(layer).__name__ for layer in fewer.layers] == ["RandomRotation", "RandomContrast"]
    plain = first_batch(data.make_dataset(lesion_table, image_size=32, batch_size=24))[0]
    augmented = first_batch(
        data.make_dataset(lesion_table, image_size=32, batch_size=24, augment=True, shuffle=False)
    )[0]
    assert not np.allclose(plain, augmented)
    flipped = first_batch(
        data.make_dataset(lesion_table, image_size=32, batch_size=24, shuffle=False,
                          augment=data.augmentation_layers(
                              flip="horizontal", rotation=0, zoom=0, contrast=0, brightness=0))
    )[0]
    for image, original in zip(flipped, plain):  # only flips: each image is one of two
        assert np.array_equal(image, original) or np.array_equal(image, original[:, ::-1])
    with pytest.raises(ValueError, match="Unknown augmentation options.*shear"):
        data.make_dataset(lesion_table, augment={"shear": 0.2})


def test_cache_in_memory_and_on_disk_give_the_same_images(lesion_table, tmp_path):
    plain = first_batch(data.make_dataset(lesion_table, image_size=32, batch_size=24))[0]
    for cache in ("memory", str(tmp_path / "cache")):
        dataset = data.make_dataset(lesion_table, image_size=32, batch_size=24, cache=cache)
        for _ in range(2):  # the second epoch reads the cache
            np.testing.assert_array_equal(first_batch(dataset)[0], plain)
    assert any(p.name.startswith("cache") for p in tmp_path.iterdir())


@pytest.mark.parametrize("cache", [False, "memory", "file"])
def test_start_at_continues_the_repeated_stream_where_it_stood(lesion_table, tmp_path, cache):
    """A resumed `fit` gets the batches an uninterrupted iteration would have:
    passes keyed by their number, the augmentation keyed by the pass."""
    cache = str(tmp_path / "cache") if cache == "file" else cache
    dataset = data.make_dataset(lesion_table, image_size=32, batch_size=5, training=True,
                                repeat=True, seed=7, cache=cache)
    stream = iter(dataset)
    batches = [next(stream)[0].numpy() for _ in range(12)]  # 60 examples: 2.5 passes of 24
    # Each pass is a new order of the same images (augmentation aside).
    assert not np.array_equal(batches[0], batches[5])
    for start in (1, 4, 5, 9):  # inside pass 0, across the end of a pass, inside pass 2
        resumed = iter(dataset.start_at(start * 5))
        for batch in batches[start:]:
            np.testing.assert_array_equal(next(resumed)[0].numpy(), batch)
    assert dataset.start_at(0).class_names == dataset.class_names
    with pytest.raises(ValueError, match="non-negative integer.*-5"):
        dataset.start_at(-5)
    # Without repeat there is no stream to resume: each iteration is a new pass.
    assert not hasattr(data.make_dataset(lesion_table, image_size=32, training=True),
                       "start_at")


def test_split_argument_and_training_inference(lesion_table):
    train, val, test = data.split_table(lesion_table, val=0.25, test=0.25, seed=0)
    table = __import__("pandas").concat([train, val, test])
    table.attrs.update(lesion_table.attrs)
    dataset = data.make_dataset(table, split="val", image_size=32, batch_size=64)
    images, labels = first_batch(dataset)
    assert len(labels) == len(val)
    np.testing.assert_array_equal(labels, val["label"])  # val: not shuffled


def test_arrays_source_and_argument_errors():
    images = np.random.default_rng(0).integers(0, 255, (10, 28, 28), dtype="uint8")
    dataset = data.make_dataset((images, np.arange(10) % 2), image_size=28, batch_size=5)
    batch, labels = first_batch(dataset)
    np.testing.assert_array_equal(batch[..., 1], images[:5])
    with pytest.raises(ValueError, match="resize mode 'squash'"):
        data.make_dataset((images, np.arange(10) % 2), resize="squash")
    with pytest.raises(ValueError, match="channels=4"):
        data.make_dataset((images, np.arange(10) % 2), channels=4)
    with pytest.raises(ValueError, match="image_size=.*-3"):
        data.make_dataset((images, np.arange(10) % 2), image_size=(-3, 4))
    with pytest.raises(ValueError, match="batch_size"):
        data.make_dataset((images, np.arange(10) % 2), batch_size=0)
    with pytest.raises(TypeError, match="int"):
        data.make_dataset(42)


def test_stateless_augmentation_repeats_per_seed_and_changes_per_epoch(lesion_table):
    def build(seed=0, **options):
        options = {"image_size": 32, "batch_size": 8, "training": True, "augment": True,
                   "seed": seed, **options}
        return data.make_dataset(lesion_table, **options)

    first_a, labels_a = first_batch(build())
    first_b, labels_b = first_batch(build())
    np.testing.assert_array_equal(labels_a, labels_b)
    np.testing.assert_array_equal(first_a, first_b)  # same seed: same first batch
    assert not np.array_equal(first_a, first_batch(build(seed=1))[0])
    # A second epoch of the same dataset draws anew (same order: shuffle off).
    fixed = build(shuffle=False)
    epoch_1, epoch_2 = first_batch(fixed)[0], first_batch(fixed)[0]
    assert not np.array_equal(epoch_1, epoch_2)
    np.testing.assert_array_equal(epoch_1, first_batch(build(shuffle=False))[0])
    # Draws belong to examples, not to batches or to the parallel schedule.
    small = first_batch(build(shuffle=False, batch_size=4, num_parallel_calls=1))[0]
    np.testing.assert_array_equal(small, epoch_1[:4])
    plain = first_batch(data.make_dataset(lesion_table, image_size=32, batch_size=8))[0]
    assert epoch_1.shape == plain.shape and not np.allclose(epoch_1, plain)
    assert epoch_1.min() >= 0 and epoch_1.max() <= 255


def test_stateless_flips_only_mirror_and_options_are_checked(lesion_table):
    plain = first_batch(data.make_dataset(lesion_table, image_size=32, batch_size=24))[0]
    only_flips = {"rotation": 0, "zoom": None, "contrast": 0, "brightness": 0}
    flipped = first_batch(
        data.make_dataset(lesion_table, image_size=32, batch_size=24, shuffle=False,
                          augment=only_flips)
    )[0]
    mirrored = [np.array_equal(image, original[:, ::-1])
                for image, original in zip(flipped, plain)]
    for image, original, mirror in zip(flipped, plain, mirrored):
        assert mirror or np.array_equal(image, original)
    assert 0 < sum(mirrored) < len(plain)
    with pytest.raises(ValueError, match="Unknown flip 'diagonal'"):
        data.make_dataset(lesion_table, augment={"flip": "diagonal"})
    with pytest.raises(ValueError, match="rotation=2"):
        data.make_dataset(lesion_table, augment={"rotation": 2})
    with pytest.raises(ValueError, match="fill_mode 'mirror'"):
        data.make_dataset(lesion_table, augment={"fill_mode": "mirror"})


def test_augmentation_model_works_only_in_training_and_round_trips(tmp_path):
    import keras

    from medivision_tf.data.pipeline.augment import Augmentation, augmentation_model

    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    layer = augmentation_model(seed=0)
    assert isinstance(layer, Augmentation)
    np.testing.assert_array_equal(layer(images, training=False), images)
    augmented = np.asarray(layer(images, training=True))
    assert augmented.shape == images.shape and not np.allclose(augmented, images)
    assert augmented.min() >= 0 and augmented.max() <= 255
    model = augmentation_model((32, 32, 3), seed=0, rotation=0.02, flip=None)
    assert model.output_shape == (None, 32, 32, 3)
    classifier = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                                   keras.layers.Dense(2)])
    trainable = keras.Sequential([model, classifier])
    trainable.compile("sgd", "sparse_categorical_crossentropy")
    trainable.fit(images, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    path = str(tmp_path / "augment.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("augmentation").get_config()["rotation"] == 0.02
    with pytest.raises(ValueError, match="zoom=-1"):
        Augmentation(zoom=-1)


def _write_folder(root, files):
    import cv2

    for index, (name, image) in enumerate(files):
        path = root / ("a" if index % 2 else "b") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)
    return data.from_directory(root)


def _shipped_folder(kind, root):
    """pydicom's or nibabel's own test files in two class folders."""
    import os
    import shutil

    if kind == "dicom":
        from pydicom.data import get_testdata_file

        shipped = [get_testdata_file(name) for name in
                   ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "MR_small_implicit.dcm",
                    "MR_small_bigendian.dcm", "SC_rgb_dcmtk_+eb+cr.dcm")]
    else:
        from nibabel.testing import data_path

        shipped = [os.path.join(data_path, name) for name in
                   ("anatomical.nii", "reoriented_anat_moved.nii")]
    for index, path in enumerate(shipped):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / os.path.basename(path))


@pytest.mark.parametrize("kind", ["rgb_png", "gray_png", "jpeg", "mixed", "dicom", "nifti"])
def test_every_file_gives_the_pixels_of_load_image(kind, tmp_path):
    # One-format folders take the pipeline's single-decoder map, mixed ones the
    # sniffing map: both must give `finish_image(load_image(path))`.
    rng = np.random.default_rng(7)

    def image(gray=False, dtype="uint8"):
        shape = (int(rng.integers(30, 70)), int(rng.integers(30, 70)))
        high = 65535 if dtype == "uint16" else 255
        return rng.integers(0, high, shape if gray else shape + (3,)).astype(dtype)

    if kind in ("dicom", "nifti"):
        _shipped_folder(kind, tmp_path)
        return _check_against_load_image(
            data.from_directory(tmp_path, nifti_slices=4, nifti_axis="coronal"))
    files = {
        "rgb_png": [(f"{i}.png", image()) for i in range(6)],
        "gray_png": [(f"{i}.png", image(gray=True)) for i in range(6)],
        "jpeg": [(f"{i}.jpg", image()) for i in range(6)],
        "mixed": [("0.png", image()), ("1.jpg", image()), ("2.png", image(gray=True)),
                  ("3.png", image(dtype="uint16")), ("4.bmp", image()), ("5.jpg", image(True))],
    }[kind]
    _check_against_load_image(_write_folder(tmp_path, files))


def _check_against_load_image(table):
    axis = table.attrs.get("nifti_axis", "axial")
    for channels in (1, 3):
        for resize in ("pad", "crop"):
            batches = data.make_dataset(table, image_size=(24, 32), channels=channels,
                                        resize=resize, batch_size=4, shuffle=False,
                                        skip_errors=False)
            images = np.concatenate([x.numpy() for x, _ in batches])
            assert images.shape == (len(table), 24, 32, channels)
            for row, path in enumerate(table["path"]):
                expected = data.finish_image(
                    data.load_image(path, channels, nifti_axis=axis), (24, 32),
                    channels, resize)
                np.testing.assert_array_equal(images[row], expected.numpy(), err_msg=path)


def _expected_images(table, rows, size=(24, 24), channels=1):
    axis = table.attrs.get("nifti_axis", "axial")
    return np.stack([data.finish_image(
        data.load_image(table["path"][row], channels, nifti_axis=axis), size,
        channels).numpy() for row in rows])


def test_dicom_files_decoded_in_groups_keep_their_order_and_skip_a_broken_one(tmp_path):
    # DICOM files are decoded a group to one call into Python: more files than
    # a group, a broken one in the second group; the others keep their order,
    # pixels and labels.
    import shutil

    from pydicom.data import get_testdata_file

    from medivision_tf.data.io.sample_reader import _PYTHON_GROUP

    names = ("CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "rtdose_1frame.dcm")
    for index in range(_PYTHON_GROUP + 7):
        folder = tmp_path / ("a" if index % 3 else "b")
        folder.mkdir(exist_ok=True)
        shutil.copyfile(get_testdata_file(names[index % 4]), folder / f"{index:02d}.dcm")
    table = data.from_directory(tmp_path)
    broken = _PYTHON_GROUP + 2
    with open(table["path"][broken], "rb") as handle:
        contents = handle.read()
    with open(table["path"][broken], "wb") as handle:  # the header, half the pixels
        handle.write(contents[: len(contents) - 3000])
    kept = [row for row in range(len(table)) if row != broken]

    def run(**options):
        batches = list(data.make_dataset(table, image_size=24, channels=1, batch_size=5,
                                         shuffle=False, **options))
        return (np.concatenate([x.numpy() for x, _ in batches]),
                np.concatenate([y.numpy() for _, y in batches]))

    images, labels = run()
    np.testing.assert_array_equal(images, _expected_images(table, kept))
    all_labels = np.concatenate([y.numpy() for _, y in data.make_dataset(
        table.drop(index=broken), image_size=8, batch_size=64, shuffle=False)])
    assert labels.tolist() == all_labels.tolist()
    with pytest.raises(tf.errors.OpError, match="(?i)pixel data"):
        run(skip_errors=False)


@pytest.mark.parametrize("resize", ["pad", "crop", "stretch"])
def test_grouped_dicom_gray_and_rgb_give_the_per_image_finish(tmp_path, resize):
    # The grouped path finishes images with the pad arithmetic done per
    # group: gray and RGB files of several sizes, to RGB, each resize mode.
    import shutil

    from pydicom.data import get_testdata_file

    names = ("CT_small.dcm", "examples_rgb_color.dcm", "MR_small.dcm", "SC_rgb_small_odd.dcm")
    for index, name in enumerate(names * 2):
        folder = tmp_path / ("a" if index % 2 else "b")
        folder.mkdir(exist_ok=True)
        shutil.copyfile(get_testdata_file(name), folder / f"{index}.dcm")
    table = data.from_directory(tmp_path)
    images = np.concatenate([x.numpy() for x, _ in data.make_dataset(
        table, image_size=(20, 28), channels=3, batch_size=3, shuffle=False, resize=resize)])
    expected = np.stack([data.finish_image(
        data.load_image(path, 3), (20, 28), 3, resize).numpy() for path in table["path"]])
    np.testing.assert_array_equal(images, expected)


def test_nifti_slices_decoded_in_groups_skip_a_volume_removed_after_the_build(tmp_path):
    import os
    import shutil

    from nibabel.testing import data_path

    for index in range(3):
        folder = tmp_path / ("a" if index % 2 else "b")
        folder.mkdir(exist_ok=True)
        shutil.copyfile(os.path.join(data_path, "anatomical.nii"), folder / f"v{index}.nii")
    table = data.from_directory(tmp_path, nifti_slices="all")
    volume = table["path"].str.replace(r"#frame=\d+$", "", regex=True)
    assert len(table) > 2 * 32 and volume.nunique() == 3  # several groups
    dataset = data.make_dataset(table, image_size=24, channels=1, batch_size=16, shuffle=False)
    removed = volume[len(table) // 2]
    kept = [row for row in range(len(table)) if volume[row] != removed]
    expected = _expected_images(table, kept)
    os.remove(removed)
    images = np.concatenate([x.numpy() for x, _ in dataset])
    np.testing.assert_array_equal(images, expected)


def test_a_file_rewritten_in_another_format_after_the_build_is_skipped(tmp_path):
    rng = np.random.default_rng(8)
    table = _write_folder(tmp_path, [(f"{i}.png", rng.integers(0, 255, (20, 20, 3), "uint8"))
                                     for i in range(4)])
    dataset = data.make_dataset(table, image_size=16, batch_size=4, shuffle=False)
    with open(table["path"][0], "wb") as handle:  # not a PNG any more
        handle.write(b"\xff\xd8\xff" + bytes(100))
    assert sum(int(x.shape[0]) for x, _ in dataset) == 3


@pytest.mark.parametrize("options", [
    {}, {"contrast": 0.3, "brightness": None}, {"contrast": None, "brightness": 0.2},
    {"contrast": None, "brightness": None, "fill_mode": "reflect"},
    {"contrast": None, "brightness": None, "rotation": None, "zoom": None},
    {"rotation": 0.2, "zoom": 0.3, "translation": 0.2},
])
def test_the_compiled_augmentation_gives_the_plain_ones_images(options):
    from medivision_tf.data.pipeline.augment import _check_options, apply_augmentation

    options = _check_options(options)
    rng = np.random.default_rng(9)
    images = tf.constant(rng.uniform(0, 255, (4, 32, 40, 3)).astype("float32"))
    draws = rng.uniform(0, 1, (4, 8)).astype("float32")
    draws[:, 0] = [0.1, 0.9, 0.1, 0.9]  # two of the four flipped
    draws = tf.constant(draws)
    plain = apply_augmentation(images, draws, options).numpy()
    compiled = apply_augmentation(images, draws, options, compiled=True).numpy()
    np.testing.assert_allclose(compiled, plain, atol=0.05)
    assert compiled.min() >= 0 and compiled.max() <= 255
    assert not np.allclose(plain, images.numpy())  # something was augmented


def test_decode_options_travel_as_one_object(tmp_path):
    """make_dataset(decode=DecodeOptions(...)) (issue 31): the one object a model
    records; None reads a table with its own options, as load_image does."""
    import cv2

    from medivision_tf.config import DecodeOptions

    (tmp_path / "a").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "x.png"), np.full((8, 8), 1000, "uint16"))  # 12-bit data
    table = data.from_directory(tmp_path)

    def pixel(**options):
        dataset = data.make_dataset(table, image_size=8, channels=1, batch_size=1, **options)
        return float(first_batch(dataset)[0].max())

    read = data.load_image(str(tmp_path / "a" / "x.png"), 1).numpy()  # unrounded
    assert pixel() == round(1000 / 4095 * 255) == round(float(read.max()))
    scaled = pixel(decode=DecodeOptions(bit_depth_16="scale"))
    assert scaled == round(1000 / 257) == pixel(decode={"bit_depth_16": "scale"})
    with pytest.warns(DeprecationWarning, match=r"decode=DecodeOptions\(dicom_window"):
        assert pixel(bit_depth_16="scale") == scaled  # the old keyword, cheaply kept
    with pytest.raises(TypeError, match="dicom_windows"):
        pixel(dicom_windows="auto")
    with pytest.raises(TypeError, match="DecodeOptions, a dict of its fields or None"):
        pixel(decode="scale")


def test_nifti_slices_are_read_along_the_axis_they_were_cut(tmp_path):
    from medivision_tf.config import DecodeOptions

    _shipped_folder("nifti", tmp_path)
    table = data.from_directory(tmp_path, nifti_slices=2, nifti_axis="coronal")
    with pytest.raises(ValueError, match=r"cut along 'coronal'.*read along 'axial'"):
        data.make_dataset(table, image_size=8, decode=DecodeOptions())
    coronal = data.make_dataset(table, image_size=8, decode=DecodeOptions(nifti_axis="coronal"))
    own = data.make_dataset(table, image_size=8)  # the table's own options
    np.testing.assert_array_equal(first_batch(coronal)[0], first_batch(own)[0])
    again = data.reexpand_volumes(table, nifti_slices=2, nifti_axis="axial")
    axial = data.make_dataset(again, image_size=8, decode=DecodeOptions())
    assert first_batch(axial)[0].shape[1:] == (8, 8, 3)
