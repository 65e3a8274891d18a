"""The paper's ten datasets: `prepare` on small fake trees mimicking each
downloaded layout, and the `medivision datasets` / `prepare` commands."""

import os

import cv2
import numpy as np
import pandas as pd
import pytest

from medivision_tf import data

# dataset -> (files of the fake download, expected {class: count},
#             expected splits or None, expected groups or None)
LAYOUTS = {
    "alzheimer_mri": (
        [f"Alzheimer_s Dataset/{s}/{c}/{n}.jpg"
         for s in ("train", "test")
         for c in ("MildDemented", "ModerateDemented", "NonDemented", "VeryMildDemented")
         for n in ("26 (19)", "mildDem0")],
        {"mild_demented": 4, "moderate_demented": 4, "non_demented": 4, "very_mild_demented": 4},
        {"train", "test"}, None,
    ),
    "breast_ultrasound": (
        [f"Dataset_BUSI_with_GT/{c}/{c} ({i}){m}.png"
         for c in ("benign", "malignant", "normal") for i in (1, 2) for m in ("", "_mask")],
        {"benign": 2, "malignant": 2, "normal": 2}, None, None,
    ),
    "blood_cells": (
        [f"dataset2-master/dataset2-master/images/{s}/{c}/_{k}_{n}.jpeg"
         for s in ("TRAIN", "TEST", "TEST_SIMPLE")
         for c in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")
         for k, n in ((0, 1169 if s == "TRAIN" else 77), (1, 1169 if s == "TRAIN" else 77))]
        + ["dataset-master/dataset-master/JPEGImages/BloodImage_00000.jpg"],
        {"eosinophil": 4, "lymphocyte": 4, "monocyte": 4, "neutrophil": 4},
        {"train", "test"}, {"1169", "77"},
    ),
    "chest_xray_pneumonia": (
        [f"chest_xray/{s}/{c}/{n}"
         for s in ("train", "val", "test")
         for c, n in (("NORMAL", "IM-0115-0001.jpeg"), ("NORMAL", "NORMAL2-IM-1427-0001.jpeg"),
                      ("PNEUMONIA", "person1_bacteria_1.jpeg"), ("PNEUMONIA", "person1_virus_6.jpeg"))]
        + ["chest_xray/chest_xray/train/NORMAL/IM-0115-0001.jpeg",
           "chest_xray/__MACOSX/train/NORMAL/._IM-0115-0001.jpeg"],
        {"normal": 6, "pneumonia": 6}, {"train", "val", "test"}, {"IM-0115", "IM-1427", "person1"},
    ),
    "chest_ct_cancer": (
        [f"Data/{s}/{c}/{n}.png"
         for s in ("train", "valid")
         for c in ("adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib",
                   "large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa", "normal",
                   "squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa")
         for n in ("000000 (6)", "n1")]
        + [f"Data/test/{c}/000108 (3).png"
           for c in ("adenocarcinoma", "large.cell.carcinoma", "normal", "squamous.cell.carcinoma")],
        {"adenocarcinoma": 5, "large_cell_carcinoma": 5, "normal": 5, "squamous_cell_carcinoma": 5},
        {"train", "val", "test"}, None,
    ),
    "diabetic_retinopathy": (
        [f"train_images/{i}.png" for i in ("000c1434d8d7", "001639a390f0", "0024cdab0c1e",
                                            "002c21358ce6", "005b95c28852", "0083ee8054ee")]
        + ["test_images/0005cfc8afb6.png"],
        {"no_dr": 2, "mild": 1, "moderate": 1, "severe": 1, "proliferative_dr": 1}, None, None,
    ),
    "kidney_ct": (
        [f"CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone/CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone/"
         f"{c}/{c}- ({i}).jpg" for c in ("Cyst", "Normal", "Stone", "Tumor") for i in (1, 2, 3)],
        {"cyst": 3, "normal": 3, "stone": 3, "tumor": 3}, None, None,
    ),
    "bone_fracture": (
        [f"Bone_Fracture_Binary_Classification/Bone_Fracture_Binary_Classification/{s}/{c}/{n}.jpg"
         for s in ("train", "val", "test") for c in ("fractured", "not fractured")
         for n in ("1-rotated1-rotated1", "10")],
        {"fractured": 6, "not_fractured": 6}, {"train", "val", "test"}, None,
    ),
    "retinal_oct": (
        [f"OCT2017/{s}/{c}/{c}-{p}-{i}.jpeg"
         for s in ("train", "test") for c in ("CNV", "DME", "DRUSEN", "NORMAL")
         for p, i in ((1016042, 1), (1016042, 2), (22, 1))],
        {"cnv": 6, "dme": 6, "drusen": 6, "normal": 6}, {"train", "test"}, {"1016042", "22"},
    ),
    "brain_tumor_mri": (
        [f"{s}/{c}/{p}-{c[:2]}_00{i}.jpg"
         for s, p in (("Training", "Tr"), ("Testing", "Te"))
         for c in ("glioma", "meningioma", "notumor", "pituitary") for i in (1, 2)],
        {"glioma": 4, "meningioma": 4, "no_tumor": 4, "pituitary": 4}, {"train", "test"}, None,
    ),
}


