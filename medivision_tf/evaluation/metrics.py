"""Metrics of predicted probabilities: scikit-learn scores per class and overall, calibration error, trust coverage.

Example:

```python
from medivision_tf.evaluation.metrics import compute_metrics, expected_calibration_error

report = compute_metrics([0, 1, 2, 1], [[.8, .1, .1], [.2, .7, .1], [.3, .3, .4], [.5, .4, .1]])
report.summary["accuracy"]     # 0.75
ece, bins = expected_calibration_error([0, 1], [[0.9, 0.1], [0.7, 0.3]])   # ece 0.4
```
"""

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from medivision_tf.evaluation.report import EvaluationReport


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


def add_trust_metrics(report, trust, n_bins=10):
    """Adds the trust metrics of a model's fitted trust values to a report (in place).

    ECE after temperature scaling (`report.calibrated` gets its bins),
    conformal coverage (share of images whose prediction set holds the true
    class) and mean set size, in `report.summary`.

    Args:
        report: a single-label `EvaluationReport` (from `compute_metrics`).
        trust: the model config's `trust` dict (`medivision_tf.trust`).
        n_bins: calibration bins.

    Example:

    ```python
    add_trust_metrics(report, get_model_config(model).trust)
    report.summary["coverage"], report.summary["ece_after_calibration"]
    ```
    """
    from medivision_tf.trust import apply

    calibrated = np.asarray(apply.calibrate(report.probabilities, trust["temperature"]))
    sets = np.asarray(apply.prediction_sets(calibrated, trust["conformal"]["threshold"],
                                            apply.stored_conformal_method(trust)))
    labels = report.labels.astype(int)
    ece_after, bins = expected_calibration_error(labels, calibrated, n_bins)
    report.calibrated = bins
    report.summary.update(
        ece_before_calibration=report.summary["ece"],
        ece_after_calibration=ece_after,
        temperature=float(trust["temperature"]),
        conformal_alpha=float(trust["conformal"]["alpha"]),
        conformal_method=apply.stored_conformal_method(trust),
        coverage=float(sets[np.arange(len(labels)), labels].mean()) if len(labels) else float("nan"),
        mean_set_size=float(sets.sum(axis=1).mean()) if len(labels) else float("nan"),
        # Only "lac" sets can be empty ("no class plausible enough").
        empty_set_rate=float((sets.sum(axis=1) == 0).mean()) if len(labels) else float("nan"),
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
