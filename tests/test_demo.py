"""`medivision demo`, run as a user runs it (a subprocess), on reduced settings."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd

import medivision_tf


def test_demo_command_trains_and_writes_a_run_folder(tmp_path):
    command = [
        sys.executable, "-m", "medivision_tf", "demo",
        "--out", str(tmp_path / "runs"), "--export-root", str(tmp_path / "exports"),
        "--num-train", "480", "--num-val", "64",
        "--num-test", "160", "--num-classes", "3", "--epochs", "6",
        "--num-explained", "48",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Held-out accuracy:" in result.stdout
    assert "Grad-CAM pointing game:" in result.stdout
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("demo-")]
    assert f"Results written to {run_dir}" in result.stdout
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
    assert results["test_accuracy"] >= 0.8, results
    # Grad-CAM's peak falls in the lesion box far more often than chance.
    assert results["pointing_game"] >= max(0.6, 4 * results["pointing_game_chance"]), results
    assert json.loads((run_dir / "demo_config.json").read_text())["epochs"] == 6
    assert len(pd.read_csv(run_dir / "history.csv")) == 6
    # The saved model is the one that was evaluated.
    model = medivision_tf.load_model(str(run_dir / "model.keras"))
    predictions = pd.read_csv(run_dir / "evaluation" / "predictions.csv")
    assert medivision_tf.get_class_names(model) == results["class_names"]
    assert len(predictions) == 160
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert np.isclose(metrics["summary"]["accuracy"], results["test_accuracy"])
    assert np.isclose(predictions.correct.mean(), results["test_accuracy"])
    # The export is in TF Serving's layout and the serving command is printed.
    assert results["saved_model"] == str(tmp_path / "exports" / "lesions" / "1")
    assert (tmp_path / "exports" / "lesions" / "1" / "saved_model.pb").is_file()
    assert f"medivision serve {tmp_path / 'exports' / 'lesions'}" in result.stdout


def test_demo_rejects_bad_settings():
    result = subprocess.run(
        [sys.executable, "-m", "medivision_tf", "demo", "--epochs", "two"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "--epochs" in result.stderr


def test_cli_help_lists_demo():
    result = subprocess.run(
        [sys.executable, "-m", "medivision_tf", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0 and "demo" in result.stdout
