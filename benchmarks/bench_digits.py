"""Real-data accuracy: scikit-learn's handwritten digits, MediVision vs pooling head.

The data set ships inside scikit-learn (`sklearn.datasets.load_digits`:
1,797 grayscale 8x8 images of the digits 0-9, pixel values 0-16), so this
runs without a download. The images are upscaled (bilinear, `tf.image.resize`)
to `--size` pixels and scaled to 0-255, the raw-pixel range the models take.

For each seed: a stratified train/test split (`train_test_split(stratify=)`),
then MediVision and the pooling baseline, both on the from-scratch `smallcnn`
backbone, are trained with the same budget (epochs, batch size, Adam learning
rate, seed), their BatchNorm statistics re-estimated on the training images
(`medivision_tf.calibrate_batchnorm`), and evaluated on the test images:
accuracy, macro-F1 and macro one-vs-rest ROC-AUC (scikit-learn). Figures are
mean ± standard deviation (ddof=1) over seeds, plus the mean paired
difference (MediVision minus baseline, same split and seed).

smallcnn's feature map has 128 channels, which the default head does not
project (`projection_units=128` only narrows wider maps). A third model,
MediVision with `projection_units=16`, narrows them 8x, as the default head
narrows an ImageNet backbone's 1280 channels 10x: its paired difference to
the unprojected MediVision is what the projection's rank limit costs in
accuracy.

```
python benchmarks/bench_digits.py            # 32x32, 3 seeds, 12 epochs
python benchmarks/bench_digits.py --quick    # 2 seeds, 1 epoch, 200 images
```
"""

import statistics

import numpy as np

import common

METRICS = ("accuracy", "macro_f1", "macro_roc_auc")
MODELS = ("medivision", "medivision_projected", "baseline")
#: The narrowing projection of the third model (smallcnn: 128 channels -> 16).
PROJECTION_UNITS = 16
LABELS = {
    "medivision": "MediVision",
    "medivision_projected": f"MediVision, projection 128→{PROJECTION_UNITS}",
    "baseline": "pooling baseline",
}


def settings(quick):
    """Data size, seeds and training budget of a full or `--quick` run."""
    if quick:
        return dict(size=32, seeds=[0, 1], epochs=1, batch_size=32,
                    learning_rate=2e-3, test_fraction=0.25, max_images=200)
    return dict(size=32, seeds=[0, 1, 2], epochs=12, batch_size=32,
                learning_rate=2e-3, test_fraction=0.25, max_images=None)


def load_digits_images(size, max_images=None):
    """Digits as `(n, size, size, 1)` float32 images in 0-255, and labels."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype("float32")[..., None] * (255.0 / 16.0)
    labels = digits.target.astype("int32")
    if max_images is not None:
        images, labels = images[:max_images], labels[:max_images]
    resized = tf.image.resize(images, (size, size), method="bilinear").numpy()
    return np.clip(resized, 0, 255), labels


def evaluate(model, images, labels, num_classes):
    """Accuracy, macro-F1 and macro one-vs-rest ROC-AUC on `images`."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    probs = model.predict(images, batch_size=256, verbose=0)
    predicted = probs.argmax(-1)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
        "macro_roc_auc": float(
            roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                          labels=list(range(num_classes)))
        ),
    }


def train_and_evaluate(name, split, seed, config, num_classes=10):
    """Trains one model on one split with the shared budget; returns metrics."""
    import keras

    import medivision_tf

    train_x, test_x, train_y, test_y = split
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    options = dict(
        backbone="smallcnn", weights=None, input_shape=(config["size"], config["size"], 1),
        class_names=[str(d) for d in range(num_classes)],
    )
    if name == "baseline":
        model = medivision_tf.build_pooling_baseline(num_classes, **options)
    elif name == "medivision_projected":
        model = medivision_tf.build_medivision(
            num_classes, projection_units=PROJECTION_UNITS, **options
        )
        assert model.get_layer("projection").units == PROJECTION_UNITS
    else:
        model = medivision_tf.build_medivision(num_classes, **options)
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        loss="sparse_categorical_crossentropy",
    )
    model.fit(train_x, train_y, batch_size=config["batch_size"],
              epochs=config["epochs"], shuffle=True, verbose=0)
    medivision_tf.calibrate_batchnorm(model, train_x)
    return evaluate(model, test_x, test_y, num_classes)


def summarize(values):
    """Mean and sample standard deviation (0 for a single value)."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def main(argv=None):
    from sklearn.model_selection import train_test_split

    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = settings(args.quick)
    images, labels = load_digits_images(config["size"], config["max_images"])
    per_seed = []
    for seed in config["seeds"]:
        split = train_test_split(
            images, labels, test_size=config["test_fraction"], stratify=labels,
            random_state=seed,
        )
        row = {"seed": seed}
        for name in MODELS:
            row[name] = train_and_evaluate(name, split, seed, config)
        per_seed.append(row)
        print(
            f"seed {seed}: " + ", ".join(
                f"{name} acc {row[name]['accuracy']:.3f}" for name in MODELS
            ),
            flush=True,
        )
    summary = {
        name: {m: summarize([r[name][m] for r in per_seed]) for m in METRICS}
        for name in MODELS
    }
    differences = {
        m: summarize([r["medivision"][m] - r["baseline"][m] for r in per_seed])
        for m in METRICS
    }
    projection_differences = {
        m: summarize([r["medivision_projected"][m] - r["medivision"][m] for r in per_seed])
        for m in METRICS
    }
    results = {
        "benchmark": "digits",
        "description": "scikit-learn digits (real images), MediVision vs pooling head, same budget",
        "quick": args.quick,
        "settings": config,
        "machine": common.machine_info(),
        "num_images": int(len(labels)),
        "per_seed": per_seed,
        "summary": summary,
        "difference_medivision_minus_baseline": differences,
        "difference_projected_minus_medivision": projection_differences,
    }
    print()
    print(render_table(results))
    common.write_results(results, args.json)
    return results


def render_table(results):
    """The results as a Markdown table (mean ± std over seeds)."""
    config = results["settings"]

    def pm(stats):
        return f"{stats['mean']:.3f} ± {stats['std']:.3f}"

    rows = [
        [LABELS[name]] + [pm(results["summary"][name][m]) for m in METRICS]
        for name in MODELS
    ]
    rows.append(
        ["MediVision − baseline (paired)"]
        + [pm(results["difference_medivision_minus_baseline"][m]) for m in METRICS]
    )
    rows.append(
        [f"projection 128→{PROJECTION_UNITS} − MediVision (paired)"]
        + [pm(results["difference_projected_minus_medivision"][m]) for m in METRICS]
    )
    table = common.format_table(["model", "accuracy", "macro-F1", "macro ROC-AUC"], rows)
    return (
        f"{results['num_images']} digits upscaled to {config['size']}², smallcnn "
        f"backbone from scratch, {config['epochs']} epochs, batch {config['batch_size']}, "
        f"seeds {config['seeds']}, test fraction {config['test_fraction']}; "
        f"mean ± std over seeds.\n\n{table}"
    )


if __name__ == "__main__":
    main()
