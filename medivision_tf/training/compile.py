"""The loss, optimizer (with its learning-rate schedule) and metrics of a `TrainConfig`.

Example:

```python
from medivision_tf.training import TrainConfig, make_loss, make_metrics, make_optimizer

config = TrainConfig(optimizer="adamw", lr_schedule="cosine", weight_decay=1e-4)
model.compile(optimizer=make_optimizer(config, 1e-3, steps_per_epoch=100, epochs=5),
              loss=make_loss(config), metrics=make_metrics(config, num_classes=3))
```
"""

import keras

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


def make_optimizer(config, learning_rate, steps_per_epoch=None, epochs=None, phase=1):
    """The Keras optimizer for a config, with its learning-rate schedule.

    Phase 1 uses `config.lr_schedule`; phase 2 (fine-tuning)
    `config.fine_tune_lr_schedule` after a linear warm-up over
    `config.fine_tune_warmup` of its steps. Schedules are Keras' own
    (`CosineDecay`, whose `warmup_target` gives the warm-up; `alpha=1` keeps
    the rate constant after it), so a saved model's optimizer loads anywhere.

    Args:
        config: a `TrainConfig` (`optimizer`, `lr_schedule`,
            `fine_tune_lr_schedule`, `fine_tune_warmup`, `weight_decay`).
        learning_rate: the phase's learning rate (the peak, after a warm-up).
        steps_per_epoch: optimizer steps per epoch; needed by the `cosine`
            (decays to 0 over `steps_per_epoch * epochs`) and `exponential`
            (x0.9 per epoch) schedules and by the warm-up.
        epochs: epochs of the phase (for `cosine` and the warm-up).
        phase: 1 or 2.

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: a phase-1 schedule without a known `steps_per_epoch`.

    Example:

    ```python
    config = TrainConfig(optimizer="adamw", lr_schedule="cosine", weight_decay=1e-4)
    optimizer = make_optimizer(config, 1e-3, steps_per_epoch=100, epochs=5)
    ```
    """
    rate = learning_rate
    schedule = config.lr_schedule if phase == 1 else config.fine_tune_lr_schedule
    warmup = 0.0 if phase == 1 else config.fine_tune_warmup
    if schedule != "constant" or warmup:
        if not steps_per_epoch:
            if phase == 2:  # the default schedule: fall back rather than refuse
                schedule, warmup = "constant", 0.0
            else:
                raise ValueError(
                    f"lr_schedule={schedule!r} needs a known number of steps per "
                    "epoch: set 'steps_per_epoch' for datasets of unknown length."
                )
    if schedule in ("cosine", "constant") and (schedule == "cosine" or warmup):
        total = max(steps_per_epoch * epochs, 1)
        warmup_steps = int(round(warmup * total))
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate,
            decay_steps=max(total - warmup_steps, 1),
            alpha=1.0 if schedule == "constant" else 0.0,
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    elif schedule == "exponential":
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


def compile_model(model, config, strategy, learning_rate, steps, epochs, num_classes, phase=1):
    """Compiles `model` for one phase inside `strategy`'s scope.

    Args:
        model: the model to compile.
        config: a `TrainConfig`.
        strategy: the `tf.distribute.Strategy` the model was built under.
        learning_rate: the phase's initial learning rate.
        steps: optimizer steps per epoch (for schedules; may be None).
        epochs: epochs of the phase (for `cosine`).
        num_classes: number of outputs.
        phase: 1 or 2 (which schedule, see `make_optimizer`).
    """
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(config, learning_rate, steps, epochs, phase),
            loss=make_loss(config),
            metrics=make_metrics(config, num_classes),
        )
