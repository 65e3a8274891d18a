"""Training: config, strategy choice, compile, two-phase fine-tuning, callbacks, resume.

A run is described by one `TrainConfig` (JSON or command-line flags) and
writes one folder:

```
run_dir/
  config.json             the config used (a rerun with another config is refused)
  history.csv             one row per epoch, both phases (CSVLogger)
  checkpoints/best.keras  best model so far (ModelCheckpoint, written atomically)
  backup/phase1|phase2/   BackupAndRestore state (a killed run resumes from it)
  phase1.weights.h5       weights at the end of phase 1 (resume starts phase 2 from it)
  logs/                   TensorBoard
  model.keras             the final model
  state.json              which phases are done
```

Training is two-phase transfer learning: phase 1 trains the head with the
backbone frozen (`medivision_tf.set_backbone_trainable(model, False)`), phase
2 unfreezes all of the backbone or its top `fine_tune_layers` layers and goes
on at `fine_tune_learning_rate`. Epochs are counted across both phases, so a
run of `epochs + fine_tune_epochs` epochs ends with that many rows in
`history.csv`, interrupted or not.

Example:

```python
import medivision_tf
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

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
import typing

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf import backbones
from medivision_tf.model import (
    build_medivision,
    calibrate_batchnorm,
    check_class_names,
    set_backbone_trainable,
)

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "exponential")
LOSSES = ("crossentropy", "focal")
CLASS_WEIGHTS = ("none", "balanced")
MIXED_PRECISION = ("none", "auto", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; written to `run_dir/config.json`.

    Attributes:
        source: dataset to train on: an image directory tree, a CSV file, an
            `.npz` file or a prepared dataset folder (read by
            `medivision_tf.data.as_table`; a `str` or a path object such as
            `pathlib.Path`, stored as `str`). `None` when arrays, tables or
            datasets are passed to `train` directly.
        val_split: fraction of `source` held out for validation. A source
            already split into train and test without val gives this fraction
            of its train split to validation.
        test_split: fraction of `source` held out for the final test.
        image_size: side of the square images the model takes.
        channels: 1 (grayscale) or 3 (RGB).
        backbone: a name from `medivision_tf.available_backbones()`.
        weights: `"imagenet"`, `None` (from scratch) or a weights file path.
        sequence: `"spatial"` or `"rows"` (see `build_medivision`).
        lstm_units, projection_units, attention_units, dropout: head sizes
            (see `build_medivision`; `projection_units=None` feeds the LSTM
            the raw backbone features).
        lstm_unroll: unroll the LSTM (same function, no `while` loop; see
            `build_medivision`; keep False on GPUs, where the rolled LSTM runs
            the cuDNN kernel).
        multi_label: sigmoid outputs and a binary loss on multi-hot labels.
        batch_size: images per replica and step; the global batch is
            `batch_size * strategy.num_replicas_in_sync`.
        epochs: phase-1 epochs (head only when `freeze_backbone`).
        fine_tune_epochs: phase-2 epochs (backbone unfrozen); 0 skips phase 2.
        fine_tune_layers: unfreeze only the top N backbone layers in phase 2
            (`None`: all of them).
        freeze_backbone: freeze the backbone in phase 1. Set False to train
            everything from the first epoch (e.g. a from-scratch backbone).
        keep_batchnorm_frozen: keep the backbone's BatchNorm layers frozen when
            unfreezing (`None`: True for pretrained weights, False from scratch).
        optimizer: one of `adam`, `adamw`, `sgd` (momentum 0.9), `rmsprop`.
        learning_rate: phase-1 learning rate.
        fine_tune_learning_rate: phase-2 learning rate (lower: do not wreck the
            pretrained features).
        weight_decay: decoupled weight decay (0: none).
        lr_schedule: `constant`, `cosine` (decay to 0 over the phase) or
            `exponential` (x0.9 per epoch).
        label_smoothing: in [0, 1).
        loss: `crossentropy` or `focal` (Keras' focal cross-entropy, for
            class imbalance).
        focal_gamma: focusing parameter of the focal loss.
        class_weight: `none` or `balanced` (n / (k * count) per class, by
            `medivision_tf.data.class_weights`; a class without training
            images is refused). With a tf.data dataset of yours, the dataset
            is read once beforehand to count its labels.
        early_stopping_patience: epochs without `monitor` improving before a
            phase stops (0: never).
        reduce_lr_patience: epochs without improvement before the learning
            rate is halved (0: never; needs `lr_schedule="constant"`).
        monitor: quantity watched by the best checkpoint, early stopping and
            LR reduction (`val_loss` falls back to `loss` without validation).
        tensorboard: write TensorBoard logs to `run_dir/logs`.
        strategy: `auto` (a TPU, then a TF_CONFIG cluster of several tasks,
            then several GPUs, else the default strategy) or one of `default`,
            `one_device`, `mirrored`, `multi_worker`, `tpu` to force it.
        mixed_precision: `none`, `auto` (`mixed_float16` on GPU,
            `mixed_bfloat16` on TPU, none on CPU), `mixed_float16` or
            `mixed_bfloat16`. The output layers stay float32.
        augment: random flips/rotations/zoom in the training pipeline
            (sources, tables and arrays; not user tf.data datasets).
        cache: cache decoded images in memory (same).
        steps_per_epoch: this many steps per epoch (`None`: one pass over the
            training set, rounded up to whole batches). Sources, tables and
            arrays repeat, so epochs go on through the data; a tf.data
            dataset of yours is not repeated.
        calibrate_batchnorm: re-estimate trainable BatchNorm statistics on the
            training images after training (needed after short from-scratch
            trainings; frozen pretrained BatchNorm is left alone).
        seed: seed of the split, the weights, the shuffling and augmentation.
    """

    source: typing.Optional[str] = None
    val_split: float = 0.15
    test_split: float = 0.15
    image_size: int = 224
    channels: int = 3
    backbone: str = "efficientnetb0"
    weights: typing.Optional[str] = "imagenet"
    sequence: str = "spatial"
    lstm_units: int = 128
    projection_units: typing.Optional[int] = 128
    lstm_unroll: bool = False
    attention_units: int = 64
    dropout: float = 0.3
    multi_label: bool = False
    batch_size: int = 32
    epochs: int = 10
    fine_tune_epochs: int = 5
    fine_tune_layers: typing.Optional[int] = None
    freeze_backbone: bool = True
    keep_batchnorm_frozen: typing.Optional[bool] = None
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    label_smoothing: float = 0.0
    loss: str = "crossentropy"
    focal_gamma: float = 2.0
    class_weight: str = "none"
    early_stopping_patience: int = 0
    reduce_lr_patience: int = 0
    monitor: str = "val_loss"
    tensorboard: bool = True
    strategy: str = "auto"
    mixed_precision: str = "none"
    augment: bool = False
    cache: bool = False
    steps_per_epoch: typing.Optional[int] = None
    calibrate_batchnorm: bool = True
    seed: int = 0

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            coerced = _check_type(field.name, value, hints[field.name])
            object.__setattr__(self, field.name, coerced)
        self._check_values()

    def _check_values(self):
        choices = {
            "strategy": STRATEGIES,
            "optimizer": OPTIMIZERS,
            "lr_schedule": LR_SCHEDULES,
            "loss": LOSSES,
            "class_weight": CLASS_WEIGHTS,
            "mixed_precision": MIXED_PRECISION,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"Config key {key!r}: unknown value {getattr(self, key)!r}. "
                    f"Choose one of: {', '.join(allowed)}."
                )
        for key in ("val_split", "test_split", "label_smoothing"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(
                    f"Config key {key!r} must be in [0, 1). "
                    f"Received: {key}={getattr(self, key)!r}"
                )
        for key in ("learning_rate", "fine_tune_learning_rate", "batch_size", "image_size"):
            if getattr(self, key) <= 0:
                raise ValueError(
                    f"Config key {key!r} must be > 0. Received: {key}={getattr(self, key)!r}"
                )
        for key in ("epochs", "fine_tune_epochs", "early_stopping_patience",
                    "reduce_lr_patience", "weight_decay", "focal_gamma"):
            if getattr(self, key) < 0:
                raise ValueError(
                    f"Config key {key!r} must be >= 0. Received: {key}={getattr(self, key)!r}"
                )
        for key in ("steps_per_epoch", "fine_tune_layers", "projection_units"):
            value = getattr(self, key)
            if value is not None and value < (0 if key == "fine_tune_layers" else 1):
                raise ValueError(
                    f"Config key {key!r} must be None or a positive integer. "
                    f"Received: {key}={value!r}"
                )
        if self.channels not in (1, 3):
            raise ValueError(
                f"Config key 'channels' must be 1 or 3. Received: channels={self.channels!r}"
            )
        if self.epochs + self.fine_tune_epochs < 1:
            raise ValueError(
                "Config keys 'epochs' + 'fine_tune_epochs' must be >= 1. Received: "
                f"epochs={self.epochs}, fine_tune_epochs={self.fine_tune_epochs}"
            )
        if self.reduce_lr_patience and self.lr_schedule != "constant":
            raise ValueError(
                "Config key 'reduce_lr_patience' needs lr_schedule='constant' "
                "(a schedule already sets the learning rate). Received: "
                f"reduce_lr_patience={self.reduce_lr_patience}, "
                f"lr_schedule={self.lr_schedule!r}"
            )
        if self.multi_label and self.class_weight != "none":
            raise ValueError(
                "Config key 'class_weight' must be 'none' with multi_label=True "
                "(Keras class weights need one class per image); use loss='focal' "
                f"for imbalance. Received: class_weight={self.class_weight!r}"
            )
        if isinstance(self.weights, str) and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        spec = backbones.get_backbone(self.backbone)
        if self.weights == "imagenet" and not spec.has_imagenet_weights:
            raise ValueError(
                f"Config key 'weights': backbone {self.backbone!r} has no ImageNet "
                "weights. Use weights=None (from scratch) or a weights file path."
            )

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict, refusing unknown keys.

        Raises:
            ValueError: a key is not a `TrainConfig` field (the message names it
                and lists the valid keys).
            TypeError: a value has the wrong type (the message names the key).
        """
        if not isinstance(values, dict):
            raise TypeError(
                f"A training config must be a JSON object (dict). Received: {type(values).__name__}"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"Unknown config key(s) {', '.join(repr(k) for k in unknown)}. "
                f"Valid keys: {', '.join(names)}."
            )
        return cls(**values)

    @classmethod
    def from_json(cls, path):
        """Reads a config from a JSON file (see `from_dict`)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Config file not found: {path!r}")
        with open(path) as f:
            try:
                values = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"Config file {path!r} is not valid JSON: {error}") from None
        return cls.from_dict(values)

    def to_dict(self):
        """The config as a JSON-ready dict of every key (what `config.json` holds).

        Returns:
            `{key: value}` for every field; `TrainConfig.from_dict` reads it back.

        Example:

        ```python
        TrainConfig(epochs=3).to_dict()["epochs"]   # 3
        ```
        """
        return dataclasses.asdict(self)

    def replace(self, **changes):
        """A copy with some keys changed (unknown keys refused)."""
        return self.from_dict({**self.to_dict(), **changes})


