"""`train()`: two-phase transfer learning that resumes exactly where it was killed.

Phase 1 trains for `config.epochs` (the backbone frozen when
`freeze_backbone` resolves to True); phase 2 unfreezes all backbone layers
(or the top `fine_tune_layers`) and trains `fine_tune_epochs` more at
`fine_tune_learning_rate`. Epochs are numbered across both phases. After
every finished epoch the weights (optimizer state included) and the epoch
count are saved in the run folder, so rerunning the same call after a kill
goes on from the next epoch of the same phase, with the same number of
epochs per phase as an uninterrupted run. `train_and_evaluate` adds the
held-out evaluation, which a rerun writes if it is missing.

Example:

```python
from medivision_tf.data import make_synthetic_lesions
from medivision_tf.training import TrainConfig, train

data = make_synthetic_lesions(256, 64, 3, seed=0)
config = TrainConfig(backbone="smallcnn", weights=None, image_size=64, channels=1,
                     epochs=2, fine_tune_epochs=2, batch_size=32)
result = train(config, train_data=(data.images, data.labels),
               class_names=data.class_names, run_dir="runs/example")
result.history.tail()          # pandas DataFrame of history.csv
result.model_path              # runs/example/model.keras
```
"""

from medivision_tf.backend import INSTEAD, require_tensorflow

# Before TensorFlow is imported: on JAX or PyTorch, one clear error (docs/backends.md).
require_tensorflow(
    "medivision_tf.training (train: tf.data, tf.distribute)",
    INSTEAD["training"],
)

import dataclasses
import os
import shutil
import sys
import time
import typing

import keras
import pandas as pd
import tensorflow as tf

