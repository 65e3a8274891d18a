"""Real photographs: accuracy, calibration, prediction sets and OOD flag on Fashion-MNIST.

```
python benchmarks/bench_realdata.py [--quick] [--json OUT.json]
    [--train-images 6000] [--val-images 1000] [--epochs 8] [--seeds 0,1,2]
    [--models medivision,baseline,rows,bidirectional_free]
```

Data: Debian's `dataset-fashion-mnist` package (`apt-get install
dataset-fashion-mnist`: 70,000 real 28x28 photographs, the official split of
60,000 training and 10,000 test images). The script skips with a message
where the package is absent. Training uses the first `--train-images` of a
seeded shuffle of the official training split, validation the next
`--val-images` (from the training split, never the test split); the test
figures are on the official 10,000 test images.

Every model is trained with the same budget (Adam, epochs, batch size), then
BatchNorm statistics are re-estimated on the training images and
`medivision_tf.trust.fit_trust` fits the temperature, the conformal threshold
(alpha = 0.1) and the OOD threshold (the kNN score on the feature map, the
default when these tables were measured) on the validation images. Reported per
model (mean ± std over seeds): test accuracy, ECE before/after temperature
scaling, coverage and mean size of the prediction sets, the ROC-AUC of the OOD
score between the test images and unrelated real images (scikit-learn's
handwritten digits, 8x8 scans upscaled to 28x28), the share of test images
flagged out-of-distribution, and wall time.

With `--json`, the file is rewritten after every model (`"partial": true`
until the last), and a rerun with the same settings and file trains only the
models and seeds still missing: the 55,000-image run takes about 1.5 hours on
2 cores.

Models: `medivision` (default head), `baseline` (`build_pooling_baseline`),
`rows` (sequence="rows"), `narrow` (projection to 32, LSTM 64),
`bidirectional` (a bidirectional LSTM, 64 units each way, in place of the
LSTM) and `context` (the attention context alone is pooled: the mean of the
attention-weighted LSTM outputs, without the Add skip). The last two are
built here from the default model's layers (`head_variant`): head designs
under test, not options of `build_medivision`.
"""

import gzip
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
               "sneaker", "bag", "ankle_boot"]
MODELS = {
    "medivision": "MediVision (spatial, LSTM 128)",
    "baseline": "pooling baseline",
    "rows": "MediVision, rows",
    "narrow": "MediVision, projection 32, LSTM 64",
    "bidirectional": "MediVision, bidirectional LSTM 2x64",
    "context": "MediVision, attention context pooled (no skip)",
}
METRICS = ("accuracy", "ece_before", "ece_after", "coverage", "mean_set_size", "ood_auroc",
           "flagged_in_distribution", "train_seconds")
# Reported where a run measured them (runs before they were added lack them).
LAC_METRICS = ("lac_coverage", "lac_mean_set_size", "lac_empty_sets")
ALPHA = 0.1


def settings(args):
    if args.quick:
        return dict(train_images=300, val_images=200, test_images=500, epochs=1,
                    seeds=[0], models=["medivision", "baseline"], batch_size=64,
                    learning_rate=2e-3, backbone=args.backbone)
    return dict(train_images=args.train_images, val_images=args.val_images,
                test_images=args.test_images, epochs=args.epochs,
                seeds=[int(s) for s in args.seeds.split(",")],
                models=args.models.split(","), batch_size=64, learning_rate=2e-3,
                backbone=args.backbone)


def read_idx(path):
    """An IDX file (gzip) as a NumPy array (uint8 images or labels)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(folder=FASHION_DIR):
    """`{train,test}_{images,labels}`, or None where the Debian package is absent."""
    paths = {k: os.path.join(folder, v) for k, v in FILES.items()}
    if not all(os.path.isfile(p) for p in paths.values()):
        return None
    return {k: read_idx(p) for k, p in paths.items()}


def load_ood_images(size=28):
    """scikit-learn's 1,797 handwritten digits (real 8x8 scans) upscaled, 0-255."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits().images.astype("float32")[..., None] * (255.0 / 16.0)
    return np.clip(tf.image.resize(digits, (size, size), method="bilinear").numpy(), 0, 255)


