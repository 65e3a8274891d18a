"""The applying side of `medivision_tf.trust`: TensorFlow ops over stored values.

`trust_outputs(probabilities, features, trust)` is the one definition of the
calibrated probabilities, the prediction set and the OOD score. Python
(`predict_with_trust`), the SavedModel signatures (`medivision_tf.export`)
and so the server all run this function, so they agree to float32 rounding.

Stored values (`ModelConfig.trust`, JSON-ready) hold arrays as
`{"dtype": "float32", "shape": [...], "base64": "..."}`: exact float32 bytes
(decimal lists would be 3x larger and round-trip only with care), small for
the default head (128 pooled features: 64 KiB of whitening matrix).

Example:

```python
import numpy as np
from medivision_tf.trust.apply import decode_array, encode_array

encode_array(np.eye(2, dtype="float32"))["shape"]   # [2, 2]
```
"""

import base64

import numpy as np

TRUST_VERSION = 1
#: The features of the OOD score `fit_trust` fits: the backbone's last
#: feature map, averaged over its positions (kNN on these separated
#: Fashion-MNIST from digits at AUROC 0.995, on the head's `pool` output at
#: 0.957: docs/trust.md). The layer is stored with the fit
#: (`trust["ood"]["layer"]`): earlier fits read `pool`, and still do.
FEATURE_LAYER = "feature_map"
#: Names of the extra outputs (Python dict keys, SavedModel output names).
OUTPUT_NAMES = ("calibrated_probabilities", "prediction_set", "ood_score",
                "out_of_distribution")


def encode_array(array):
    """A float32 array as a JSON-ready dict (exact bytes, base64)."""
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"dtype": "float32", "shape": list(array.shape),
            "base64": base64.b64encode(array.tobytes()).decode("ascii")}


def decode_array(value):
    """The float32 array of `encode_array`'s dict."""
    if not isinstance(value, dict) or value.get("dtype") != "float32":
        raise ValueError(
            "A stored trust array must be {'dtype': 'float32', 'shape': [...], "
            f"'base64': '...'}}. Received: {str(value)[:80]!r}"
        )
    data = np.frombuffer(base64.b64decode(value["base64"]), dtype="<f4")
    return data.reshape(value["shape"]).astype(np.float32)


def calibrate(probabilities, temperature):
    """`softmax(log(max(p, 1e-30)) / T)` with TF ops (float32)."""
    import tensorflow as tf

    p = tf.cast(probabilities, tf.float32)
    log_p = tf.math.log(tf.maximum(p, 1e-30))
    return tf.nn.softmax(log_p / tf.constant(temperature, tf.float32), axis=-1)


def aps_scores(probabilities):
    """APS score of every class, TF version of `fitting.aps_scores`."""
    import tensorflow as tf

    p = tf.cast(probabilities, tf.float32)
    more_probable = tf.cast(p[:, None, :] > p[:, :, None], tf.float32)
    return tf.reduce_sum(p[:, None, :] * more_probable, axis=-1)


#: Conformal scores by `trust["conformal"]["method"]`.
CONFORMAL_METHODS = ("aps", "lac")
#: The score `fit_trust` uses unless told otherwise: LAC, as MAPIE's
#: `SplitConformalClassifier` does. Its coverage stays near `1 - alpha` when
#: the model is more accurate than that (APS sets, never empty, then cover
#: the accuracy: 0.93 where 0.90 was asked, docs/trust.md).
DEFAULT_CONFORMAL_METHOD = "lac"
#: Fits stored before the method was recorded are APS fits.
_UNRECORDED_CONFORMAL_METHOD = "aps"


def stored_conformal_method(trust):
    """The conformal method of a stored fit (`ModelConfig.trust`)."""
    return str(trust["conformal"].get("method", _UNRECORDED_CONFORMAL_METHOD))


def conformal_scores(probabilities, method=DEFAULT_CONFORMAL_METHOD):
    """The conformal score of every class (higher = less plausible).

    - `"lac"` (default): `1 - p` (least ambiguous set-valued classifier,
      Sadinle et al. 2019): the smallest sets on average, and a coverage
      close to `1 - alpha` even where the accuracy is above it, at the price
      of an empty set ("no class is plausible enough") for some images.
    - `"aps"`: `aps_scores`, the mass of the strictly more probable classes;
      0 for the top class, so a set always holds it (never empty) and its
      coverage is at least the accuracy.
    """
    import tensorflow as tf

    if method == "aps":
        return aps_scores(probabilities)
    if method == "lac":
        return 1.0 - tf.cast(probabilities, tf.float32)
    raise ValueError(
        f"Unknown conformal method {method!r}. Known: {', '.join(CONFORMAL_METHODS)}."
    )


def prediction_sets(calibrated, threshold, method=DEFAULT_CONFORMAL_METHOD):
    """Classes whose conformal score (`conformal_scores`) is <= threshold."""
    import tensorflow as tf

    scores = conformal_scores(calibrated, method)
    # A threshold of (about) 1 means "all classes": masses sum to 1 only up
    # to float32 rounding, which must not drop the last class.
    if threshold >= 1.0 - 1e-6:
        return tf.ones_like(calibrated, dtype=tf.bool)
    return scores <= tf.constant(threshold, tf.float32)


def mahalanobis_scores(features, whitening, centers):
    """Distance of each feature row to its nearest class mean (shared covariance)."""
    import tensorflow as tf

    z = tf.matmul(tf.cast(features, tf.float32), tf.constant(whitening))
    differences = z[:, None, :] - tf.constant(centers)[None, :, :]
    return tf.sqrt(tf.reduce_min(tf.reduce_sum(tf.square(differences), axis=-1), axis=-1))