def _check_type(key, value, hint):
    """Checks `value` against a field annotation; ints are accepted as floats
    and path objects (`os.PathLike`, e.g. `pathlib.Path`) as strings."""
    optional = typing.get_origin(hint) is typing.Union
    base = [t for t in typing.get_args(hint) if t is not type(None)][0] if optional else hint
    if value is None and optional:
        return None
    if base is str and isinstance(value, os.PathLike):
        value = os.fspath(value)
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        allowed = f"{base.__name__}" + (" or null" if optional else "")
        raise TypeError(
            f"Config key {key!r} must be {allowed}. Received: {key}={value!r} "
            f"({type(value).__name__})"
        )
    return value


def load_config(config=None, **overrides):
    """A `TrainConfig` from a config, a dict, a JSON path or nothing, plus overrides.

    Example:

    ```python
    config = load_config("train.json", epochs=3)
    ```
    """
    if config is None:
        values = {}
    elif isinstance(config, TrainConfig):
        values = config.to_dict()
    elif isinstance(config, dict):
        values = dict(config)
        TrainConfig.from_dict(values)  # name unknown keys of the file itself
    elif isinstance(config, (str, os.PathLike)):
        values = TrainConfig.from_json(config).to_dict()
    else:
        raise TypeError(
            "`config` must be a TrainConfig, a dict, a JSON file path or None. "
            f"Received: {type(config).__name__}"
        )
    return TrainConfig.from_dict({**values, **overrides})