def build(name, seed, backbone="smallcnn"):
    import keras

    import medivision_tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    options = dict(backbone=backbone, weights=None, input_shape=(28, 28, 1),
                   class_names=CLASS_NAMES)
    if name == "baseline":
        return medivision_tf.build_pooling_baseline(10, **options)
    if name == "rows":
        return medivision_tf.build_medivision(10, sequence="rows", **options)
    if name == "narrow":
        return medivision_tf.build_medivision(10, projection_units=32, lstm_units=64,
                                              **options)
    if name == "medivision":
        return medivision_tf.build_medivision(10, **options)
    if name in ("bidirectional", "context"):
        return head_variant(name, medivision_tf.build_medivision(10, **options))
    raise ValueError(f"Unknown model {name!r}. Choose from: {', '.join(MODELS)}.")


def head_variant(name, model):
    """A head variant on `model`'s backbone, ending like every MediVision model.

    The backbone, `to_sequence` (and `projection`) layers are `model`'s own;
    the new head ends in `pool` -> `dropout` -> `predictions` ->
    `class_labels` (holding `model`'s `ModelConfig`), so trust fitting,
    Grad-CAM and `predict_with_trust` treat it as any MediVision model.
    """
    import keras

    from medivision_tf import get_model_config
    from medivision_tf.layers import ClassLabels, SequenceAttention

    config = get_model_config(model)
    names = [layer.name for layer in model.layers]
    sequence = model.get_layer("projection" if "projection" in names else "to_sequence").output
    if name == "bidirectional":
        lstm = keras.layers.Bidirectional(
            keras.layers.LSTM(config.lstm_units // 2, return_sequences=True), name="lstm")(sequence)
        attended, _ = SequenceAttention(config.attention_units, name="attention")(lstm)
        x = keras.layers.Add(name="attention_skip")([attended, lstm])
    elif name == "context":
        x = model.get_layer("attention").output[0]
    else:
        raise ValueError(f"Unknown head variant {name!r}: 'bidirectional' or 'context'.")
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    x = keras.layers.Dense(config.num_classes, activation="softmax", dtype="float32",
                           name="predictions")(x)
    x = ClassLabels(list(config.class_names), model_config=config.to_dict(), dtype="float32",
                    name="class_labels")(x)
    return keras.Model(model.inputs, x, name=f"medivision_{name}")


def run_one(name, seed, data, config, ood_images):
    import keras
    from sklearn.metrics import roc_auc_score

    import medivision_tf
    from medivision_tf.evaluation import expected_calibration_error
    from medivision_tf.trust import fit_trust, predict_with_trust

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data["train_images"]))
    n_train, n_val = config["train_images"], config["val_images"]
    images = data["train_images"][..., None].astype("float32")
    labels = data["train_labels"].astype("int32")
    train_x, train_y = images[order[:n_train]], labels[order[:n_train]]
    val_x, val_y = images[order[n_train:n_train + n_val]], labels[order[n_train:n_train + n_val]]
    test_x = data["test_images"][: config["test_images"], ..., None].astype("float32")
    test_y = data["test_labels"][: config["test_images"]].astype("int32")

    model = build(name, seed, config.get("backbone", "smallcnn"))
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]),
                  loss="sparse_categorical_crossentropy")
    start = time.perf_counter()
    model.fit(train_x, train_y, batch_size=config["batch_size"], epochs=config["epochs"],
              shuffle=True, verbose=0)
    medivision_tf.calibrate_batchnorm(model, train_x)
    seconds = time.perf_counter() - start
    # APS sets in the main table (the figures before LAC became the default),
    # LAC's beside them (`lac_sets`),
    # and the kNN OOD score on the feature map, the default when every figure
    # here was measured (bench_unseen.py compares it with the other scores,
    # on unrelated images too).
    fit_trust(model, val_x, val_y, alpha=ALPHA, seed=seed, conformal_method="aps",
              ood_method="knn", ood_layer="feature_map")

    test = predict_with_trust(model, test_x, batch_size=256)
    far = predict_with_trust(model, ood_images, batch_size=256)
    truth = np.r_[np.zeros(len(test_x)), np.ones(len(ood_images))]
    sets = test["prediction_set"]
    lac = lac_sets(predict_with_trust(model, val_x, batch_size=256)["probabilities"], val_y,
                   test["probabilities"])
    return {
        "accuracy": float((test["probabilities"].argmax(1) == test_y).mean()),
        "ece_before": expected_calibration_error(test_y, test["uncalibrated_probabilities"])[0],
        "ece_after": expected_calibration_error(test_y, test["probabilities"])[0],
        "coverage": float(sets[np.arange(len(test_y)), test_y].mean()),
        "mean_set_size": float(sets.sum(1).mean()),
        "ood_auroc": float(roc_auc_score(truth, np.r_[test["ood_score"], far["ood_score"]])),
        "flagged_in_distribution": float(test["out_of_distribution"].mean()),
        "flagged_ood": float(far["out_of_distribution"].mean()),
        "lac_coverage": float(lac[np.arange(len(test_y)), test_y].mean()),
        "lac_mean_set_size": float(lac.sum(1).mean()),
        "lac_empty_sets": float((lac.sum(1) == 0).mean()),
        "temperature": float(medivision_tf.get_model_config(model).trust["temperature"]),
        "train_seconds": seconds,
    }


