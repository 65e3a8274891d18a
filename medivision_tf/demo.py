"""`medivision demo`: train a small MediVision on synthetic lesion data.

The main job on its embedded default: no download, a few minutes on a CPU.
It generates synthetic lesion images, trains a MediVision with the
from-scratch `smallcnn` backbone, evaluates it on held-out images (metrics
and plots), explains some of them with Grad-CAM and attention maps (scored
against the known lesion boxes), writes everything into a run folder and
exports the model as a SavedModel ready for TF Serving.

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
        num_explained: held-out images explained and scored (pointing game).
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
    num_explained: int = 100
    seed: int = 0


def run_demo(out_dir="runs", export_root="saved_models", verbose=1, **overrides):
    """Runs the demo and returns its results.

    Trains with `medivision_tf.training.train`, evaluates the held-out split
    with `medivision_tf.evaluation.evaluate_model` (metrics JSON/CSV and PNG
    plots), explains a few held-out images with Grad-CAM and attention maps,
    scoring them with the pointing game on the known lesion boxes.

    Args:
        out_dir: parent folder of the run folder (`out_dir/demo-<timestamp>`).
        export_root: where the SavedModel export lands, in TF Serving's layout
            (`export_root/lesions/VERSION/`).
        verbose: 1 shows Keras progress bars and messages, 0 only the results.
        **overrides: fields of `DemoConfig` to change (e.g. `epochs=2`).

    Returns:
        A dict with `test_accuracy`, `pointing_game` (Grad-CAM hit rate),
        `run_dir`, `model_path`, `saved_model` (the export), `serve_command`
        and the evaluation summary.
    """
    # Imported here: the stages import this package's model and data modules.
    from medivision_tf.evaluation import evaluate_model
    from medivision_tf.explain import explain_report
    from medivision_tf.export import export_for_serving
    from medivision_tf.data.datasets.synthetic import make_synthetic_lesions
    from medivision_tf.training import train

    unknown = set(overrides) - {f.name for f in dataclasses.fields(DemoConfig)}
    if unknown:
        raise ValueError(
            f"Unknown demo settings {sorted(unknown)}. Allowed: "
            f"{[f.name for f in dataclasses.fields(DemoConfig)]}"
        )
    config = DemoConfig(**overrides)
    run_dir = _new_run_dir(out_dir)

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
    class_names = list(splits["train"].class_names)
    with open(os.path.join(run_dir, "demo_config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2)

    say(f"Training MediVision ({config.backbone} backbone) for {config.epochs} epochs...")
    result = train(
        dict(
            backbone=config.backbone,
            weights=None,
            image_size=config.image_size,
            channels=1,
            epochs=config.epochs,
            fine_tune_epochs=0,  # the backbone trains from scratch, unfrozen
            freeze_backbone=False,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            monitor="val_accuracy",
            # The demo's own recipe (measured in its README section), kept
            # apart from TrainConfig's defaults: no augmentation or schedule.
            lr_schedule="constant",
            label_smoothing=0.0,
            augment=False,
            early_stopping_patience=0,
            tensorboard=False,
            seed=config.seed,
        ),
        train_data=(splits["train"].images, splits["train"].labels),
        val_data=(splits["val"].images, splits["val"].labels),
        class_names=class_names,
        run_dir=run_dir,
        verbose=verbose,
    )
    model = result.model

    test = splits["test"]
    say("Evaluating on the held-out images...")
    report = evaluate_model(
        model,
        test.images,
        test.labels,
        class_names,
        out_dir=os.path.join(run_dir, "evaluation"),
        history_csv=os.path.join(run_dir, "history.csv"),
        batch_size=config.batch_size,
        verbose="auto" if verbose else 0,
    )
    say("Explaining held-out images (Grad-CAM, attention)...")
    count = min(config.num_explained, len(test))
    explanations = explain_report(
        model,
        test.images[:count],
        test.labels[:count],
        test.boxes[:count],
        os.path.join(run_dir, "explanations"),
        methods=("gradcam", "gradcam++", "attention"),
    )

    served = export_for_serving(model, name="lesions", export_root=export_root)

    results = {
        "test_accuracy": float(report.summary["accuracy"]),
        "pointing_game": float(explanations["methods"]["gradcam"]["pointing_game"]),
        "pointing_game_chance": float(explanations["chance"]["pointing_game"]),
        "explanations": explanations["methods"],
        "evaluation": report.summary,
        "num_test": int(len(test)),
        "class_names": class_names,
        "run_dir": run_dir,
        "model_path": result.model_path,
        "saved_model": served.path,
        "serve_command": served.serve_command,
    }
    with open(os.path.join(run_dir, "demo_results.json"), "w") as f:
        json.dump(results, f, indent=2, default=float)
    # The results are printed even when quiet (verbose=0 hides the progress only).
    print(f"Held-out accuracy: {results['test_accuracy']:.3f} on {len(test)} images")
    print(f"Grad-CAM pointing game: {results['pointing_game']:.3f} on {count} images "
          f"(chance {results['pointing_game_chance']:.3f})")
    print(f"SavedModel for TF Serving: {served.path}")
    print(f"Serve it (needs the 'serve' extra): {served.serve_command}")
    print(f"Results written to {run_dir}", flush=True)
    return results


def _new_run_dir(out_dir):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(out_dir, f"demo-{stamp}")
    suffix = 1
    while os.path.exists(run_dir):
        suffix += 1
        run_dir = os.path.join(out_dir, f"demo-{stamp}-{suffix}")
    os.makedirs(run_dir)
    return run_dir
