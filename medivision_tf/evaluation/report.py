"""`EvaluationReport`: the metrics of one evaluation and the JSON, CSV and PNG files it writes.

The files of a report folder are listed in `medivision_tf.evaluation`.

Example:

```python
from medivision_tf.evaluation import compute_metrics

report = compute_metrics([0, 1, 1], [[.8, .2], [.3, .7], [.6, .4]], ["normal", "tumor"])
report.predictions_frame()          # label, prediction, probabilities per image
paths = report.save("runs/x/evaluation")
```
"""

import dataclasses
import json
import math
import os
import typing

import numpy as np
import pandas as pd

from medivision_tf.evaluation.plots import (
    plot_confusion_matrix,
    plot_history,
    plot_reliability_diagram,
    plot_roc_curves,
)


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
        paths: the image of each row (a table's `path`, relative to its
            root), or None (arrays, a tf.data dataset): `predictions.csv`'s
            first column.
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
    paths: typing.Optional[list] = None

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
        """Per image: its `path` (when known), label, prediction and one
        probability column per class."""
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
        if self.paths is not None:
            frame.insert(0, "path", list(self.paths))
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
