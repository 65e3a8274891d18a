"""Kill-and-resume at chosen points: a rerun ends as an uninterrupted run does.

Each case runs `train_and_evaluate` in a subprocess that SIGKILLs itself at one
point (an epoch of phase 1 or 2 right after its history row, in the middle
of the best-checkpoint write, during the final `model.keras` write, during
the evaluation), then reruns the same call. The finished run must have
exactly one `history.csv` row per epoch of both phases, the evaluation
written, `state.json` naming the best epoch of the whole run, and no
`.partial-*` file.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

EPOCHS, FINE_TUNE_EPOCHS = 2, 2

SCRIPT = r'''
import json, os, signal, sys
import numpy as np
run_dir, source, kill = sys.argv[1], sys.argv[2], sys.argv[3]

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

import keras
from medivision_tf.training import callbacks as mv_callbacks, loop

if kill.startswith("epoch:"):  # after the epoch's history row, before its backup
    target = int(kill.split(":")[1])
    original = keras.callbacks.CSVLogger.on_epoch_end
    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch + 1 == target:
            die()
    keras.callbacks.CSVLogger.on_epoch_end = on_epoch_end
elif kill.startswith("checkpoint:"):  # half-way through writing best.keras
    target = int(kill.split(":")[1])
    save = keras.Model.save
    def partial_save(self, path, *args, **kwargs):
        if "best.keras" in str(path) and os.environ.get("EPOCH") == str(target):
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 truncated")
            die()
        return save(self, path, *args, **kwargs)
    keras.Model.save = partial_save
    begin = mv_callbacks.BestCheckpoint.on_epoch_end
    def tracked(self, epoch, logs=None):
        os.environ["EPOCH"] = str(epoch + 1)
        return begin(self, epoch, logs)
    mv_callbacks.BestCheckpoint.on_epoch_end = tracked
elif kill == "final_write":
    save = keras.Model.save
    def partial_save(self, path, *args, **kwargs):
        if str(path).endswith("model.keras") and ".partial-" in str(path):
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 truncated")
            die()
        return save(self, path, *args, **kwargs)
    keras.Model.save = partial_save
elif kill == "evaluation":
    import medivision_tf.evaluation as evaluation
    def dying(*args, **kwargs):
        os.makedirs(kwargs["out_dir"], exist_ok=True)
        die()
    evaluation.evaluate_model = dying

config = dict(source=source, backbone="smallcnn", weights=None, image_size=32, channels=1,
              epochs=%d, fine_tune_epochs=%d, batch_size=16, steps_per_epoch=2,
              lstm_units=8, attention_units=4, learning_rate=3e-3, val_split=0.2,
              test_split=0.2, tensorboard=False, seed=1)
result = loop.train_and_evaluate(config, run_dir=run_dir, verbose=2)
print(json.dumps({"epochs": result.epochs, "best_epoch": result.best_epoch,
                  "accuracy": result.report.summary["accuracy"]}))
''' % (EPOCHS, FINE_TUNE_EPOCHS)


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from medivision_tf.data import make_synthetic_lesions

    root = tmp_path_factory.mktemp("resume")
    data = make_synthetic_lesions(160, 32, 2, seed=4)
    path = root / "lesions.npz"
    np.savez(path, images=data.images, labels=data.labels)
    script = root / "run.py"
    script.write_text(SCRIPT)
    return {"root": root, "npz": str(path), "script": str(script)}


def _run(source, run_dir, kill="none"):
    return subprocess.run([sys.executable, source["script"], str(run_dir), source["npz"], kill],
                          capture_output=True, text=True, timeout=300, env=_env())


def _check_finished(run_dir):
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(EPOCHS + FINE_TUNE_EPOCHS))
    state = json.loads((run_dir / "state.json").read_text())
    assert state["complete"] and state["evaluated"] and state["phase1_complete"]
    assert state["phase2_complete"]
    # best.keras is the best epoch of the whole run (both phases).
    assert state["best_epoch"] == int(history["val_loss"].idxmin()) + 1
    assert state["best_value"] == pytest.approx(history["val_loss"].min(), rel=1e-5)
    assert (run_dir / "checkpoints" / "best.keras").stat().st_size > 1000
    assert (run_dir / "evaluation" / "metrics.json").is_file()
    assert not [p for p in run_dir.rglob("*") if p.name.startswith(".partial-")]
    assert not (run_dir / "backup").exists()
    return history


@pytest.mark.parametrize("kill", ["epoch:1", "epoch:3", "checkpoint:1", "final_write",
                                  "evaluation"])
def test_a_killed_run_resumes_to_the_state_of_an_uninterrupted_run(source, tmp_path, kill):
    run_dir = tmp_path / "run"
    killed = _run(source, run_dir, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(source, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == EPOCHS + FINE_TUNE_EPOCHS
    _check_finished(run_dir)
    epochs_run = [int(line.split()[1].split("/")[0]) for line in resumed.stdout.splitlines()
                  if line.startswith("Epoch ")]
    if kill.startswith("epoch:"):
        # Only the killed epoch (its backup never landed) and the rest are trained again.
        assert epochs_run == list(range(int(kill.split(":")[1]), EPOCHS + FINE_TUNE_EPOCHS + 1))
    elif kill in ("final_write", "evaluation"):
        assert epochs_run == []  # nothing is trained again