def relative_mahalanobis_scores(features, whitening, centers, background_whitening,
                                background_center):
    """Relative Mahalanobis score: nearest class distance minus background distance.

    `min_c ||f W - c||^2 - ||f W0 - c0||^2` (squared distances; may be
    negative): the class-conditional fit of `mahalanobis_scores` minus one
    class-agnostic Gaussian (`fitting.fit_background`), as in Ren et al.
    2021 (arXiv:2106.09022). Higher means further from the training images.
    """
    import tensorflow as tf

    features = tf.cast(features, tf.float32)
    z = tf.matmul(features, tf.constant(whitening))
    differences = z[:, None, :] - tf.constant(centers)[None, :, :]
    nearest = tf.reduce_min(tf.reduce_sum(tf.square(differences), axis=-1), axis=-1)
    z0 = tf.matmul(features, tf.constant(background_whitening)) - tf.constant(background_center)
    return nearest - tf.reduce_sum(tf.square(z0), axis=-1)


def normalize_rows(features):
    """Rows scaled to unit L2 norm (float32), as the kNN score compares them."""
    import tensorflow as tf

    return tf.math.l2_normalize(tf.cast(features, tf.float32), axis=-1, epsilon=1e-12)


def knn_scores(features, bank, k, exclude_self=False):
    """Cosine distance of each feature row to its `k`-th nearest bank row.

    `1 - cos(f, b_(k))`, with `b_(k)` the bank row of `k`-th highest cosine
    similarity to `f` (deep nearest neighbours, Sun et al. 2022,
    arXiv:2204.06507): no assumption on the shape of the feature
    distribution, so images between the classes and far from all of them
    both score high. In [0, 2]; higher means further from every validation
    image. A distance linear in the similarity (not `sqrt(2 - 2 cos)`) keeps
    float32 rounding of the matrix product from being magnified near 0.

    Args:
        features: `(n, d)` features (any scale: they are L2-normalized here).
        bank: `(m, d)` L2-normalized reference rows (`normalize_rows`), m >= k.
        k: which neighbour (1 = nearest).
        exclude_self: `features` are the bank's own rows, in order: row `i`
            is not its own neighbour (leave-one-out scores, for the threshold).
    """
    import tensorflow as tf

    bank = tf.constant(bank) if not tf.is_tensor(bank) else bank
    similarity = tf.matmul(normalize_rows(features), bank, transpose_b=True)
    if exclude_self:
        similarity = tf.linalg.set_diag(
            similarity, tf.fill([tf.shape(similarity)[0]], tf.constant(-2.0, tf.float32)))
    kth = tf.math.top_k(similarity, k=int(k), sorted=True).values[:, -1]
    return 1.0 - kth


#: OOD scores by `trust["ood"]["method"]`.
OOD_METHODS = ("knn", "relative_mahalanobis", "mahalanobis")


def ood_scores(features, ood):
    """The OOD score of pooled `features` under the stored `trust["ood"]` values.

    `"knn"` (`fit_trust`'s default: `knn_scores` against the stored bank of
    validation features), `"relative_mahalanobis"` (earlier fits, or
    `fit_trust(..., ood_method="relative_mahalanobis")`) or `"mahalanobis"`
    (the first fits); a stored fit keeps its score.

    Example:

    ```python
    scores = ood_scores(pooled, get_model_config(model).trust["ood"])
    ```
    """
    method = ood.get("method")
    if method == "knn":
        return knn_scores(features, decode_array(ood["bank"]), ood["k"])
    if method == "mahalanobis":
        return mahalanobis_scores(features, decode_array(ood["whitening"]),
                                  decode_array(ood["centers"]))
    if method == "relative_mahalanobis":
        return relative_mahalanobis_scores(
            features, decode_array(ood["whitening"]), decode_array(ood["centers"]),
            decode_array(ood["background_whitening"]), decode_array(ood["background_center"]),
        )
    raise ValueError(
        f"Unknown OOD method {method!r} in the stored trust values. Known: "
        f"{', '.join(OOD_METHODS)}."
    )


def trust_outputs(probabilities, features, trust):
    """The four extra outputs from the model's outputs and stored `trust` values.

    Args:
        probabilities: `(batch, classes)` softmax outputs of the model.
        features: `(batch, d)` features of the stored OOD layer
            (`trust["ood"]["layer"]`, as `medivision_tf.trust.feature_model`
            gives them).
        trust: the `ModelConfig.trust` dict written by `fit_trust`.

    Returns:
        dict of tensors: `calibrated_probabilities` float32 `(batch, classes)`,
        `prediction_set` bool `(batch, classes)`, `ood_score` float32
        `(batch,)`, `out_of_distribution` bool `(batch,)`.

    Example:

    ```python
    out = trust_outputs(probs, pooled, get_model_config(model).trust)
    ```
    """
    import tensorflow as tf

    calibrated = calibrate(probabilities, trust["temperature"])
    ood = trust["ood"]
    score = ood_scores(features, ood)
    return {
        "calibrated_probabilities": calibrated,
        "prediction_set": prediction_sets(calibrated, trust["conformal"]["threshold"],
                                          stored_conformal_method(trust)),
        "ood_score": score,
        "out_of_distribution": score > tf.constant(ood["threshold"], tf.float32),
    }