def lac_sets(val_probabilities, val_labels, test_probabilities):
    """The test images' LAC prediction sets (`conformal_method="lac"`), fitted
    on the same calibrated validation probabilities as the model's APS sets
    (`run_one` fits APS, the figures of the runs before LAC became the
    default of `fit_trust`).

    APS sets always hold the top class, so their coverage cannot fall below
    the accuracy; LAC's can (its sets may be empty), which is what a
    coverage near 1 - alpha needs once the accuracy is above it.
    """
    from medivision_tf.trust.apply import conformal_scores, prediction_sets
    from medivision_tf.trust.fitting import conformal_threshold

    scores = np.asarray(conformal_scores(val_probabilities, "lac"))
    threshold = conformal_threshold(scores[np.arange(len(val_labels)), val_labels], ALPHA)
    return np.asarray(prediction_sets(test_probabilities, threshold, "lac"))


def summarize(values):
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": list(values)}


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=6000)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--backbone", default="smallcnn",
                        help="a from-scratch backbone: smallcnn (default) or smallvgg")
    args = parser.parse_args(argv)
    data = load_fashion_mnist()
    if data is None:
        message = (f"SKIPPED: Fashion-MNIST not found in {FASHION_DIR}. Install it with "
                   "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu).")
        print(message)
        results = {"skipped": message}
        common.write_results(results, args.json)
        return results
    config = settings(args)
    ood_images = load_ood_images()
    # Resumable (see the module docstring): the JSON is rewritten after every
    # model, and a run with the same settings resumes from it.
    runs = resumable_runs(args.json, config)
    for seed_index, seed in enumerate(config["seeds"]):
        for name in config["models"]:  # alternating models within a seed
            if len(runs[name]) > seed_index:
                print(f"seed {seed} {name}: kept from {args.json}", flush=True)
                continue
            row = run_one(name, seed, data, config, ood_images)
            runs[name].append(row)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()),
                  flush=True)
            common.write_results(collect(config, args, runs, partial=True), args.json)
    results = collect(config, args, runs, partial=False)
    print(render_table(results))
    common.write_results(results, args.json)
    return results


