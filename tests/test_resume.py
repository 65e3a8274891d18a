"""Kill-and-resume at chosen points: a rerun ends as an uninterrupted run does.

One `train_and_evaluate` subprocess runs the whole training and stops at
every kill point on its way: there it copies its run folder, which is what a
SIGKILL at that instant leaves on disk (the process is held at the point, no
other thread writes, and nothing a kill would lose has reached a file), then
goes on; during the evaluation it SIGKILLs itself. The points: an epoch of
phase 1 or 2 right after its history row (before its backup), the middle of
the first best-checkpoint write, an improved epoch's commit before and after
its best checkpoint is renamed into place, the next epoch's improvement
written but not yet recorded (while the state still holds the last
checkpoint's temporary name), the middle of the final
`model.keras` write, right after the run is marked complete (before its
backup folder is removed), and the evaluation.

On every killed folder the state and the checkpoints agree (`best.keras`, or
the pending checkpoint the state names, holds the epoch `state.json` names).
Every folder is then rerun (the same call, in a fresh process that started
none of the runs; one process reruns the folders one after another):
it must end with exactly one `history.csv` row per epoch of both phases, the
rows of epochs finished before the kill unchanged, only the unfinished epochs
trained again, the evaluation written, `state.json` naming the best epoch of
the whole run and `best.keras` holding it, and no `.partial-*` file or
backup folder left.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

EPOCHS, FINE_TUNE_EPOCHS = 2, 2
TOTAL = EPOCHS + FINE_TUNE_EPOCHS
POINTS = ["epoch:1", "checkpoint:1", "epoch:3", "best_pending", "best_replaced",
          "pending_again", "final_write", "complete", "evaluation"]

SCRIPT = r'''
import json, os, shutil, signal, sys
import numpy as np
run_dir, source, mode, snapshots = sys.argv[1:5]
taken = {}

def snapshot(point, **facts):
    """What a SIGKILL here leaves: the run folder as it is now."""
    if point in taken:
        return
    sys.stdout.flush()
    shutil.copytree(run_dir, os.path.join(snapshots, point), symlinks=True)
    taken[point] = facts
    with open(os.path.join(snapshots, "points.json"), "w") as f:
        json.dump(taken, f)

import keras
from medivision_tf.training import callbacks as mv_callbacks, loop

if mode == "snapshots":
    # After the epoch's history row, before its backup.
    on_epoch_end = keras.callbacks.CSVLogger.on_epoch_end
    def logged(self, epoch, logs=None):
        on_epoch_end(self, epoch, logs)
        if epoch + 1 in (1, 3):
            snapshot(f"epoch:{epoch + 1}")
    keras.callbacks.CSVLogger.on_epoch_end = logged

    # Half-way through a write: best.keras (epoch 1) and the final model.keras.
    save = keras.Model.save
    def partial_save(self, path, *args, **kwargs):
        path_text = str(path)
        point = None
        if "best.keras" in path_text and os.environ.get("EPOCH") == "1":
            point = "checkpoint:1"
        elif path_text.endswith("model.keras") and ".partial-" in path_text:
            point = "final_write"
        if point and point not in taken:
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 truncated")
            snapshot(point)
        return save(self, path, *args, **kwargs)
    keras.Model.save = partial_save
    best_epoch_end = mv_callbacks.BestCheckpoint.on_epoch_end
    def tracked(self, epoch, logs=None):
        os.environ["EPOCH"] = str(epoch + 1)
        result = best_epoch_end(self, epoch, logs)
        # An improvement right after a committed one, whose temporary name the
        # state still holds: the new checkpoint is written, not yet recorded.
        if self.pending is not None and self.state.get("best_pending"):
            snapshot("pending_again", epoch=epoch + 1)
        return result
    mv_callbacks.BestCheckpoint.on_epoch_end = tracked

    # The first improvement after epoch 1: before and after its checkpoint
    # is renamed to best.keras.
    commit = mv_callbacks.BestCheckpoint.commit
    def committing(self):
        epoch = self.pending[2] if self.pending else None
        first = epoch is not None and epoch >= 2 and "best_pending" not in taken
        if first:
            snapshot("best_pending", epoch=epoch)
        result = commit(self)
        if first:
            snapshot("best_replaced", epoch=epoch)
        return result
    mv_callbacks.BestCheckpoint.commit = committing

    # Marked complete, its backup folder not yet removed.
    rmtree = shutil.rmtree
    def removing(path, *args, **kwargs):
        if os.path.basename(os.fspath(path)) == "backup":
            snapshot("complete")
        return rmtree(path, *args, **kwargs)
    shutil.rmtree = removing

    import medivision_tf.evaluation as evaluation
    def dying(*args, **kwargs):  # a real SIGKILL during the evaluation
        os.makedirs(kwargs["out_dir"], exist_ok=True)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    evaluation.evaluate_model = dying

config = dict(source=source, backbone="smallcnn", weights=None, image_size=32, channels=1,
              epochs=%d, fine_tune_epochs=%d, batch_size=16, steps_per_epoch=2,
              lstm_units=8, attention_units=4, learning_rate=3e-3, val_split=0.2,
              test_split=0.2, tensorboard=False, seed=1)


def run(folder):
    result = loop.train_and_evaluate(config, run_dir=folder, verbose=2)
    print(json.dumps({"epochs": result.epochs, "best_epoch": result.best_epoch,
                      "accuracy": result.report.summary["accuracy"]}))


if mode == "snapshots":
    run(run_dir)
else:
    # Every killed folder (a JSON list) resumed in turn by this fresh process,
    # which started none of them: all a rerun knows is what its folder holds.
    # Each rerun's output goes to FOLDER.stdout/.stderr, its exit status to FOLDER.code.
    import contextlib, traceback
    for folder in json.loads(run_dir):
        with open(folder + ".stdout", "w") as out, open(folder + ".stderr", "w") as err:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    run(folder)
                    code = 0
                except Exception:
                    traceback.print_exc()
                    code = 1
        with open(folder + ".code", "w") as f:
            f.write(str(code))
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


def _command(source, run_dir, mode="resume", snapshots="-"):
    return [sys.executable, source["script"], str(run_dir), source["npz"], mode, str(snapshots)]


@pytest.fixture(scope="module")
def killed(source):
    """The run folder at every kill point (`evaluation`: the SIGKILLed run's own)."""
    run_dir, snapshots = source["root"] / "run", source["root"] / "killed"
    snapshots.mkdir()
    proc = subprocess.run(_command(source, run_dir, "snapshots", snapshots),
                          capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    folders = {point: snapshots / point for point in POINTS if point != "evaluation"}
    folders["evaluation"] = run_dir
    missing = [point for point, folder in folders.items() if not folder.is_dir()]
    assert not missing, f"kill points never reached: {missing}\n{proc.stdout[-2000:]}"
    facts = json.loads((snapshots / "points.json").read_text())
    # The uninterrupted training: the run killed during its evaluation.
    reference = pd.read_csv(run_dir / "history.csv")
    return {"folders": folders, "facts": facts, "reference": reference}


@pytest.fixture(scope="module")
def resumed(source, killed):
    """Each killed folder copied and rerun to the end: the reruns run one after
    another in one fresh process (one TensorFlow start-up, not nine)."""
    root = source["root"] / "resumed"
    folders = {}
    for point, folder in killed["folders"].items():
        folders[point] = root / point.replace(":", "_")
        shutil.copytree(folder, folders[point], symlinks=True)
    proc = subprocess.run(
        _command(source, json.dumps([str(folders[point]) for point in POINTS])),
        capture_output=True, text=True, timeout=900, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {}
    for point in POINTS:
        folder = str(folders[point])
        code = open(folder + ".code").read() if os.path.exists(folder + ".code") else "-1"
        results[point] = (folders[point], subprocess.CompletedProcess(
            args=point, returncode=int(code), stdout=open(folder + ".stdout").read(),
            stderr=open(folder + ".stderr").read()))
    return results


@pytest.fixture(scope="module")
def val_loss(source, killed):
    """`val_loss(path)`: a checkpoint's loss on the run's validation split."""
    import keras

    from medivision_tf.data.pipeline.training_inputs import training_inputs
    from medivision_tf.training import load_config, make_loss

    config = load_config(str(source["root"] / "run" / "config.json"))
    val = training_inputs(config, global_batch=config.batch_size).val

    def loss(path):
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
        model.compile(loss=make_loss(config))
        return model.evaluate(val, verbose=0, return_dict=True)["loss"]

    return loss


def _assert_holds_epoch(val_loss, path, history, epoch):
    logged = float(history.loc[history["epoch"] == epoch - 1, "val_loss"].iloc[-1])
    assert val_loss(path) == pytest.approx(logged, rel=2e-4, abs=1e-5), (path, epoch)


@pytest.mark.parametrize("point", POINTS)
def test_state_and_checkpoints_agree_at_every_kill_point(killed, val_loss, point):
    """What `state.json` names is on disk: the best checkpoint of its best epoch
    (or, while the state names one, the pending file that becomes it)."""
    folder = killed["folders"][point]
    state = json.loads((folder / "state.json").read_text()) if (
        folder / "state.json").exists() else {}
    best = folder / "checkpoints" / "best.keras"
    if state.get("best_epoch") is None:
        assert not best.exists()
        return
    history = pd.read_csv(folder / "history.csv")
    assert state["best_value"] == pytest.approx(
        float(history.loc[history["epoch"] == state["best_epoch"] - 1, "val_loss"].iloc[-1]))
    pending = state.get("best_pending")
    if pending and (folder / "checkpoints" / pending).exists():
        _assert_holds_epoch(val_loss, folder / "checkpoints" / pending, history,
                            state["best_epoch"])
    else:
        _assert_holds_epoch(val_loss, best, history, state["best_epoch"])
    if point.startswith("best_"):
        # The improved epoch is committed with the state: its backup is named.
        assert state["best_epoch"] == killed["facts"][point]["epoch"] == state["epochs_done"]
    if point == "pending_again":
        # The new improvement is not recorded yet: the state's best is the last epoch.
        assert state["best_epoch"] == killed["facts"][point]["epoch"] - 1 == state["epochs_done"]


def _check_finished(run_dir, val_loss):
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(TOTAL))
    state = json.loads((run_dir / "state.json").read_text())
    assert state["complete"] and state["evaluated"] and state["phase1_complete"]
    assert state["phase2_complete"] and state["epochs_done"] == TOTAL
    assert state.get("backup") is None and state.get("best_pending") is None
    # best.keras is the best epoch of the whole run (both phases).
    assert state["best_epoch"] == int(history["val_loss"].idxmin()) + 1
    assert state["best_value"] == pytest.approx(history["val_loss"].min(), rel=1e-5)
    _assert_holds_epoch(val_loss, run_dir / "checkpoints" / "best.keras", history,
                        state["best_epoch"])
    assert (run_dir / "evaluation" / "metrics.json").is_file()
    assert (run_dir / "model.keras").is_file()
    assert not [p for p in run_dir.rglob("*") if p.name.startswith(".partial-")]
    assert not (run_dir / "backup").exists()
    return history


@pytest.mark.parametrize("point", POINTS)
def test_a_killed_run_resumes_to_the_state_of_an_uninterrupted_run(killed, resumed, val_loss,
                                                                    point):
    run_dir, resumed_proc = resumed[point]
    assert resumed_proc.returncode == 0, resumed_proc.stderr[-3000:]
    summary = json.loads(resumed_proc.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == TOTAL
    history = _check_finished(run_dir, val_loss)
    epochs_run = [int(line.split()[1].split("/")[0])
                  for line in resumed_proc.stdout.splitlines() if line.startswith("Epoch ")]
    if point.startswith("epoch:"):
        # Only the killed epoch (its backup never landed) and the rest are trained again.
        first = int(point.split(":")[1])
    elif point == "checkpoint:1":
        first = 1
    elif point.startswith("best_"):
        # The epoch was committed (state, backup, best checkpoint) before the kill.
        first = killed["facts"][point]["epoch"] + 1
    elif point == "pending_again":
        first = killed["facts"][point]["epoch"]
    else:  # final_write, complete, evaluation: nothing is trained again
        first = TOTAL + 1
    assert epochs_run == list(range(first, TOTAL + 1))
    # The rows of the epochs finished before the kill are kept as they were.
    pd.testing.assert_frame_equal(history.iloc[:first - 1],
                                  killed["reference"].iloc[:first - 1])
    # The epochs trained again are those of the uninterrupted run, to float
    # round-off: the same batches (the stream resumes where the kill left
    # it), the same augmentation and dropout draws, the same optimizer state.
    pd.testing.assert_frame_equal(history, killed["reference"], check_exact=False,
                                  rtol=1e-4, atol=1e-6)
    # The test accuracy of the model trained without a break (the run killed
    # during its evaluation trained to the end; its rerun only evaluates).
    reference = resumed["evaluation"][1]
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = json.loads(reference.stdout.strip().splitlines()[-1])["accuracy"]
    assert summary["accuracy"] == pytest.approx(expected, abs=1e-9)


def test_a_chief_tidying_its_folder_leaves_the_other_workers_files_alone(tmp_path):
    # Multi-worker training: the chief's clean-up of `.partial-*` files ran
    # while worker 1 was writing its config.json under `.workers/`.
    from medivision_tf.training.run_dir import remove_partials

    left = tmp_path / ".partial-1-model.keras"
    writing = tmp_path / ".workers" / "worker-1" / ".partial-2-config.json"
    writing.parent.mkdir(parents=True)
    left.write_text("killed")
    writing.write_text("in progress")
    remove_partials(tmp_path)
    assert not left.exists() and writing.exists()
    remove_partials(writing.parent)  # the worker tidies its own folder
    assert not writing.exists()