# === Strategies and mixed precision ===


def _tf_config_cluster():
    """The cluster named by the TF_CONFIG environment variable, or None."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cluster = json.loads(raw).get("cluster") or {}
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"TF_CONFIG is not a JSON object with a 'cluster': {raw!r}") from None
    tasks = sum(len(addresses) for addresses in cluster.values())
    return cluster if tasks > 1 else None


def _tpu_resolver():
    """A connected TPUClusterResolver, or None when there is no TPU.

    Physical devices only: listing logical ones would start the TF context,
    after which MultiWorkerMirroredStrategy can no longer be set up.
    """
    if not (
        tf.config.list_physical_devices("TPU")
        or os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
    ):
        return None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, tf.errors.NotFoundError):
        return None


def choose_strategy(name="auto"):
    """Returns the `tf.distribute.Strategy` to build, compile and fit under.

    Create it first thing in the program: MultiWorkerMirroredStrategy and
    TPUs must be set up before TensorFlow runs any other operation.

    Args:
        name: `"auto"` picks, in this order: TPUStrategy when a TPU is
            reachable, MultiWorkerMirroredStrategy when TF_CONFIG names a
            cluster of several tasks, MirroredStrategy when there are several
            GPUs, else the default strategy. `"default"`,
            `"one_device"`, `"mirrored"` (all GPUs, or all logical CPU
            devices when there is no GPU), `"multi_worker"` and `"tpu"` force
            one.

    Returns:
        A `tf.distribute.Strategy`.

    Example:

    ```python
    strategy = choose_strategy("auto")
    with strategy.scope():
        model = medivision_tf.build_medivision(3, backbone="smallcnn", weights=None,
                                               input_shape=(64, 64, 1))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ```
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {name!r}. Choose one of: {', '.join(STRATEGIES)}."
        )
    if name == "auto":
        resolver = _tpu_resolver()
        if resolver is not None:
            return tf.distribute.TPUStrategy(resolver)
        if _tf_config_cluster() is not None:
            return tf.distribute.MultiWorkerMirroredStrategy()
        if len(tf.config.list_physical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("CPU")]
        )
    if name == "multi_worker":
        if _tf_config_cluster() is None:
            raise ValueError(
                "strategy='multi_worker' needs TF_CONFIG naming a cluster of at "
                f"least two tasks. Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = _tpu_resolver()
    if resolver is None:
        raise ValueError("strategy='tpu' but no TPU was found (set TPU_NAME, or use 'auto').")
    return tf.distribute.TPUStrategy(resolver)


def _is_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def choose_precision(mode, strategy):
    """The Keras dtype policy name for `TrainConfig.mixed_precision`.

    Args:
        mode: `"none"`, `"auto"`, `"mixed_float16"` or `"mixed_bfloat16"`.
            `"auto"` gives `mixed_bfloat16` on TPU, `mixed_float16` on GPU and
            `float32` on CPU (where float16 math is slow).
        strategy: the `tf.distribute.Strategy` the model is trained under
            (only used by `"auto"`, to recognise a TPU).

    Returns:
        A Keras dtype policy name, for `keras.config.set_dtype_policy` or
        `dtype_policy`.

    Example:

    ```python
    with dtype_policy(choose_precision("auto", strategy)):
        model = build_medivision(3)
    ```
    """
    if mode not in MIXED_PRECISION:
        raise ValueError(
            f"Unknown mixed_precision {mode!r}. Choose one of: {', '.join(MIXED_PRECISION)}."
        )
    if mode == "none":
        return "float32"
    if mode == "auto":
        if _is_tpu(strategy):
            return "mixed_bfloat16"
        return "mixed_float16" if tf.config.list_logical_devices("GPU") else "float32"
    return mode


@contextlib.contextmanager
def dtype_policy(name):
    """Sets Keras' global dtype policy inside the block, then restores it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _worker(strategy):
    """(is_chief, worker name) for multi-worker strategies; (True, None) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True, None
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )
    return chief, f"{task_type}-{task_id}"


# === Losses, optimizers, metrics ===


def make_loss(config):
    """The Keras loss for a config (labels are one-hot or multi-hot)."""
    if config.multi_label:
        if config.loss == "focal":
            return keras.losses.BinaryFocalCrossentropy(
                gamma=config.focal_gamma, label_smoothing=config.label_smoothing
            )
        return keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing)
    if config.loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            gamma=config.focal_gamma, label_smoothing=config.label_smoothing
        )
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)


