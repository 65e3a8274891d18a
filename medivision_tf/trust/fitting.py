"""The fitting side of `medivision_tf.trust`: plain NumPy/SciPy on arrays.

Three fits, each on a validation split the model was not trained on:

- `fit_temperature`: one temperature `T` minimizing the negative
  log-likelihood of `softmax(log(p) / T)` (temperature scaling, Guo et al.
  2017). `softmax(log p / T) = softmax(z / T)` for the logits `z`, so the
  probabilities of a softmax model are enough.
- `aps_scores` + `conformal_threshold`: split-conformal prediction with the
  APS score (Romano et al. 2020) without randomization (`u = 0`): the score
  of class `y` is the probability mass of the classes more probable than `y`
  (0 for the top class, which is so always in the set); the
  threshold is the `ceil((n + 1)(1 - alpha)) / n` empirical quantile of the
  true classes' scores, so a new image's set `{y : score(y) <= threshold}`
  holds its class with probability >= 1 - alpha (exchangeability).
- `fit_mahalanobis`: class means and one shared (Ledoit-Wolf shrunk)
  covariance of the pooled features; the score is the Mahalanobis distance to
  the nearest class mean (Lee et al. 2018). Its threshold accepts
  `accept_rate` of validation images, measured out-of-fold (5 folds), so that
  new in-distribution images are flagged at about `1 - accept_rate` and not
  more (in-sample distances are optimistic in wide feature spaces).

Why the conformal step is written here and not fitted with `mapie`/`crepes`:
the fit is one quantile of a score, and the exported SavedModel must apply
the very same score with TensorFlow ops, so the score is defined once
(`medivision_tf.trust.apply`) and the quantile taken here. The tests check
the sets against `crepes` (`ConformalClassifier`) on the same scores.

Example:

```python
import numpy as np
from medivision_tf.trust.fitting import aps_scores, conformal_threshold, fit_temperature

probs = np.random.default_rng(0).dirichlet(np.ones(3), size=200)
labels = probs.argmax(1)
fit_temperature(probs, labels)                      # < 1: these are under-confident
scores = aps_scores(probs)[np.arange(200), labels]
conformal_threshold(scores, alpha=0.1)
```
"""

import numpy as np

#: Probabilities are clipped here before the log (float32 exp underflows below).
MIN_PROBABILITY = 1e-30
TEMPERATURE_BOUNDS = (0.05, 20.0)