def make_fake_tree(root, name):
    files = LAYOUTS[name][0]
    for index, relative in enumerate(files):
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image = np.full((12, 16, 3), index * 9 % 255, "uint8")
        cv2.imwrite(path, image)
    if name == "diabetic_retinopathy":
        ids = [os.path.splitext(os.path.basename(f))[0] for f in files if "train_" in f]
        pd.DataFrame({"id_code": ids, "diagnosis": [0, 0, 1, 2, 3, 4]}).to_csv(
            os.path.join(root, "train.csv"), index=False)
        pd.DataFrame({"id_code": ["0005cfc8afb6"]}).to_csv(os.path.join(root, "test.csv"), index=False)
    return root


def test_registry_has_the_ten_paper_datasets():
    assert data.available_datasets() == sorted(LAYOUTS)
    for name, spec in data.PAPER_DATASETS.items():
        assert list(spec.classes) == sorted(spec.classes), name
        assert spec.source.startswith("https://") and spec.layout and spec.modality
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'. Choose one of: alzheimer_mri"):
        data.get_dataset("mnist")


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_prepare_each_fake_layout(name, tmp_path):
    source = make_fake_tree(str(tmp_path / "download"), name)
    _, counts, splits, groups = LAYOUTS[name]
    out = tmp_path / "prepared"
    table = data.prepare_dataset(name, source, out, verbose=False)
    spec = data.get_dataset(name)
    assert table.attrs["class_names"] == list(spec.classes)
    assert table["class_name"].value_counts().to_dict() == counts
    assert list(table["label"]) == [spec.classes.index(c) for c in table["class_name"]]
    assert ("split" in table) == (splits is not None)
    if splits:
        assert set(table["split"]) == splits
    if groups:
        assert set(table["group"]) == groups
    assert not any("_mask" in p for p in table["path"])
    for path, class_name in zip(table["path"], table["class_name"]):
        assert os.path.isfile(path) and os.path.basename(os.path.dirname(path)) == class_name
    manifest = pd.read_csv(out / "manifest.csv")
    assert {"path", "label", "class_name", "source"} <= set(manifest.columns)
    assert all(os.path.isfile(os.path.join(source, s)) for s in manifest["source"])
    # The canonical layout reads back with the same class ids.
    again = data.from_directory(out)
    assert again.attrs["class_names"] == list(spec.classes) and len(again) == len(table)
    clean, report = data.scan(table, verbose=False)
    assert report.empty and len(clean) == len(table)


