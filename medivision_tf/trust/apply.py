"""The applying side of `medivision_tf.trust`: `keras.ops` over stored values.

`trust_outputs(probabilities, features, trust)` is the one definition of the
calibrated probabilities, the prediction set and the OOD score. Python
(`predict_with_trust`), the SavedModel signatures (`medivision_tf.export`)
and so the server all run this function, so they agree to float32 rounding.
Written in `keras.ops`, it runs on every Keras backend (TensorFlow inside the
exported signatures; JAX or PyTorch for a model used there).

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

import keras
import numpy as np

from medivision_tf.config import COMBINED_OOD_LAYER

TRUST_VERSION = 1
#: The features `ood_layer="auto"` gives every score but `"combined"`: the
#: backbone's last feature map, averaged over its positions (the head's
#: layers are trained to separate the classes and discard what makes an
#: image unlike all of them). The layer is stored with the fit
#: (`trust["ood"]["layer"]`): earlier fits read `pool`, and still do.
FEATURE_LAYER = "feature_map"
#: The features of the `"combined"` score: the backbone's feature map
#: (averaged) and the head's pooled features, concatenated in that order
#: (`feature_model(model, COMBINED_LAYER)`; the name lives in the Keras-free
#: `medivision_tf.config`, which resolves `"auto"`).
COMBINED_LAYER = COMBINED_OOD_LAYER
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
    """`softmax(log(max(p, 1e-30)) / T)` with `keras.ops` (float32)."""
    p = _float32(probabilities)
    log_p = keras.ops.log(keras.ops.maximum(p, 1e-30))
    return keras.ops.softmax(log_p / _float32(temperature), axis=-1)


def _float32(value):
    """`value` (array, tensor or number) as a float32 tensor of the backend."""
    return keras.ops.cast(keras.ops.convert_to_tensor(value), "float32")


def aps_scores(probabilities):
    """APS score of every class, the `keras.ops` version of `fitting.aps_scores`."""
    p = _float32(probabilities)
    more_probable = keras.ops.cast(
        keras.ops.greater(p[:, None, :], p[:, :, None]), "float32")
    return keras.ops.sum(p[:, None, :] * more_probable, axis=-1)


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
    if method == "aps":
        return aps_scores(probabilities)
    if method == "lac":
        return 1.0 - _float32(probabilities)
    raise ValueError(
        f"Unknown conformal method {method!r}. Known: {', '.join(CONFORMAL_METHODS)}."
    )


def prediction_sets(calibrated, threshold, method=DEFAULT_CONFORMAL_METHOD):
    """Classes whose conformal score (`conformal_scores`) is <= threshold."""
    scores = conformal_scores(calibrated, method)
    # A threshold of (about) 1 means "all classes": masses sum to 1 only up
    # to float32 rounding, which must not drop the last class.
    if threshold >= 1.0 - 1e-6:
        return keras.ops.ones_like(scores, dtype="bool")
    return keras.ops.less_equal(scores, _float32(threshold))


def mahalanobis_scores(features, whitening, centers):
    """Distance of each feature row to its nearest class mean (shared covariance)."""
    z = keras.ops.matmul(_float32(features), _float32(whitening))
    differences = z[:, None, :] - _float32(centers)[None, :, :]
    return keras.ops.sqrt(keras.ops.min(
        keras.ops.sum(keras.ops.square(differences), axis=-1), axis=-1))


def relative_mahalanobis_scores(features, whitening, centers, background_whitening,
                                background_center):
    """Relative Mahalanobis score: nearest class distance minus background distance.

    `min_c ||f W - c||^2 - ||f W0 - c0||^2` (squared distances; may be
    negative): the class-conditional fit of `mahalanobis_scores` minus one
    class-agnostic Gaussian (`fitting.fit_background`), as in Ren et al.
    2021 (arXiv:2106.09022). Higher means further from the training images.
    """
    features = _float32(features)
    z = keras.ops.matmul(features, _float32(whitening))
    differences = z[:, None, :] - _float32(centers)[None, :, :]
    nearest = keras.ops.min(keras.ops.sum(keras.ops.square(differences), axis=-1), axis=-1)
    z0 = keras.ops.matmul(features, _float32(background_whitening)) - _float32(background_center)
    return nearest - keras.ops.sum(keras.ops.square(z0), axis=-1)


def normalize_rows(features):
    """Rows scaled to unit L2 norm (float32), as the kNN score compares them."""
    # x / sqrt(max(sum(x^2), 1e-12)), as tf.math.l2_normalize (the fits
    # stored so far were normalized that way).
    features = _float32(features)
    squares = keras.ops.sum(keras.ops.square(features), axis=-1, keepdims=True)
    return features * keras.ops.rsqrt(keras.ops.maximum(squares, 1e-12))


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
    similarity = keras.ops.matmul(normalize_rows(features),
                                  keras.ops.transpose(_float32(bank)))
    if exclude_self:  # eager only (fitting): the bank's own rows, so n is known
        rows = keras.ops.arange(keras.ops.shape(similarity)[0])
        own = keras.ops.equal(rows[:, None], rows[None, :])
        similarity = keras.ops.where(own, -2.0, similarity)
    kth = keras.ops.top_k(similarity, k=int(k), sorted=True)[0][:, -1]
    return 1.0 - kth


#: OOD scores by `trust["ood"]["method"]`.
OOD_METHODS = ("knn", "relative_mahalanobis", "mahalanobis", "combined")


def combined_scores(features, ood):
    """The `"combined"` score: the larger of its components' standardized scores.

    Each stored component (`ood["components"]`: a kNN and a Mahalanobis fit)
    reads its own columns of `features` (`"columns": [start, stop]`) and its
    score is standardized by the mean and standard deviation of its held-out
    validation scores (`"center"`, `"scale"`), so the two scales compare; an
    image is as unusual as its more surprised component. The kNN score on
    the backbone's features catches images unlike any validation image
    (another modality, another dataset); the class-conditional Mahalanobis
    score on the head's pooled features catches images between or beside
    the known classes (benchmarks/bench_unseen.py, docs/trust.md). Written
    here: no library this project uses combines OOD detectors.

    Args:
        features: `(n, d)` features of `COMBINED_LAYER`.
        ood: the stored `trust["ood"]` values of a `"combined"` fit.
    """
    standardized = []
    for component in ood["components"]:
        start, stop = (int(c) for c in component["columns"])
        score = ood_scores(features[:, start:stop], component)
        standardized.append((score - _float32(component["center"]))
                            / _float32(component["scale"]))
    combined = standardized[0]
    for score in standardized[1:]:
        combined = keras.ops.maximum(combined, score)
    return combined


def ood_scores(features, ood):
    """The OOD score of pooled `features` under the stored `trust["ood"]` values.

    `"combined"` (`fit_trust`'s default: `combined_scores`), `"knn"`
    (`knn_scores` against the stored bank of validation features; the
    default of earlier fits), `"mahalanobis"` (`fit_trust(..., ood_method=
    "mahalanobis")`, and the first fits) or `"relative_mahalanobis"`
    (earlier fits, or `fit_trust(..., ood_method="relative_mahalanobis")`);
    a stored fit keeps its score.

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
    if method == "combined":
        return combined_scores(features, ood)
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
    calibrated = calibrate(probabilities, trust["temperature"])
    ood = trust["ood"]
    score = ood_scores(features, ood)
    return {
        "calibrated_probabilities": calibrated,
        "prediction_set": prediction_sets(calibrated, trust["conformal"]["threshold"],
                                          stored_conformal_method(trust)),
        "ood_score": score,
        "out_of_distribution": keras.ops.greater(score, _float32(ood["threshold"])),
    }