def collect(config, args, runs, partial):
    """The results document; `partial` while some seeds are still to run."""
    done = {name: rows for name, rows in runs.items() if rows}
    return {
        "settings": config, "alpha": ALPHA, "quick": bool(args.quick), "partial": partial,
        "ood_set": "scikit-learn digits (1,797 real 8x8 scans) upscaled to 28x28",
        "runs": runs,
        "summary": {name: {m: summarize([r[m] for r in rows]) for m in METRICS + LAC_METRICS
                           if all(m in r for r in rows)}
                    for name, rows in done.items()},
        "paired_vs_baseline": paired_differences(done),
    }


def resumable_runs(path, config):
    """The runs already in `path` when it holds a partial run of `config`, else empty."""
    import json

    runs = {name: [] for name in config["models"]}
    if not path or not os.path.isfile(path):
        return runs
    with open(path) as f:
        previous = json.load(f)
    if not previous.get("partial") or previous.get("settings") != config:
        return runs
    for name in runs:
        runs[name] = list(previous.get("runs", {}).get(name, []))[: len(config["seeds"])]
    return runs


def paired_differences(runs, reference="baseline"):
    """Per model: test accuracy minus the reference's, seed by seed (same split and seed)."""
    if reference not in runs:
        return {}
    base = [r["accuracy"] for r in runs[reference]]
    out = {}
    for name, rows in runs.items():
        if name == reference:
            continue
        differences = [r["accuracy"] - b for r, b in zip(rows, base)]
        out[name] = {**summarize(differences),
                     "seeds_at_least_as_accurate": sum(d >= 0 for d in differences),
                     "seeds": len(differences)}
    return out


def render_table(results):
    """The results as a Markdown table (mean ± std over seeds)."""
    if "skipped" in results:
        return results["skipped"]
    config = results["settings"]

    def pm(stats, digits=3):
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"

    header = ("| model | accuracy | ECE before | ECE after | APS coverage (1-α=0.9) | mean set size "
              "| OOD AUROC | in-dist. flagged | train s |")
    lines = [header, "|" + "---|" * 9]
    for name, stats in results["summary"].items():
        lines.append("| " + " | ".join(
            [MODELS.get(name, name)] + [pm(stats[m]) for m in METRICS[:-1]]
            + [pm(stats["train_seconds"], 0)]) + " |")
    lines.append("")
    lines.append(
        f"Fashion-MNIST (Debian `dataset-fashion-mnist`): {config['train_images']} training, "
        f"{config['val_images']} validation images (both from the official training split), "
        f"{config['test_images']} official test images; {config.get('backbone', 'smallcnn')} "
        f"from scratch, "
        f"{config['epochs']} epochs, seeds {config['seeds']}. OOD: {results['ood_set']}; "
        "score: kNN on the feature map."
    )
    lac = {name: stats for name, stats in results["summary"].items()
           if all(m in stats for m in LAC_METRICS)}
    if lac:
        lines += ["", "Prediction sets of the same models with `conformal_method=\"lac\"` (fitted "
                  "on the same validation images):", "",
                  "| model | LAC coverage (1-α=0.9) | mean set size | empty sets |", "|---|---|---|---|"]
        for name, stats in lac.items():
            lines.append("| " + " | ".join([MODELS.get(name, name)]
                                           + [pm(stats[m]) for m in LAC_METRICS]) + " |")
    paired = results.get("paired_vs_baseline") or {}
    if paired:
        lines += ["", "| model | test accuracy − pooling baseline, paired by seed | seeds at least "
                  "as accurate |", "|---|---|---|"]
        for name, stats in paired.items():
            lines.append(f"| {MODELS.get(name, name)} | {stats['mean']:+.4f} ± {stats['std']:.4f} "
                         f"({', '.join(f'{v:+.4f}' for v in stats['values'])}) | "
                         f"{stats['seeds_at_least_as_accurate']} of {stats['seeds']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