def test_prepare_errors_name_the_expected_layout(tmp_path):
    os.makedirs(tmp_path / "Training" / "glioma")
    cv2.imwrite(str(tmp_path / "Training" / "glioma" / "a.jpg"), np.zeros((8, 8, 3), "uint8"))
    with pytest.raises(ValueError, match=r"(?s)no images.*meningioma.*Expected layout"):
        data.prepare_dataset("brain_tumor_mri", tmp_path, tmp_path / "out", verbose=False)
    with pytest.raises(ValueError, match="No kidney_ct images"):
        data.prepare_dataset("kidney_ct", tmp_path, tmp_path / "out", verbose=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.prepare_dataset("kidney_ct", tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ValueError, match="mode 'move'"):
        data.prepare_dataset("kidney_ct", tmp_path, tmp_path / "out", mode="move")


def test_cli_datasets_and_prepare(tmp_path, capsys, monkeypatch):
    # In-process (`cli.main`); `python -m medivision_tf` itself runs in test_cli.py.
    from medivision_tf.cli import main

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    for name in LAYOUTS:
        assert name in listing
    assert "kaggle.com" in listing
    source = make_fake_tree(str(tmp_path / "download"), "retinal_oct")
    assert main(["prepare", "retinal_oct", source, "--out", "oct", "--quiet"]) == 0
    assert "Prepared 24 images of retinal_oct" in capsys.readouterr().out
    manifest = pd.read_csv(tmp_path / "oct" / "manifest.csv")
    assert len(manifest) == 24 and set(manifest["class_name"]) == {"cnv", "dme", "drusen", "normal"}
    assert main(["prepare", "oct", source]) == 2
    assert "Unknown dataset 'oct'" in capsys.readouterr().err


def test_cli_dataset_details_and_scan(tmp_path, capsys, monkeypatch):
    from medivision_tf.cli import main

    monkeypatch.chdir(tmp_path)
    os.makedirs(tmp_path / "tree" / "a")
    cv2.imwrite(str(tmp_path / "tree" / "a" / "ok.png"), np.zeros((8, 8), "uint8"))
    (tmp_path / "tree" / "a" / "bad.png").write_text("not an image")
    assert main(["datasets", "chest_ct_cancer"]) == 0
    assert "adenocarcinoma_left.lower.lobe" in capsys.readouterr().out
    assert main(["scan", "tree", "--report", "bad.csv", "--quiet"]) == 0
    assert "1 usable, 1 skipped" in capsys.readouterr().out
    assert list(pd.read_csv(tmp_path / "bad.csv")["reason"]) == ["not_image"]
    assert main(["scan", "tree", "--strict", "--quiet"]) == 2
    assert "bad.png: not_image" in capsys.readouterr().err


def test_datasets_table_lists_every_dataset():
    table = data.datasets_table()
    assert list(table["name"]) == sorted(LAYOUTS)
    row = table.set_index("name").loc["retinal_oct"]
    assert row["num_classes"] == 4 and "normal" in row["classes"]
    assert {"name", "num_classes", "classes", "modality", "source"} <= set(table.columns)


def test_prepared_folder_keeps_split_and_group_everywhere(tmp_path, capsys):
    """Regression: a prepared folder (manifest.csv) went through as_table as
    plain class folders, losing split/group: make_dataset(dir, split="test")
    raised "table has no 'split' column"."""
    from medivision_tf.cli import main

    source = make_fake_tree(str(tmp_path / "download"), "retinal_oct")
    out = tmp_path / "oct"
    prepared = data.prepare_dataset("retinal_oct", source, out, verbose=False)
    assert data.is_prepared(out) and not data.is_prepared(tmp_path)
    direct = data.load_prepared(out)
    for table in (data.as_table(out), data.as_table(str(out / "manifest.csv")), direct):
        assert {"split", "group"} <= set(table.columns)
        assert table.attrs["class_names"] == list(data.get_dataset("retinal_oct").classes)
        pd.testing.assert_frame_equal(table, prepared)
    test = data.make_dataset(out, split="test", image_size=16, batch_size=64)
    images, labels = next(iter(test))
    assert images.shape[0] == (prepared["split"] == "test").sum() == 12
    assert list(labels.numpy()) == list(prepared.loc[prepared["split"] == "test", "label"])
    clean, report = data.scan(data.as_table(out), verbose=False, decode=False)
    assert report.empty and {"split", "group"} <= set(clean.columns)
    assert main(["scan", str(out), "--quiet"]) == 0
    assert "24 usable, 0 skipped of 24" in capsys.readouterr().out
    # A folder whose manifest.csv is not ours is read as class folders.
    (tmp_path / "plain" / "a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "plain" / "a" / "x.png"), np.zeros((4, 4), "uint8"))
    (tmp_path / "plain" / "manifest.csv").write_text("file,notes\nx,y\n")
    assert list(data.as_table(tmp_path / "plain")["class_name"]) == ["a"]
    with pytest.raises(FileNotFoundError, match="No manifest.csv"):
        data.load_prepared(tmp_path / "plain" / "a")


def test_prepared_class_ids_survive_a_class_without_rows(tmp_path):
    source = make_fake_tree(str(tmp_path / "download"), "retinal_oct")
    out = tmp_path / "oct"
    prepared = data.prepare_dataset("retinal_oct", source, out, verbose=False)
    classes = list(data.get_dataset("retinal_oct").classes)
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest["dataset"]) == {"retinal_oct"}
    # A user removes every CNV image from the manifest: the other ids stay.
    manifest[manifest["class_name"] != "cnv"].to_csv(out / "manifest.csv", index=False)
    table = data.load_prepared(out)
    assert table.attrs["class_names"] == classes
    kept = prepared[prepared["class_name"] != "cnv"]
    assert list(table["label"]) == list(kept["label"]) and 0 not in set(table["label"])
    # Two datasets in one manifest cannot both be right.
    manifest.loc[0, "dataset"] = "kidney_ct"
    manifest.to_csv(out / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="mixes datasets"):
        data.load_prepared(out)
