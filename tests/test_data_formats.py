"""Real files written by others: pydicom's shipped test corpus, nibabel's
test images, and hostile inputs (corrupt DICOM, fake NIfTI, empty volume)."""

import copy
import glob
import gzip
import io
import os
import warnings

import numpy as np
import pytest

from medivision_tf import data
from medivision_tf.data.io import dicom as dicom_reader
from medivision_tf.data.io import nifti as nifti_reader
from medivision_tf.data.io.dicom import _voi_range, read_dicom
from medivision_tf.data.io.finish import finish_image
from medivision_tf.data.io.frame_paths import split_frame, with_frame
from medivision_tf.data.io.graph_decode import (
    KIND_PNG16,
    KIND_PYTHON,
    KIND_TF,
    TF_FORMATS,
    decode_image,
    load_image,
    sniff_kind,
)
from medivision_tf.data.io.nifti import nifti_slices, read_nifti, read_nifti_slice_file
from medivision_tf.data.io.options import check_frames
from medivision_tf.data.io.python_decode import python_decode
from medivision_tf.data.io.scaling import scale, to_uint8
from medivision_tf.data.io.sniff import is_raw_dicom, sniff_format

pydicom = pytest.importorskip("pydicom")


def _corpus():
    """Every file of the installed pydicom test_files folder (no download)."""
    folder = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    return sorted(p for p in glob.glob(folder + "/**/*", recursive=True) if os.path.isfile(p))


def _file(name):
    """A file of the installed corpus by name (never downloaded)."""
    return next((p for p in _corpus() if os.path.basename(p) == name), None)


def _pydicom_pixels(path):
    """(dataset, pixel_array) when pydicom decodes the file here, else (ds, None)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(path, force=True)
        except Exception:
            return None, None
        if "PixelData" not in dataset:
            return dataset, None
        try:
            return dataset, dataset.pixel_array
        except Exception:
            return dataset, False


def _expected(dataset, pixels):
    """The documented windowing (`io.dicom` module docstring), written out with
    pydicom's own functions on pydicom's own pixel_array."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if frames > 1 and pixels.ndim == (4 if samples > 1 else 3):
        pixels = pixels[frames // 2]  # frames="middle", the default
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, dataset).astype("float64")
        return rgb / 257.0 if rgb.max() > 255 else rgb
    if pixels.ndim == 3:
        if pixels.dtype == np.uint8:
            return pixels.astype("float64")
        return pixels / (2.0 ** dataset.BitsStored - 1) * 255.0
    values = apply_modality_lut(pixels, dataset).astype("float64")
    has_lut = bool(dataset.get("VOILUTSequence"))
    has_window = dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None
    low, high = values.min(), values.max()
    if has_lut or has_window:
        windowed = apply_voi_lut(values.copy(), dataset).astype("float64")
        window_range = _voi_range(dataset)
        if window_range is not None:
            values, (low, high) = windowed, window_range
    out = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    out = np.clip(out, 0, 255)
    return 255.0 - out if photometric == "MONOCHROME1" else out


def test_pydicom_corpus_decodes_like_pydicom_or_says_why():
    decoded, clear, total = 0, 0, 0
    for path in _corpus():
        dataset, pixels = _pydicom_pixels(path)
        if pixels is None:
            continue  # not DICOM, or no pixel data
        total += 1
        if pixels is False:  # pydicom cannot decode it here: a clear error
            with pytest.raises(ValueError, match="DICOM"):
                read_dicom(path)
            clear += 1
            continue
        expected = _expected(dataset, pixels)
        color = expected.ndim == 3
        ours = data.load_image(path, channels=3 if color else 1).numpy()  # the tf.data graph path
        ours = ours if color else ours[..., 0]
        assert ours.shape == expected.shape, os.path.basename(path)
        assert np.abs(ours - expected).max() <= 1.0, os.path.basename(path)
        decoded += 1
    print(f"pydicom corpus: {decoded} decoded, {clear} clear errors, {total} with pixel data")
    assert decoded >= 60 and decoded + clear == total


