"""`medivision train / evaluate / predict`, called in-process (`cli.main`).

The commands run in this process with their output captured: a separate
process would prove nothing more here (the console script's TensorFlow log
filter is tested in `test_cli.py`, the entry point in `test_demo.py`).
Kill-and-resume, where the process boundary is what is tested, is
`test_resume.py`: a real SIGKILL and a snapshot at every kill point, each
rerun in a fresh process.
"""

import contextlib
import io
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from medivision_tf.cli import main
from medivision_tf.data import make_synthetic_lesions

EPOCHS, FINE_TUNE_EPOCHS = 2, 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_synthetic_lesions(480, 32, 3, seed=30)
    path = root / "lesions.npz"
    np.savez(path, images=data.images, labels=data.labels)
    config = root / "train.json"
    config.write_text(json.dumps({
        "backbone": "smallcnn", "weights": None, "image_size": 32, "channels": 1,
        "epochs": EPOCHS, "fine_tune_epochs": FINE_TUNE_EPOCHS, "batch_size": 16,
        "learning_rate": 0.003, "fine_tune_learning_rate": 0.002, "val_split": 0.15,
        "test_split": 0.15, "lstm_units": 32, "attention_units": 16,
    }))
    return {"root": root, "npz": str(path), "config": str(config), "data": data}


def _train_args(dataset, out, *extra):
    return ["train", dataset["npz"], "--config", dataset["config"], "--out", str(out), *extra]


