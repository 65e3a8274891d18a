"""`medivision demo`, run as a user runs it (a subprocess), on reduced settings."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

import medivision_tf


def test_demo_command_trains_and_writes_a_run_folder(tmp_path):
    command = [
        sys.executable, "-m", "medivision_tf", "demo",
        "--out", str(tmp_path), "--num-train", "480", "--num-val", "64",
        "--num-test", "160", "--num-classes", "3", "--epochs", "6",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Held-out accuracy:" in result.stdout
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("demo-")]
    assert f"Results written to {run_dir}" in result.stdout
    for name in ("config.json", "metrics.json", "history.csv", "model.keras", "test_predictions.csv"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.8, metrics
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 6
    assert len(pd.read_csv(run_dir / "history.csv")) == 6
    # The saved model is the one that was evaluated.
    model = medivision_tf.load_model(str(run_dir / "model.keras"))
    predictions = pd.read_csv(run_dir / "test_predictions.csv")
    assert medivision_tf.get_class_names(model) == metrics["class_names"]
    assert np.isclose(np.mean(predictions.label == predictions.prediction), metrics["test_accuracy"])


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
