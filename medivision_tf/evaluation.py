"""Evaluation: metrics (scikit-learn), calibration, reports and plots (matplotlib).

`evaluate_model` predicts (optionally with test-time augmentation), computes
every metric and writes a report folder:

```
out_dir/
  metrics.json             summary, per-class metrics, confusion matrix, calibration
  metrics_per_class.csv    precision, recall (sensitivity), specificity, F1, ROC-AUC, support
  confusion_matrix.csv     rows: true class, columns: predicted class
  calibration.csv          reliability-diagram bins
  predictions.csv          label, prediction and class probabilities per image
  confusion_matrix.png, roc_curves.png, reliability_diagram.png
  training_curves.png      when a history CSV is given
```

For a model with trust values (`medivision_tf.trust`, fitted by `train` on
validation data) the summary also holds `ece_before_calibration`,
`ece_after_calibration` (temperature-scaled), `temperature`,
`conformal_alpha`, `coverage` (share of images whose prediction set holds the
true class) and `mean_set_size`; the reliability diagram draws both curves.

Prediction (with test-time augmentation) is `medivision_tf.prediction`'s;
`predict_probabilities` and `TTA_TRANSFORMS` are re-exported here.

Plots are drawn on `matplotlib.figure.Figure` objects (no pyplot, no GUI
backend needed, no global state).

Example:

```python
from medivision_tf.evaluation import evaluate_model

report = evaluate_model(model, test_images, test_labels, out_dir="runs/x/eval")
report.summary["balanced_accuracy"], report.summary["ece"]
report.per_class            # pandas DataFrame, one row per class
```
"""

import dataclasses
import json
import math
import os
import typing

import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib.figure import Figure
from sklearn import metrics as skm

from medivision_tf.config import check_class_names
from medivision_tf.model import get_model_config

# Re-exported: prediction with test-time augmentation lives in `prediction`.
from medivision_tf.prediction import (  # noqa: F401
    TTA_TRANSFORMS,
    check_tta,
    predict_batches,
    predict_probabilities,
)


# === Metrics ===


