"""The callbacks of a training run, written on Keras' public `Callback` API.

Keras' own `ModelCheckpoint` and `BackupAndRestore` write in place (a kill
while saving leaves a truncated file) and keep their state in private
attributes, which change between releases. These callbacks use only the
public hooks (`on_epoch_end`, `self.model`) and public saving
(`model.save`, `model.save_weights`), write every file to a temporary name
and rename it into place (`os.replace`, atomic on POSIX and Windows), and
keep what a resumed run needs in the run folder's `state.json` (see
`medivision_tf.training.run_dir.RunState`).

Example:

```python
state = RunState("runs/x")
callbacks = make_callbacks(config, "runs/x", state, phase=1, has_validation=True)
model.fit(train_ds, validation_data=val_ds, epochs=3, callbacks=callbacks)
```
"""

import importlib.util
import os
import sys
import zlib

import keras
import numpy as np

from medivision_tf.model import calibrate_batchnorm
from medivision_tf.training.run_dir import atomic_path


def monitor_mode(monitor):
    """`"max"` for accuracy/AUC-like quantities, `"min"` for losses."""
    return "max" if any(key in monitor for key in ("accuracy", "auc")) else "min"


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """`keras.callbacks.TerminateOnNaN` that remembers where the loss broke.

    After `fit`, `nan_at` is `(epoch, batch, loss)` if training was stopped.
    """

    def __init__(self):
        super().__init__()
        self.nan_at = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss) and self.nan_at is None:
            self.nan_at = (self.epoch, batch, float(loss))
        super().on_batch_end(batch, logs)