from medivision_tf import compat
from medivision_tf.config import resolved_ood_method
from medivision_tf.data.checks.split_record import check_same_split, write_split_file
from medivision_tf.data.pipeline.training_inputs import training_inputs
from medivision_tf.data.pipeline.augment import augmentation_model
from medivision_tf.model import (
    build_from_config,
    calibrate_batchnorm,
    set_backbone_trainable,
    set_batchnorm_momentum,
)
from medivision_tf.training.callbacks import make_callbacks, reseed_random_layers
from medivision_tf.training.compile import compile_model
from medivision_tf.training.config import TrainConfig, load_config
from medivision_tf.training.distribute import (
    choose_precision,
    choose_strategy,
    dtype_policy,
    worker_role,
)
from medivision_tf.training.run_dir import (
    RunState,
    atomic_path,
    claim_run_dir,
    finish_pending_best,
    finished_run,
    read_json,
    remove_partials,
    tidy_finished_run,
    tidy_history,
    with_recorded_augment_on,
    with_recorded_defaults,
)


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained `keras.Model` (BatchNorm calibrated).
        history: `history.csv` as a DataFrame (one row per epoch, both phases).
        run_dir: the run folder.
        model_path: the final `.keras` file.
        best_path: the best checkpoint (`checkpoints/best.keras`).
        config: the `TrainConfig` used, `"auto"` values resolved.
        class_names: the model's classes.
        epochs: number of epochs trained (both phases).
        test_data: the held-out test split (a sample table) when the data came
            from `source` (None when it has no test rows).
        num_train, num_val, num_test: images per split (None where unknown,
            e.g. a user's tf.data dataset).
        best_epoch, best_value: the epoch of `best.keras` (1-based) and its
            monitored value.
        report: the test `EvaluationReport` (`train_and_evaluate` only).
        reused: `train_and_evaluate` found this run finished and did not train.
        train_seconds: wall time of `train` (`train_and_evaluate` only).
    """

    model: keras.Model
    history: pd.DataFrame
    run_dir: str
    model_path: str
    best_path: str
    config: TrainConfig
    class_names: list
    epochs: int
    test_data: object = None
    num_train: typing.Optional[int] = None
    num_val: typing.Optional[int] = None
    num_test: typing.Optional[int] = None
    best_epoch: typing.Optional[int] = None
    best_value: typing.Optional[float] = None
    report: object = None
    reused: bool = False
    train_seconds: typing.Optional[float] = None


def resolve_augment_on(augment_on):
    """`"pipeline"` or `"model"` for `TrainConfig.augment_on` on this machine.

    `"auto"` gives `"model"` when a GPU or TPU is visible (the accelerator
    augments faster than the CPU pipeline feeds it), else `"pipeline"`.
    """
    if augment_on != "auto":
        return augment_on
    accelerators = tf.config.list_physical_devices("GPU") + tf.config.list_physical_devices("TPU")
    return "model" if accelerators else "pipeline"


def resolve_config(config=None, **overrides):
    """The config `train` runs: loaded, checked, `"auto"` values resolved.

    Warns (stderr) when a from-scratch backbone is frozen explicitly: phase 1
    would then train the head on fixed random features.
    """
    config = load_config(config, **overrides)
    if config.freeze_backbone is True and config.weights is None and config.epochs:
        print(
            "Warning: freeze_backbone=True with weights=None freezes a randomly "
            "initialised backbone: phase 1 trains the head on random features. "
            "Use freeze_backbone='auto' (the default) to train it all.",
            file=sys.stderr, flush=True,
        )
    return config.resolved()


def fit_ood_method(config, requested):
    """The `ood_method` `train` gives `fit_trust`: `"auto"` where the caller
    left it so and the run uses what it stands for (`fit_trust` then fits
    kNN on too few validation images for the default, and says so), else
    the run's own."""
    if requested.ood_method == "auto" and config.ood_method == resolved_ood_method(
            "auto", config.ood_layer):
        return "auto"
    return config.ood_method


def train(
    config=None,
    *,
    train_data=None,
    val_data=None,
    class_names=None,
    run_dir="runs/train",
    strategy=None,
    callbacks=(),
    verbose=1,
    **overrides,
):
    """Trains a MediVision model in two phases, resuming an interrupted run.

    The model is built and compiled inside the strategy's scope; Keras
    distributes the datasets. Calling `train` again with the same `run_dir`
    and config resumes from the last finished epoch, in the same phase.

    Args:
        config: a `TrainConfig`, a dict, a JSON file path or None (defaults).
        train_data: `(images, labels)` arrays, a sample table (pandas
            DataFrame from `medivision_tf.data`, e.g. `load_source`'s train
            split) or a `tf.data.Dataset` of `(images, labels)`; images raw
            0-255, labels class ids (multi-hot when multi-label). `None`: read
            `config.source`. Arrays and tables go through
            `medivision_tf.data.make_dataset` like a source (uint8 until
            batched, resized to `image_size`, `augment`, `cache`, seeded
            shuffle); a tf.data dataset is used as given.
        val_data: validation data in any of these forms (optional).
        class_names: class names for `train_data` (default: the source's or
            table's; `class_0`, ... for arrays). Required with a tf.data dataset.
        run_dir: the run folder (created; see `medivision_tf.training.run_dir`).
        strategy: a `tf.distribute.Strategy` (default: `config.strategy`).
        callbacks: extra Keras callbacks for both phases.
        verbose: Keras progress bars (1), one line per epoch (2) or none (0).
        **overrides: config keys to change.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: bad config, a run folder holding another config, data
            whose classes do not match, or no data.
        FloatingPointError: the loss became NaN/Inf (the last good checkpoint
            is kept in `run_dir/checkpoints/best.keras`).

    Example:

    ```python
    from medivision_tf.data import make_synthetic_lesions
    data = make_synthetic_lesions(128, 64, 3, seed=0)
    result = train(dict(backbone="smallcnn", weights=None, image_size=64, channels=1,
                        epochs=1, fine_tune_epochs=1),
                   train_data=(data.images, data.labels), class_names=data.class_names,
                   run_dir="runs/tiny")
    ```
    """
    requested = load_config(config, **overrides)  # before "auto" and None are resolved
    config = resolve_config(requested)
    # The strategy first: multi-worker and TPU set-up must precede any TF op.
    strategy = strategy or choose_strategy(config.strategy)
    is_chief, worker = worker_role(strategy)
    run_dir = os.fspath(run_dir)
    work_dir = run_dir if is_chief else os.path.join(run_dir, ".workers", worker)
    os.makedirs(work_dir, exist_ok=True)
    if config.augment_on != "auto" and not config.augment and is_chief:  # once per run
        print(f"Warning: augment_on={config.augment_on!r} has no effect without augment=True.",
              file=sys.stderr, flush=True)
    previous = read_json(os.path.join(work_dir, "config.json")) or {}
    config = with_recorded_augment_on(config, previous)
    config = with_recorded_defaults(config, requested, previous)
    if config.augment_on == "auto" and previous.get("augment_on") != "auto":
        # A new run settles "auto" on this machine (config.json records it);
        # an "auto" recorded by an older version stays as it was.
        config = dataclasses.replace(config, augment_on=resolve_augment_on("auto"))
    claim_run_dir(work_dir, config)
    state = RunState(work_dir)
    finish_pending_best(work_dir, state)  # a kill between an epoch's commit and its rename
    remove_partials(work_dir)  # left by a process killed while writing
    keras.utils.set_random_seed(config.seed)

    def say(message):
        if verbose and is_chief:
            print(message, flush=True)

    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    augment_on = resolve_augment_on(config.augment_on)
    inputs = training_inputs(config, global_batch=global_batch, train_data=train_data,
                             augment_in_pipeline=augment_on == "pipeline",
                             val_data=val_data, class_names=class_names)
    if is_chief:  # "N of M images used"; skipped_files.csv and inputs.json
        inputs.write_report(work_dir, say if verbose else None)
    policy = choose_precision(config.mixed_precision, strategy)
    with strategy.scope(), dtype_policy(policy):
        model = build_from_config(config.model_config(inputs.class_names))
        fit_model = model
        if config.augment and augment_on == "model":
            # Augmentation on the accelerator: layers in front of the model
            # while fitting (active in training only); `model`, which is
            # saved and exported, has none.
            fit_model = keras.Sequential([augmentation_model(seed=config.seed), model],
                                         name="training")
    if config.batchnorm_momentum is not None:
        set_batchnorm_momentum(model, config.batchnorm_momentum)
    say(f"Strategy: {type(strategy).__name__} ({replicas} replica(s)), dtype policy "
        f"{policy}, global batch {global_batch}.")
    if config.augment:
        say("Augmentation: " + ("layers in front of the model while fitting (on the "
                                "accelerator; the saved model has none)."
                                if augment_on == "model" else "in the tf.data pipeline."))

    backup_dir = os.path.join(work_dir, "backup")
    total_epochs = config.epochs + config.fine_tune_epochs
    keep_bn = config.keep_batchnorm_frozen
    if keep_bn is None:
        keep_bn = config.weights is not None
    fit = _Fitter(fit_model, model, inputs, config, strategy, state, work_dir, is_chief,
                  list(callbacks), verbose)
    if not state.get("complete") and state.get("backup"):
        say(f"Resuming after epoch {state.get('epochs_done', 0)} of {total_epochs}.")

    # === Phase 1: the head (backbone frozen), or everything from scratch ===
    if config.epochs and not state.get("phase1_complete"):
        if config.freeze_backbone:
            set_backbone_trainable(model, False)
        else:
            set_backbone_trainable(model, True, keep_batchnorm_frozen=keep_bn)
        say(f"Phase 1: {config.epochs} epoch(s) (from epoch {state.get('epochs_done', 0) + 1}), "
            "backbone "
            f"{'frozen' if config.freeze_backbone else 'trainable'}, "
            f"learning rate {config.learning_rate}.")
        fit(1, config.learning_rate, 0, config.epochs)

    # === Phase 2: fine-tuning (backbone unfrozen) ===
    if config.fine_tune_epochs and not state.get("phase2_complete"):
        unfreeze = True if config.fine_tune_layers is None else config.fine_tune_layers
        count = set_backbone_trainable(model, unfreeze, keep_batchnorm_frozen=keep_bn)
        say(f"Phase 2: {config.fine_tune_epochs} epoch(s) (from epoch "
            f"{max(state.get('epochs_done', 0), config.epochs) + 1}), {count} backbone layer(s) "
            f"trainable, learning rate {config.fine_tune_learning_rate} "
            f"({_phase2_schedule_text(config, inputs.steps)}).")
        fit(2, config.fine_tune_learning_rate, config.epochs, total_epochs)

    model_path = os.path.join(work_dir, "model.keras")
    history_path = os.path.join(work_dir, "history.csv")
    if not state.get("complete"):
        fit.restore_last(compiled=False)  # a rerun after a kill during the final write
        # Random layers as the last epoch left them, however the run got here.
        reseed_random_layers(fit_model, config.seed, total_epochs)
        if config.calibrate_batchnorm:
            batches = min(inputs.steps or 50, 50)
            calibrate_batchnorm(model, inputs.train_from_epoch(0).take(batches))
        if config.trust and inputs.val is not None and not config.multi_label:
            from medivision_tf.trust import fit_trust

            fit_trust(model, inputs.val, alpha=config.conformal_alpha,
                      conformal_method=config.conformal_method,
                      ood_method=fit_ood_method(config, requested),
                      ood_layer=config.ood_layer,
                      seed=config.seed)
        with atomic_path(model_path) as partial:
            model.save(partial)
        # Tidied before the run counts as finished: a rerun of a finished
        # run rewrites nothing of it.
        tidy_history(history_path)
        state.update(complete=True, backup=None, best_pending=None)
        shutil.rmtree(backup_dir, ignore_errors=True)
    history = pd.read_csv(history_path) if os.path.exists(history_path) else pd.DataFrame()
    if not is_chief:
        model_path = os.path.join(run_dir, "model.keras")
    say(f"Trained {len(history)} epoch(s); model written to {model_path}")
    return TrainResult(
        model=model,
        history=history,
        run_dir=run_dir,
        model_path=model_path,
        best_path=os.path.join(run_dir, "checkpoints", "best.keras"),
        config=config,
        class_names=inputs.class_names,
        epochs=len(history),
        test_data=inputs.test_table,
        num_train=None if inputs.train_table is None else len(inputs.train_table),
        num_val=None if inputs.val_table is None else len(inputs.val_table),
        num_test=None if inputs.test_table is None else len(inputs.test_table),
        best_epoch=state.get("best_epoch"),
        best_value=state.get("best_value"),
    )


class _Fitter:
    """Runs one phase's `fit` from where the run folder says it stopped."""

    def __init__(self, model, saved_model, inputs, config, strategy, state, work_dir,
                 is_chief, extra_callbacks, verbose):
        # `model` is what fit trains (augmentation layers in front of
        # `saved_model` when augment_on="model"); `saved_model` is what the
        # checkpoints hold.
        self.model, self.saved_model, self.inputs, self.config = model, saved_model, inputs, config
        self.strategy, self.state, self.work_dir = strategy, state, work_dir
        self.is_chief, self.extra, self.verbose = is_chief, extra_callbacks, verbose

    def restore_last(self, compiled):
        """Loads the weights of the last finished epoch, if any.

        With `compiled`, the optimizer is built first so that its state
        (moments, step count) is restored too; otherwise only the model's
        weights are (a new phase starts a new optimizer).
        """
        name = self.state.get("backup")
        if not name:
            return
        if compiled:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.work_dir, "backup", name))

    def __call__(self, phase, learning_rate, first_epoch, end_epoch):
        config, state = self.config, self.state
        done = max(state.get("epochs_done", 0), first_epoch)
        same_phase = state.get("phase") == phase and done > first_epoch
        if not same_phase:
            self.restore_last(compiled=False)  # the weights the previous phase ended with
        compile_model(self.model, config, self.strategy, learning_rate, self.inputs.steps,
                      end_epoch - first_epoch, len(self.inputs.class_names), phase)
        if same_phase:
            self.restore_last(compiled=True)
        # Calibrating BatchNorm before each validation runs the model outside
        # fit's distributed loop: left out across several workers.
        multi_worker = isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)
        callbacks = make_callbacks(config, self.work_dir, state, phase,
                                   self.inputs.val is not None, self.is_chief,
                                   train_dataset=(None if multi_worker
                                                  else self.inputs.train_from_epoch),
                                   saved_model=self.saved_model,
                                   steps_per_epoch=self.inputs.steps)
        callbacks = callbacks[:-1] + self.extra + callbacks[-1:]
        # The stream where the run's earlier epochs left it (each phase, each
        # resume), so a resumed run sees the batches of one never stopped.
        train = self.inputs.train_from_epoch(done)
        if multi_worker:
            compat.patch_for_multi_worker(self.model, train)
        if done < end_epoch:
            self.model.fit(
                train, validation_data=self.inputs.val,
                class_weight=self.inputs.class_weight,
                steps_per_epoch=(self.inputs.steps if self.inputs.train_table is not None
                                 else config.steps_per_epoch),
                epochs=end_epoch, initial_epoch=done, callbacks=callbacks,
                verbose=self.verbose if self.is_chief else 0,
                shuffle=False,  # the dataset is already shuffled (seeded)
            )
        _raise_on_nan(callbacks[0], config, self.work_dir, phase)
        # The phase's last weights (early stopping may have restored its best
        # epoch): the next phase and a rerun start from them.
        name = f"phase{phase}_end.weights.h5"
        os.makedirs(os.path.join(self.work_dir, "backup"), exist_ok=True)
        with atomic_path(os.path.join(self.work_dir, "backup", name)) as partial:
            self.model.save_weights(partial)
        state.update(**{f"phase{phase}_complete": True}, backup=name, phase=phase,
                     epochs_done=end_epoch)