def expected_calibration_error(labels, probabilities, n_bins=10, multi_label=False):
    """Expected calibration error and the reliability-diagram bins.

    Single-label: each image's confidence is its top probability and it is
    correct when the top class is its label. Multi-label: every (image,
    class) probability is a prediction of that class being present. The
    confidences fall into `n_bins` equal-width bins `(lo, hi]` (0 goes to the
    first); `ECE = sum_b (n_b / n) * |accuracy_b - confidence_b|`.

    Args:
        labels: class ids `(n,)`, or multi-hot `(n, k)` when `multi_label`.
        probabilities: `(n, k)` predicted probabilities.
        n_bins: number of bins.
        multi_label: see above.

    Returns:
        `(ece, bins)`: a float and a DataFrame with `bin_lower`, `bin_upper`,
        `count`, `accuracy` and `confidence` per bin (NaN for empty bins).

    Example:

    ```python
    ece, bins = expected_calibration_error([0, 1], [[0.9, 0.1], [0.7, 0.3]], n_bins=10)
    # bin (0.8, 0.9]: confidence 0.9, correct -> gap 0.1
    # bin (0.6, 0.7]: confidence 0.7, wrong   -> gap 0.7;  ece = (0.1 + 0.7) / 2 = 0.4
    ```
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    labels = np.asarray(labels)
    if multi_label:
        confidence = probabilities.ravel()
        correct = labels.astype(bool).ravel()
    else:
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == labels
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive integer. Received: n_bins={n_bins!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    rows = []
    ece = 0.0
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        accuracy = float(correct[members].mean()) if count else float("nan")
        mean_conf = float(confidence[members].mean()) if count else float("nan")
        if count:
            ece += count / len(confidence) * abs(accuracy - mean_conf)
        rows.append((edges[b], edges[b + 1], count, accuracy, mean_conf))
    bins = pd.DataFrame(rows, columns=["bin_lower", "bin_upper", "count", "accuracy", "confidence"])
    return float(ece), bins


def compute_metrics(labels, probabilities, class_names=None, multi_label=False,
                    threshold=0.5, n_bins=10):
    """Every evaluation metric for predicted probabilities, with scikit-learn.

    Args:
        labels: class ids `(n,)` (single-label) or multi-hot `(n, k)`.
        probabilities: `(n, k)` predicted probabilities.
        class_names: `k` names (default `class_0`, ...).
        multi_label: independent classes, each predicted when its probability
            is >= `threshold`.
        threshold: decision threshold for multi-label predictions.
        n_bins: calibration bins (see `expected_calibration_error`).

    Returns:
        An `EvaluationReport`.

    Example:

    ```python
    report = compute_metrics([0, 1, 2, 1], [[.8, .1, .1], [.2, .7, .1], [.3, .3, .4], [.5, .4, .1]])
    report.summary["accuracy"]     # 0.75
    report.per_class["specificity"]
    ```
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    labels = np.asarray(labels)
    if probabilities.ndim != 2:
        raise ValueError(
            f"`probabilities` must be (n, num_classes). Received shape {probabilities.shape}"
        )
    n, k = probabilities.shape
    if len(labels) != n:
        raise ValueError(f"labels and probabilities differ in length: {len(labels)} != {n}")
    class_names = [str(c) for c in (class_names or [f"class_{i}" for i in range(k)])]
    if len(class_names) != k:
        raise ValueError(
            f"{len(class_names)} class names for {k} probability columns: {class_names}"
        )
    if multi_label:
        truth = labels.astype(int)
        predicted = (probabilities >= threshold).astype(int)
        matrices = skm.multilabel_confusion_matrix(truth, predicted)
        binary_truth = truth
        support = truth.sum(axis=0)
    else:
        truth = labels.astype(int)
        if truth.min() < 0 or truth.max() >= k:
            raise ValueError(f"labels must be class ids in [0, {k}). Received: {np.unique(truth)}")
        predicted = probabilities.argmax(axis=1)
        matrices = skm.multilabel_confusion_matrix(truth, predicted, labels=range(k))
        binary_truth = np.eye(k, dtype=int)[truth]
        support = np.bincount(truth, minlength=k)

    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        truth, predicted, labels=range(k), average=None, zero_division=0
    )
    tn, fp = matrices[:, 0, 0], matrices[:, 0, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)
    auc = np.array([_binary_auc(binary_truth[:, c], probabilities[:, c]) for c in range(k)])
    per_class = pd.DataFrame(
        {
            "class": class_names,
            "precision": precision,
            "recall": recall,
            "sensitivity": recall,
            "specificity": specificity,
            "f1": f1,
            "roc_auc": auc,
            "support": support.astype(int),
        }
    )

    weights = support / support.sum() if support.sum() else np.full(k, 1.0 / k)
    summary = {"num_samples": int(n), "num_classes": int(k), "multi_label": bool(multi_label)}
    if multi_label:
        summary["subset_accuracy"] = float(skm.accuracy_score(truth, predicted))
        summary["hamming_loss"] = float(skm.hamming_loss(truth, predicted))
        summary["accuracy"] = float((truth == predicted).mean())
    else:
        summary["accuracy"] = float(skm.accuracy_score(truth, predicted))
        summary["balanced_accuracy"] = float(skm.balanced_accuracy_score(truth, predicted))
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            truth, predicted, labels=range(k), average=average, zero_division=0
        )
        summary[f"precision_{average}"] = float(p)
        summary[f"recall_{average}"] = float(r)
        summary[f"f1_{average}"] = float(f)
    summary["specificity_macro"] = _nanmean(specificity)
    summary["specificity_weighted"] = _nanaverage(specificity, weights)
    summary["roc_auc_macro"] = _nanmean(auc)
    summary["roc_auc_weighted"] = _nanaverage(auc, weights)
    ece, calibration = expected_calibration_error(labels, probabilities, n_bins, multi_label)
    summary["ece"] = ece

    if multi_label:
        confusion = pd.DataFrame(
            matrices.reshape(k, 4), index=class_names, columns=["tn", "fp", "fn", "tp"]
        )
    else:
        confusion = pd.DataFrame(
            skm.confusion_matrix(truth, predicted, labels=range(k)),
            index=class_names, columns=class_names,
        )
    return EvaluationReport(
        summary=summary,
        per_class=per_class,
        confusion_matrix=confusion,
        calibration=calibration,
        labels=labels,
        probabilities=probabilities,
        class_names=class_names,
        multi_label=bool(multi_label),
        threshold=threshold,
    )


