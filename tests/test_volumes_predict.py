"""Volumes in `predict` and `explain`: per-slice rows plus a volume-level row,
slice overlays, a montage and per-slice scores; on tiny synthetic NIfTI
volumes (a model trained a few steps on their slices) and on the real files
nibabel and pydicom ship."""

import os

import cv2
import keras
import numpy as np
import pandas as pd
import pytest

import medivision_tf
from medivision_tf import explain as mx
from medivision_tf.data import from_directory, load_images, nifti_slices, with_frame
from medivision_tf.data.io.dicom import dicom_frame_count
from medivision_tf.data.sources.volumes import check_volume, expand_paths
from medivision_tf.prediction import VOLUME_ROW, predict_files

nibabel = pytest.importorskip("nibabel")

SIZE, DEPTH = 32, 8
CLASSES = ("left", "right")


def _volume(label, rng):
    """A 32x32x8 volume: a faint head in slices 1-6 (0 and 7 stay empty) and
    a bright block in its left (class 0) or right (class 1) half along x."""
    volume = np.zeros((SIZE, SIZE, DEPTH), "float32")
    volume[2:30, 2:30, 1:7] = 0.3 + 0.05 * rng.random((28, 28, 6))
    x = rng.integers(3, 8) if label == 0 else rng.integers(19, 24)
    y = rng.integers(4, 18)
    volume[x:x + 9, y:y + 9, 1:7] = 1.0 + 0.2 * rng.random((9, 9, 6))
    return volume