def make_optimizer(config, learning_rate, steps_per_epoch=None, epochs=None):
    """The Keras optimizer for a config, with its learning-rate schedule.

    Args:
        config: a `TrainConfig` (`optimizer`, `lr_schedule`, `weight_decay`).
        learning_rate: the phase's initial learning rate.
        steps_per_epoch: optimizer steps per epoch; needed by the `cosine`
            (decays to 0 over `steps_per_epoch * epochs`) and `exponential`
            (x0.9 per epoch) schedules.
        epochs: epochs of the phase (for `cosine`).

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: a schedule without a known `steps_per_epoch`.

    Example:

    ```python
    config = TrainConfig(optimizer="adamw", lr_schedule="cosine", weight_decay=1e-4)
    optimizer = make_optimizer(config, 1e-3, steps_per_epoch=100, epochs=5)
    ```
    """
    rate = learning_rate
    if config.lr_schedule != "constant":
        if not steps_per_epoch:
            raise ValueError(
                f"lr_schedule={config.lr_schedule!r} needs a known number of steps per "
                "epoch: set 'steps_per_epoch' for datasets of unknown length."
            )
        if config.lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(
                learning_rate, decay_steps=max(steps_per_epoch * epochs, 1)
            )
        else:
            rate = keras.optimizers.schedules.ExponentialDecay(
                learning_rate, decay_steps=steps_per_epoch, decay_rate=0.9
            )
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate, weight_decay=decay)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    return keras.optimizers.RMSprop(rate, weight_decay=decay)


def make_metrics(config, num_classes):
    """The metrics `train` compiles with (named as in `history.csv`).

    Args:
        config: a `TrainConfig` (`multi_label`).
        num_classes: number of outputs (for the multi-label AUC).

    Returns:
        Single-label: `[CategoricalAccuracy("accuracy")]` (targets are
        one-hot). Multi-label: `[BinaryAccuracy("accuracy"),
        AUC(multi_label=True, name="auc")]`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=make_loss(config),
                  metrics=make_metrics(config, num_classes=3))
    ```
    """
    if config.multi_label:
        return [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc"),
        ]
    return [keras.metrics.CategoricalAccuracy(name="accuracy")]


# === Callbacks ===


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that never leaves a half-written file.

    Keras writes the checkpoint in place, so a process killed while saving
    leaves a truncated file. This writes to a hidden temporary file in the
    same folder and renames it over the target with `os.replace` (atomic on
    POSIX and Windows). Same arguments as `ModelCheckpoint`.
    """

    def _save_model(self, epoch, batch, logs):
        target = self._get_file_path(epoch, batch, logs)
        original = self.filepath
        folder, name = os.path.split(os.fspath(original))
        self.filepath = os.path.join(folder, f".partial-{os.getpid()}-{name}")
        partial = self._get_file_path(epoch, batch, logs)
        try:
            super()._save_model(epoch, batch, logs)
        finally:
            self.filepath = original
        if os.path.exists(partial):
            os.replace(partial, target)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` with atomic, consistent backups.

    Keras overwrites `latest.weights.h5` in place and then the epoch number;
    a kill in between leaves a truncated file or weights that do not match
    the epoch. Here each backup is written to a new file, renamed into place,
    and only then does the metadata (epoch and the weights file's name) get
    atomically replaced, so the backup read on restart is always a complete
    pair. Epochs whose logs hold a NaN/Inf are not backed up: the last good
    state is kept. Same arguments as `BackupAndRestore`.
    """

    def _load_model(self):
        if os.path.exists(self._training_metadata_path):
            with open(self._training_metadata_path) as f:
                weights = json.load(f).get("weights")
            if weights:
                self._weights_path = os.path.join(self.backup_dir, weights)
        super()._load_model()

    def on_epoch_end(self, epoch, logs=None):
        if logs and not all(np.isfinite(float(v)) for v in logs.values() if np.isscalar(v)):
            return
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch{self._current_epoch:05d}-batch{self._last_batch_seen:06d}.weights.h5"
        path = os.path.join(self.backup_dir, name)
        partial = os.path.join(self.backup_dir, f".partial-{name}")
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, path)
        _write_json_atomic(
            self._training_metadata_path,
            {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name},
        )
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """`keras.callbacks.TerminateOnNaN` that remembers where the loss broke.

    After `fit`, `nan_at` is `(epoch, batch, loss)` if training was stopped.
    """

    def __init__(self):
        super().__init__()
        self.nan_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss) and self.nan_at is None:
            self.nan_at = (self._epoch, batch, float(loss))
        super().on_batch_end(batch, logs)


def _write_json_atomic(path, data):
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def make_callbacks(config, run_dir, phase, has_validation, is_chief=True):
    """The callbacks of one phase of `train`.

    In order: NaN stop (first, so nothing is saved from a NaN epoch), best
    checkpoint (`run_dir/checkpoints/best.keras`), CSV history
    (`run_dir/history.csv`, appended), early stopping and LR reduction (when
    their patience is set), TensorBoard (`run_dir/logs`, chief only) and
    BackupAndRestore (`run_dir/backup/phase<phase>`, last: an epoch is backed
    up only after its history row is written).

    Args:
        config: a `TrainConfig` (`monitor`, patiences, `tensorboard`).
        run_dir: the run folder.
        phase: 1 or 2 (each phase has its own backup folder).
        has_validation: whether `fit` gets validation data; without it a
            `val_*` monitor falls back to the training quantity.
        is_chief: the worker that writes TensorBoard logs.

    Returns:
        A list of `keras.callbacks.Callback`.

    Example:

    ```python
    callbacks = make_callbacks(config, "runs/x", phase=1, has_validation=True)
    model.fit(train_ds, validation_data=val_ds, epochs=3, callbacks=callbacks)
    ```
    """
    monitor = config.monitor
    if monitor.startswith("val_") and not has_validation:
        monitor = monitor[len("val_"):]
    mode = "max" if any(k in monitor for k in ("accuracy", "auc")) else "min"
    callbacks = [
        StopOnNaN(),
        AtomicModelCheckpoint(
            os.path.join(run_dir, "checkpoints", "best.keras"),
            monitor=monitor,
            mode=mode,
            save_best_only=True,
        ),
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
    if config.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode=mode, factor=0.5, patience=config.reduce_lr_patience
            )
        )
    if config.tensorboard and is_chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")))
    # Last: an epoch is backed up only after its history row is written.
    callbacks.append(
        AtomicBackupAndRestore(
            os.path.join(run_dir, "backup", f"phase{phase}"), delete_checkpoint=False
        )
    )
    return callbacks


