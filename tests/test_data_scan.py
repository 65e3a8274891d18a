"""The hostile set: bad files are found before training, skipped and
reported (or raised with strict=True), and never stop an epoch."""

import io
import os
import struct
import zlib

import cv2
import numpy as np
import pandas as pd
import pytest

from medivision_tf import data


def _image(seed=0, size=(24, 32)):
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype="uint8")


def _png_bomb(path, width=60000, height=60000):
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (width + 1) * 4)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
                     + chunk(b"IEND", b""))


@pytest.fixture
def hostile(tmp_path):
    """root/{normal,tumor}/ with good files, RGBA, CMYK and broken ones, and
    a CSV naming them plus an unknown label and a path outside the root."""
    from PIL import Image

    root = tmp_path / "root"
    for name in ("normal", "tumor"):
        os.makedirs(root / name)
    cv2.imwrite(str(root / "normal" / "good.png"), _image(0))
    cv2.imwrite(str(root / "normal" / "good.jpg"), _image(1))
    cv2.imwrite(str(root / "tumor" / "good.png"), _image(2))
    rgba = np.dstack([_image(3), np.full((24, 32), 200, "uint8")])
    cv2.imwrite(str(root / "tumor" / "rgba.png"), rgba)
    cmyk = io.BytesIO()
    Image.fromarray(_image(4)).convert("CMYK").save(cmyk, "JPEG", quality=95)
    (root / "tumor" / "cmyk.jpg").write_bytes(cmyk.getvalue())
    (root / "normal" / "empty.png").write_bytes(b"")
    jpeg = cv2.imencode(".jpg", _image(5))[1].tobytes()
    (root / "normal" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "tumor" / "text.png").write_text("patient list, not an image\n")
    _png_bomb(root / "tumor" / "huge.png")
    cv2.imwrite(str(tmp_path / "outside.png"), _image(6))
    rows = [
        ("normal/good.png", "normal"), ("normal/good.jpg", "normal"),
        ("tumor/good.png", "tumor"), ("tumor/rgba.png", "tumor"), ("tumor/cmyk.jpg", "tumor"),
        ("normal/empty.png", "normal"), ("normal/truncated.jpg", "normal"),
        ("tumor/text.png", "tumor"), ("tumor/huge.png", "tumor"),
        ("normal/good.png", "zebra"), ("../outside.png", "normal"),
        ("normal/missing.png", "normal"),
    ]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(root / "labels.csv", index=False)
    return root


EXPECTED = {
    "normal/empty.png": "empty",
    "normal/truncated.jpg": "corrupt",
    "tumor/text.png": "not_image",
    "tumor/huge.png": "too_large",
    "normal/good.png": "unknown_label",
    "../outside.png": "outside_root",
    "normal/missing.png": "missing",
}


def test_scan_reports_every_hostile_file_with_its_reason(hostile):
    table = data.from_csv(hostile / "labels.csv", class_names=["normal", "tumor"])
    clean, report = data.scan(table, verbose=False)
    got = {os.path.relpath(p, hostile): r for p, r in zip(report["path"], report["reason"])}
    assert got == EXPECTED
    assert list(report.columns) == ["index", "path", "reason", "detail"]
    assert "60000x60000" in report.set_index("reason").loc["too_large", "detail"]
    assert "text" in report.set_index("reason").loc["not_image", "detail"]
    usable = {os.path.relpath(p, hostile) for p in clean["path"]}
    assert usable == {"normal/good.png", "normal/good.jpg", "tumor/good.png",
                      "tumor/rgba.png", "tumor/cmyk.jpg"}
    assert clean.attrs["class_names"] == ["normal", "tumor"]
    # The clean table trains: RGBA and CMYK decode to RGB.
    images, labels = next(iter(data.make_dataset(clean, image_size=24, batch_size=5)))
    assert images.shape == (5, 24, 24, 3) and labels.shape == (5,)
    cmyk = data.load_image(str(hostile / "tumor" / "cmyk.jpg")).numpy()
    assert np.abs(cmyk - _image(4)).mean() < 20  # colors survive CMYK


def test_scan_strict_raises_listing_the_bad_files(hostile):
    table = data.from_csv(hostile / "labels.csv", class_names=["normal", "tumor"])
    with pytest.raises(ValueError, match="7 of 12 samples") as error:
        data.scan(table, strict=True, verbose=False)
    for path, reason in EXPECTED.items():
        assert reason in str(error.value)
    assert "outside.png" in str(error.value) and "truncated.jpg" in str(error.value)


