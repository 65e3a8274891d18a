"""`medivision demo` at the size of notebook 01's quick settings, in-process
(`cli.main`, output captured). README (a) runs the full demo as a user runs it
(the console script) in CI; `python -m medivision_tf` runs in test_cli.py."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest

import medivision_tf
from medivision_tf.cli import main

# Notebook 01's quick size (192 training images, 2 epochs); batches of 16 give
# it 24 steps. The full demo's figures (1,200 images, 12 epochs) are README's.
EPOCHS = 2


def test_demo_command_trains_and_writes_a_run_folder(tmp_path, capsys):
    command = [
        "demo", "--out", str(tmp_path / "runs"), "--export-root", str(tmp_path / "exports"),
        "--num-train", "192", "--num-val", "64", "--num-test", "64", "--num-classes", "3",
        "--epochs", str(EPOCHS), "--batch-size", "16", "--num-explained", "48",
    ]
    capsys.readouterr()
    assert main(command) == 0, capsys.readouterr().err[-4000:]
    stdout = capsys.readouterr().out
    assert "Held-out accuracy:" in stdout
    assert "Grad-CAM pointing game:" in stdout
    assert "256 of 256 images used (train 192, val 64)" in stdout  # the test split is apart
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("demo-")]
    assert f"Results written to {run_dir}" in stdout
    expected_files = [
        "config.json", "demo_config.json", "demo_results.json", "history.csv", "model.keras",
        "evaluation/metrics.json", "evaluation/predictions.csv",
        "evaluation/confusion_matrix.png", "evaluation/roc_curves.png",
        "evaluation/reliability_diagram.png", "evaluation/training_curves.png",
        "explanations/explanations.png", "explanations/explanations.json",
    ]
    for name in expected_files:
        assert (run_dir / name).is_file(), name
    for png in run_dir.rglob("*.png"):
        assert cv2.imread(str(png)) is not None, png
    results = json.loads((run_dir / "demo_results.json").read_text())
    # It learned: held-out accuracy far above chance (1/3; 0.86 measured at this
    # size), and Grad-CAM's peak falls in the lesion box far more often than
    # chance (0.07; 0.46 measured).
    assert results["test_accuracy"] >= 0.6, results
    assert results["pointing_game"] >= max(0.3, 4 * results["pointing_game_chance"]), results
    assert json.loads((run_dir / "demo_config.json").read_text())["epochs"] == EPOCHS
    assert len(pd.read_csv(run_dir / "history.csv")) == EPOCHS
    # The saved model is the one that was evaluated.
    model = medivision_tf.load_model(str(run_dir / "model.keras"))
    predictions = pd.read_csv(run_dir / "evaluation" / "predictions.csv")
    assert medivision_tf.get_class_names(model) == results["class_names"]
    assert len(predictions) == 64
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert np.isclose(metrics["summary"]["accuracy"], results["test_accuracy"])
    assert np.isclose(predictions.correct.mean(), results["test_accuracy"])
    # The export is in TF Serving's layout and the serving command is printed.
    assert results["saved_model"] == str(tmp_path / "exports" / "lesions" / "1")
    assert (tmp_path / "exports" / "lesions" / "1" / "saved_model.pb").is_file()
    assert f"medivision serve {tmp_path / 'exports' / 'lesions'}" in stdout


def test_demo_rejects_bad_settings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--epochs", "two"])
    assert exit_info.value.code == 2 and "--epochs" in capsys.readouterr().err


def test_cli_help_lists_demo(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "demo" in capsys.readouterr().out
