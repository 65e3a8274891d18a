"""`medivision demo`: train a small MediVision on synthetic lesion data.

The main job on its embedded default: no download, a few minutes on a CPU.
It generates synthetic lesion images, trains a MediVision with the
from-scratch `smallcnn` backbone, reports held-out accuracy and writes a run
folder.

Example:

```python
from medivision_tf.demo import run_demo

results = run_demo(epochs=2, num_train=64, num_test=32)
results["test_accuracy"], results["run_dir"]
```
"""

import dataclasses
import datetime
import json
import os

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.data.synthetic import make_synthetic_lesions
from medivision_tf.model import build_medivision, calibrate_batchnorm


@dataclasses.dataclass
class DemoConfig:
    """Settings of `medivision demo` (the defaults are the embedded demo).

    Attributes:
        num_train: training images.
        num_val: validation images (progress shown after each epoch).
        num_test: held-out test images (a separate draw, never seen in training).
        image_size: side of the square grayscale images.
        num_classes: lesion classes (2 to 6).
        backbone: backbone name; `smallcnn` trains from scratch.
        epochs: training epochs.
        batch_size: images per step.
        learning_rate: Adam learning rate.
        seed: seed of the data, the weights and the shuffling.
    """

    num_train: int = 1200
    num_val: int = 200
    num_test: int = 400
    image_size: int = 64
    num_classes: int = 4
    backbone: str = "smallcnn"
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 0


def run_demo(out_dir="runs", verbose=1, **overrides):
    """Runs the demo and returns its results.

    Args:
        out_dir: parent folder of the run folder (`out_dir/demo-<timestamp>`).
        verbose: 1 shows Keras progress bars and messages, 0 is silent.
        **overrides: fields of `DemoConfig` to change (e.g. `epochs=2`).

    Returns:
        A dict with `test_accuracy`, `run_dir`, `model_path` and the config.
    """
    unknown = set(overrides) - {f.name for f in dataclasses.fields(DemoConfig)}
    if unknown:
        raise ValueError(
            f"Unknown demo settings {sorted(unknown)}. Allowed: "
            f"{[f.name for f in dataclasses.fields(DemoConfig)]}"
        )
    config = DemoConfig(**overrides)
    run_dir = _new_run_dir(out_dir)
    keras.utils.set_random_seed(config.seed)

    def say(message):
        if verbose:
            print(message, flush=True)

    say(f"Generating synthetic lesion data ({config.num_classes} classes, "
        f"{config.image_size}x{config.image_size})...")
    splits = {
        split: make_synthetic_lesions(
            count, config.image_size, config.num_classes, seed=config.seed + offset
        )
        for offset, (split, count) in enumerate(
            (("train", config.num_train), ("val", config.num_val), ("test", config.num_test))
        )
    }
    class_names = splits["train"].class_names

    model = build_medivision(
        config.num_classes,
        backbone=config.backbone,
        input_shape=(config.image_size, config.image_size, 1),
        weights=None,
        class_names=class_names,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model_path = os.path.join(run_dir, "model.keras")
    say(f"Training MediVision ({config.backbone} backbone) for {config.epochs} epochs...")
    model.fit(
        _dataset(splits["train"], config.batch_size, shuffle_seed=config.seed),
        validation_data=_dataset(splits["val"], config.batch_size),
        epochs=config.epochs,
        callbacks=[keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"))],
        verbose=verbose,
    )
    # A short from-scratch training leaves BatchNorm's moving averages behind
    # the weights; re-estimate them so inference matches what was learned.
    calibrate_batchnorm(model, splits["train"].images, config.batch_size)
    model.save(model_path)
    probabilities = model.predict(splits["test"].images, verbose=0)
    predictions = probabilities.argmax(axis=1)
    test_accuracy = float(np.mean(predictions == splits["test"].labels))

    results = {
        "test_accuracy": test_accuracy,
        "num_test": int(len(splits["test"])),
        "class_names": list(class_names),
        "run_dir": run_dir,
        "model_path": model_path,
    }
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(results, f, indent=2)
    pd.DataFrame(
        {
            "label": splits["test"].labels,
            "prediction": predictions,
            "probability": probabilities.max(axis=1),
        }
    ).to_csv(os.path.join(run_dir, "test_predictions.csv"), index=False)
    say(f"Held-out accuracy: {test_accuracy:.3f} on {len(splits['test'])} images")
    say(f"Results written to {run_dir}")
    return results


def _dataset(data, batch_size, shuffle_seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(data), seed=shuffle_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _new_run_dir(out_dir):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(out_dir, f"demo-{stamp}")
    suffix = 1
    while os.path.exists(run_dir):
        suffix += 1
        run_dir = os.path.join(out_dir, f"demo-{stamp}-{suffix}")
    os.makedirs(run_dir)
    return run_dir
