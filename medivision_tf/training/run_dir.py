"""The run folder: its state file, atomic writes, history and config checks.

```
run_dir/
  config.json             the config used, "auto" values resolved
  state.json              epochs done, phase, backup file, best epoch and value
  history.csv             one row per epoch, both phases
  checkpoints/best.keras  the best epoch of the whole run
  backup/                 weights after the last finished epoch
  logs/                   TensorBoard (when installed)
  model.keras             the final model
```

Example:

```python
state = RunState("runs/x")
state.update(epochs_done=3)
RunState("runs/x").get("epochs_done")   # 3
```
"""

import contextlib
import dataclasses
import json
import os
import shutil

import pandas as pd

from medivision_tf.config import (
    EARLIER_DEFAULT_OOD_METHOD,
    resolved_ood_layer,
    resolved_ood_method,
)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it over `path` on success.

    The temporary name is hidden (`.partial-PID-NAME`) and keeps the file's
    extension, so Keras' savers accept it. On an error the partial file is
    removed, so no `.partial-*` file outlives the write.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".partial-{os.getpid()}-{name}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def write_json_atomic(path, data):
    """Writes `data` as JSON to `path` through a synced temporary file."""
    with atomic_path(path) as partial:
        with open(partial, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())


def read_json(path):
    """The JSON object in `path`, or None when the file does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class RunState:
    """`run_dir/state.json`, read once and rewritten atomically on each update.

    Keys: `epochs_done` (epochs finished over both phases), `phase`, `backup`
    (the weights file of the last finished epoch), `best_monitor`,
    `best_value`, `best_epoch` (of `checkpoints/best.keras`), `best_pending`
    (that checkpoint's temporary name while it is being moved into place),
    `phase1_complete`, `phase2_complete`, `complete` (the final model is
    written), `evaluated`.

    Args:
        run_dir: the run folder.
    """

    def __init__(self, run_dir):
        self.path = os.path.join(os.fspath(run_dir), "state.json")
        self.values = read_json(self.path) or {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def update(self, **values):
        self.values.update(values)
        write_json_atomic(self.path, self.values)


def remove_partials(folder):
    """Deletes `.partial-*` files a killed process left anywhere under `folder`.

    Call `finish_pending_best` first: the best checkpoint an interrupted
    commit names is such a file until it is moved into place. The other
    workers' folders (`.workers/`) are left alone: each worker tidies its own,
    and a chief walking into them deleted files they were still writing.
    """
    for parent, folders, files in os.walk(folder):
        if ".workers" in folders:
            folders.remove(".workers")
        for name in files:
            if name.startswith(".partial-"):
                os.remove(os.path.join(parent, name))


def finish_pending_best(run_dir, state):
    """Completes a best-checkpoint commit that a kill interrupted.

    `EpochBackup` records an improved epoch in `state.json` (`best_epoch`,
    `best_value` and `best_pending`, the new checkpoint's temporary name)
    before it renames that file to `checkpoints/best.keras`. A process killed
    in between left the state naming the new checkpoint and the old one in
    place: this moves the pending file into place, so `best.keras` is the
    epoch the state names. Nothing happens when the state names no pending
    file or it was moved already.

    Args:
        run_dir: the run folder.
        state: its `RunState`.

    Returns:
        Whether a pending checkpoint was moved.

    Example:

    ```python
    state = RunState("runs/x")
    finish_pending_best("runs/x", state)   # before remove_partials("runs/x")
    ```
    """
    name = state.get("best_pending")
    if not name:
        return False
    folder = os.path.join(os.fspath(run_dir), "checkpoints")
    pending = os.path.join(folder, os.path.basename(name))
    moved = os.path.isfile(pending)
    if moved:
        os.replace(pending, os.path.join(folder, "best.keras"))
    state.update(best_pending=None)
    return moved


def tidy_finished_run(run_dir):
    """Removes what a kill after a finished run's last write can leave behind.

    A run is finished (`state.json` `complete`) before its `backup/` folder
    is deleted, and its evaluation writes `state.json` again afterwards; a
    process killed there leaves `backup/` or a `.partial-*` file, which a
    rerun that reuses the finished run removes with this.

    Args:
        run_dir: a finished run folder.

    Example:

    ```python
    if finished_run("runs/x", config):
        tidy_finished_run("runs/x")
    ```
    """
    run_dir = os.fspath(run_dir)
    remove_partials(run_dir)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)


def tidy_history(path, epochs=None):
    """history.csv with one row per epoch, in order.

    An epoch redone after a kill between its history row and its backup
    keeps its last row; rows past `epochs` (written by an epoch whose backup
    never landed) are dropped.
    """
    if not os.path.exists(path):
        return pd.DataFrame()
    history = pd.read_csv(path)
    history = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
    if epochs is not None:
        history = history[history["epoch"] < epochs]
    history = history.reset_index(drop=True)
    with atomic_path(path) as partial:
        history.to_csv(partial, index=False)
    return history


def changed_values(previous, config):
    """`{key: (value in a saved config.json, value in config)}` for the keys
    whose values differ ("auto" OOD values resolved first).

    A key the saved file lacks (a run begun by a release before the key
    existed) counts as its default, which keeps that release's behaviour:
    such a run still resumes unless the key is set to something else.
    """
    current = json.loads(json.dumps(config.to_dict()))
    defaults = json.loads(json.dumps(type(config)().to_dict()))
    saved = {**{k: v for k, v in defaults.items() if k not in previous}, **previous}
    for values in (saved, current):  # "auto" and what it stands for are the same
        method, layer = values.get("ood_method"), values.get("ood_layer", "auto")
        if method is not None:
            values["ood_method"] = resolved_ood_method(method, layer)
        if "ood_layer" in values:
            values["ood_layer"] = resolved_ood_layer(method, layer)
    return {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current)
            if saved.get(k) != current.get(k)}


def _differences(changed):
    """`keys a, b differ: a 1 in the folder, 2 now; ...` for an error message."""
    values = "; ".join(f"{key} {old!r} in the folder, {new!r} now"
                       for key, (old, new) in sorted(changed.items()))
    return f"keys {', '.join(sorted(changed))} differ: {values}"


def with_recorded_augment_on(config, previous):
    """`config` with `augment_on="auto"` replaced by where a run's config.json
    (`previous`, a dict or None) says "auto" put the augmentation: `train`
    records its machine's choice, and the run keeps it."""
    recorded = (previous or {}).get("augment_on")
    if config.augment_on == "auto" and recorded in ("pipeline", "model"):
        return dataclasses.replace(config, augment_on=recorded)
    return config


def with_recorded_fine_tune_rate(config, requested, previous):
    """`config` with the phase-2 peak its run folder recorded, when the caller
    left `fine_tune_learning_rate` at its default (`requested` is None).

    The default's value changed (1e-4 for every backbone until 0.x, now 3e-5
    for pretrained weights): a run begun under the old default resumes, and
    is reused, with the rate it began with rather than being refused.
    """
    recorded = (previous or {}).get("fine_tune_learning_rate")
    if requested is None and recorded is not None:
        return dataclasses.replace(config, fine_tune_learning_rate=recorded)
    return config


def with_recorded_ood_method(config, requested, previous):
    """`config` with `"knn"`, when its run folder recorded that earlier
    default and the caller left `ood_method` at `"auto"` (`requested`).

    The default changed (`"knn"`, now `"combined"`): a run begun under the
    old default resumes, and is reused, with the score it began with rather
    than being refused. Any other recorded score is compared as usual (a
    changed request is refused and named).
    """
    recorded = (previous or {}).get("ood_method")
    if requested == "auto" and recorded == EARLIER_DEFAULT_OOD_METHOD:
        return dataclasses.replace(config, ood_method=recorded)
    return config


def with_recorded_defaults(config, requested, previous):
    """`config` (resolved) with the values of defaults that changed since its
    run folder (`previous`: its config.json, a dict or None) was begun,
    where the caller left them unset (`requested`: the config before
    `resolved()`): the phase-2 peak and the OOD score."""
    config = with_recorded_fine_tune_rate(config, requested.fine_tune_learning_rate, previous)
    return with_recorded_ood_method(config, requested.ood_method, previous)


def finished_run(run_dir, config):
    """The model of a finished run of `config` in `run_dir`, or None.

    Args:
        run_dir: a run folder.
        config: the `TrainConfig` the run should have used (`"auto"` values
            are resolved before comparing).

    Returns:
        The path of `run_dir/model.keras`, or None when the run is missing or
        unfinished.

    Raises:
        ValueError: the finished run used another config (the keys are named).

    Example:

    ```python
    finished_run("runs/oct", config) or train(config, run_dir="runs/oct")
    ```
    """
    state = read_json(os.path.join(run_dir, "state.json"))
    previous = read_json(os.path.join(run_dir, "config.json"))
    model_path = os.path.join(run_dir, "model.keras")
    if not (state and state.get("complete") and previous and os.path.isfile(model_path)):
        return None
    resolved = with_recorded_defaults(config.resolved(), config, previous)
    changed = changed_values(previous, with_recorded_augment_on(resolved, previous))
    if changed:
        raise ValueError(
            f"Run folder {run_dir!r} holds a finished run with another config "
            f"({_differences(changed)}). Choose another folder or remove it."
        )
    return model_path


def claim_run_dir(run_dir, config):
    """Writes config.json, or checks that a resumed run uses the same config.

    Args:
        run_dir: the run folder.
        config: a resolved `TrainConfig`.

    Raises:
        ValueError: the folder holds a finished run, or an interrupted run
            of another config (the differing keys are named).
    """
    path = os.path.join(run_dir, "config.json")
    previous = read_json(path)
    started = any(
        os.path.exists(os.path.join(run_dir, name))
        for name in ("state.json", "history.csv", "backup")
    )
    if previous is not None and started:
        state = read_json(os.path.join(run_dir, "state.json")) or {}
        if state.get("complete"):
            raise ValueError(
                f"Run folder {run_dir!r} already holds a finished run. Choose another folder."
            )
        changed = changed_values(previous, config)
        if changed:
            raise ValueError(
                f"Run folder {run_dir!r} holds an interrupted run with another config "
                f"({_differences(changed)}); resume it with the same config or choose "
                "another folder."
            )
        return
    write_json_atomic(path, config.to_dict())
