"""How far to trust each answer: calibration, prediction sets, out-of-distribution flag.

Fitted once on validation images (never the test split) and stored in the
model (`ModelConfig.trust`, JSON-ready, in the `class_labels` layer's config),
so `.keras` files, SavedModels and the server carry them:

- **temperature scaling**: `softmax(log(p) / T)`, `T` minimizing the
  validation NLL; better-calibrated probabilities with the same top class.
- **split-conformal prediction sets** (LAC score `1 - p` by default, or
  APS; level `alpha`): a set of classes holding the true one for about
  `1 - alpha` of new images; small when the model is sure, larger when it
  is not, empty (LAC) when no class is plausible enough.
- **out-of-distribution score** (`ood_method="combined"`, the default):
  two detectors, and the more surprised one counts. The cosine distance of
  the backbone's pooled features (layer `"feature_map"`, averaged over
  positions) to the 5th nearest of a stored bank of validation images (deep
  nearest neighbours), and the class-conditional Mahalanobis distance of
  the head's pooled features (layer `"pool"`) to the nearest class center,
  each in standard deviations of its held-out validation scores; the flag
  `out_of_distribution` is set above a threshold that accepts 95% of
  in-distribution validation images. Each alone is an option (`"knn"`, the
  earlier default; `"mahalanobis"`, with `ood_layer="pool"`), and so is
  the relative Mahalanobis form (`"relative_mahalanobis"`).

Why the values live in the config (a dict) and not in layer weights: the
config already travels in `.keras` files and export metadata and is readable
as plain JSON (`assets.extra/medivision.json`), and adding a layer would
change the model's outputs. The OOD values (the kNN bank: at most 4,096
normalized rows of the feature width, 128 for `smallcnn`, 2 MiB; or the
Mahalanobis whitenings and centers) are stored as exact float32 bytes in
base64 (see `medivision_tf.trust.apply`).

Example:

```python
import numpy as np
import medivision_tf
from medivision_tf.trust import fit_trust, predict_with_trust

model = medivision_tf.build_medivision(3, backbone="smallcnn", weights=None,
    input_shape=(32, 32, 1), lstm_units=8, attention_units=4)
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (60, 32, 32, 1)).astype("float32")
fit_trust(model, images, np.arange(60) % 3, alpha=0.1)
out = predict_with_trust(model, images[:4])
out["probabilities"].shape, out["prediction_set"].shape, out["out_of_distribution"]
```
"""

from medivision_tf.trust.apply import OUTPUT_NAMES, knn_scores, ood_scores, trust_outputs
from medivision_tf.trust.core import (
    feature_model,
    fit_trust,
    get_trust,
    predict_with_trust,
    store_trust,
)
from medivision_tf.trust.fitting import (
    aps_scores,
    conformal_threshold,
    fit_background,
    fit_mahalanobis,
    fit_temperature,
)

__all__ = [
    "OUTPUT_NAMES", "aps_scores", "conformal_threshold", "feature_model", "fit_background",
    "fit_mahalanobis", "fit_temperature", "fit_trust", "get_trust", "knn_scores", "ood_scores",
    "predict_with_trust", "store_trust", "trust_outputs",
]