# === Data ===


def _to_targets(labels, num_classes, multi_label):
    if multi_label:
        return tf.cast(labels, tf.float32)
    return tf.one_hot(tf.cast(labels, tf.int32), num_classes)


def _with_targets(dataset, num_classes, multi_label):
    """(images, class ids | multi-hot) batches -> (float32 images, one-hot |
    multi-hot targets), auto-sharded by data across workers, prefetched."""
    dataset = dataset.map(
        lambda x, y: (tf.cast(x, tf.float32), _to_targets(y, num_classes, multi_label)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _as_dataset(data, batch_size, num_classes, multi_label):
    """A user's `tf.data.Dataset` of (images, labels) -> global batches with
    one-hot targets. Used as given: no resize, augmentation or cache."""
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(
            "Training datasets must yield (images, labels) batches. "
            f"Received element_spec={spec}"
        )
    if len(spec[0].shape) == 3:  # unbatched
        data = data.batch(batch_size)
    else:
        data = data.rebatch(batch_size)
    return _with_targets(data, num_classes, multi_label)


def _as_table(data, class_names, config, what):
    """`(images, labels)` arrays or a sample table -> a sample table that
    `table_dataset` reads (arrays via `medivision_tf.data.from_numpy`: uint8
    pixels, no float32 copy)."""
    from medivision_tf.data import class_names_of, from_numpy, is_multi_label

    if isinstance(data, pd.DataFrame):
        table = data
        if class_names is not None:
            check_class_names(class_names, class_names_of(table), what)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
        labels = np.asarray(labels)
        if class_names is None:
            multi = labels.ndim == 2 and labels.shape[1] > 1
            count = labels.shape[1] if multi else int(labels.max()) + 1 if labels.size else 0
            class_names = [f"class_{i}" for i in range(count)]
        table = from_numpy(images, labels, class_names=class_names)
    else:
        raise TypeError(
            f"`{what}` must be an (images, labels) pair of arrays, a sample table "
            "(pandas DataFrame from medivision_tf.data) or a tf.data.Dataset of "
            f"(images, labels). Received: {type(data).__name__}"
        )
    if table.empty:
        raise ValueError(f"`{what}` has no images.")
    if is_multi_label(table) != config.multi_label:
        raise ValueError(
            f"`{what}` has {'multi-hot' if is_multi_label(table) else 'single-label'} "
            f"labels but the config has multi_label={config.multi_label}."
        )
    return table


def _label_array(dataset):
    """The labels of a user's tf.data dataset, for class weights. Reads the
    whole dataset (images included): only used when no sample table is
    available (sources and arrays have one)."""
    labels = [np.asarray(y) for _, y in dataset]
    return np.concatenate([l.reshape(-1) if l.ndim <= 1 else l for l in labels])


def load_source(config):
    """Reads `config.source` with `medivision_tf.data` and splits it.

    A table with a `split` column (train/val/test folders, MedMNIST `.npz`,
    prepared datasets) keeps its split (`medivision_tf.data.by_split`); when it
    has train and test but no val rows and `val_split > 0`, `val_split` of the
    train rows become the validation split. A table without a split column (or
    with an empty one) is split by `medivision_tf.data.split_table` with
    `val_split`, `test_split`, `seed`. Either way a `group` column keeps each
    patient in one split.

    Args:
        config: a `TrainConfig` with `source` set.

    Returns:
        `(splits, class_names)`: `splits` maps "train", "val", "test" to
        sample tables (val and test may be empty).

    Raises:
        ValueError: no source, a multi-label mismatch, split values other
            than train/val/test (blank ones included), or no training rows.

    Example:

    ```python
    splits, names = load_source(TrainConfig(source="data/chest_xray"))
    len(splits["train"]), len(splits["val"]), len(splits["test"])
    ```
    """
    from medivision_tf.data import by_split, class_names_of, is_multi_label, split_table
    from medivision_tf.data.pipeline import as_table

    if config.source is None:
        raise ValueError("No training data: set the config key 'source' or pass train_data.")
    # A prepared folder (manifest.csv) keeps its split and patient groups.
    table = as_table(config.source)
    class_names = class_names_of(table)
    if is_multi_label(table) != config.multi_label:
        raise ValueError(
            f"Source {config.source!r} is {'multi' if is_multi_label(table) else 'single'}"
            f"-label but the config has multi_label={config.multi_label}."
        )
    group = "group" if "group" in table.columns else None
    if "split" in table.columns and table["split"].notna().any():
        values = table["split"]
        blank = values.isna() | (values.astype(str).str.strip() == "")
        if blank.any():
            raise ValueError(
                f"Source {config.source!r}: {int(blank.sum())} of {len(table)} rows have a "
                "blank split value. Give every row one of train, val, test, or drop the "
                "split column to split by val_split/test_split."
            )
        try:
            train, val, test = by_split(table)
        except ValueError as error:
            raise ValueError(f"Source {config.source!r}: {error}") from None
        if val.empty and config.val_split > 0 and len(train):
            train, val, _ = split_table(
                train, val=config.val_split, test=0, seed=config.seed, group_column=group
            )
    else:
        train, val, test = split_table(
            table, val=config.val_split, test=config.test_split, seed=config.seed,
            group_column=group,
        )
    if train.empty:
        raise ValueError(f"Source {config.source!r} has no training images.")
    return {"train": train, "val": val, "test": test}, class_names


def table_dataset(table, config, *, training, batch_size, repeat=False):
    """A batched dataset of (images, labels) from a sample table.

    `medivision_tf.data.make_dataset` with the config's `image_size`,
    `channels`, `seed`, `augment` (training only) and `cache`: images are
    resized (aspect kept, padded) and kept uint8 until batched.

    Args:
        table: a sample table (from a source, `load_source` or
            `medivision_tf.data.from_numpy`).
        config: a `TrainConfig`.
        training: shuffle each epoch and augment (when `config.augment`).
        batch_size: images per batch (`train` passes the global batch).
        repeat: repeat forever (reshuffled each pass); `fit` then needs
            `steps_per_epoch`.

    Returns:
        A `tf.data.Dataset` of float32 images `(batch, size, size, channels)`
        in 0-255 and class ids (or multi-hot labels).

    Example:

    ```python
    splits, names = load_source(config)
    train_ds = table_dataset(splits["train"], config, training=True, batch_size=32)
    ```
    """
    from medivision_tf.data.pipeline import make_dataset

    return make_dataset(
        table,
        image_size=config.image_size,
        channels=config.channels,
        batch_size=batch_size,
        training=training,
        shuffle=training,
        seed=config.seed,
        augment=config.augment and training,
        cache=config.cache,
        repeat=repeat,
        # Decoded arrays cannot fail to decode: keep the length known to tf.data.
        skip_errors="image" not in table.columns,
    )


# === Training ===


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained `keras.Model` (BatchNorm calibrated).
        history: `history.csv` as a DataFrame (one row per epoch, both phases).
        run_dir: the run folder.
        model_path: the final `.keras` file.
        best_path: the best checkpoint (`checkpoints/best.keras`).
        config: the `TrainConfig` used.
        class_names: the model's classes.
        epochs: number of epochs trained (both phases).
        test_data: the held-out test split (a sample table) when the data came
            from `source` (None when it has no test rows).
        num_train, num_val, num_test: images per split (None where unknown,
            e.g. a user's tf.data dataset).
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
    report: object = None
    reused: bool = False
    train_seconds: typing.Optional[float] = None


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

    Phase 1 trains for `config.epochs` with the backbone frozen (unless
    `freeze_backbone=False`); phase 2 unfreezes all backbone layers (or the top
    `fine_tune_layers`) and trains `fine_tune_epochs` more at
    `fine_tune_learning_rate`. The model is built and compiled inside the
    strategy's scope; Keras distributes the datasets. Calling `train` again
    with the same `run_dir` and config resumes from the last completed epoch.

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
        run_dir: the run folder (created; see the module docstring).
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
    config = load_config(config, **overrides)
    # The strategy first: multi-worker and TPU set-up must precede any TF op.
    strategy = strategy or choose_strategy(config.strategy)
    is_chief, worker = _worker(strategy)
    run_dir = os.fspath(run_dir)
    work_dir = run_dir if is_chief else os.path.join(run_dir, ".workers", worker)
    os.makedirs(work_dir, exist_ok=True)
    _claim_run_dir(work_dir, config)
    keras.utils.set_random_seed(config.seed)

    def say(message):
        if verbose and is_chief:
            print(message, flush=True)

    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    test_table = num_test = None
    if train_data is None:
        splits, source_classes = load_source(config)
        if class_names is not None:
            check_class_names(class_names, source_classes, "source")
        class_names = source_classes
        train_data = splits["train"]
        val_data = splits["val"] if len(splits["val"]) else None
        test_table = splits["test"] if len(splits["test"]) else None
        num_test = len(splits["test"])
    if isinstance(train_data, tf.data.Dataset):
        if class_names is None:
            raise ValueError("Pass class_names with a tf.data training dataset.")
        train_table = None
    else:
        train_table = _as_table(train_data, class_names, config, "train_data")
        if class_names is None:
            from medivision_tf.data import class_names_of

            class_names = class_names_of(train_table)
    class_names = [str(c) for c in class_names]
    num_classes = len(class_names)

    if train_table is not None:
        # make_dataset batches at the global batch already (no rebatch). It skips
        # undecodable files, so its length is unknown to tf.data: the epoch
        # length comes from the table, and the data repeats so that an epoch of
        # `steps` batches never runs dry (Keras would cut the next epoch short).
        train_ds = _with_targets(
            table_dataset(train_table, config, training=True, batch_size=global_batch,
                          repeat=True),
            num_classes, config.multi_label,
        )
        steps = config.steps_per_epoch or math.ceil(len(train_table) / global_batch)
    else:
        train_ds = _as_dataset(train_data, global_batch, num_classes, config.multi_label)
        steps = config.steps_per_epoch or _cardinality(train_ds)
    val_table = None
    if val_data is None:
        val_ds = None
    elif isinstance(val_data, tf.data.Dataset):
        val_ds = _as_dataset(val_data, global_batch, num_classes, config.multi_label)
    else:
        val_table = _as_table(val_data, class_names, config, "val_data")
        val_ds = _with_targets(
            table_dataset(val_table, config, training=False, batch_size=global_batch),
            num_classes, config.multi_label,
        )
    class_weight = None
    if config.class_weight == "balanced":
        from medivision_tf.data import class_weights

        # One rule for every kind of data (a class without images is refused).
        labels = train_table if train_table is not None else _label_array(train_data)
        class_weight = class_weights(labels, num_classes)

    policy = choose_precision(config.mixed_precision, strategy)
    with strategy.scope(), dtype_policy(policy):
        model = build_medivision(
            num_classes,
            backbone=config.backbone,
            input_shape=(config.image_size, config.image_size, config.channels),
            weights=config.weights,
            sequence=config.sequence,
            lstm_units=config.lstm_units,
            projection_units=config.projection_units,
            lstm_unroll=config.lstm_unroll,
            attention_units=config.attention_units,
            dropout=config.dropout,
            multi_label=config.multi_label,
            class_names=class_names,
        )
    say(f"Strategy: {type(strategy).__name__} ({replicas} replica(s)), dtype policy "
        f"{policy}, global batch {global_batch}.")

    keep_bn = config.keep_batchnorm_frozen
    if keep_bn is None:
        keep_bn = config.weights is not None
    state_path = os.path.join(work_dir, "state.json")
    state = _read_json(state_path) or {"phase1_complete": False}
    phase1_weights = os.path.join(work_dir, "phase1.weights.h5")
    total_epochs = config.epochs + config.fine_tune_epochs
    fit_kwargs = dict(
        validation_data=val_ds, class_weight=class_weight, extra_callbacks=list(callbacks),
        steps_per_epoch=steps if train_table is not None else config.steps_per_epoch,
        verbose=verbose if is_chief else 0,
        shuffle=False,  # the dataset is already shuffled (seeded)
    )

    # === Phase 1: the head (backbone frozen) ===
    if config.epochs and not state["phase1_complete"]:
        if config.freeze_backbone:
            set_backbone_trainable(model, False)
        else:
            set_backbone_trainable(model, True, keep_batchnorm_frozen=keep_bn)
        _compile(model, config, strategy, config.learning_rate, steps, config.epochs, num_classes)
        say(f"Phase 1: {config.epochs} epoch(s), backbone "
            f"{'frozen' if config.freeze_backbone else 'trainable'}, "
            f"learning rate {config.learning_rate}.")
        _fit(model, train_ds, config, work_dir, 1, 0, config.epochs, fit_kwargs, val_ds,
             is_chief, strategy)
        _save_weights_atomic(model, phase1_weights)
        state["phase1_complete"] = True
        _write_json_atomic(state_path, state)
        shutil.rmtree(os.path.join(work_dir, "backup", "phase1"), ignore_errors=True)
    elif config.epochs:
        say(f"Phase 1 already complete; resuming from {phase1_weights}.")
        model.load_weights(phase1_weights)

    # === Phase 2: fine-tuning (backbone unfrozen) ===
    if config.fine_tune_epochs:
        unfreeze = True if config.fine_tune_layers is None else config.fine_tune_layers
        count = set_backbone_trainable(model, unfreeze, keep_batchnorm_frozen=keep_bn)
        _compile(model, config, strategy, config.fine_tune_learning_rate, steps,
                 config.fine_tune_epochs, num_classes)
        say(f"Phase 2: {config.fine_tune_epochs} epoch(s), {count} backbone layer(s) "
            f"trainable, learning rate {config.fine_tune_learning_rate}.")
        _fit(model, train_ds, config, work_dir, 2, config.epochs, total_epochs,
             fit_kwargs, val_ds, is_chief, strategy)
        shutil.rmtree(os.path.join(work_dir, "backup", "phase2"), ignore_errors=True)

    if config.calibrate_batchnorm:
        calibrate_batchnorm(model, train_ds.take(min(steps or 50, 50)))
    history = _tidy_history(os.path.join(work_dir, "history.csv"))
    model_path = os.path.join(work_dir, "model.keras")
    partial = os.path.join(work_dir, f".partial-{os.getpid()}-model.keras")
    model.save(partial)
    os.replace(partial, model_path)
    state["complete"] = True
    _write_json_atomic(state_path, state)
    shutil.rmtree(os.path.join(work_dir, "backup"), ignore_errors=True)
    if os.path.exists(phase1_weights):
        os.remove(phase1_weights)
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
        class_names=class_names,
        epochs=len(history),
        test_data=test_table,
        num_train=None if train_table is None else len(train_table),
        num_val=None if val_table is None else len(val_table),
        num_test=num_test,
    )


def train_and_evaluate(config=None, *, run_dir="runs/train", evaluate=True, require_test=False,
                       reuse=False, tta=False, verbose=1, **overrides):
    """Trains on `config.source`, draws the training curves and evaluates on
    the held-out test split: what `medivision train` and `medivision
    reproduce` do.

    The source is read and split once (`load_source`); `train` gets the train
    and val tables, `medivision_tf.evaluation.evaluate_model` the test table.
    Writes `run_dir/training_curves.png` and `run_dir/evaluation/` (see
    `medivision_tf.evaluation`) besides the run folder of `train`.

    Args:
        config: a `TrainConfig`, a dict, a JSON file path or None; `source`
            must be set.
        run_dir: the run folder.
        evaluate: evaluate on the test split when there is one.
        require_test: refuse a source without test rows before training.
        reuse: when `run_dir` holds a finished run of this config
            (`finished_run`), load its model instead of training again
            (another config there is refused, naming the keys).
        tta: test-time augmentation for the evaluation (see
            `medivision_tf.evaluation.predict_probabilities`).
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
    from medivision_tf.evaluation import evaluate_model, plot_history

    config = load_config(config, **overrides)
    run_dir = os.fspath(run_dir)
    splits, class_names = load_source(config)
    test = splits["test"] if len(splits["test"]) else None
    if require_test and test is None:
        raise ValueError(
            f"Source {config.source!r} has no test images: it has a split column without "
            f"'test' rows, or test_split is 0. Received: test_split={config.test_split}"
        )
    model_path = finished_run(run_dir, config) if reuse else None
    if model_path:
        from medivision_tf.model import load_model

        history_csv = os.path.join(run_dir, "history.csv")
        history = pd.read_csv(history_csv) if os.path.exists(history_csv) else pd.DataFrame()
        result = TrainResult(
            model=load_model(model_path, compile=False), history=history, run_dir=run_dir,
            model_path=model_path, best_path=os.path.join(run_dir, "checkpoints", "best.keras"),
            config=config, class_names=list(class_names), epochs=len(history), reused=True,
        )
    else:
        start = time.perf_counter()
        result = train(
            config, train_data=splits["train"],
            val_data=splits["val"] if len(splits["val"]) else None,
            class_names=class_names, run_dir=run_dir, verbose=verbose,
        )
        result.train_seconds = round(time.perf_counter() - start, 2)
    result.test_data = test
    result.num_train, result.num_val, result.num_test = (
        len(splits["train"]), len(splits["val"]), len(splits["test"])
    )
    history_csv = os.path.join(run_dir, "history.csv")
    if os.path.exists(history_csv):
        plot_history(history_csv, os.path.join(run_dir, "training_curves.png"))
    if evaluate and test is not None:
        result.report = evaluate_model(
            result.model, test, out_dir=os.path.join(run_dir, "evaluation"),
            batch_size=config.batch_size, tta=tta,
        )
    return result


def _cardinality(dataset):
    count = int(dataset.cardinality())
    return count if count > 0 else None


def _compile(model, config, strategy, learning_rate, steps, epochs, num_classes):
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(config, learning_rate, steps, epochs),
            loss=make_loss(config),
            metrics=make_metrics(config, num_classes),
        )


def _fit(model, train_ds, config, run_dir, phase, initial_epoch, epochs, fit_kwargs,
         val_ds, is_chief, strategy):
    fit_kwargs = dict(fit_kwargs)
    extra = fit_kwargs.pop("extra_callbacks", [])
    callbacks = make_callbacks(config, run_dir, phase, val_ds is not None, is_chief)
    callbacks = callbacks[:-1] + extra + callbacks[-1:]
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_for_multi_worker(model, train_ds)
    model.fit(train_ds, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks,
              **fit_kwargs)
    nan_at = callbacks[0].nan_at
    if nan_at is not None:
        epoch, batch, loss = nan_at
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


def _patch_for_multi_worker(model, train_ds):
    """Works around two Keras 3 (TF backend) bugs with MultiWorkerMirroredStrategy.

    1. Before training, Keras builds the model symbolically from the first
       distributed batch, averaged with `strategy.reduce("MEAN", (images,
       labels))`; MultiWorkerMirroredStrategy's `reduce` does not take a
       nested structure ("Attempt to convert a value (PerReplica...) to a
       Tensor"). The build only needs shapes and dtypes: it gets one plain
       batch of the undistributed dataset instead.
    2. Keras averages each step's logs across workers with
       `strategy.reduce("MEAN", v, axis=0)`, which fails on scalar logs
       ("Invalid reduction dimension 0 for input with 0 dimensions").
       `train_step`/`test_step` (the documented hooks for customizing `fit`)
       return each log as a 1-element vector, so that reduction concatenates
       the workers' values and averages them: the global mean.
    """
    build = type(model)._maybe_symbolic_build
    sample = next(iter(train_ds.take(1)))

    def maybe_symbolic_build(iterator=None, data_batch=None):
        return build(model, data_batch=sample if data_batch is None else data_batch)

    def vector_logs(step):
        def wrapped(data):
            logs = step(data)
            return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v
                    for k, v in logs.items()}
        return wrapped

    model._maybe_symbolic_build = maybe_symbolic_build
    model.train_step = vector_logs(type(model).train_step.__get__(model))
    model.test_step = vector_logs(type(model).test_step.__get__(model))
    # Compiled step functions are cached on the model: rebuild them.
    model.train_function = model.test_function = None


def _save_weights_atomic(model, path):
    partial = os.path.join(os.path.dirname(path), f".partial-{os.path.basename(path)}")
    model.save_weights(partial, overwrite=True)
    os.replace(partial, path)


def _tidy_history(path):
    """history.csv with one row per epoch (an epoch redone after a kill between
    its history row and its backup keeps its last row)."""
    if not os.path.exists(path):
        return pd.DataFrame()
    history = pd.read_csv(path)
    history = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
    history = history.reset_index(drop=True)
    partial = f"{path}.partial"
    history.to_csv(partial, index=False)
    os.replace(partial, path)
    return history


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _changed_keys(previous, config):
    """Config keys whose values differ between a saved config.json and `config`."""
    current = json.loads(json.dumps(config.to_dict()))
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


def finished_run(run_dir, config):
    """The model of a finished run of `config` in `run_dir`, or None.

    `train` refuses a folder that holds a finished run; callers that want to
    reuse such a run (e.g. `medivision reproduce` run again) ask here first.

    Args:
        run_dir: a run folder.
        config: the `TrainConfig` the run should have used.

    Returns:
        The path of `run_dir/model.keras`, or None when the run is missing or
        unfinished.

    Raises:
        ValueError: the finished run used another config (the keys are named).
    """
    state = _read_json(os.path.join(run_dir, "state.json"))
    previous = _read_json(os.path.join(run_dir, "config.json"))
    model_path = os.path.join(run_dir, "model.keras")
    if not (state and state.get("complete") and previous and os.path.isfile(model_path)):
        return None
    changed = _changed_keys(previous, config)
    if changed:
        raise ValueError(
            f"Run folder {run_dir!r} holds a finished run with another config (keys "
            f"{', '.join(changed)} differ). Choose another folder or remove it."
        )
    return model_path


def _claim_run_dir(run_dir, config):
    """Writes config.json, or checks that a resumed run uses the same config."""
    path = os.path.join(run_dir, "config.json")
    previous = _read_json(path)
    started = any(
        os.path.exists(os.path.join(run_dir, name))
        for name in ("state.json", "history.csv", "backup")
    )
    if previous is not None and started:
        state = _read_json(os.path.join(run_dir, "state.json")) or {}
        if state.get("complete"):
            raise ValueError(
                f"Run folder {run_dir!r} already holds a finished run. Choose another folder."
            )
        changed = _changed_keys(previous, config)
        if changed:
            raise ValueError(
                f"Run folder {run_dir!r} holds an interrupted run with another config "
                f"(keys {', '.join(changed)} differ); resume it with the same config or "
                "choose another folder."
            )
        return
    _write_json_atomic(path, config.to_dict())
