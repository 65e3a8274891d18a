"""Evaluation: metrics (scikit-learn), calibration, reports and plots (matplotlib).

`evaluate_model` predicts (optionally with test-time augmentation), computes
every metric and writes a report folder:

```
out_dir/
  metrics.json             summary, per-class metrics, confusion matrix, calibration
  metrics_per_class.csv    precision, recall (sensitivity), specificity, F1, ROC-AUC, support
  confusion_matrix.csv     rows: true class, columns: predicted class
  calibration.csv          reliability-diagram bins
  predictions.csv          path (a table's images: relative to its root), label, prediction
                           and class probabilities per image
  confusion_matrix.png, roc_curves.png, reliability_diagram.png
  training_curves.png      when a history CSV is given
```

For a model with trust values (`medivision_tf.trust`, fitted by `train` on
validation data) the summary also holds `ece_before_calibration`,
`ece_after_calibration` (temperature-scaled), `temperature`,
`conformal_alpha`, `coverage` (share of images whose prediction set holds the
true class), `mean_set_size` and `empty_set_rate`; the reliability diagram draws
both curves.

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

The work is done in four modules, whose public names are re-exported here:
`evaluate` (`evaluate_model`), `metrics` (`compute_metrics`,
`expected_calibration_error`), `report` (`EvaluationReport` and its files)
and `plots` (the figures).
"""

from medivision_tf.backend import INSTEAD, require_tensorflow

# Before TensorFlow is imported: on JAX or PyTorch, one clear error (docs/backends.md).
require_tensorflow(
    "medivision_tf.evaluation (evaluation with the TensorFlow prediction path)",
    INSTEAD["evaluation"],
)

from medivision_tf.evaluation.evaluate import evaluate_model  # noqa: F401
from medivision_tf.evaluation.metrics import (  # noqa: F401
    add_trust_metrics,
    compute_metrics,
    expected_calibration_error,
)
from medivision_tf.evaluation.plots import (  # noqa: F401
    plot_confusion_matrix,
    plot_history,
    plot_reliability_diagram,
    plot_roc_curves,
)
from medivision_tf.evaluation.report import EvaluationReport  # noqa: F401

# Re-exported: prediction with test-time augmentation lives in `prediction`.
from medivision_tf.prediction import (  # noqa: F401
    TTA_TRANSFORMS,
    check_tta,
    predict_batches,
    predict_probabilities,
)