def test_dual_personality_preamble_is_dicom_in_python_and_graph(tmp_path):
    path = _file("CT_small.dcm")
    head = open(path, "rb").read()
    assert head[:4] == b"II*\x00" and sniff_format(head) == "dicom"
    image = data.load_image(path, channels=1).numpy()
    assert image.shape == (128, 128, 1) and image.max() > image.min()
    # Without extension (a UID-named file), found by the folder source and scan.
    folder = tmp_path / "ct"
    folder.mkdir()
    (folder / "1.2.840.113619.2.1.1.1").write_bytes(head)
    table = data.from_directory(tmp_path)
    assert len(table) == 1
    clean, report = data.scan(table, verbose=0)
    assert report.empty and len(clean) == 1


def test_raw_dicom_without_preamble_is_sniffed():
    path = ""
    for candidate in _corpus():
        raw = open(candidate, "rb").read(352)
        if raw[128:132] != b"DICM" and is_raw_dicom(raw):
            assert sniff_format(raw) == "dicom", candidate
            path = candidate
    assert path


def test_scan_names_the_real_reason_for_a_corrupt_dicom(tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    original = open(_file("CT_small.dcm"), "rb").read()
    (folder / "cut.dcm").write_bytes(original[: len(original) - 4000])
    clean_file = folder / "ok.dcm"
    clean_file.write_bytes(original)
    _, report = data.scan(data.from_directory(tmp_path), verbose=0)
    assert list(report["reason"]) == ["unreadable_dicom"]
    detail = report["detail"].iloc[0]
    assert "Graph execution error" not in detail and "pixel data" in detail, detail


def test_compressed_without_plugin_names_syntax_and_extra(monkeypatch):
    path = _file("JPEG2000.dcm")
    if path is None:
        pytest.skip("JPEG2000.dcm not installed")
    from pydicom.pixels.decoders.base import Decoder

    def no_plugins(*args, **kwargs):
        raise RuntimeError("Unable to decode as no plugins are available")

    # Every way to pixels (`Dataset.pixel_array`, `pydicom.pixels.pixel_array`)
    # ends in a decoder's `as_array`: without a plugin, that is where it fails.
    monkeypatch.setattr(Decoder, "as_array", no_plugins)
    with pytest.raises(ValueError, match=r"JPEG 2000.*pip install python-gdcm pylibjpeg.*\[dicom\] extra"):
        read_dicom(path)


def test_frames_option_picks_first_middle_and_frame_paths():
    path = _file("rtdose.dcm")  # 15 frames
    ds = pydicom.dcmread(path)
    frames = int(ds.NumberOfFrames)
    first = read_dicom(path, frame="first")
    middle = read_dicom(path, frame="middle")
    third = data.load_image(with_frame(path, 3), channels=1).numpy()[..., 0]
    np.testing.assert_array_equal(third, read_dicom(path, frame=3))
    np.testing.assert_array_equal(
        data.load_image(path, channels=1, frames="first").numpy()[..., 0], first
    )
    assert frames > 2 and not np.array_equal(first, middle)
    with pytest.raises(ValueError, match="frames"):
        check_frames("last")


def test_16bit_auto_scales_12bit_data(tmp_path):
    import cv2

    raw = np.linspace(0, 4095, 64).reshape(8, 8).astype("uint16")
    cv2.imwrite(str(tmp_path / "a.png"), raw)
    auto = data.load_image(str(tmp_path / "a.png"), channels=1).numpy()[..., 0]
    np.testing.assert_allclose(auto, raw / 4095.0 * 255.0, atol=1e-3)
    full = data.load_image(str(tmp_path / "a.png"), channels=1, bit_depth_16="scale").numpy()
    assert full.max() < 16.0
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", raw)
    np.testing.assert_allclose(
        data.load_image(str(tmp_path / "a.tif"), channels=1).numpy()[..., 0], auto, atol=0.5
    )


nibabel = pytest.importorskip("nibabel")


def _nibabel_images():
    from nibabel.testing import data_path

    return sorted(glob.glob(os.path.join(data_path, "*.nii")) + glob.glob(
        os.path.join(data_path, "*.nii.gz")))


def test_nibabel_test_images_give_slices():
    done = 0
    for path in _nibabel_images():
        image = nibabel.load(path)
        if image.ndim < 3 or min(image.shape[:3]) < 2:
            continue
        raw = open(path, "rb").read()
        assert sniff_format(raw) == "nifti", path
        count = nibabel.as_closest_canonical(image).shape[2]
        indices = nifti_slices(path, select="all")
        assert len(indices) == count
        middle = data.load_image(with_frame(path, count // 2), channels=1).numpy()
        np.testing.assert_array_equal(middle[..., 0], read_nifti(path))
        middle3 = nifti_slices(path, select=3)
        assert len(middle3) == min(3, count) and (count // 2) in middle3
        done += 1
    assert done >= 2


def test_hostile_nifti_inputs(tmp_path):
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(gzip.compress(b"this is not a volume" * 30))
    with pytest.raises(ValueError, match="NIfTI"):
        read_nifti(str(fake))
    empty = nibabel.Nifti1Image(np.zeros((4, 4, 3), "float32"), np.eye(4))
    nibabel.save(empty, tmp_path / "empty.nii.gz")
    assert nifti_slices(str(tmp_path / "empty.nii.gz"), select="nonempty") == []
    zero = nibabel.Nifti1Image(np.zeros((0, 4, 3), "float32"), np.eye(4))
    nibabel.save(zero, tmp_path / "zero.nii")
    with pytest.raises(ValueError, match="NIfTI"):
        read_nifti(str(tmp_path / "zero.nii"))


def test_nifti_folder_gives_grouped_slices_and_volume_level_splits(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("ad", "cn"):
        (tmp_path / label).mkdir()
        for i in range(3):
            volume = np.zeros((10, 12, 6), "float32")
            volume[2:8, 2:10, 1:5] = rng.random((6, 8, 4)) + 1  # slices 0 and 5 empty
            nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / label / f"s{i}.nii.gz")
    table = data.from_directory(tmp_path)
    assert len(table) == 6 * 4 and table["group"].nunique() == 6
    assert set(table["frame"]) == {1, 2, 3, 4}
    train, val, test = data.split_table(table, seed=0, group_column="group")
    assert not set(train["group"]) & (set(val["group"]) | set(test["group"]))
    images, _ = next(iter(data.make_dataset(table, image_size=16, batch_size=4, channels=1)))
    assert images.shape == (4, 16, 16, 1)
    _, report = data.scan(table, verbose=0)
    assert report.empty


def test_binary_mask_volume_stays_visible():
    # nibabel's standard.nii.gz is a 0/255 mask: one value inside, so the
    # percentile window collapses; the mask must not come out black.
    path = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "standard.nii.gz")
    values = np.asarray(nibabel.load(path).dataobj)
    assert len(np.unique(values[values != 0])) == 1
    selected = nifti_slices(path, select="nonempty")
    assert selected, "a mask volume has non-empty slices"
    middle = read_nifti(path)
    assert set(np.unique(middle)) <= {0, 255} and middle.max() == 255


# --- The faster decode paths give the same pixels (issue 15, item 8) -----


def _scale_reference(values, low, high):
    """`scale` as it was: float64 formula on the whole array."""
    if high <= low:
        return np.zeros(np.shape(values), "uint8")
    scaled = (np.asarray(values, "float64") - low) / (high - low) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype("uint8")


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "int32", "float32"])
def test_scale_by_table_equals_the_formula(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if dtype != "float32" else None
    low_v, high_v = (int(info.min), int(info.max)) if info else (-3000, 3000)
    values = rng.integers(low_v, high_v, (400, 420), endpoint=True).astype(dtype)
    for low, high in [(float(values.min()), float(values.max())), (-160.0, 240.0),
                      (10.5, 11.0), (5.0, 5.0)]:
        np.testing.assert_array_equal(scale(values, low, high),
                                      _scale_reference(values, low, high))


def test_uint16_to_uint8_by_table_equals_the_formula():
    rng = np.random.default_rng(1)
    for high in (4095, 65535):
        pixels = rng.integers(0, high, (500, 300), endpoint=True).astype("uint16")
        for mode, divisor in [("scale", 257.0), ("12bit", 4095 / 255),
                              ("auto", 4095 / 255 if high <= 4095 else 257.0)]:
            expected = np.clip(np.round(pixels / divisor), 0, 255).astype("uint8")
            np.testing.assert_array_equal(to_uint8(pixels, mode), expected)


def test_palette_by_table_equals_pydicoms_colors():
    from pydicom.pixels import apply_color_lut

    path = _file("examples_palette.dcm")
    if path is None:
        pytest.skip("examples_palette.dcm is not in this pydicom")
    dataset, pixels = _pydicom_pixels(path)
    rgb = apply_color_lut(pixels, dataset)
    expected = to_uint8(rgb, "scale" if rgb.dtype == np.uint16 else "minmax")
    np.testing.assert_array_equal(read_dicom(path), expected)


def _planted_dicoms():
    """pydicom files with the header variants the windowing must honour."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    for name in ("CT_small.dcm", "liver_1frame.dcm", "image_dfl.dcm", "examples_overlay.dcm"):
        path = _file(name)
        if path is None:
            continue
        base = pydicom.dcmread(path)
        for variant in ("as is", "MONOCHROME1", "negative slope", "SIGMOID", "LINEAR_EXACT",
                        "VOI LUT sequence", "rescale and window", "flat"):
            ds = copy.deepcopy(base)
            if variant == "MONOCHROME1":
                ds.PhotometricInterpretation = "MONOCHROME1"
            elif variant == "negative slope":
                ds.RescaleSlope, ds.RescaleIntercept = -2.5, 100
            elif variant in ("SIGMOID", "LINEAR_EXACT"):
                ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 60, 300, variant
            elif variant == "VOI LUT sequence":
                item = Dataset()
                item.LUTDescriptor = [256, int(ds.pixel_array.min()), 16]
                item.add_new(0x00283006, "OW",
                             np.arange(0, 256 * 200, 200, dtype="uint16").tobytes())
                ds.VOILUTSequence = Sequence([item])
            elif variant == "rescale and window":
                ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1024
                ds.WindowCenter, ds.WindowWidth = 40, 400
            elif variant == "flat":
                flat = ds.pixel_array.copy()
                flat[:] = flat.flat[0]
                ds.PixelData = flat.tobytes()
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=False)
            yield f"{name} {variant}", buffer.getvalue()


def test_dicom_lookup_gives_the_pixels_of_the_per_pixel_path(monkeypatch):
    """read_dicom runs its per-pixel steps once per value and looks the image
    up (`_GrayLookup`); the pixels must be exactly the per-pixel path's."""
    cases = list(_planted_dicoms())
    if not cases:
        pytest.skip("pydicom's test files are not installed")
    windows = ("auto", "minmax", (40, 400), (-600, 1500))
    fast = {(c, w): read_dicom(d, window=w) for c, d in cases for w in windows}
    datasets = [pydicom.dcmread(io.BytesIO(d)) for _, d in cases]
    used = sum(dicom_reader._GrayLookup.for_pixels(ds.pixel_array, ds) is not None for ds in datasets)
    assert used >= len(cases) * 3 // 4  # most cases take the lookup
    monkeypatch.setattr(dicom_reader._GrayLookup, "for_pixels", classmethod(lambda cls, p, d: None))
    for case, dicom in cases:
        for window in windows:
            direct = read_dicom(dicom, window=window)
            assert fast[case, window].dtype == direct.dtype == np.uint8, case
            np.testing.assert_array_equal(fast[case, window], direct, err_msg=f"{case} {window}")


def test_dicom_budget_from_the_one_parse(tmp_path):
    path = _file("CT_small.dcm")
    raw = open(path, "rb").read()
    with pytest.raises(ValueError, match="128x128 pixels exceeds the pixel budget"):
        python_decode(raw, "dicom", max_pixels=128 * 128 - 1)
    assert python_decode(raw, "dicom", max_pixels=128 * 128).shape == (128, 128, 1)
    assert python_decode(raw, "dicom", max_pixels=None).dtype == np.float32
    np.testing.assert_array_equal(
        python_decode(raw, "dicom", dtype="uint8"), read_dicom(path)[..., None])


def test_graph_sniff_agrees_with_python_sniff_on_short_and_odd_heads():
    import tensorflow as tf


    png16 = b"\x89PNG\r\n\x1a\n" + bytes(16) + b"\x10" + bytes(10)
    heads = [b"", b"B", b"BM", b"\xff\xd8", b"\xff\xd8\xff", b"GIF89a", b"GIF8",
             b"RIFF\0\0\0\0WEBP", b"RIFF\0\0\0\0WEB", png16, png16[:24],
             b"\x89PNG\r\n\x1a\n" + bytes(30), bytes(128) + b"DICM", bytes(128) + b"DIC",
             b"II*\x00" + bytes(124) + b"DICM", b"\x89PNG\r\n\x1a\n" + bytes(120) + b"DICM"]
    for head in heads:
        fmt = sniff_format(head)
        kind = int(sniff_kind(tf.constant(head)))
        if fmt == "dicom":
            assert kind == KIND_PYTHON, head
        elif head == png16:
            assert kind == KIND_PNG16, head
        elif fmt in TF_FORMATS:
            assert kind == KIND_TF, head
        else:
            assert kind == KIND_PYTHON, head


def _volume(path, shape=(24, 20, 9), seed=0):
    import nibabel

    values = np.random.default_rng(seed).normal(100, 30, shape).astype("float32")
    nibabel.save(nibabel.Nifti1Image(values, np.eye(4)), str(path))
    return str(path)


def test_nifti_slices_read_by_path_equal_the_bytes_decode(tmp_path):
    import tensorflow as tf


    folder = tmp_path / "data" / "a"
    folder.mkdir(parents=True)
    for index in range(2):
        _volume(folder / f"v{index}.nii.gz", seed=index)
    table = data.from_directory(str(tmp_path / "data"))
    assert len(table) == 18
    nifti_reader._NIFTI_CACHE.clear()
    for channels in (1, 3):
        for path in table["path"]:
            file, frame = split_frame(path)
            by_bytes = decode_image(tf.io.read_file(file), channels, frame=frame)
            np.testing.assert_array_equal(load_image(path, channels).numpy(),
                                          by_bytes.numpy())
    # The pipeline: same order and pixels, from a cold and a warm cache.
    dataset = data.make_dataset(table, image_size=16, channels=1, batch_size=5,
                                training=False, shuffle=False)
    nifti_reader._NIFTI_CACHE.clear()
    cold = np.concatenate([images.numpy() for images, _ in dataset])
    warm = np.concatenate([images.numpy() for images, _ in dataset])
    expected = np.stack([
        finish_image(decode_image(
            tf.io.read_file(split_frame(p)[0]), 1, frame=split_frame(p)[1]),
            16, 1).numpy() for p in table["path"]])
    np.testing.assert_array_equal(cold, expected)
    np.testing.assert_array_equal(warm, expected)


def test_nifti_slice_by_path_rereads_a_changed_file_and_checks_the_budget(tmp_path):
    path = _volume(tmp_path / "v.nii", seed=0)
    first = read_nifti_slice_file(path, 4)
    np.testing.assert_array_equal(first, read_nifti(open(path, "rb").read(), frame=4))
    _volume(tmp_path / "v.nii", shape=(24, 20, 9), seed=1)  # same size, new pixels
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    second = read_nifti_slice_file(path, 4)
    np.testing.assert_array_equal(second, read_nifti(open(path, "rb").read(), frame=4))
    assert not np.array_equal(first, second)
    with pytest.raises(ValueError, match="exceeds the pixel budget"):  # also from the cache
        read_nifti_slice_file(path, 4, max_pixels=100)
    with pytest.raises(ValueError, match="out of range"):
        read_nifti_slice_file(path, 9)
    assert read_nifti_slice_file(str(tmp_path / "missing.nii"), 0) is None
    dicom = tmp_path / "not_nifti.nii"
    dicom.write_bytes(open(_file("CT_small.dcm"), "rb").read())
    assert read_nifti_slice_file(str(dicom), 0) is None
    # ...which load_image then decodes from its bytes, as before.

    np.testing.assert_array_equal(load_image(f"{dicom}#frame=0", 1).numpy()[..., 0],
                                  read_dicom(str(dicom)))


def test_compressed_dicom_error_advice_survives_the_scan_report(tmp_path):
    """A 12-bit JPEG Extended DICOM (pydicom's JPEG-lossy.dcm): where no
    installed plugin decodes it, the error names the syntax and the plugin it
    needs (not the extra, which lacks it), and scan's report keeps that."""
    import shutil

    import pydicom.data

    from medivision_tf.data import from_directory, scan

    source = pydicom.data.get_testdata_file("JPEG-lossy.dcm")
    try:
        load_image(source)
        pytest.skip("a 12-bit JPEG plugin (pylibjpeg-libjpeg) is installed here")
    except ValueError as error:
        message = str(error)
    assert "1.2.840.10008.1.2.4.51" in message
    assert "pylibjpeg-libjpeg" in message and "Install the DICOM extra" not in message
    (tmp_path / "ct").mkdir()
    shutil.copy(source, tmp_path / "ct" / "lossy.dcm")
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), tmp_path / "ct" / "good.dcm")
    clean, report = scan(from_directory(str(tmp_path)), verbose=False)
    assert len(clean) == 1 and list(report["reason"]) == ["unreadable_dicom"]
    assert "pylibjpeg-libjpeg plugin" in report["detail"].iloc[0]


