"""`medivision train / evaluate / predict` as subprocesses, and kill-and-resume.

The uninterrupted run and the killed-and-resumed run go side by side, as do
`evaluate` and `predict` (two cores; each process is mostly single-threaded
tracing and start-up)."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from medivision_tf.data import make_synthetic_lesions

EPOCHS, FINE_TUNE_EPOCHS = 2, 2


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


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


def _train_command(dataset, out, *extra):
    return [sys.executable, "-m", "medivision_tf", "train", dataset["npz"], "--config",
            dataset["config"], "--out", str(out), *extra]


def _uninterrupted_run(dataset):
    out = dataset["root"] / "run"
    proc = subprocess.run(_train_command(dataset, out, "--quiet", "--seed", "3",
                                          "--projection-units", "none"),
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def _kill_and_resume(dataset):
    """Starts a run, SIGKILLs it once state.json counts a finished epoch,
    notes what the kill left, then reruns the same command to the end."""
    out = dataset["root"] / "killed"
    command = _train_command(dataset, out, "--seed", "3", "--no-evaluate")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())
    state_file = out / "state.json"

    def epochs_done():
        try:
            return json.loads(state_file.read_text()).get("epochs_done", 0)
        except (FileNotFoundError, json.JSONDecodeError):
            return 0

    facts = {}
    deadline = time.time() + 240
    try:
        while epochs_done() < 1 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        facts["running_at_kill"] = proc.poll() is None
        facts["epochs_done_at_kill"] = epochs_done()
        if facts["running_at_kill"]:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    facts["returncode"] = proc.returncode
    facts["model_after_kill"] = (out / "model.keras").exists()
    facts["files_after_kill"] = [p.name for p in out.rglob("*") if p.is_file()]
    facts["resumed"] = subprocess.run(command, capture_output=True, text=True, timeout=300,
                                      env=_env())
    return out, facts


@pytest.fixture(scope="module")
def runs(dataset):
    """The uninterrupted run and the kill-and-resume run, side by side (two cores)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        killed = pool.submit(_kill_and_resume, dataset)
        uninterrupted = pool.submit(_uninterrupted_run, dataset)
        return {"uninterrupted": uninterrupted.result(), "killed": killed.result()}


@pytest.fixture(scope="module")
def uninterrupted(runs):
    return runs["uninterrupted"]


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
    import shutil

    out, _ = uninterrupted
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    split = pd.read_csv(copy / "split.csv")
    moved = split.index[split["split"] == "train"][1]
    split.loc[moved, "split"] = "val"
    split = split.drop(index=split.index[split["split"] == "train"][0])
    split.to_csv(copy / "split.csv", index=False)
    before = {p.name: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    proc = subprocess.run(_train_command(dataset, copy, "--quiet", "--seed", "3",
                                         "--projection-units", "none"),
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "The data changed since this run started" in proc.stderr
    assert "1 added or relabelled" in proc.stderr and "1 moved to another split" in proc.stderr
    assert "Traceback" not in proc.stderr
    after = {p.name: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    assert after == before  # nothing rewritten


def test_cli_refuses_unknown_key_and_wrong_type(dataset, tmp_path, capsys):
    from medivision_tf.cli import main

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
    commands = {
        "evaluate": [sys.executable, "-m", "medivision_tf", "evaluate", str(out / "model.keras"),
                     dataset["npz"], "--out", str(tmp_path / "eval"), "--tta",
                     "--history", str(out / "history.csv")],
        "predict": [sys.executable, "-m", "medivision_tf", "predict", str(out / "model.keras"),
                    *paths, "--top-k", "2", "--csv", str(tmp_path / "pred.csv")],
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:  # two cores
        procs = dict(zip(commands, pool.map(
            lambda argv: subprocess.run(argv, capture_output=True, text=True, timeout=300,
                                        env=_env()), commands.values())))

    proc = procs["evaluate"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "balanced_accuracy=" in proc.stdout
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # The run had a validation split, so its model has trust values: a second line.
    assert report["summary"]["conformal_method"] == "lac"
    assert "trust: ece_after_calibration=" in proc.stdout
    assert "prediction sets (lac, alpha 0.1): coverage=" in proc.stdout
    assert report["summary"]["num_samples"] == 480
    assert report["summary"]["tta"] == ["identity", "flip_left_right"]
    assert (tmp_path / "eval" / "training_curves.png").is_file()

    proc = procs["predict"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith(str(tmp_path))]
    assert len(lines) == 3 and all("top-2:" in l for l in lines)
    table = pd.read_csv(tmp_path / "pred.csv")
    assert list(table["path"]) == paths
    names = ["0", "1", "2"]  # a plain .npz names its classes by id
    assert set(table["class"].astype(str)) <= set(names)
    probs = table[[f"prob_{c}" for c in names]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert all(len(t.split("; ")) == 2 for t in table["top_k"])


def test_sigkilled_run_resumes_and_ends_with_the_same_epoch_count(runs):
    out, facts = runs["killed"]
    assert facts["running_at_kill"], "the run finished before it could be killed"
    assert facts["epochs_done_at_kill"] >= 1
    assert facts["returncode"] == -signal.SIGKILL
    assert not facts["model_after_kill"]
    # No checkpoint is half-written: only complete files under their final names.
    assert not [name for name in facts["files_after_kill"] if ".partial" in name]

    resumed = facts["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # It resumed: the first epoch was not trained again.
    assert "Epoch 1/4" not in resumed.stdout and "Epoch 4/4" in resumed.stdout
    history = pd.read_csv(out / "history.csv")
    reference = pd.read_csv(runs["uninterrupted"][0] / "history.csv")
    assert list(history["epoch"]) == list(reference["epoch"]) == [0, 1, 2, 3]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == EPOCHS + FINE_TUNE_EPOCHS
    assert (out / "model.keras").is_file()
    assert not [p for p in out.rglob("*") if ".partial" in p.name]