def _run(argv):
    """`medivision ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def uninterrupted(dataset):
    out = dataset["root"] / "run"
    code, stdout, stderr = _run(_train_args(dataset, out, "--quiet", "--seed", "3",
                                            "--projection-units", "none"))
    assert code == 0, stderr[-3000:]
    return out, stdout


def test_cli_train_writes_the_run_folder(uninterrupted):
    out, stdout = uninterrupted
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["epochs"] == EPOCHS + FINE_TUNE_EPOCHS
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3 and config["source"].endswith("lesions.npz")  # flag + JSON
    assert config["projection_units"] is None  # "none" on the command line
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == list(range(EPOCHS + FINE_TUNE_EPOCHS))
    for name in ("model.keras", "checkpoints/best.keras", "training_curves.png",
                 "evaluation/metrics.json", "evaluation/confusion_matrix.png",
                 "evaluation/roc_curves.png", "evaluation/reliability_diagram.png"):
        assert (out / name).is_file(), name
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["summary"]["num_samples"] == 72  # 15% of 480 held out
    assert metrics["summary"]["accuracy"] > 0.5  # chance is 0.33
    # An .npz run writes the input report too (regression: only file sources did).
    inputs = json.loads((out / "inputs.json").read_text())
    assert (inputs["num_images"], inputs["num_used"], inputs["num_skipped"]) == (480, 480, 0)
    assert inputs["duplicates"] == {"checked": True, "allowed": False, "threshold": 24,
                                    "leaking_pairs": 0, "exact": 0, "near": 0,
                                    "held_out_images": {"val": 0, "test": 0}}
    assert pd.read_csv(out / "skipped_files.csv").empty and not (out / "leaking_pairs.csv").exists()
    assert metrics["summary"]["leakage"] == {"checked": True, "allowed": False, "threshold": 24,
                                             "leaking_pairs": 0, "images_duplicating_training": 0,
                                             "run_leaking_pairs": 0}


def test_rerun_on_changed_data_is_refused_and_keeps_the_folder(uninterrupted, dataset,
                                                               tmp_path):
    """A rerun into a run folder must see the data the run started with: the
    folder's split.csv is edited as a changed source would change it (a file
    gone, a file moved to another split)."""
    out, _ = uninterrupted
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    split = pd.read_csv(copy / "split.csv")
    moved = split.index[split["split"] == "train"][1]
    split.loc[moved, "split"] = "val"
    split = split.drop(index=split.index[split["split"] == "train"][0])
    split.to_csv(copy / "split.csv", index=False)
    before = {p.name: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    code, _, stderr = _run(_train_args(dataset, copy, "--quiet", "--seed", "3",
                                       "--projection-units", "none"))
    assert code == 2, stderr[-3000:]
    assert "The data changed since this run started" in stderr
    assert "1 added or relabelled" in stderr and "1 moved to another split" in stderr
    assert "Traceback" not in stderr
    after = {p.name: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    assert after == before  # nothing rewritten


def test_rerun_of_a_finished_run_trains_nothing_and_writes_a_missing_evaluation(
        uninterrupted, dataset, tmp_path):
    """The same `train` command on a finished run: no epoch is trained again;
    `--no-evaluate` leaves a removed evaluation out, a plain rerun writes it."""
    out, _ = uninterrupted
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "evaluation")
    history = (copy / "history.csv").read_text()
    args = _train_args(dataset, copy, "--quiet", "--seed", "3", "--projection-units", "none")
    code, rerun, stderr = _run(args + ["--no-evaluate"])
    assert code == 0, stderr[-3000:]
    assert f"{copy} holds a finished run of this config: not trained again." in rerun
    assert "balanced_accuracy=" not in rerun and not (copy / "evaluation").exists()
    summary = json.loads(rerun.strip().splitlines()[-1])
    assert summary["epochs"] == EPOCHS + FINE_TUNE_EPOCHS
    code, rerun, stderr = _run(args)
    assert code == 0, stderr[-3000:]
    assert "not trained again" in rerun and "balanced_accuracy=" in rerun
    # Which OOD score the model carries, and its threshold (the default: combined).
    assert "ood is the combined score (kNN on layer 'feature_map', Mahalanobis" in rerun
    assert (copy / "history.csv").read_text() == history  # no epoch trained again
    # The evaluation of the model the run saved: the figures of the first one.
    metrics = json.loads((copy / "evaluation" / "metrics.json").read_text())["summary"]
    first = json.loads((out / "evaluation" / "metrics.json").read_text())["summary"]
    assert metrics["num_samples"] == first["num_samples"] == 72
    for key in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert metrics[key] == pytest.approx(first[key], abs=1e-6), key


def test_cli_refuses_unknown_key_and_wrong_type(dataset, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochz": 2}))
    assert main(["train", dataset["npz"], "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "Unknown config key(s) 'epochz'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", dataset["npz"], "--epochs", "two"])
    assert exit_info.value.code == 2
    assert "--epochs takes int, not 'two'" in capsys.readouterr().err


def test_cli_evaluate_and_predict(uninterrupted, dataset, tmp_path):
    out, _ = uninterrupted
    data = dataset["data"]
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"image{i}.png"))
        cv2.imwrite(paths[-1], data.images[i])

    code, stdout, stderr = _run(["evaluate", out / "model.keras", dataset["npz"],
                                 "--out", tmp_path / "eval", "--tta",
                                 "--history", out / "history.csv"])
    assert code == 0, stderr[-3000:]
    assert "balanced_accuracy=" in stdout
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # The run had a validation split, so its model has trust values: a second line.
    assert report["summary"]["conformal_method"] == "lac"
    assert "trust: ece_after_calibration=" in stdout
    assert "prediction sets (lac, alpha 0.1): coverage=" in stdout
    assert report["summary"]["num_samples"] == 480
    assert report["summary"]["tta"] == ["identity", "flip_left_right"]
    assert (tmp_path / "eval" / "training_curves.png").is_file()

    code, stdout, stderr = _run(["predict", out / "model.keras", *paths, "--top-k", "2",
                                 "--csv", tmp_path / "pred.csv"])
    assert code == 0, stderr[-3000:]
    lines = [l for l in stdout.splitlines() if l.startswith(str(tmp_path))]
    assert len(lines) == 3 and all("top-2:" in l for l in lines)
    table = pd.read_csv(tmp_path / "pred.csv")
    assert list(table["path"]) == paths
    names = ["0", "1", "2"]  # a plain .npz names its classes by id
    assert set(table["class"].astype(str)) <= set(names)
    probs = table[[f"prob_{c}" for c in names]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert all(len(t.split("; ")) == 2 for t in table["top_k"])