def _save(path, volume):
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path)
    return str(path)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Train/val folders of class-named volumes, held-out test volumes, a PNG,
    and two models trained a few steps on the slices: `plain.keras` and
    `trusted.keras` (trust values fitted on the validation slices)."""
    root = tmp_path_factory.mktemp("volumes")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                _save(root / split / name / f"v{i}.nii.gz", _volume(label, rng))
    tests = [(_save(root / f"test_{name}{i}.nii.gz", _volume(label, rng)), label)
             for i in range(2) for label, name in enumerate(CLASSES)]
    sets = {}
    for split in ("train", "val"):
        table = from_directory(root / split)  # one sample per non-empty slice
        assert len(table) == 6 * len(table["group"].unique())
        sets[split] = (load_images(list(table["path"]), SIZE, 1), table["label"].to_numpy())
    keras.utils.set_random_seed(0)
    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(SIZE, SIZE, 1), lstm_units=8,
        attention_units=4, class_names=list(CLASSES),
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(*sets["train"], batch_size=16, epochs=8, verbose=0)
    medivision_tf.calibrate_batchnorm(model, sets["train"][0])
    model.save(root / "plain.keras")
    from medivision_tf.trust import fit_trust

    fit_trust(model, *sets["val"], alpha=0.2)
    model.save(root / "trusted.keras")
    png = str(root / "image.png")
    cv2.imwrite(png, sets["val"][0][0].astype("uint8"))
    return {"root": root, "tests": tests, "png": png, "trusted": model,
            "plain": medivision_tf.load_model(root / "plain.keras", compile=False)}


def _nibabel_file(name):
    from nibabel.testing import data_path

    return os.path.join(data_path, name)


def test_a_volume_gives_slice_rows_then_a_volume_row(volumes):
    model = volumes["plain"]
    volume, label = volumes["tests"][1]
    table = predict_files(model, [volumes["png"], volume, volumes["png"]], top_k=2, verbose=0)
    # The slices training used (non-empty: 1..6), then the volume row; 2-D rows keep "".
    assert table["slice"].tolist() == ["", "1", "2", "3", "4", "5", "6", VOLUME_ROW, ""]
    assert table["path"].tolist() == [volumes["png"]] + [volume] * 7 + [volumes["png"]]
    probs = [f"prob_{c}" for c in CLASSES]
    slices = table.iloc[1:7]
    row = table.iloc[7]
    np.testing.assert_allclose(row[probs].to_numpy(float), slices[probs].mean().to_numpy(),
                               atol=1e-6)
    assert row["class"] == CLASSES[int(np.argmax(row[probs].to_numpy(float)))]
    assert row["probability"] == pytest.approx(row[probs].max())
    assert row["class"] == CLASSES[label]
    # A slice row is that slice predicted as a 2-D image (its `#frame=` path).
    one = predict_files(model, [with_frame(volume, 3)], top_k=2, verbose=0)
    assert "slice" not in one
    np.testing.assert_allclose(one[probs].to_numpy(float), slices.iloc[[2]][probs].to_numpy(float),
                               atol=1e-5)
    # 2-D images alone: exactly the columns (and values) they always had.
    flat = predict_files(model, [volumes["png"]], top_k=2, verbose=0)
    assert flat.columns.tolist() == ["path", "class", "probability", "top_k", *probs]
    np.testing.assert_allclose(flat[probs].to_numpy(float), table.iloc[[0]][probs].to_numpy(float),
                               atol=1e-6)
    # Held-out volumes: the volume-level class is right (the model learned the slices).
    every = predict_files(model, [path for path, _ in volumes["tests"]], top_k=2, verbose=0)
    rows = every[every["slice"] == VOLUME_ROW]
    assert rows["class"].tolist() == [CLASSES[label] for _, label in volumes["tests"]]


def test_volume_rows_carry_volume_level_trust_values(volumes):
    from medivision_tf.trust import apply

    model = volumes["trusted"]
    config = medivision_tf.get_model_config(model)
    paths = [path for path, _ in volumes["tests"][:2]]
    table = predict_files(model, paths, top_k=2, verbose=0)
    probs = [f"prob_{c}" for c in CLASSES]
    for path in paths:
        rows = table[table["path"] == path]
        slices, row = rows[rows["slice"] != VOLUME_ROW], rows[rows["slice"] == VOLUME_ROW].iloc[0]
        mean = slices[probs].mean().to_numpy("float32")
        np.testing.assert_allclose(row[probs].to_numpy(float), mean, atol=1e-6)
        expected = np.asarray(apply.prediction_sets(
            mean[None], config.trust["conformal"]["threshold"],
            apply.stored_conformal_method(config.trust)))[0]
        assert row["prediction_set"] == "|".join(c for c, keep in zip(CLASSES, expected) if keep)
        assert row["ood_score"] == pytest.approx(np.median(slices["ood_score"]))
        assert row["out_of_distribution"] == (slices["out_of_distribution"].mean() > 0.5)
    # Slice rows are the calibrated per-slice values of predict_with_trust.
    from medivision_tf.trust import predict_with_trust

    images = load_images([with_frame(paths[0], i) for i in range(1, 7)], SIZE, 1)
    out = predict_with_trust(model, images)
    first = table[(table["path"] == paths[0]) & (table["slice"] != VOLUME_ROW)]
    np.testing.assert_allclose(first[probs].to_numpy(float), out["probabilities"], atol=1e-5)
    np.testing.assert_allclose(first["ood_score"], out["ood_score"], rtol=1e-5, atol=1e-4)


def test_the_models_decode_options_cut_the_volume(volumes):
    # The same weights with another saved slice selection / axis: other rows.
    source = volumes["plain"]
    volume = volumes["tests"][0][0]
    for decode, expected in (({"nifti_slices": 3}, ["2", "3", "4"]),  # middle 3 of 8
                             ({"nifti_slices": "all", "nifti_axis": "coronal"},
                              [str(i) for i in range(SIZE)])):
        model = medivision_tf.build_medivision(
            2, backbone="smallcnn", weights=None, input_shape=(SIZE, SIZE, 1), lstm_units=8,
            attention_units=4, class_names=list(CLASSES), decode=decode)
        model.set_weights(source.get_weights())
        table = predict_files(model, [volume], top_k=2, verbose=0)
        assert table["slice"].tolist() == expected + [VOLUME_ROW]
        assert nifti_slices(volume, decode.get("nifti_axis", "axial"),
                            decode["nifti_slices"]) == [int(s) for s in expected]


def test_nibabel_and_pydicom_files(volumes, tmp_path):
    model = volumes["plain"]
    names = ("example4d.nii.gz", "anatomical.nii", "example_nifti2.nii.gz", "functional.nii")
    paths = [_nibabel_file(name) for name in names]
    table = predict_files(model, paths, top_k=2, verbose=0)
    for path in paths:
        rows = table[table["path"] == path]
        assert rows["slice"].tolist()[:-1] == [str(i) for i in nifti_slices(path)]
        assert rows["slice"].iloc[-1] == VOLUME_ROW
    probs = table[[f"prob_{c}" for c in CLASSES]].to_numpy(float)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    # A multi-frame DICOM is a volume only for a model trained with frames="all".
    pydicom_data = pytest.importorskip("pydicom.data")
    dose = pydicom_data.get_testdata_file("rtdose.dcm")
    assert len(predict_files(model, [dose], top_k=2, verbose=0)) == 1
    every = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(SIZE, SIZE, 1), lstm_units=8,
        attention_units=4, class_names=list(CLASSES), decode={"frames": "all"})
    every.set_weights(model.get_weights())
    frames = predict_files(every, [dose], top_k=2, verbose=0)
    count = dicom_frame_count(dose)
    assert frames["slice"].tolist() == [str(i) for i in range(count)] + [VOLUME_ROW]
    assert mx.is_volume(every, dose) and not mx.is_volume(model, dose)
    assert mx.is_volume(model, paths[0]) and not mx.is_volume(model, volumes["png"])
    result = mx.explain_volume(every, dose, tmp_path, top_slices=2, verbose=0)
    assert result["name"] == "rtdose" and len(result["rows"]) == 2
    assert result["slices"] == list(range(count))
    assert (tmp_path / "rtdose_volume_gradcam.png").is_file()


def test_hostile_volumes_give_clear_errors(volumes, tmp_path):
    fake = tmp_path / "fake.nii"
    fake.write_text("this is not a NIfTI file")
    empty = _save(tmp_path / "empty.nii.gz", np.zeros((8, 8, 4), "float32"))
    with pytest.raises(ValueError, match=r"fake\.nii.*no NIfTI header"):
        predict_files(volumes["plain"], [str(fake)], top_k=2)
    with pytest.raises(ValueError, match=r"fake\.nii.*no NIfTI header"):
        check_volume(str(fake))
    with pytest.raises(ValueError, match=r"Empty volume"):
        check_volume(empty)
    assert check_volume(empty, nifti_slices="all") == [0, 1, 2, 3]
    table = expand_paths([volumes["png"], empty], nifti_slices=2)
    assert table["frame"].tolist() == [-1, 1, 2] and table["input"].tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match=r"Empty volume .*empty\.nii\.gz.*nifti_slices='nonempty'"):
        predict_files(volumes["plain"], [empty], top_k=2)
    with pytest.raises(ValueError, match=r"Empty volume"):
        mx.explain_volume(volumes["plain"], empty, tmp_path / "out")
    with pytest.raises(ValueError, match=r"image\.png' is not a volume"):
        mx.explain_volume(volumes["plain"], volumes["png"], tmp_path / "out")
    with pytest.raises(ValueError, match="top_slices=-1"):
        mx.explain_volume(volumes["plain"], volumes["tests"][0][0], tmp_path / "out", top_slices=-1)
    assert not (tmp_path / "out").exists()


def test_explain_volume_writes_slice_overlays_montage_and_scores(volumes, tmp_path):
    model = volumes["plain"]
    volume, label = volumes["tests"][3]
    result = mx.explain_volume(model, volume, tmp_path, method="gradcam", top_slices=4,
                               batch_size=3, verbose=0)
    stem = "test_right1"
    assert result["name"] == stem and result["prediction"] == CLASSES[label]
    assert result["slices"] == [1, 2, 3, 4, 5, 6]
    scores = pd.read_csv(tmp_path / f"{stem}_slices.csv", dtype={"slice": str},
                         keep_default_na=False)
    assert scores["slice"].tolist() == ["1", "2", "3", "4", "5", "6", VOLUME_ROW]
    # The same numbers as predict_files (mean of the slice probabilities).
    table = predict_files(model, [volume], top_k=2, verbose=0)
    probs = [f"prob_{c}" for c in CLASSES]
    np.testing.assert_allclose(scores[probs].to_numpy(float), table[probs].to_numpy(float),
                               atol=1e-4)
    # The 4 slices most confident of the volume's class are explained, in slice order.
    p = scores[f"prob_{result['explained_class']}"].to_numpy(float)[:-1]
    top = sorted(np.argsort(-p, kind="stable")[:4] + 1)
    explained = [r["slice"] for r in result["rows"]]
    assert explained == top == [int(s) for s in scores.loc[scores["explained"], "slice"][:-1]]
    assert result["most_responsible_slice"] == int(np.argmax(p)) + 1
    written = sorted(os.listdir(tmp_path))
    assert written == sorted(
        [f"{stem}_slice{s:03d}_gradcam.png" for s in explained]
        + [f"{stem}_grid_000.png", f"{stem}_grid_001.png", f"{stem}_volume_gradcam.png",
           f"{stem}_slices.csv"])
    # Every overlay shows a map that is not flat (the model was trained).
    for row in result["rows"]:
        image = cv2.imread(row["overlay"])
        assert image.shape == (SIZE, SIZE, 3)
        gray = cv2.imread(row["overlay"], cv2.IMREAD_GRAYSCALE)
        heat = image.astype(float)[..., 0] - image.astype(float)[..., 2]  # blue - red
        assert heat.std() > 5 and gray is not None
    montage = cv2.imread(result["summary"])
    assert montage is not None and montage.shape[0] > 2 * 128 and montage.shape[1] >= 2 * 128
    # Explaining all slices (0) and another class.
    again = mx.explain_volume(model, volume, tmp_path / "all", top_slices=0,
                              class_index=1 - label, verbose=0)
    assert [r["slice"] for r in again["rows"]] == [1, 2, 3, 4, 5, 6]
    assert again["explained_class"] == CLASSES[1 - label]
    assert again["prediction"] == CLASSES[label]


def test_save_montage_tiles_and_frames(tmp_path):
    assert mx.volume_stem("/x/brain.nii.gz") == "brain" and mx.volume_stem("a.b.nii") == "a.b"
    assert mx.volume_stem("scan.png") == "scan" and mx.volume_stem("UID123") == "UID123"
    tiles = [np.full((20, 30), 40 * i, "uint8") for i in range(5)]
    path = mx.save_montage(tmp_path / "m.png", tiles, captions=[str(i) for i in range(5)],
                           title="t", highlight=2, tile_size=32)
    image = cv2.imread(str(path))
    assert image.shape == (22 + 2 * (18 + 32), 3 * 32, 3)  # 3 columns, 2 rows
    framed = image[22 + 18, 2 * 32 + 16]  # top edge of tile 2
    assert tuple(framed) == (0, 255, 0)
    with pytest.raises(ValueError, match="highlight=5"):
        mx.save_montage(tmp_path / "m.png", tiles, highlight=5)
    with pytest.raises(ValueError, match="2 captions for 5 tiles"):
        mx.save_montage(tmp_path / "m.png", tiles, captions=["a", "b"])


def _cli(capsys, *args):
    """`medivision ARGS` in this process (`cli.main`): (exit code, stdout, stderr)."""
    from medivision_tf.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_command_with_volumes_csv_and_hostile_files(volumes, tmp_path, capsys):
    fake = tmp_path / "fake.nii"
    fake.write_bytes(b"\x00" * 400)
    empty = _save(tmp_path / "empty.nii", np.zeros((6, 6, 3), "float32"))
    volume = volumes["tests"][0][0]
    csv = tmp_path / "out" / "preds.csv"
    code, stdout, stderr = _cli(capsys, "predict", volumes["root"] / "trusted.keras",
                                volumes["png"], volume, fake, empty, "--csv", csv, "--top-k", "1")
    assert code == 1, stderr[-3000:]  # some files skipped
    assert "Traceback" not in stderr
    assert "2 of 4 images predicted, 2 skipped" in stderr
    lines = stdout.splitlines()
    assert lines[0].startswith(volumes["png"] + "\t")
    assert [l.split("\t")[0] for l in lines[1:8]] == (
        [f"{volume} [slice {i}]" for i in range(1, 7)] + [f"{volume} [volume: 6 slices]"])
    assert all("set: {" in l for l in lines[:8])
    assert any(l.startswith(f"{fake}\tskipped: not_image") for l in lines)
    assert any(l.startswith(f"{empty}\tskipped: Empty volume") for l in lines)
    table = pd.read_csv(csv, dtype={"slice": str}, keep_default_na=False)
    # The skipped files have rows too: their path and why, nothing predicted.
    skipped = table[table["skipped"] != ""]
    assert skipped["path"].tolist() == [str(fake), str(empty)]
    assert skipped["skipped"].iloc[0].startswith("not_image")
    assert skipped["skipped"].iloc[1].startswith("Empty volume")
    assert (skipped["class"] == "").all()
    table = table[table["skipped"] == ""]
    assert table["slice"].tolist() == ["", "1", "2", "3", "4", "5", "6", VOLUME_ROW]
    assert {"prediction_set", "ood_score", "out_of_distribution"} <= set(table)
    volume_row = table[table["slice"] == VOLUME_ROW].iloc[0]
    assert volume_row["class"] == CLASSES[volumes["tests"][0][1]]



def test_predict_command_refuses_only_unusable_volumes(volumes, tmp_path, capsys):
    from medivision_tf.cli import main

    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"\x1f\x8b" + b"\x00" * 100)  # gzip magic, nothing inside
    empty = _save(tmp_path / "empty.nii", np.zeros((6, 6, 3), "float32"))
    assert main(["predict", str(volumes["root"] / "plain.keras"), str(fake), empty]) == 2
    err = capsys.readouterr().err
    assert "none of the 2 images can be used" in err and "Empty volume" in err
    assert "fake.nii.gz" in err and "Traceback" not in err


def test_explain_command_with_an_image_and_a_volume(volumes, tmp_path, capsys):
    out = tmp_path / "explained"
    volume = volumes["tests"][2][0]  # test_left1.nii.gz
    code, stdout, stderr = _cli(capsys, "explain", volumes["root"] / "plain.keras",
                                volumes["png"], volume, "--out", out, "--top-slices", "2",
                                "--quiet")
    assert code == 0, stderr[-3000:]
    lines = stdout.splitlines()
    assert lines[0].startswith(volumes["png"] + "\t")
    assert lines[1].startswith(f"{volume} [volume: 6 slices]\tleft\tp=")
    assert "2 slices explained (left)" in lines[1]
    assert lines[-1] == f"Wrote 3 overlays, 2 grid(s) and 1 volume montage(s) to {out}"
    files = sorted(os.listdir(out))
    slices = [f for f in files if f.startswith("test_left1_slice0")]
    assert len(slices) == 2 and all(f.endswith("_gradcam.png") for f in slices)
    assert {"image_gradcam.png", "grid_000.png", "test_left1_grid_000.png",
            "test_left1_volume_gradcam.png", "test_left1_slices.csv"} <= set(files)
    assert len(files) == 7