def _add_trust_metrics(report, trust, n_bins):
    """ECE after temperature scaling, conformal coverage and mean set size."""
    from medivision_tf.trust import apply

    calibrated = np.asarray(apply.calibrate(report.probabilities, trust["temperature"]))
    sets = np.asarray(apply.prediction_sets(calibrated, trust["conformal"]["threshold"]))
    labels = report.labels.astype(int)
    ece_after, bins = expected_calibration_error(labels, calibrated, n_bins)
    report.calibrated = bins
    report.summary.update(
        ece_before_calibration=report.summary["ece"],
        ece_after_calibration=ece_after,
        temperature=float(trust["temperature"]),
        conformal_alpha=float(trust["conformal"]["alpha"]),
        coverage=float(sets[np.arange(len(labels)), labels].mean()) if len(labels) else float("nan"),
        mean_set_size=float(sets.sum(axis=1).mean()) if len(labels) else float("nan"),
    )


def _binary_auc(truth, scores):
    if truth.min() == truth.max():  # one class only: undefined
        return float("nan")
    return float(skm.roc_auc_score(truth, scores))


def _nanmean(values):
    values = np.asarray(values, dtype="float64")
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _nanaverage(values, weights):
    values = np.asarray(values, dtype="float64")
    ok = np.isfinite(values) & (np.asarray(weights) > 0)
    return float(np.average(values[ok], weights=np.asarray(weights)[ok])) if ok.any() else float("nan")


@dataclasses.dataclass
class EvaluationReport:
    """Metrics of one evaluation (see `compute_metrics`).

    Attributes:
        summary: accuracy, balanced accuracy, macro/weighted precision, recall,
            specificity, F1 and ROC-AUC (one-vs-rest), ECE (JSON-ready dict).
        per_class: DataFrame with one row per class.
        confusion_matrix: DataFrame (true class x predicted class), or per-class
            tn/fp/fn/tp for multi-label.
        calibration: reliability-diagram bins.
        labels, probabilities, class_names, multi_label, threshold: the inputs.
        calibrated: reliability-diagram bins of the temperature-scaled
            probabilities (models with trust values, `medivision_tf.trust`).
    """

    summary: dict
    per_class: pd.DataFrame
    confusion_matrix: pd.DataFrame
    calibration: pd.DataFrame
    labels: np.ndarray
    probabilities: np.ndarray
    class_names: list
    multi_label: bool = False
    threshold: float = 0.5
    calibrated: typing.Optional[pd.DataFrame] = None

    def to_dict(self):
        """JSON-ready dict (NaN becomes None)."""
        return _json_ready(
            {
                "summary": self.summary,
                "class_names": self.class_names,
                "per_class": self.per_class.to_dict(orient="records"),
                "confusion_matrix": self.confusion_matrix.values.tolist(),
                "calibration": self.calibration.to_dict(orient="records"),
                **({} if self.calibrated is None else
                   {"calibration_after_temperature": self.calibrated.to_dict(orient="records")}),
            }
        )

    def predictions_frame(self):
        """Per image: label, prediction and one probability column per class."""
        if self.multi_label:
            frame = pd.DataFrame(
                {f"label_{c}": self.labels[:, i] for i, c in enumerate(self.class_names)}
            )
            for i, c in enumerate(self.class_names):
                frame[f"predicted_{c}"] = (self.probabilities[:, i] >= self.threshold).astype(int)
        else:
            predicted = self.probabilities.argmax(axis=1)
            frame = pd.DataFrame(
                {
                    "label": self.labels.astype(int),
                    "label_name": [self.class_names[i] for i in self.labels.astype(int)],
                    "prediction": predicted,
                    "prediction_name": [self.class_names[i] for i in predicted],
                    "correct": predicted == self.labels,
                }
            )
        for i, c in enumerate(self.class_names):
            frame[f"prob_{c}"] = self.probabilities[:, i]
        return frame

    def save(self, out_dir, history_csv=None):
        """Writes the JSON, CSV and PNG files of the module docstring.

        Args:
            out_dir: the report folder (created).
            history_csv: a training `history.csv`; when it exists,
                `training_curves.png` is drawn too (`plot_history`).

        Returns:
            dict of file name -> written path (`"metrics.json"`,
            `"confusion_matrix.png"`, ...).

        Example:

        ```python
        paths = compute_metrics(labels, probs, names).save("runs/x/evaluation",
                                                           history_csv="runs/x/history.csv")
        paths["roc_curves.png"]
        ```
        """
        os.makedirs(out_dir, exist_ok=True)
        paths = {
            name: os.path.join(out_dir, name)
            for name in ("metrics.json", "metrics_per_class.csv", "confusion_matrix.csv",
                         "calibration.csv", "predictions.csv", "confusion_matrix.png",
                         "roc_curves.png", "reliability_diagram.png")
        }
        with open(paths["metrics.json"], "w") as f:
            json.dump(self.to_dict(), f, indent=2)
        self.per_class.to_csv(paths["metrics_per_class.csv"], index=False)
        self.confusion_matrix.to_csv(paths["confusion_matrix.csv"])
        self.calibration.to_csv(paths["calibration.csv"], index=False)
        self.predictions_frame().to_csv(paths["predictions.csv"], index=False)
        plot_confusion_matrix(self, paths["confusion_matrix.png"])
        plot_roc_curves(self, paths["roc_curves.png"])
        plot_reliability_diagram(self, paths["reliability_diagram.png"])
        if history_csv is not None and os.path.exists(history_csv):
            paths["training_curves.png"] = plot_history(
                history_csv, os.path.join(out_dir, "training_curves.png")
            )
        return paths


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# === Plots ===