def test_scan_max_pixels_and_directory_sources(hostile):
    cv2.imwrite(str(hostile / "tumor" / "big.png"), _image(7, size=(48, 64)))
    table = data.from_directory(hostile)
    clean, report = data.scan(table, max_pixels=24 * 32, verbose=False)
    got = {os.path.relpath(p, hostile): r for p, r in zip(report["path"], report["reason"])}
    assert got == {
        "tumor/big.png": "too_large", "tumor/huge.png": "too_large",
        "normal/empty.png": "empty", "normal/truncated.jpg": "corrupt",
        "tumor/text.png": "not_image",
    }
    assert len(clean) == 5 and clean.attrs["root"] == str(hostile)
    with pytest.raises(ValueError, match="No usable samples.*too_large"):
        data.scan(table, max_pixels=100, verbose=False)


def test_make_dataset_refuses_outside_root_and_unknown_labels(hostile):
    table = data.from_csv(hostile / "labels.csv", class_names=["normal", "tumor"])
    with pytest.raises(ValueError, match="outside the 2 classes.*zebra"):
        data.make_dataset(table, image_size=16)
    known = table[table["label"] >= 0]
    with pytest.raises(ValueError, match=r"Refusing 1 paths outside the root.*outside\.png"):
        data.make_dataset(known, image_size=16)


def test_bad_files_never_stop_an_epoch(hostile):
    """Unscanned corrupt files are skipped mid-epoch, not fatal."""
    table = data.from_directory(hostile)
    dataset = data.make_dataset(table, image_size=16, batch_size=4, shuffle=False)
    seen = sum(int(images.shape[0]) for images, _ in dataset)
    # good.png x2, good.jpg, rgba.png, cmyk.jpg decode; empty, truncated,
    # text and the bomb (its pixel data is missing) are skipped.
    assert seen == 5


def test_empty_dataset_is_a_clear_error(tmp_path):
    table = data.from_numpy(np.zeros((2, 8, 8), "uint8"), [0, 1], split="train")
    with pytest.raises(ValueError, match="empty.*split='test'"):
        data.make_dataset(table, split="test")
    os.makedirs(tmp_path / "a")
    (tmp_path / "a" / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="No usable samples"):
        data.scan(data.from_directory(tmp_path), verbose=False)


def test_unreadable_dicom_is_reported(tmp_path):
    os.makedirs(tmp_path / "ct")
    (tmp_path / "ct" / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00garbage")
    cv2.imwrite(str(tmp_path / "ct" / "ok.png"), _image(0))
    table = data.from_directory(tmp_path)
    clean, report = data.scan(table, verbose=False)
    assert list(report["reason"]) == ["unreadable_dicom"] and len(clean) == 1


def test_check_file_without_decode_reads_only_the_header(tmp_path, monkeypatch):
    """Regression: check_file(decode=False) read whole files."""
    import tifffile

    import importlib

    scan_module = importlib.import_module("medivision_tf.data.checks.scan")  # data.scan: the function
    files_module = importlib.import_module("medivision_tf.data.io.regular_files")  # opens files

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.random.default_rng(0).integers(0, 255, (300, 300, 3), "uint8"))
    assert big.stat().st_size > 2 * scan_module.HEADER_BYTES
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((400, 400), "uint8"))
    _png_bomb(tmp_path / "bomb.png")
    reads = []

    class Recording(io.FileIO):
        def read(self, size=-1):
            data = super().read(size)
            reads.append(len(data))
            return data

    monkeypatch.setattr(files_module, "open", lambda path, mode="rb": Recording(path, "r"),
                        raising=False)
    assert data.check_file(str(big), decode=False) is None
    assert data.check_file(str(tmp_path / "big.tif"), decode=False) is None
    assert data.check_file(str(tmp_path / "bomb.png"), decode=False)[0] == "too_large"
    assert data.check_file(str(tmp_path / "big.tif"), decode=False, max_pixels=100)[0] == "too_large"
    assert reads and max(reads) <= scan_module.HEADER_BYTES
    reads.clear()
    assert data.check_file(str(big)) is None           # decode=True reads the whole file
    assert max(reads) == big.stat().st_size