def check_alpha(alpha):
    """Refuses a miscoverage level outside (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not (
        0 < alpha < 1
    ):
        raise ValueError(
            f"`alpha` (the allowed miscoverage) must be a number in (0, 1), e.g. 0.1 for "
            f"90% prediction sets. Received: alpha={alpha!r}"
        )
    return float(alpha)


def _check_probabilities(probabilities, labels=None):
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ValueError(
            "`probabilities` must be (n, num_classes) softmax outputs with >= 2 classes. "
            f"Received shape {probabilities.shape}"
        )
    if labels is None:
        return probabilities
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    labels = labels.astype(np.int64)
    if len(labels) != len(probabilities) or len(labels) == 0:
        raise ValueError(
            f"`labels` must be one class id per image: {len(probabilities)} images, "
            f"received {len(labels)} labels."
        )
    if labels.min() < 0 or labels.max() >= probabilities.shape[1]:
        raise ValueError(
            f"`labels` must be class ids in [0, {probabilities.shape[1]}). "
            f"Received values {np.unique(labels)[:10]}"
        )
    return probabilities, labels


def fit_temperature(probabilities, labels):
    """The temperature minimizing the NLL of `softmax(log(p) / T)` on `labels`.

    A 1-D bounded minimization over `log T` (SciPy's `minimize_scalar`);
    scikit-learn and Keras have no temperature scaling, and `netcal` would add
    PyTorch, so these few lines are written here.

    Args:
        probabilities: `(n, num_classes)` softmax outputs on validation images.
        labels: `(n,)` class ids (or one-hot rows).

    Returns:
        `T` as a float in `TEMPERATURE_BOUNDS` (> 1 softens over-confident
        probabilities, < 1 sharpens).

    Example:

    ```python
    fit_temperature([[0.99, 0.01], [0.98, 0.02], [0.3, 0.7]], [0, 1, 1])
    ```
    """
    from scipy.optimize import minimize_scalar

    probabilities, labels = _check_probabilities(probabilities, labels)
    log_p = np.log(np.maximum(probabilities, MIN_PROBABILITY))

    def nll(log_t):
        z = log_p / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


def negative_log_likelihood(probabilities, labels):
    """Mean `-log p[label]` (probabilities clipped at `MIN_PROBABILITY`)."""
    probabilities, labels = _check_probabilities(probabilities, labels)
    chosen = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(chosen, MIN_PROBABILITY))))


def aps_scores(probabilities):
    """APS conformity score of every class: mass of the strictly more probable classes.

    `score[i, j] = sum_k p[i, k] * (p[i, k] > p[i, j])`: 0 for the top class,
    so every set holds it, and the calibration scores the same sets that
    prediction returns (a top class added after the fact would make the
    threshold needlessly high: coverage 0.999 instead of 0.9 in our first
    Fashion-MNIST run). Same formula as the TensorFlow version in
    `medivision_tf.trust.apply`.

    Example:

    ```python
    aps_scores([[0.6, 0.3, 0.1]])   # [[0.0, 0.6, 0.9]]
    ```
    """
    p = np.asarray(probabilities)
    return np.sum(p[:, None, :] * (p[:, None, :] > p[:, :, None]), axis=-1)


def conformal_threshold(true_class_scores, alpha=0.1):
    """Split-conformal threshold: the `ceil((n + 1)(1 - alpha))`-th smallest score.

    Args:
        true_class_scores: `(n,)` scores of the true class of each
            calibration image (e.g. `aps_scores(p)[range(n), labels]`).
        alpha: allowed miscoverage in (0, 1).

    Returns:
        The threshold (a float); when `n` is too small for level `alpha`
        (`ceil((n + 1)(1 - alpha)) > n`) it is `inf`: every set is all classes.

    Example:

    ```python
    conformal_threshold(np.linspace(0, 1, 99), alpha=0.1)   # the 90th of 99
    ```
    """
    alpha = check_alpha(alpha)
    scores = np.sort(np.asarray(true_class_scores, dtype=np.float64).ravel())
    n = len(scores)
    if n == 0:
        raise ValueError("No calibration scores: conformal prediction needs validation images.")
    rank = int(np.ceil((n + 1) * (1 - alpha)))
    return float("inf") if rank > n else float(scores[rank - 1])


def fit_mahalanobis(features, labels, num_classes, max_dims=512):
    """Class means and a shared whitening of the pooled features.

    The covariance of the features around their class means is estimated with
    scikit-learn's Ledoit-Wolf shrinkage (well-conditioned even with fewer
    images than features) and factorized as `precision = W W^T`, with
    `W = V diag(lambda)^-1/2` from its eigendecomposition. Then
    `distance(f, c) = ||f W - mu_c W||`. Features wider than `max_dims` keep
    the `max_dims` directions of largest variance (bounds the stored size).

    Args:
        features: `(n, d)` pooled features of validation images.
        labels: `(n,)` class ids.
        num_classes: number of classes; a class absent from `labels` gets
            no center (an overall mean would sit between the classes, where
            ambiguous and unfamiliar images fall, and call them familiar).
        max_dims: most columns of `W`.

    Returns:
        `(whitening (d, k), centers (c, k))` as float32 arrays,
        `centers = means @ whitening`, one row per class present in `labels`
        (`c <= num_classes`, in class order).

    Example:

    ```python
    w, centers = fit_mahalanobis(np.random.rand(50, 4), np.arange(50) % 2, 2)
    ```
    """
    from sklearn.covariance import LedoitWolf

    features, labels = _check_features(features, labels)
    present = [c for c in range(num_classes) if np.any(labels == c)]
    means = np.stack([features[labels == c].mean(axis=0) for c in present])
    row_of = np.full(num_classes, -1)
    row_of[present] = np.arange(len(present))
    centered = features - means[row_of[labels]]
    covariance = LedoitWolf(assume_centered=True).fit(centered).covariance_
    whitening = _whitening(covariance, max_dims)
    return whitening.astype(np.float32), (means @ whitening).astype(np.float32)


def fit_background(features, max_dims=512):
    """Mean and whitening of one Gaussian over all pooled features (no classes).

    The "background" of the relative Mahalanobis score (Ren et al. 2021,
    arXiv:2106.09022): `score(f) = min_c ||f W - mu_c W||^2 - ||f W0 - mu W0||^2`
    subtracts the distance under this class-agnostic fit, so directions in
    which every image varies (brightness, size) weigh less than those that
    separate the classes. Same Ledoit-Wolf shrinkage as `fit_mahalanobis`.

    Args:
        features: `(n, d)` pooled features of validation images, n >= 2.
        max_dims: most columns of `W0`.

    Returns:
        `(whitening (d, k), center (k,))` float32, `center = mean @ whitening`.

    Example:

    ```python
    w0, c0 = fit_background(np.random.rand(50, 4))
    ```
    """
    from sklearn.covariance import LedoitWolf

    features, _ = _check_features(features, np.zeros(len(features)))
    mean = features.mean(axis=0)
    covariance = LedoitWolf(assume_centered=True).fit(features - mean).covariance_
    whitening = _whitening(covariance, max_dims)
    return whitening.astype(np.float32), (mean @ whitening).astype(np.float32)


def _check_features(features, labels):
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if features.ndim != 2 or len(features) != len(labels) or len(features) < 2:
        raise ValueError(
            "`features` must be (n, d) with n >= 2 and one label per row. "
            f"Received features {features.shape}, labels {labels.shape}"
        )
    return features, labels


def _whitening(covariance, max_dims):
    """`W = V diag(lambda)^-1/2` of the `max_dims` largest eigenvalues (`precision ~ W W^T`)."""
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][: int(max_dims)]
    eigenvalues = np.maximum(eigenvalues[order], 1e-12 * max(eigenvalues.max(), 1e-30))
    return eigenvectors[:, order] / np.sqrt(eigenvalues)


def fold_ids(n, folds=5, seed=0):
    """A seeded assignment of `n` rows to `folds` folds (for out-of-fold scores)."""
    return np.random.default_rng(seed).permutation(n) % max(1, min(folds, n))