def _save(figure, path):
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def plot_confusion_matrix(report, path, normalize=True):
    """Confusion matrix heatmap, drawn with scikit-learn's `ConfusionMatrixDisplay`.

    Args:
        report: an `EvaluationReport`. Multi-label reports get one 2x2
            (no/yes) matrix per class.
        path: the PNG to write.
        normalize: divide each row by its count (the diagonal is each class's
            recall); False shows counts.

    Returns:
        `path`.

    Example:

    ```python
    plot_confusion_matrix(report, "runs/x/confusion_matrix.png", normalize=False)
    ```
    """
    k = len(report.class_names)
    if report.multi_label:
        figure = Figure(figsize=(3 * min(k, 4), 3 * math.ceil(k / 4)))
        axes = np.atleast_1d(figure.subplots(math.ceil(k / 4), min(k, 4))).ravel()
        for ax, (name, row) in zip(axes, report.confusion_matrix.iterrows()):
            matrix = np.array([[row.tn, row.fp], [row.fn, row.tp]])
            skm.ConfusionMatrixDisplay(matrix, display_labels=["no", "yes"]).plot(
                ax=ax, colorbar=False
            )
            ax.set_title(name)
        for ax in axes[k:]:
            ax.set_visible(False)
        return _save(figure, path)
    matrix = report.confusion_matrix.values.astype("float64")
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * k + 2.5)
    figure = Figure(figsize=(size + 1.5, size))
    ax = figure.subplots()
    skm.ConfusionMatrixDisplay(matrix, display_labels=report.class_names).plot(
        ax=ax, values_format=".2f" if normalize else "d", xticks_rotation=45, cmap="Blues"
    )
    ax.set_title("Confusion matrix" + (" (row-normalized)" if normalize else ""))
    return _save(figure, path)


