"""`evaluate_model`: predict a model's test data, compute every metric and write the report folder.

Example:

```python
from medivision_tf.evaluation import evaluate_model

report = evaluate_model(model, test_images, test_labels, out_dir="runs/x/eval")
report.summary["balanced_accuracy"], report.summary["ece"]
```
"""

import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.config import check_class_names
from medivision_tf.evaluation.metrics import add_trust_metrics, compute_metrics
from medivision_tf.model import get_model_config
from medivision_tf.prediction import check_tta, predict_batches


def evaluate_model(model, data, labels=None, class_names=None, out_dir=None, *,
                   tta=False, batch_size=32, history_csv=None, threshold=0.5, n_bins=10,
                   verbose="auto"):
    """Predicts, computes every metric and (with `out_dir`) writes the report.

    Args:
        model: a MediVision `keras.Model` (class names are read from it).
        data: images `(n, h, w, c)` (raw 0-255) with `labels`, a
            `tf.data.Dataset` of `(images, labels)` batches, or a sample table
            (pandas DataFrame from `medivision_tf.data`) read with the model's
            input size and decode options (`ModelConfig.decode`); a table's
            `path`s (relative to its root) head `predictions.csv`.
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
    leakage = None  # a run's duplicate check, when the table carries it
    table = None  # the scanned sample table, for the paths of predictions.csv
    if isinstance(data, pd.DataFrame):
        leakage = _leakage_summary(data)
        data_classes = data.attrs.get("class_names")
        if class_names is None and data_classes:
            class_names = list(data_classes)
        from medivision_tf.data.checks.input_report import scan_inputs
        from medivision_tf.data.pipeline.dataset import make_dataset

        # Files are checked before any is opened (FIFOs, links out of the
        # root, bombs...): the skipped ones are counted in num_skipped.
        # (A table scanned before, e.g. a run's test split, was counted there.)
        scan_here = "image" not in data and not data.attrs.get("scanned")
        data = scan_inputs(data, "The evaluation data")
        if scan_here and data.attrs.get("input_report"):  # shard tables: checked when written
            pre_skipped = len(data.attrs["input_report"]["skipped"])
        total = len(data)
        table = data
        data = make_dataset(
            data, image_size=config.image_size, channels=config.channels,
            batch_size=batch_size, training=False, shuffle=False, augment=False,
            decode=config.decode,
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
    if table is not None:
        report.paths = _scored_paths(table, len(probabilities), config.decode)
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
    if leakage is not None:
        report.summary["leakage"] = leakage
    if config.trust and not multi_label:
        add_trust_metrics(report, config.trust, n_bins)
    if out_dir is not None:
        report.save(out_dir, history_csv=history_csv)
    return report


def _scored_paths(table, count, decode):
    """The `path` of each of the `count` scored rows of `table`, relative to
    its root (`attrs["root"]`; other paths as they are).

    The pipeline skips a file that fails to decode (one changed since the
    scan): when rows are missing, each file is checked again the way `scan`
    checks it, and the rows that still decode are the scored ones, in order.
    None when that still does not account for every row.
    """
    import os

    from medivision_tf.data.checks.scan import check_file

    paths = table["path"].astype(str).tolist() if "path" in table else [
        f"image[{i}]" for i in range(len(table))]
    if len(paths) != count and "image" not in table:
        kept = [p for p in paths if check_file(p, None, dicom_window=decode.dicom_window,
                                               frames=decode.image_kwargs()["frames"]) is None]
        paths = kept if len(kept) == count else None
    if paths is None or len(paths) != count:
        return None
    root = table.attrs.get("root")
    if root is None or "image" in table:
        return paths
    return [os.path.relpath(p, root) if os.path.isabs(p) else p for p in paths]


def _leakage_summary(table):
    """The duplicate check of a run's split table, for `metrics.json`: how
    many of these images duplicate a training image (non-zero only when the
    run allowed leakage), so an inflated result says so where it is read."""
    from medivision_tf.data.checks.leakage import leakage_of

    record = leakage_of(table)
    if record is None:
        return None
    summary = {k: record[k] for k in ("checked", "allowed", "threshold")}
    if "path" in table and "image" not in table:
        paths = set(table["path"].astype(str))
        held = set(record["held_out"]["val"]) | set(record["held_out"]["test"])
        # Pairs with an image of this table (a run's val pairs are not its test's).
        summary["leaking_pairs"] = sum(pair["path_a"] in paths or pair["path_b"] in paths
                                       for pair in record["pairs"])
        summary["images_duplicating_training"] = len(paths & held)
    else:  # array rows are named by position in the check, not here: the test split's
        summary["leaking_pairs"] = sum("test" in (pair.get("split_a"), pair.get("split_b"))
                                       for pair in record["pairs"])
        summary["images_duplicating_training"] = int(record["held_out_images"]["test"])
    summary["run_leaking_pairs"] = record["leaking_pairs"]
    return summary