def _phase2_schedule_text(config, steps):
    """How phase 2's learning rate moves, for the progress line."""
    if not steps and (config.fine_tune_warmup or config.fine_tune_lr_schedule != "constant"):
        return ("constant: the training data's length is unknown; set steps_per_epoch "
                "for the warm-up and schedule")
    warmup = (f"linear warm-up over {config.fine_tune_warmup:.0%} of the phase, then "
              if config.fine_tune_warmup else "")
    return warmup + {"cosine": "cosine decay to 0", "constant": "constant",
                     "exponential": "x0.9 per epoch"}[config.fine_tune_lr_schedule]


def _raise_on_nan(stop, config, run_dir, phase):
    if stop.nan_at is None:
        return
    epoch, batch, loss = stop.nan_at
    best = os.path.join(run_dir, "checkpoints", "best.keras")
    kept = (
        f"The last good checkpoint is kept: {best}."
        if os.path.exists(best)
        else "No checkpoint was saved before it."
    )
    raise FloatingPointError(
        f"Training stopped: the loss became {loss} at epoch {epoch + 1}, batch "
        f"{batch + 1} (phase {phase}). {kept} Try a lower learning rate "
        f"(learning_rate={config.learning_rate}, fine_tune_learning_rate="
        f"{config.fine_tune_learning_rate}) or check the data for bad values; "
        "start the new run in another folder."
    )


