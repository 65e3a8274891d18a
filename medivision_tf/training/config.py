"""`TrainConfig`: every setting of a training run, checked when it is made.

A config is a dataclass with JSON-ready values; `config.json` in a run folder
holds `TrainConfig.to_dict()`, and `TrainConfig.from_dict`/`from_json` read it
back, refusing unknown keys and wrong types with the key named. This module
imports neither TensorFlow nor Keras, so the command line can build its flags
from it in milliseconds.

Example:

```python
from medivision_tf.training import TrainConfig, load_config

config = TrainConfig(backbone="smallcnn", weights=None, image_size=64, channels=1)
config.resolved().freeze_backbone     # False: a from-scratch backbone trains
load_config("train.json", epochs=3)   # a file plus overrides
```
"""

import dataclasses
import json
import os
import typing

from medivision_tf import backbones
from medivision_tf.config import SEQUENCE_MODES, resolved_ood_method

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "exponential")
LOSSES = ("crossentropy", "focal")
CLASS_WEIGHTS = ("none", "balanced")
MIXED_PRECISION = ("none", "auto", "mixed_float16", "mixed_bfloat16")

#: BatchNorm momentum from scratch: the moving statistics average over ~10
#: steps instead of Keras' ~100 (keras.applications' BatchNorm use 0.99).
FROM_SCRATCH_BATCHNORM_MOMENTUM = 0.9
#: Phase 2's peak rate when `fine_tune_learning_rate=None`: lower for a
#: pretrained backbone, whose features the fitted head depends on
#: (benchmarks/bench_transfer_recipe.py, chosen on validation images: with
#: the command line's 10 head epochs, 1e-4 dipped training accuracy 0.989 ->
#: 0.952 -> 0.884 and 3e-5 did not), the earlier 1e-4 from scratch, where
#: there are no features to keep (the from-scratch figures were measured so).
PRETRAINED_FINE_TUNE_LEARNING_RATE = 3e-5
FROM_SCRATCH_FINE_TUNE_LEARNING_RATE = 1e-4