def test_scan_command_counts_only_multiframe_files_as_volumes(tmp_path, capsys):
    """Regression: `scan --frames all` said "15 files give 15 samples" when
    one 15-frame file (pydicom's rtdose.dcm) gave 15 of the 17 samples."""
    import shutil

    from pydicom.data import get_testdata_file

    from medivision_tf.cli import main

    for name in ("dose", "ct"):
        os.makedirs(tmp_path / name)
    shutil.copy(get_testdata_file("rtdose.dcm"), tmp_path / "dose" / "rtdose.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct" / "ct.dcm")
    cv2.imwrite(str(tmp_path / "ct" / "slice.png"), _image(0))
    assert main(["scan", str(tmp_path), "--frames", "all", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "17 usable, 0 skipped of 17 samples" in out
    assert "1 files give 15 frame/slice samples (frames=all" in out
    assert main(["scan", str(tmp_path), "--quiet"]) == 0  # default: one sample per file
    out = capsys.readouterr().out
    assert "3 usable" in out and "Volumes/multi-frame" not in out


def test_extensionless_files_that_are_not_dicom_are_reported(tmp_path, capsys):
    """Regression: a file without extension whose bytes were not DICOM was
    dropped without a report row; a UID-named DICOM file is still taken."""
    import shutil

    from pydicom.data import get_testdata_file

    from medivision_tf.cli import main

    folder = tmp_path / "ct"
    os.makedirs(folder)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "1.2.840.113619.2.1")
    (folder / "IMG0001").write_bytes(cv2.imencode(".png", _image(1))[1].tobytes())
    (folder / "README").write_text("scanned 2019, ward 4\n")
    (folder / "EMPTY").write_bytes(b"")
    (folder / "notes.txt").write_text("another kind of file: not listed\n")
    table = data.from_directory(tmp_path)
    assert [os.path.basename(p) for p in table["path"]] == ["1.2.840.113619.2.1"]
    clean, report = data.scan(table, verbose=False)
    assert len(clean) == 1
    reasons = dict(zip(report["path"].map(os.path.basename), report["reason"]))
    assert reasons == {"EMPTY": "not_image", "IMG0001": "not_image", "README": "not_image"}
    details = dict(zip(report["path"].map(os.path.basename), report["detail"]))
    assert "bytes are PNG" in details["IMG0001"] and "rename it" in details["IMG0001"]
    assert "not DICOM" in details["README"] and "is empty" in details["EMPTY"]
    assert main(["scan", str(tmp_path), "--report", str(tmp_path / "r.csv"), "--quiet"]) == 0
    assert "1 usable, 3 skipped of 4 samples" in capsys.readouterr().out
    assert sorted(pd.read_csv(tmp_path / "r.csv")["path"].map(os.path.basename)) == [
        "EMPTY", "IMG0001", "README"]
    # exclude= patterns still hide a file entirely
    quiet = data.scan(data.from_directory(tmp_path, exclude=("README", "EMPTY", "IMG*")),
                      verbose=False)[1]
    assert quiet.empty


def test_a_source_with_no_usable_file_names_each_reason(tmp_path, capsys):
    """Regression: with nothing usable, `scan` and `train` said only a count
    of reasons, and `scan --report` wrote no report."""
    import shutil

    from pydicom.data import get_testdata_file

    from medivision_tf.cli import main

    os.makedirs(tmp_path / "src" / "rt")
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "src" / "rt" / "plan.dcm")
    (tmp_path / "src" / "rt" / "notes.png").write_text("not an image")
    with pytest.raises(data.NoUsableSamplesError) as caught:
        data.scan(data.from_directory(tmp_path / "src"), verbose=False)
    message = str(caught.value)
    assert "all 2 were skipped" in message
    assert "plan.dcm: unreadable_dicom" in message and "RT Plan Storage: not an image" in message
    assert "notes.png: not_image" in message
    assert sorted(caught.value.report["reason"]) == ["not_image", "unreadable_dicom"]
    report = tmp_path / "report.csv"
    assert main(["scan", str(tmp_path / "src"), "--report", str(report), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "plan.dcm: unreadable_dicom" in captured.err and "RT Plan Storage" in captured.out
    assert sorted(pd.read_csv(report)["reason"]) == ["not_image", "unreadable_dicom"]
    assert main(["train", str(tmp_path / "src"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "plan.dcm: unreadable_dicom" in capsys.readouterr().err