def train_and_evaluate(config=None, *, run_dir="runs/train", evaluate=True, require_test=False,
                       reuse=False, tta=False, verbose=1, **overrides):
    """Trains on `config.source`, draws the training curves and evaluates on
    the held-out test split: what `medivision train` and `medivision
    reproduce` do.

    The source is read and split once (`load_source`); `train` gets the train
    and val tables, `medivision_tf.evaluation.evaluate_model` the test table.
    Writes `run_dir/training_curves.png` and `run_dir/evaluation/` (see
    `medivision_tf.evaluation`) besides the run folder of `train`. A rerun
    after a kill during the evaluation writes the evaluation.

    Args:
        config: a `TrainConfig`, a dict, a JSON file path or None; `source`
            must be set.
        run_dir: the run folder.
        evaluate: evaluate on the test split when there is one.
        require_test: refuse a source without test rows before training.
        reuse: when `run_dir` holds a finished run of this config
            (`finished_run`), load its model instead of training again
            (another config there is refused, naming the keys). A finished
            run whose evaluation is missing is always reused.
        tta: test-time augmentation for the evaluation (see
            `medivision_tf.prediction.predict_probabilities`).
        verbose: Keras progress bars (1), one line per epoch (2) or none (0).
        **overrides: config keys to change.

    Returns:
        A `TrainResult` with `report` (the `EvaluationReport`, or None),
        `num_train`/`num_val`/`num_test`, `reused` and `train_seconds`.

    Raises:
        ValueError: as `train`, or no test rows with `require_test`.

    Example:

    ```python
    result = train_and_evaluate(dict(source="data/chest_xray", epochs=5), run_dir="runs/cxr")
    result.report.summary["accuracy"], result.num_test
    ```
    """
    from medivision_tf.data.checks.source_splits import load_source
    from medivision_tf.evaluation import evaluate_model, plot_history

    # `requested` keeps "auto" and None as given: a run folder begun under an
    # earlier default is reused and resumed with it (finished_run, train).
    requested = load_config(config, **overrides)
    config = requested.resolved()
    run_dir = os.fspath(run_dir)
    splits, class_names = load_source(config)
    test = splits["test"] if len(splits["test"]) else None
    if require_test and test is None:
        raise ValueError(
            f"Source {config.source!r} has no test images: it has a split column without "
            f"'test' rows, or test_split is 0. Received: test_split={config.test_split}"
        )
    model_path = finished_run(run_dir, requested)
    # Before anything is trained or evaluated: the folder's data must be this data.
    check_same_split(run_dir, splits, class_names)
    state = RunState(run_dir)
    unevaluated = evaluate and test is not None and not state.get("evaluated")
    if model_path and (reuse or unevaluated):
        tidy_finished_run(run_dir)  # what a kill after the final write left
        history_csv = os.path.join(run_dir, "history.csv")
        history = pd.read_csv(history_csv) if os.path.exists(history_csv) else pd.DataFrame()
        result = TrainResult(
            model=keras.saving.load_model(model_path, compile=False, safe_mode=True),
            history=history, run_dir=run_dir, model_path=model_path,
            best_path=os.path.join(run_dir, "checkpoints", "best.keras"),
            config=with_recorded_defaults(config, requested,
                                          read_json(os.path.join(run_dir, "config.json"))),
            class_names=list(class_names), epochs=len(history), reused=True,
            best_epoch=state.get("best_epoch"), best_value=state.get("best_value"),
        )
    else:
        start = time.perf_counter()
        result = train(
            requested, train_data=splits["train"],
            val_data=splits["val"] if len(splits["val"]) else None,
            class_names=class_names, run_dir=run_dir, verbose=verbose,
        )
        result.train_seconds = round(time.perf_counter() - start, 2)
    result.test_data = test
    write_split_file(run_dir, splits, class_names)  # split.csv with the test split too
    result.num_train, result.num_val, result.num_test = (
        len(splits["train"]), len(splits["val"]), len(splits["test"])
    )
    history_csv = os.path.join(run_dir, "history.csv")
    if os.path.exists(history_csv):
        plot_history(history_csv, os.path.join(run_dir, "training_curves.png"))
    if evaluate and test is not None:
        result.report = evaluate_model(
            result.model, test, out_dir=os.path.join(run_dir, "evaluation"),
            batch_size=config.batch_size, tta=tta, verbose="auto" if verbose else 0,
        )
        RunState(run_dir).update(evaluated=True)
    return result