def test_a_damaged_compressed_dicom_is_not_blamed_on_a_missing_plugin(monkeypatch):
    """pydicom's JPEG-lossy.dcm is malformed (its JPGExtended.dcm is the fixed
    copy): with pylibjpeg-libjpeg installed, pydicom's error is libjpeg's
    "misplaced marker", and the advice to install that plugin was given
    again. Here the installed plugins and libjpeg's failure are faked (the
    plugin is GPLv3 and not a dependency); the file is pydicom's."""
    import pydicom.data
    import pydicom.pixels


    def libjpeg_fails(dataset, *args, **kwargs):
        raise RuntimeError(
            "Unable to decode as exceptions were raised by all available plugins:\n"
            "  pylibjpeg: libjpeg error code '-1038' returned from Decode(): A misplaced "
            "marker segment was found")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", libjpeg_fails)
    monkeypatch.setattr(dicom_reader, "decoder_plugins", lambda syntax: ("gdcm", "pylibjpeg"))
    source = pydicom.data.get_testdata_file("JPEG-lossy.dcm")
    with pytest.raises(ValueError) as caught:
        load_image(source)
    message = str(caught.value)
    assert "1.2.840.10008.1.2.4.51" in message and "damaged or malformed" in message
    assert "pip install" not in message and "gdcm, pylibjpeg" in message
    # Without a capable plugin, the same failure text keeps the install advice.
    monkeypatch.setattr(dicom_reader, "decoder_plugins", lambda syntax: ("gdcm", "pillow"))
    with pytest.raises(ValueError, match="pip install pylibjpeg pylibjpeg-libjpeg"):
        load_image(source)
    monkeypatch.undo()
    assert "pydicom" in dicom_reader.decoder_plugins("1.2.840.10008.1.2.5")  # RLE: pydicom's own
    assert dicom_reader.decoder_plugins("1.2.3.4") == ()  # no decoder for an unknown syntax