def plot_roc_curves(report, path):
    """One-vs-rest ROC curve per class (scikit-learn's `RocCurveDisplay`).

    Classes with only positives or only negatives in the report have no curve.

    Args:
        report: an `EvaluationReport`.
        path: the PNG to write.

    Returns:
        `path`.

    Example:

    ```python
    plot_roc_curves(evaluate_model(model, images, labels), "roc.png")
    ```
    """
    figure = Figure(figsize=(5.5, 5))
    ax = figure.subplots()
    labels = np.asarray(report.labels)
    for c, name in enumerate(report.class_names):
        truth = labels[:, c] if report.multi_label else (labels == c)
        if truth.min() == truth.max():
            continue
        skm.RocCurveDisplay.from_predictions(
            truth.astype(int), report.probabilities[:, c], name=name, ax=ax, plot_chance_level=c == 0
        )
    ax.set_title(f"ROC curves (one-vs-rest), macro AUC {report.summary['roc_auc_macro']:.3f}")
    return _save(figure, path)


def plot_reliability_diagram(report, path):
    """Reliability diagram: accuracy vs confidence per bin, with the ECE.

    Args:
        report: an `EvaluationReport` (its `calibration` bins, see
            `expected_calibration_error`).
        path: the PNG to write.

    Returns:
        `path`.

    Example:

    ```python
    plot_reliability_diagram(report, "runs/x/reliability_diagram.png")
    ```
    """
    bins = report.calibration
    figure = Figure(figsize=(5.5, 5))
    ax = figure.subplots()
    width = bins["bin_upper"] - bins["bin_lower"]
    ax.bar(bins["bin_lower"], bins["accuracy"].fillna(0), width=width, align="edge",
           edgecolor="black", alpha=0.7, label="accuracy")
    ax.bar(bins["bin_lower"], (bins["confidence"] - bins["accuracy"]).fillna(0),
           bottom=bins["accuracy"].fillna(0), width=width, align="edge", color="red",
           alpha=0.3, label="gap")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    title = f"Reliability diagram, ECE {report.summary['ece']:.3f}"
    for frame, label, style in ((bins, "before calibration", "o-"),
                                (report.calibrated, "after temperature scaling", "s-")):
        if report.calibrated is None or frame is None:
            continue
        seen = frame["count"] > 0
        ax.plot(frame["confidence"][seen], frame["accuracy"][seen], style, label=label)
    if report.calibrated is not None:
        title = (f"Reliability, ECE {report.summary['ece']:.3f} -> "
                 f"{report.summary['ece_after_calibration']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return _save(figure, path)


def plot_history(history_csv, out_png):
    """Training curves (loss and every metric, train vs validation) from a
    Keras `CSVLogger` file such as `run_dir/history.csv`.

    Args:
        history_csv: path of the CSV (an `epoch` column and one per metric).
        out_png: the PNG to write.

    Returns:
        `out_png`.

    Example:

    ```python
    plot_history("runs/x/history.csv", "runs/x/training_curves.png")
    ```
    """
    if not os.path.exists(history_csv):
        raise FileNotFoundError(f"History file not found: {history_csv!r}")
    history = pd.read_csv(history_csv).drop_duplicates("epoch", keep="last")
    names = [c for c in history.columns if c != "epoch" and not c.startswith("val_")
             and c not in ("learning_rate", "lr")]
    if not names:
        raise ValueError(f"{history_csv!r} has no metric columns: {list(history.columns)}")
    figure = Figure(figsize=(4.5 * len(names), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(names)))
    epochs = history["epoch"] + 1
    for ax, name in zip(axes, names):
        ax.plot(epochs, history[name], "o-", label=f"train {name}")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "s--", label=f"val {name}")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    return _save(figure, out_png)


# === Evaluation of a model ===