#: The allowed values of the fixed-choice keys (checked here, listed by the CLI).
CHOICES = {
    "strategy": STRATEGIES,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "loss": LOSSES,
    "class_weight": CLASS_WEIGHTS,
    "mixed_precision": MIXED_PRECISION,
    "sequence": SEQUENCE_MODES,
    "backbone": tuple(backbones.available_backbones()),
    "freeze_backbone": ("auto", True, False),
    "bit_depth_16": ("auto", "scale", "12bit", "minmax"),
    "frames": ("first", "middle", "all"),
    "nifti_axis": ("axial", "coronal", "sagittal"),
    "augment_on": ("auto", "pipeline", "model"),
    "conformal_method": ("aps", "lac"),
    "ood_method": ("auto", "knn", "mahalanobis", "relative_mahalanobis", "combined"),
    "ood_layer": ("auto", "feature_map", "pool", "feature_map+pool"),
    "fine_tune_lr_schedule": LR_SCHEDULES,
}


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
        lstm_units: LSTM width (see `build_medivision`).
        projection_units: width the sequence elements are projected to
            before the LSTM (`None` feeds the LSTM the raw backbone features).
        attention_units: width of the attention scoring projection.
        dropout: dropout rate before the classifier, in [0, 1).
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
        freeze_backbone: `"auto"` (default), `True` or `False`. Phase 1
            freezes the backbone and trains the head only when True; `"auto"`
            freezes it only when the backbone starts from pretrained weights
            (`weights="imagenet"` or a weights file) and trains it all from
            scratch (`weights=None`): a frozen random backbone is a fixed
            random feature extractor. `train` records the resolved value in
            `config.json` and warns when a random backbone is frozen
            explicitly.
        keep_batchnorm_frozen: keep the backbone's BatchNorm layers frozen when
            unfreezing (`None`: True for pretrained weights, False from scratch).
        optimizer: one of `adam`, `adamw`, `sgd` (momentum 0.9), `rmsprop`.
        learning_rate: phase-1 learning rate.
        fine_tune_learning_rate: phase 2's (peak) learning rate; `None`
            (default): 3e-5 for pretrained weights (do not wreck the features
            the head was fitted to), 1e-4 from scratch. `train` records the
            resolved value in `config.json`.
        weight_decay: decoupled weight decay (0: none).
        lr_schedule: phase 1's: `constant` (default), `cosine` (decay to 0
            over the phase) or `exponential` (x0.9 per epoch).
        fine_tune_lr_schedule: phase 2's (fine-tuning) schedule, the same
            choices; default `cosine`: after the warm-up the rate decays to 0
            by the phase's end (docs/training.md, "Transfer learning").
        fine_tune_warmup: share of phase 2's steps over which the learning
            rate rises linearly from 0 to `fine_tune_learning_rate`, in [0, 1)
            (0: none). Without it, Adam's first steps move every unfrozen
            weight by about the full rate at once, whatever its gradient,
            and wreck the pretrained features the head was fitted to
            (measured: training accuracy 0.997 -> 0.852 at the switch).
            Needs a known number of steps per epoch (sources, tables and
            arrays have one; a tf.data dataset of yours needs
            `steps_per_epoch`, else phase 2 runs at a constant rate).
        label_smoothing: in [0, 1) (default 0.1; see docs/training.md for
            the trials behind it).
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
            rate is halved (0: never; needs `lr_schedule="constant"`; in
            phase 2 it acts only with `fine_tune_lr_schedule="constant"`).
        monitor: quantity watched by the best checkpoint, early stopping and
            LR reduction (`val_loss` falls back to `loss` without validation).
        tensorboard: write TensorBoard logs to `run_dir/logs` when the
            `tensorboard` package is installed (a one-line notice otherwise;
            the run goes on without them).
        strategy: `auto` (a TPU, then a TF_CONFIG cluster of several tasks,
            then several GPUs, else the default strategy) or one of `default`,
            `one_device`, `mirrored`, `multi_worker`, `tpu` to force it.
        mixed_precision: `none`, `auto` (`mixed_float16` on GPU,
            `mixed_bfloat16` on TPU, none on CPU), `mixed_float16` or
            `mixed_bfloat16`. The output layers stay float32.
        augment: random flips, rotations, zoom, contrast and brightness of
            the training images (sources, tables and arrays; not user tf.data
            datasets), where `augment_on` says.
        augment_on: where augmentation runs: `pipeline` (tf.data, on the
            CPU), `model` (the same augmentation as layers in front of the
            model during `fit`, on the accelerator; the saved and exported
            model has none) or `auto`: `model` when a GPU or TPU is visible,
            else `pipeline`. `train` records the choice in config.json, and a
            resumed run keeps it.
        cache: cache decoded images in memory (same).
        steps_per_epoch: this many steps per epoch (`None`: one pass over the
            training set, rounded up to whole batches). Sources, tables and
            arrays repeat, so epochs go on through the data; a tf.data
            dataset of yours is not repeated.
        batchnorm_momentum: momentum of the trainable BatchNorm layers' moving
            statistics (`None`: 0.9 when training from scratch, `weights=None`,
            so that validation during training sees statistics that keep up
            with the fast-changing weights; Keras' 0.99 otherwise).
        calibrate_before_validation: re-estimate the trainable BatchNorm
            statistics on a few training batches before each validation, so
            that validation (and the best checkpoint and early stopping that
            follow it) describes the model being trained (`None`: on when
            training from scratch, where the moving statistics lag behind the
            weights; with them the demo's validation accuracy jumped between
            0.25 and 0.68 while training accuracy was 0.99).
        calibrate_batchnorm: re-estimate trainable BatchNorm statistics on the
            training images after training (needed after short from-scratch
            trainings; frozen pretrained BatchNorm is left alone).
        trust: after training, fit temperature scaling, conformal
            prediction sets and the OOD threshold on the validation split and
            store them in the model (`medivision_tf.trust.fit_trust`; skipped
            without validation data and for multi-label models).
        conformal_alpha: allowed miscoverage of the prediction sets, in (0, 1).
        conformal_method: score of the prediction sets: `"lac"` (default;
            `1 - p`: smallest sets, coverage close to `1 - conformal_alpha`
            also when the model is more accurate than that; some sets
            empty) or `"aps"` (never empty; coverage at least the accuracy).
        ood_method: the out-of-distribution score `fit_trust` fits and the
            model carries: `"auto"` (default: `"combined"`, or `"knn"` when
            `ood_layer` names a single layer; recorded so in config.json; a
            run folder that recorded another score, as runs begun under the
            earlier default recorded `"knn"`, resumes with it),
            `"combined"` (kNN on the feature map and Mahalanobis on `pool`,
            the larger, each in standard deviations of its validation
            scores), `"knn"` (cosine distance to the 5th nearest validation
            image; of the three the best on images unlike every training
            image, the worst on an unseen class that looks like a known
            one), `"mahalanobis"` (distance to the nearest class mean; with
            `ood_layer="pool"` the other way round) or
            `"relative_mahalanobis"`. Measured side by side in
            `benchmarks/bench_unseen.py`, see docs/trust.md.
        ood_layer: the features the OOD score reads: `"auto"` (default;
            `"feature_map+pool"` for `"combined"`, else `"feature_map"`;
            naming a single layer with `ood_method="auto"` fits `"knn"` on it),
            `"feature_map"` (the backbone's, averaged), `"pool"` (the head's
            pooled features; for the pooling baseline the same as
            `"feature_map"`) or `"feature_map+pool"` (both, concatenated).
        seed: seed of the split, the weights, the shuffling and augmentation.
        dicom_window: DICOM window: `"auto"` (the file's VOI LUT / window),
            `"minmax"` or `"center,width"`, e.g. `"40,400"` (CT soft tissue).
        bit_depth_16: 16-bit PNG/TIFF: `"auto"` (max <= 4095 read as 12-bit),
            `"scale"` (/257), `"12bit"` or `"minmax"`.
        frames: multi-frame DICOM: `"first"`, `"middle"` or `"all"` (every
            frame a sample, grouped by file).
        nifti_axis: NIfTI slicing axis: `"axial"`, `"coronal"`, `"sagittal"`.
        nifti_slices: NIfTI slices used: `"all"`, `"nonempty"`, `"middle"`
            or k (the middle k).
        allow_duplicates: train even when a validation or test image is an
            exact or near duplicate of a training image (leakage; see
            `medivision_tf.data.checks`). False (default) refuses such a
            split and names the pairs.
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
    freeze_backbone: typing.Union[bool, str] = "auto"
    keep_batchnorm_frozen: typing.Optional[bool] = None
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    fine_tune_learning_rate: typing.Optional[float] = None
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    fine_tune_lr_schedule: str = "cosine"
    fine_tune_warmup: float = 0.3
    label_smoothing: float = 0.1
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
    augment_on: str = "auto"
    cache: bool = False
    steps_per_epoch: typing.Optional[int] = None
    batchnorm_momentum: typing.Optional[float] = None
    calibrate_before_validation: typing.Optional[bool] = None
    calibrate_batchnorm: bool = True
    trust: bool = True
    conformal_alpha: float = 0.1
    conformal_method: str = "lac"
    ood_method: str = "auto"
    ood_layer: str = "auto"
    seed: int = 0
    dicom_window: str = "auto"
    bit_depth_16: str = "auto"
    frames: str = "middle"
    nifti_axis: str = "axial"
    nifti_slices: str = "nonempty"
    allow_duplicates: bool = False

    def decode_options(self):
        """The `medivision_tf.config.DecodeOptions` of this run (saved in the model)."""
        from medivision_tf.config import DecodeOptions

        return DecodeOptions(
            dicom_window=self.dicom_window, bit_depth_16=self.bit_depth_16, frames=self.frames,
            nifti_axis=self.nifti_axis, nifti_slices=self.nifti_slices,
        )

    def model_config(self, class_names):
        """The `medivision_tf.config.ModelConfig` of the model this run trains.

        The one place where training keys become `build_medivision` arguments.

        Args:
            class_names: the classes of the training data, in label-id order.

        Example:

        ```python
        TrainConfig(backbone="smallcnn", weights=None).model_config(["a", "b"]).num_classes  # 2
        ```
        """
        from medivision_tf.config import ModelConfig

        return ModelConfig(
            num_classes=len(class_names), backbone=self.backbone,
            input_shape=(self.image_size, self.image_size, self.channels),
            weights=self.weights, sequence=self.sequence, lstm_units=self.lstm_units,
            projection_units=self.projection_units, attention_units=self.attention_units,
            dropout=self.dropout, multi_label=self.multi_label,
            class_names=tuple(class_names), lstm_unroll=self.lstm_unroll,
            decode=self.decode_options(),
        )

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            coerced = _check_type(field.name, value, hints[field.name])
            object.__setattr__(self, field.name, coerced)
        self._check_values()
        self.decode_options()  # dicom_window and nifti_slices, named when wrong

    def _check_values(self):
        for key, allowed in CHOICES.items():
            if key in ("backbone", "freeze_backbone"):
                continue  # checked below, with their own messages
            if getattr(self, key) not in allowed:
                raise ValueError(
                    f"Config key {key!r}: unknown value {getattr(self, key)!r}. "
                    f"Choose one of: {', '.join(allowed)}."
                )
        if self.ood_method == "combined" and self.ood_layer not in ("auto", "feature_map+pool"):
            raise ValueError(  # refused before training, not after it (fit_trust)
                "Config key 'ood_layer': ood_method 'combined' reads 'feature_map+pool' (kNN "
                f"on the first, Mahalanobis on the second). Received: {self.ood_layer!r}; "
                "use 'auto' or 'feature_map+pool'."
            )
        for key in ("val_split", "test_split", "label_smoothing"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(
                    f"Config key {key!r} must be in [0, 1). "
                    f"Received: {key}={getattr(self, key)!r}"
                )
        if not 0 <= self.fine_tune_warmup < 1:
            raise ValueError(
                "Config key 'fine_tune_warmup' must be in [0, 1): the share of phase 2's "
                f"steps spent warming up. Received: fine_tune_warmup={self.fine_tune_warmup!r}"
            )
        if self.fine_tune_warmup and self.fine_tune_lr_schedule == "exponential":
            raise ValueError(
                "Config key 'fine_tune_warmup' works with fine_tune_lr_schedule 'cosine' or "
                "'constant'. Received: fine_tune_lr_schedule='exponential', "
                f"fine_tune_warmup={self.fine_tune_warmup!r} (set it to 0)"
            )
        if not 0 < self.conformal_alpha < 1:
            raise ValueError(
                "Config key 'conformal_alpha' must be in (0, 1), e.g. 0.1 for 90% "
                f"prediction sets. Received: conformal_alpha={self.conformal_alpha!r}"
            )
        for key in ("learning_rate", "fine_tune_learning_rate", "batch_size", "image_size"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
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
        if self.batchnorm_momentum is not None and not 0 <= self.batchnorm_momentum < 1:
            raise ValueError(
                "Config key 'batchnorm_momentum' must be None or in [0, 1). "
                f"Received: batchnorm_momentum={self.batchnorm_momentum!r}"
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
        if isinstance(self.freeze_backbone, str):
            value = self.freeze_backbone.lower()
            if value not in ("auto", "true", "false"):
                raise ValueError(
                    "Config key 'freeze_backbone' must be 'auto', true or false. "
                    f"Received: freeze_backbone={self.freeze_backbone!r}"
                )
            object.__setattr__(
                self, "freeze_backbone", {"auto": "auto", "true": True, "false": False}[value]
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

    def resolved(self):
        """A copy with `"auto"` values decided (what `config.json` records).

        `freeze_backbone="auto"` becomes True for pretrained weights
        (`"imagenet"` or a weights file) and False from scratch;
        `batchnorm_momentum=None` becomes 0.9 from scratch,
        `calibrate_before_validation=None` becomes True from scratch and
        `fine_tune_learning_rate=None` becomes 3e-5 for pretrained weights,
        1e-4 from scratch, and `ood_method="auto"` becomes `"combined"` (`"knn"`
        when `ood_layer` names a single layer).

        Example:

        ```python
        TrainConfig(weights=None).resolved().freeze_backbone   # False
        ```
        """
        changes = {}
        if self.freeze_backbone == "auto":
            changes["freeze_backbone"] = self.weights is not None
        if self.batchnorm_momentum is None and self.weights is None:
            changes["batchnorm_momentum"] = FROM_SCRATCH_BATCHNORM_MOMENTUM
        if self.calibrate_before_validation is None:
            changes["calibrate_before_validation"] = self.weights is None
        if self.fine_tune_learning_rate is None:
            changes["fine_tune_learning_rate"] = (
                FROM_SCRATCH_FINE_TUNE_LEARNING_RATE if self.weights is None
                else PRETRAINED_FINE_TUNE_LEARNING_RATE)
        if self.ood_method == "auto":
            changes["ood_method"] = resolved_ood_method(self.ood_method, self.ood_layer)
        return self.replace(**changes) if changes else self


def _check_type(key, value, hint):
    """Checks `value` against a field annotation; ints are accepted as floats
    and path objects (`os.PathLike`, e.g. `pathlib.Path`) as strings."""
    if typing.get_origin(hint) is typing.Union and type(None) not in typing.get_args(hint):
        # A choice of types (e.g. `freeze_backbone: bool | "auto"`).
        for option in typing.get_args(hint):
            if isinstance(value, option) and not (option is int and isinstance(value, bool)):
                return value
        names = " or ".join(t.__name__ for t in typing.get_args(hint))
        raise TypeError(
            f"Config key {key!r} must be {names}. Received: {key}={value!r} "
            f"({type(value).__name__})"
        )
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