def _finite(logs):
    return all(np.isfinite(float(v)) for v in (logs or {}).values() if np.isscalar(v))


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever `monitor` improves on the best of the whole run.

    The best value so far comes from the run's state (both phases and every
    resume share it), so `best.keras` is the best epoch of the run, not of
    the current `fit` call. The file is written atomically and the state
    (`best_epoch`, `best_value`) is updated after it.

    Args:
        path: the checkpoint file (`.keras`).
        monitor: the log key to watch, e.g. `"val_loss"`.
        state: the run's `RunState`.
        saved_model: the model to save (default: the model being fit; give
            the inner model when fit trains a wrapper, e.g. with
            augmentation layers in front).
    """

    def __init__(self, path, monitor, state, saved_model=None):
        super().__init__()
        self.saved_model = saved_model
        self.path = os.fspath(path)
        self.monitor = monitor
        self.mode = monitor_mode(monitor)
        self.state = state

    def _better(self, value):
        best = self.state.get("best_value")
        if best is None or self.state.get("best_monitor") != self.monitor:
            return True
        return value < best if self.mode == "min" else value > best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not _finite(logs) or not self._better(float(value)):
            return
        # Written beside best.keras and committed by `EpochBackup` with the
        # epoch: a kill before the epoch's backup redoes the epoch, and its
        # discarded result must not stay the run's best.
        folder, name = os.path.split(self.path)
        os.makedirs(folder or ".", exist_ok=True)
        # One name per process and epoch: the state may still name the last
        # epoch's (already renamed) file, which must never be taken for this one.
        pending = os.path.join(folder, f".partial-{os.getpid()}-epoch{epoch + 1:05d}-{name}")
        (self.saved_model or self.model).save(pending)
        self.pending = (pending, float(value), epoch + 1)

    pending = None  # (file, value, epoch) of an improvement not yet committed

    def pending_keys(self):
        """The state keys of this epoch's improvement, to record with its backup.

        `best_pending` names the new checkpoint's temporary file (in the
        checkpoint folder) until `commit` has moved it into place; it is None
        when the epoch did not improve. A run killed between the two steps
        finds the name in `state.json` and moves the file then
        (`medivision_tf.training.run_dir.finish_pending_best`).
        """
        if self.pending is None:
            return {"best_pending": None}
        pending, value, epoch = self.pending
        return dict(best_monitor=self.monitor, best_value=value, best_epoch=epoch,
                    best_pending=os.path.basename(pending))

    def commit(self):
        """Moves a pending improvement into place (after its state was recorded).

        Returns:
            Whether there was one.
        """
        if self.pending is None:
            return False
        pending = self.pending[0]
        self.pending = None
        os.replace(pending, self.path)
        return True


class EpochBackup(keras.callbacks.Callback):
    """Backs up the weights after every finished epoch, for an exact resume.

    The weights go to a new file that is renamed into place; only then does
    `state.json` name that file, the number of finished epochs and the
    epoch's best checkpoint (when it improved), in one atomic update, so what
    a restart reads always belongs together. Epochs whose logs hold NaN/Inf
    are not backed up. Put it last: an epoch counts as done only after the
    other callbacks (history row, best checkpoint) have run.

    Args:
        backup_dir: folder of the weights file.
        state: the run's `RunState`.
        phase: 1 or 2, recorded with the epoch.
        best: the run's `BestCheckpoint`, whose improvement of this epoch is
            recorded with the backup, then moved into place.
    """

    def __init__(self, backup_dir, state, phase, best=None):
        super().__init__()
        self.backup_dir = os.fspath(backup_dir)
        self.state = state
        self.phase = phase
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch{epoch + 1:05d}.weights.h5"
        path = os.path.join(self.backup_dir, name)
        with atomic_path(path) as partial:
            self.model.save_weights(partial)
        previous = self.state.get("backup")
        # The commit point: the state names the epoch, its weights and its best
        # checkpoint (still under a temporary name) at once. The checkpoint is
        # renamed after: a kill in between leaves the name in the state, and
        # the next run moves the file before it goes on.
        best = self.best.pending_keys() if self.best is not None else {}
        self.state.update(epochs_done=epoch + 1, phase=self.phase, backup=name, **best)
        if self.best is not None:
            self.best.commit()
        if previous and previous != name:
            try:
                os.remove(os.path.join(self.backup_dir, previous))
            except FileNotFoundError:
                pass


class CalibrateBeforeValidation(keras.callbacks.Callback):
    """Re-estimates BatchNorm statistics on training batches before each validation.

    `fit` validates in inference mode, with BatchNorm's moving averages,
    which lag behind weights trained from scratch; validation metrics then
    say little about the model (and the best checkpoint and early stopping
    act on that noise). `on_test_begin` runs `calibrate_batchnorm` on
    `batches` training batches first, so validation sees the statistics the
    final model will have.

    Args:
        dataset: the training dataset of `(images, targets)` batches, or a
            function of the epoch giving it (`TrainingInputs.train_from_epoch`:
            the same batches for an epoch however many datasets came before,
            so that a resumed run validates as an uninterrupted one).
        batches: how many batches to estimate from.
    """

    def __init__(self, dataset, batches=10):
        super().__init__()
        self.dataset = dataset
        self.batches = batches
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_test_begin(self, logs=None):
        dataset = self.dataset(self.epoch) if callable(self.dataset) else self.dataset
        calibrate_batchnorm(self.model, dataset.take(self.batches))


def reseed_random_layers(model, seed, epoch):
    """Sets the state of every Keras `SeedGenerator` in `model` from (seed, epoch).

    Dropout and augmentation layers draw from a `SeedGenerator` whose state
    is left out of saved weights (a Keras choice), so a run resumed from a
    backup would replay the first epoch's dropout masks and the killed run's
    later epochs could never be matched. Keyed by the epoch, epoch `e` draws
    the same masks whether or not the run stopped before it. Generators are
    told apart by their order in `model.variables`, which the same build
    gives again. (Not by their variable path: Keras makes layer names unique
    per process, so a second build in the same process, as when a notebook
    resumes a run after training another, gets `dropout_1` where a fresh
    process gets `dropout`.)

    Args:
        model: a Keras model (nested models and layers included).
        seed: the run's seed (`TrainConfig.seed`).
        epoch: the epoch about to run (0-based, counted over both phases).

    Returns:
        How many generators were set.

    Example:

    ```python
    model = build_medivision(3, backbone="smallcnn", weights=None)
    reseed_random_layers(model, seed=0, epoch=4)   # dropout masks of epoch 4
    ```
    """
    # Below 2**31 - 1: the TensorFlow backend folds larger seeds modulo that.
    modulus = 2**31 - 1
    count = 0
    for variable in model.variables:
        if not variable.path.endswith("seed_generator_state"):
            continue
        base = (int(seed) * 7919 + zlib.crc32(str(count).encode())) % modulus
        state = np.array([(base + int(epoch) * 1_000_003) % modulus, 0])
        variable.assign(state.astype(variable.dtype))
        count += 1
    return count


class EpochSeeds(keras.callbacks.Callback):
    """`reseed_random_layers` at the start of each epoch (see there for why).

    Args:
        seed: the run's seed.
    """

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        reseed_random_layers(self.model, self.seed, epoch)


_NOTICES = set()  # one-line notices already printed in this process


def tensorboard_available():
    """Whether the `tensorboard` package (needed by `tf.summary` writers) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def make_callbacks(config, run_dir, state, phase, has_validation, is_chief=True,
                   train_dataset=None, saved_model=None, steps_per_epoch=None):
    """The callbacks of one phase of `train`.

    In order: NaN stop (first, so nothing is saved from a NaN epoch), the
    per-epoch reseeding of dropout and augmentation (`EpochSeeds`), best
    checkpoint (`run_dir/checkpoints/best.keras`, best of the whole run),
    CSV history (`run_dir/history.csv`, appended), early stopping and LR
    reduction (when their patience is set), TensorBoard (`run_dir/logs`,
    chief only, when installed) and the epoch backup (`run_dir/backup`,
    last: an epoch is backed up only after its history row is written).

    Args:
        config: a `TrainConfig` (`monitor`, patiences, `tensorboard`).
        run_dir: the run folder.
        state: the run's `RunState`.
        phase: 1 or 2.
        has_validation: whether `fit` gets validation data; without it a
            `val_*` monitor falls back to the training quantity.
        is_chief: the worker that writes TensorBoard logs.
        train_dataset: the training dataset (or a function of the epoch
            giving it), for `calibrate_before_validation`.
        saved_model: the model the best checkpoint saves (default: the one fit).
        steps_per_epoch: batches per epoch; BatchNorm is calibrated before
            validation on at most that many (and at most 10), as the final
            model is calibrated on at most one epoch's batches.

    Returns:
        A list of `keras.callbacks.Callback`.
    """
    monitor = config.monitor
    if monitor.startswith("val_") and not has_validation:
        monitor = monitor[len("val_"):]
    mode = monitor_mode(monitor)
    callbacks = [StopOnNaN(), EpochSeeds(config.seed)]
    if config.calibrate_before_validation and has_validation and train_dataset is not None:
        callbacks.append(CalibrateBeforeValidation(
            train_dataset, batches=min(10, steps_per_epoch or 10)))
    best = BestCheckpoint(os.path.join(run_dir, "checkpoints", "best.keras"), monitor, state,
                          saved_model=saved_model)
    callbacks += [
        best,
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    # A schedule sets the rate itself: ReduceLROnPlateau acts only where the
    # phase's schedule is constant (phase 2's default is cosine).
    schedule = config.lr_schedule if phase == 1 else config.fine_tune_lr_schedule
    if config.reduce_lr_patience and schedule == "constant" and not (
            phase == 2 and config.fine_tune_warmup):
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode=mode, factor=0.5, patience=config.reduce_lr_patience
            )
        )
    if config.tensorboard and is_chief:
        if tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
        elif not _NOTICES:
            _NOTICES.add("tensorboard")
            print("Note: TensorBoard logs are off: the 'tensorboard' package is not "
                  "installed (pip install tensorboard).", file=sys.stderr, flush=True)
    callbacks.append(EpochBackup(os.path.join(run_dir, "backup"), state, phase, best=best))
    return callbacks