def evaluate_model(model, data, labels=None, class_names=None, out_dir=None, *,
                   tta=False, batch_size=32, history_csv=None, threshold=0.5, n_bins=10,
                   verbose="auto"):
    """Predicts, computes every metric and (with `out_dir`) writes the report.

    Args:
        model: a MediVision `keras.Model` (class names are read from it).
        data: images `(n, h, w, c)` (raw 0-255) with `labels`, a
            `tf.data.Dataset` of `(images, labels)` batches, or a sample table
            (pandas DataFrame from `medivision_tf.data`) read with the model's
            input size.
        labels: class ids (or multi-hot) when `data` is an array.
        class_names: the data's class names; refused if they differ from the
            model's (default: the table's, else the model's).
        out_dir: folder for the JSON, CSV and PNG files (None: write nothing).
        tta: test-time augmentation (see `predict_probabilities`).
        batch_size: prediction batch size.
        history_csv: a training `history.csv` to draw `training_curves.png`.
        threshold: multi-label decision threshold.
        n_bins: calibration bins.
        verbose: progress bar on stderr while predicting: `"auto"` (default:
            above `prediction.PROGRESS_MIN_IMAGES` images), 1/True or 0/False.

    Returns:
        An `EvaluationReport`.

    Example:

    ```python
    report = evaluate_model(model, test.images, test.labels, test.class_names,
                            out_dir="runs/demo/evaluation", history_csv="runs/demo/history.csv")
    print(report.summary["accuracy"], report.summary["roc_auc_macro"])
    ```
    """
    config = get_model_config(model)
    model_classes = list(config.class_names)
    multi_label = config.multi_label
    total = None  # images in a dataset, for the progress bar
    pre_skipped = 0  # files a table's scan refused before prediction
    if isinstance(data, pd.DataFrame):
        data_classes = data.attrs.get("class_names")
        if class_names is None and data_classes:
            class_names = list(data_classes)
        from medivision_tf.data.inputs import scan_inputs
        from medivision_tf.data.pipeline import make_dataset

        # Files are checked before any is opened (FIFOs, links out of the
        # root, bombs...): the skipped ones are counted in num_skipped.
        # (A table scanned before, e.g. a run's test split, was counted there.)
        scan_here = "image" not in data and not data.attrs.get("scanned")
        data = scan_inputs(data, "The evaluation data")
        if scan_here and data.attrs.get("input_report"):  # shard tables: checked when written
            pre_skipped = len(data.attrs["input_report"]["skipped"])
        total = len(data)
        data = make_dataset(
            data, image_size=config.image_size, channels=config.channels,
            batch_size=batch_size, training=False, shuffle=False, augment=False,
        )
    if class_names is not None:
        check_class_names(model_classes, class_names)
    names = check_tta(tta)
    if isinstance(data, tf.data.Dataset):
        if labels is not None:
            raise ValueError("Pass `labels` only with an image array, not with a dataset.")
        # One pass: images are decoded once, predicted under every transform,
        # and their labels kept in the same loop.
        probabilities, batch_labels = predict_batches(
            model, data, batch_size, names, verbose, total=total
        )
        if any(y is None for y in batch_labels):
            raise ValueError("An evaluation dataset must yield (images, labels) batches.")
        labels = np.concatenate(batch_labels)
    else:
        if labels is None:
            raise ValueError("`labels` are needed to evaluate an image array.")
        images = np.asarray(data)
        labels = np.asarray(labels)
        if len(images) != len(labels):
            raise ValueError(f"images and labels differ in length: {len(images)} != {len(labels)}")
        probabilities = None
    if not multi_label and labels.ndim == 2:
        labels = labels.argmax(axis=1)  # one-hot
    if not multi_label and len(labels) and labels.max() >= len(model_classes):
        raise ValueError(
            f"Label {int(labels.max())} is out of range for the model's "
            f"{len(model_classes)} classes {model_classes}."
        )
    if probabilities is None:
        probabilities = predict_batches(model, images, batch_size, names, verbose)[0]
    report = compute_metrics(labels, probabilities, model_classes, multi_label, threshold, n_bins)
    report.summary["tta"] = names
    # How many test images were scored: a table's undecodable files are
    # skipped by the pipeline, and counted here (metrics.json).
    dropped = int(total - len(probabilities)) if total is not None else 0
    report.summary["num_scored"] = int(len(probabilities))
    report.summary["num_skipped"] = dropped + int(pre_skipped)
    if report.summary["num_skipped"]:
        import warnings

        warnings.warn(
            f"Evaluation scored {len(probabilities)} of "
            f"{len(probabilities) + report.summary['num_skipped']} test images: "
            f"{report.summary['num_skipped']} could not be used (see medivision_tf.data.scan).",
            stacklevel=2,
        )
    if config.trust and not multi_label:
        _add_trust_metrics(report, config.trust, n_bins)
    if out_dir is not None:
        report.save(out_dir, history_csv=history_csv)
    return report
