"""The evaluation figures: confusion matrix, ROC curves, reliability diagram and training curves.

Plots are drawn on `matplotlib.figure.Figure` objects (no pyplot, no GUI
backend needed, no global state); each takes an `EvaluationReport` (or a
history CSV) and the PNG path to write.

Example:

```python
from medivision_tf.evaluation import compute_metrics, plot_reliability_diagram

report = compute_metrics([0, 1, 1], [[.8, .2], [.3, .7], [.6, .4]])
plot_reliability_diagram(report, "reliability_diagram.png")
```
"""

import math
import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm


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
    # The bars are the model's own (uncalibrated) probabilities, as `ece`.
    bars = "accuracy" if report.calibrated is None else "accuracy (before calibration)"
    ax.bar(bins["bin_lower"], bins["accuracy"].fillna(0), width=width, align="edge",
           edgecolor="black", alpha=0.7, label=bars)
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
