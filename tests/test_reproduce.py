"""`reproduce` / `medivision reproduce`: the paper's table on small fake prepared trees.

The fake data root holds:
- `chest_xray_pneumonia/`: prepared (by `prepare_dataset`) from a fake download
  with the dataset's own train/val/test folders;
- `kidney/`: `kidney_ct` prepared under another folder name (found by its
  classes), no split of its own (split by the config's fractions);
- `breast_ultrasound/`: a broken manifest (no `class_name` column), so this
  dataset fails while the others go on.
The other seven datasets are absent ("not found").
"""

import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from medivision_tf import reproduce as rp
from medivision_tf.data import available_datasets, make_synthetic_lesions, prepare_dataset

SETTINGS = dict(backbone="smallcnn", weights=None, image_size=32, epochs=1,
                fine_tune_epochs=1, batch_size=16)
CONFIG = {"tensorboard": False, "learning_rate": 0.003, "val_split": 0.2, "test_split": 0.25}
METRIC_KEYS = {"accuracy": "accuracy", "precision_macro": "precision_macro",
               "recall_macro": "recall_macro", "f1_macro": "f1_macro"}


def _write_images(root, paths_by_class, seed):
    """Writes 32x32 synthetic lesion PNG/JPEGs, class i gets lesion pattern i."""
    classes = list(paths_by_class)
    count = max(len(v) for v in paths_by_class.values()) * len(classes) * 2
    lesions = make_synthetic_lesions(count, 32, len(classes), seed=seed)
    for label, name in enumerate(classes):
        images = lesions.images[lesions.labels == label]
        for image, path in zip(images, paths_by_class[name]):
            full = os.path.join(root, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            assert cv2.imwrite(full, np.asarray(image, dtype="uint8"))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("reproduce")
    downloads, root = base / "downloads", base / "data"
    # chest_xray_pneumonia: its own train/val/test folders.
    xray = {c: [f"chest_xray/{s}/{c}/{'IM-0' if c == 'NORMAL' else 'person'}{s}{i}-{i}.jpeg"
                for s, n in (("train", 24), ("val", 6), ("test", 8)) for i in range(n)]
            for c in ("NORMAL", "PNEUMONIA")}
    _write_images(downloads / "xray", xray, seed=1)
    prepare_dataset("chest_xray_pneumonia", downloads / "xray", root / "chest_xray_pneumonia",
                    verbose=False)
    # kidney_ct, prepared into a folder not named after the dataset.
    kidney = {c: [f"CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone/{c}/{c}- ({i}).jpg"
                  for i in range(12)]
              for c in ("Cyst", "Normal", "Stone", "Tumor")}
    _write_images(downloads / "kidney", kidney, seed=2)
    prepare_dataset("kidney_ct", downloads / "kidney", root / "kidney", verbose=False)
    # breast_ultrasound: a manifest training cannot read.
    os.makedirs(root / "breast_ultrasound")
    (root / "breast_ultrasound" / "manifest.csv").write_text("path,label\nbenign/a.png,0\n")
    # A folder with a manifest of no paper dataset is ignored.
    os.makedirs(root / "other")
    (root / "other" / "manifest.csv").write_text("path,label,class_name\na/x.png,0,cat\n")
    return root


@pytest.fixture(scope="module")
def api_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce_out")
    frame = rp.reproduce(data_root, out, config=CONFIG, verbose=0, **SETTINGS)
    return frame, out


def _png_ok(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(os.fspath(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100


def _check_against_metrics_json(row):
    with open(os.path.join(row["run_dir"], "evaluation", "metrics.json")) as f:
        summary = json.load(f)["summary"]
    for column, key in METRIC_KEYS.items():
        assert 0.0 <= row[column] <= 1.0
        assert row[column] == pytest.approx(summary[key], abs=1e-9), column
    assert summary["num_samples"] == row["num_test"]


def test_find_prepared_by_name_and_by_classes(data_root):
    found = rp.find_prepared(data_root)
    assert found == {
        "breast_ultrasound": os.path.join(data_root, "breast_ultrasound"),
        "chest_xray_pneumonia": os.path.join(data_root, "chest_xray_pneumonia"),
        "kidney_ct": os.path.join(data_root, "kidney"),
    }
    assert rp.find_prepared(data_root, "kidney_ct,retinal_oct") == {
        "kidney_ct": os.path.join(data_root, "kidney")}


def test_api_table_rows_metrics_and_files(api_run, data_root):
    frame, out = api_run
    assert list(frame["dataset"]) == available_datasets()
    assert set(rp.COLUMNS) <= set(frame.columns)
    status = dict(zip(frame["dataset"], frame["status"]))
    assert status.pop("chest_xray_pneumonia") == "ok"
    assert status.pop("kidney_ct") == "ok"
    assert status.pop("breast_ultrasound") == "failed"
    assert set(status.values()) == {"not found"} and len(status) == 7

    ok = frame[frame["status"] == "ok"].set_index("dataset")
    for name, row in ok.iterrows():
        _check_against_metrics_json(row)
        assert row["epochs"] == 2 and pd.isna(row["error"])
        assert os.path.isfile(os.path.join(row["run_dir"], "model.keras"))
    # The pre-split dataset keeps its own split; kidney_ct is split by the config.
    counts = ok.loc["chest_xray_pneumonia", ["num_train", "num_val", "num_test"]].tolist()
    assert counts == [48, 12, 16]
    assert ok.loc["kidney_ct", "num_test"] == 12
    assert ok.loc["kidney_ct", "data_dir"].endswith(os.sep + "kidney")

    failed = frame.set_index("dataset").loc["breast_ultrasound"]
    # Read by medivision_tf.data.as_table: a manifest without class_name is not a
    # prepared folder, so the folder is read as (empty) class folders.
    assert failed["error"].startswith("ValueError") and "breast_ultrasound" in failed["error"]
    assert os.path.isfile(os.path.join(out, "breast_ultrasound", "error.txt"))

    missing = frame[frame["status"] == "not found"]
    for name, command in zip(missing["dataset"], missing["prepare_command"]):
        assert command == (f"medivision prepare {name} DOWNLOADED_DIR "
                           f"--out {os.path.join(data_root, name)}")
    # No per-dataset paper figure is recorded: each paper cell says so.
    for metric in rp.METRICS:
        assert set(frame[f"paper_{metric}"]) == {rp.PAPER_NOT_KNOWN}

    table = pd.read_csv(out / rp.TABLE_CSV)
    assert list(table["dataset"]) == list(frame["dataset"])
    assert np.allclose(table["accuracy"].dropna(), frame["accuracy"].dropna().astype(float))
    markdown = (out / rp.TABLE_MD).read_text()
    assert "| chest_xray_pneumonia | ok |" in markdown
    assert f"{ok.loc['kidney_ct', 'accuracy']:.4f}" in markdown
    assert "macro" in markdown and rp.PAPER_NOT_KNOWN in markdown
    assert "medivision prepare retinal_oct" in markdown and "## Machine" in markdown
    assert '"backbone": "smallcnn"' in markdown
    _png_ok(out / rp.CHART_PNG)


def test_rerun_reuses_finished_runs(api_run, data_root, monkeypatch, tmp_path):
    from medivision_tf.data.checks import source_splits as pipeline  # where the source is read

    frame, fixture_out = api_run
    # Rerun in a copy: the reruns rewrite the table files, which other tests read
    # from the shared fixture's folder.
    out = tmp_path / "copy"
    shutil.copytree(fixture_out, out)
    before = frame.set_index("dataset").loc["chest_xray_pneumonia"]
    reads = []
    as_table = pipeline.as_table
    monkeypatch.setattr(pipeline, "as_table", lambda source, **kwargs: (
        isinstance(source, str) and reads.append(source)) or as_table(source, **kwargs))
    again = rp.reproduce(data_root, out, datasets=["chest_xray_pneumonia"], config=CONFIG,
                         verbose=0, **SETTINGS).set_index("dataset").loc["chest_xray_pneumonia"]
    assert len(reads) == 1  # the manifest is read and split once
    assert [again[c] for c in ("num_train", "num_val", "num_test")] == [48, 12, 16]
    assert rp.SUMMARY_KEYS == tuple(METRIC_KEYS)
    assert again["status"] == "ok" and bool(again["reused"]) and not bool(before["reused"])
    assert again["epochs"] == 2 and pd.isna(again["train_seconds"])
    for column in METRIC_KEYS:
        assert again[column] == pytest.approx(before[column], abs=1e-6)
    # Other settings in the same folder are refused, naming the keys, in the table.
    changed = rp.reproduce(data_root, out, datasets="chest_xray_pneumonia", config=CONFIG,
                           verbose=0, **{**SETTINGS, "epochs": 3})
    assert changed["status"].tolist() == ["failed"]
    assert "epochs" in changed["error"].iloc[0] and "another config" in changed["error"].iloc[0]


def test_cli_subset(data_root, tmp_path, capsys):
    from medivision_tf.cli import main

    config = tmp_path / "train.json"
    config.write_text(json.dumps(CONFIG))
    paper = tmp_path / "paper.csv"  # as a user transcribes it: percent, a gap
    paper.write_text("dataset,accuracy,precision,recall,f1\nkidney_ct,99.1,98.7,,98.2\n")
    out = tmp_path / "out"
    command = ["reproduce", "--data-root", str(data_root),
               "--datasets", "kidney_ct,breast_ultrasound,brain_tumor_mri", "--out", str(out),
               "--config", str(config), "--backbone", "smallcnn", "--weights", "none",
               "--image-size", "32", "--epochs", "1", "--fine-tune-epochs", "0",
               "--batch-size", "16", "--quiet", "--paper-figures", str(paper)]
    capsys.readouterr()
    assert main(command) == 0, capsys.readouterr().err[-3000:]
    stdout = capsys.readouterr().out
    table = pd.read_csv(out / rp.TABLE_CSV).set_index("dataset")
    assert table["status"].to_dict() == {
        "kidney_ct": "ok", "breast_ultrasound": "failed", "brain_tumor_mri": "not found"}
    row = table.loc["kidney_ct"].copy()
    row["run_dir"] = str(out / "kidney_ct")
    _check_against_metrics_json(row)
    assert row["epochs"] == 1
    with open(out / "kidney_ct" / "config.json") as f:
        saved = json.load(f)
    assert saved["image_size"] == 32 and saved["weights"] is None and saved["tensorboard"] is False
    assert "| kidney_ct | ok |" in stdout
    _png_ok(out / rp.CHART_PNG)
    assert float(row["paper_accuracy"]) == pytest.approx(0.991)
    assert float(row["paper_f1"]) == pytest.approx(0.982)
    assert row["paper_recall"] == rp.PAPER_NOT_KNOWN
    assert table.loc["brain_tumor_mri", "paper_accuracy"] == rp.PAPER_NOT_KNOWN
    assert str(paper) in stdout  # the table names where the paper's figures came from


def test_cli_errors_name_the_value(data_root, tmp_path):
    from medivision_tf.cli import main

    assert main(["reproduce", "--data-root", str(data_root), "--datasets", "brain_tumour"]) == 2
    assert main(["reproduce", "--data-root", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(SystemExit):
        main(["reproduce", "--data-root", str(data_root), "--epochs", "two"])


def test_errors_before_training(data_root, tmp_path):
    with pytest.raises(ValueError, match="'brain_tumour'.*alzheimer_mri"):
        rp.reproduce(data_root, tmp_path, datasets=["brain_tumour"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        rp.reproduce(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ValueError, match="epochz"):
        rp.reproduce(data_root, tmp_path, epochz=1)
    assert not os.path.exists(tmp_path / rp.TABLE_CSV)


def test_nothing_found_still_writes_the_table(tmp_path, capsys):
    from medivision_tf.cli import main

    os.makedirs(tmp_path / "empty")
    assert main(["reproduce", "--data-root", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "out"), "--quiet"]) == 1
    table = pd.read_csv(tmp_path / "out" / rp.TABLE_CSV)
    assert len(table) == 10 and set(table["status"]) == {"not found"}
    assert "No dataset was trained." in capsys.readouterr().out
    _png_ok(tmp_path / "out" / rp.CHART_PNG)


def test_paper_figures_are_only_recorded_ones(monkeypatch):
    assert set(rp.PAPER_REPORTED) <= set(available_datasets())
    assert rp.paper_figure("retinal_oct", "accuracy") == rp.PAPER_NOT_KNOWN
    monkeypatch.setitem(rp.PAPER_REPORTED, "retinal_oct", {"accuracy": 0.97})
    assert rp.paper_figure("retinal_oct", "accuracy") == 0.97
    assert rp.paper_figure("retinal_oct", "f1") == rp.PAPER_NOT_KNOWN
    with pytest.raises(ValueError, match="'auc'"):
        rp.paper_figure("retinal_oct", "auc")
    frame = pd.DataFrame([{**{c: None for c in rp.COLUMNS}, "dataset": "retinal_oct",
                           "status": "ok", "accuracy": 0.9, "precision_macro": 0.8,
                           "recall_macro": 0.7, "f1_macro": 0.75, "paper_accuracy": 0.97,
                           "paper_precision": rp.PAPER_NOT_KNOWN,
                           "paper_recall": rp.PAPER_NOT_KNOWN, "paper_f1": rp.PAPER_NOT_KNOWN}])
    markdown = rp.render_table(frame)
    assert "| retinal_oct | ok | 0.9000 | 0.8000 | 0.7000 | 0.7500 | 0.9700 |" in markdown
    with pytest.raises(ValueError, match="missing"):
        rp.render_table(frame.drop(columns="f1_macro"))


def test_read_paper_figures_fractions_percent_and_gaps(tmp_path):
    fractions = tmp_path / "fractions.csv"
    fractions.write_text("Dataset,Accuracy,F1\nretinal_oct,0.97,0.96\nkidney_ct,,0.9\n")
    assert rp.read_paper_figures(fractions) == {
        "retinal_oct": {"accuracy": 0.97, "f1": 0.96}, "kidney_ct": {"f1": 0.9}}
    percent = tmp_path / "percent.csv"
    percent.write_text("dataset,accuracy\nretinal_oct,97.5%\nkidney_ct,100\n")
    figures = rp.read_paper_figures(percent)
    assert figures["retinal_oct"]["accuracy"] == pytest.approx(0.975)
    assert figures["kidney_ct"]["accuracy"] == pytest.approx(1.0)
    assert rp.paper_figure("retinal_oct", "accuracy", figures) == pytest.approx(0.975)
    assert rp.paper_figure("retinal_oct", "f1", figures) == rp.PAPER_NOT_KNOWN


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,accuracy\nretinal_oct,0.9\n", "needs a 'dataset' column"),
        ("dataset,auc\nretinal_oct,0.9\n", r"unknown column\(s\) \['auc'\]"),
        ("dataset,accuracy\nretina,0.9\n", "line 2: Unknown dataset 'retina'"),
        ("dataset,accuracy\nretinal_oct,0.9\nretinal_oct,0.8\n", "line 3: .*listed twice"),
        ("dataset,accuracy\nretinal_oct,high\n", "accuracy='high'"),
        ("dataset,accuracy\nretinal_oct,101\n", "accuracy='101'"),
        ("dataset,accuracy\nretinal_oct,97.5\nkidney_ct,0.95\n", "mixes percentages"),
    ],
)
def test_read_paper_figures_refuses_bad_files(tmp_path, text, message):
    path = tmp_path / "paper.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        rp.read_paper_figures(path)


def test_read_paper_figures_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        rp.read_paper_figures(tmp_path / "nope.csv")
