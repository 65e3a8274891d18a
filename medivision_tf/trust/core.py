"""`fit_trust` and `predict_with_trust`: fit on validation, store in the model, apply."""

import sys
import warnings

import keras
import numpy as np

from medivision_tf.config import resolved_ood_layer, resolved_ood_method
from medivision_tf.model import CLASS_LABELS_LAYER, get_model_config
from medivision_tf.trust import apply, fitting

OOD_FOLDS = 5
#: The kNN score's neighbour: the 5th nearest validation image (1st to 10th
#: measured within 0.001 AUROC of each other; 5 is less at the mercy of one
#: stray validation image than the 1st).
KNN_NEIGHBOURS = 5
#: Most validation images kept in the kNN bank, and most float32 values
#: (rows x feature width: 4 MiB) the bank may take in the model's config.
MAX_BANK_ROWS = 4096
MAX_BANK_VALUES = 2 ** 20


def get_trust(model):
    """The trust values stored in a model (`ModelConfig.trust`), or None.

    Example:

    ```python
    get_trust(model)["temperature"]   # e.g. 1.37
    ```
    """
    return get_model_config(model).trust


def feature_model(model, layer=None):
    """A `keras.Model` from the model's input to `[OOD features, probabilities]`.

    It shares the model's layers and weights (nothing is copied). The
    features are the output of `layer`, averaged over positions when it is a
    feature map; layer names joined by `+` (`apply.COMBINED_LAYER`,
    `"feature_map+pool"`) give their features concatenated in that order.

    Args:
        model: a MediVision model.
        layer: the layer the OOD score reads; default: the one its stored
            trust values name (`trust["ood"]["layer"]`), else
            `apply.FEATURE_LAYER` (`"feature_map"`).

    Example:

    ```python
    features, probabilities = feature_model(model)(images)
    ```
    """
    import keras

    if layer is None:
        trust = get_trust(model)
        layer = (trust or {}).get("ood", {}).get("layer", apply.FEATURE_LAYER)
    parts = [_pooled_output(model, name) for name in layer.split("+")]
    output = parts[0] if len(parts) == 1 else keras.ops.concatenate(parts, axis=-1)
    return keras.Model(model.inputs, [output, model.output])


def _pooled_output(model, layer):
    """The symbolic output of `layer` as `(batch, width)` float32 features."""
    import keras

    try:
        output = model.get_layer(layer).output
    except ValueError as error:
        raise ValueError(
            f"Model {model.name!r} has no layer {layer!r} (the features the OOD score "
            "reads): build it with build_medivision or build_pooling_baseline."
        ) from error
    output = keras.ops.cast(output, "float32")
    if len(output.shape) == 4:  # a feature map: its mean over positions
        output = keras.ops.mean(output, axis=(1, 2))
    return output


def layer_widths(model, layer):
    """The feature width of each part of `layer` (`"feature_map+pool"`: two)."""
    return [int(_pooled_output(model, name).shape[-1]) for name in layer.split("+")]


def _forward(model, images, labels=None, batch_size=32, layer=None):
    """`(features, probabilities, labels)` as float32 / int arrays.

    Backend-neutral for arrays; a `tf.data.Dataset` (TensorFlow's) is read as
    its batches. TensorFlow is not imported here: a dataset of it means it
    already is.
    """
    import keras

    probe = feature_model(model, layer)
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(images, tf.data.Dataset):
        if labels is not None:
            raise ValueError("Pass `val_labels` only with an image array, not with a dataset.")
        batches = images
    else:
        images = np.asarray(images)
        if labels is not None and len(labels) != len(images):
            raise ValueError(
                f"images and labels differ in length: {len(images)} != {len(labels)}"
            )
        batches = [
            (images[i : i + batch_size], None if labels is None else labels[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        ]
    features, probabilities, seen = [], [], []
    for batch in batches:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        f, p = probe(keras.ops.cast(x, "float32"), training=False)
        features.append(keras.ops.convert_to_numpy(keras.ops.cast(f, "float32")))
        probabilities.append(keras.ops.convert_to_numpy(keras.ops.cast(p, "float32")))
        if y is not None:
            seen.append(np.asarray(y))
    if not features:
        raise ValueError("No images: fit_trust needs validation images.")
    labels_out = np.concatenate(seen) if seen else None
    if labels_out is not None and labels_out.ndim == 2:
        labels_out = labels_out.argmax(axis=1)  # one-hot
    return np.concatenate(features), np.concatenate(probabilities), labels_out


def fit_trust(model, val_images, val_labels=None, alpha=0.1, *, accept_rate=0.95,
              conformal_method=apply.DEFAULT_CONFORMAL_METHOD, ood_method="auto",
              ood_layer="auto", batch_size=32, seed=0):
    """Fits temperature, conformal threshold and OOD score on validation data.

    The values are stored in the model itself (`ModelConfig.trust`, inside the
    `class_labels` layer's config), so `model.save(...)`, `.keras` files and
    `medivision_tf.export.export_saved_model` carry them. Use images the model
    was not trained on (the validation split), never the test split.

    Args:
        model: a single-label MediVision model (`build_medivision` or
            `build_pooling_baseline`), trained.
        val_images: images `(n, h, w, c)` (raw 0-255) with `val_labels`, or a
            `tf.data.Dataset` of `(images, labels)` batches.
        val_labels: `(n,)` class ids (or one-hot) when `val_images` is an array.
        alpha: allowed miscoverage of the prediction sets, in (0, 1): sets
            hold the true class for about `1 - alpha` of new images.
        accept_rate: share of in-distribution images the OOD threshold accepts.
        conformal_method: the score of the prediction sets: `"lac"`
            (default; `1 - p`: smallest sets, coverage close to `1 - alpha`
            also for a model more accurate than that, some sets empty) or
            `"aps"` (never empty, so the coverage is at least the accuracy).
            See `medivision_tf.trust.apply.conformal_scores`.
        ood_method: `"auto"` (default): `"combined"`, or `"knn"` when
            `ood_layer` names a single layer (`medivision_tf.config.
            resolved_ood_method`). `"combined"`: the kNN score on the feature
            map and the Mahalanobis score on `pool`, each standardized by its
            held-out validation scores, the larger of the two (in
            `benchmarks/bench_unseen.py` it flagged more images of an unseen
            class than `"knn"` and more unrelated images than the Mahalanobis
            score alone: docs/trust.md); `"knn"`: cosine distance to the 5th
            nearest validation image in the backbone's pooled features, the
            images stored as a bank of at most `MAX_BANK_ROWS` (fewer for
            wide backbones: `MAX_BANK_VALUES`) and the threshold taken from
            leave-one-out distances; `"mahalanobis"`: the distance to the
            nearest class mean under one shared (Ledoit-Wolf) covariance (Lee
            et al. 2018; with `ood_layer="pool"` the better near-OOD score of
            the two); `"relative_mahalanobis"`: that minus the distance under
            one Gaussian over all images (Ren et al. 2021). The Gaussian fits
            take their threshold from 5-fold out-of-fold scores. See
            `medivision_tf.trust.apply.ood_scores`.
        ood_layer: the features the OOD score reads: `"auto"` (default:
            `"feature_map+pool"` for `"combined"`, else `"feature_map"`),
            `"feature_map"` (the backbone's feature map, averaged over
            positions), `"pool"` (the head's pooled features, after the
            LSTM and attention in MediVision, where
            `benchmarks/bench_unseen.py` measured the Mahalanobis score;
            for the pooling baseline the same as `"feature_map"`) or
            `"feature_map+pool"` (both, concatenated). Stored with the fit
            (resolved), so `predict`, exports and the server read the same
            layer.
        batch_size: images per forward pass.
        seed: seed of the bank's sample and of the OOD folds.

    Returns:
        `model` (the same object, now with `get_trust(model)`).

    Raises:
        ValueError: a multi-label model, `alpha`/`accept_rate` outside (0, 1),
            an unknown `conformal_method`, `ood_method` or `ood_layer`,
            `"combined"` with a layer other than `"auto"` or
            `"feature_map+pool"`, fewer than 2 (labelled) images, or fewer
            than `MIN_GAUSSIAN_IMAGES` for a Mahalanobis or combined score
            asked for by name (`"auto"` then fits `"knn"`, with a warning).

    Example:

    ```python
    import numpy as np
    import medivision_tf
    from medivision_tf.trust import fit_trust, predict_with_trust

    model = medivision_tf.build_medivision(3, backbone="smallcnn", weights=None,
        input_shape=(32, 32, 1), lstm_units=8, attention_units=4)
    images = np.random.default_rng(0).uniform(0, 255, (40, 32, 32, 1)).astype("float32")
    fit_trust(model, images, np.arange(40) % 3, alpha=0.1)
    predict_with_trust(model, images[:2])["prediction_set"]   # (2, 3) booleans
    ```
    """
    config = get_model_config(model)
    if config.multi_label:
        raise ValueError(
            "fit_trust supports single-label (softmax) models; received a multi-label "
            f"model {model.name!r} (conformal sets and temperature scaling here assume "
            "one class per image)."
        )
    alpha = fitting.check_alpha(alpha)
    if not 0 < accept_rate < 1:
        raise ValueError(f"`accept_rate` must be in (0, 1). Received: accept_rate={accept_rate!r}")
    if conformal_method not in apply.CONFORMAL_METHODS:
        raise ValueError(
            f"Unknown `conformal_method` {conformal_method!r}. Known: "
            f"{', '.join(apply.CONFORMAL_METHODS)}."
        )
    requested_method, requested_layer = ood_method, ood_layer
    ood_method = resolved_ood_method(ood_method, ood_layer)
    if ood_method not in OOD_FITS:
        raise ValueError(
            f"Unknown `ood_method` {ood_method!r}. Known: auto, {', '.join(OOD_FITS)}."
        )
    ood_layer = resolve_ood_layer(ood_method, ood_layer)
    features, probabilities, labels = _forward(model, val_images, val_labels, batch_size,
                                               layer=ood_layer)
    if labels is None:
        raise ValueError("fit_trust needs labels: pass `val_labels` or (images, labels) batches.")
    if len(labels) < 2:
        raise ValueError(
            f"fit_trust needs at least 2 validation images; received {len(labels)}."
        )
    if ood_method != "knn" and len(labels) < MIN_GAUSSIAN_IMAGES:
        if requested_method != "auto":
            raise ValueError(
                f"ood_method={ood_method!r} fits a Gaussian on out-of-fold splits and needs at "
                f"least {MIN_GAUSSIAN_IMAGES} validation images; received {len(labels)}. Use "
                "ood_method='knn' (2 images are enough) or more validation images."
            )
        # "auto" on too few images for the default: the kNN score, which needs 2.
        warnings.warn(f"fit_trust: {len(labels)} validation images are too few for the "
                      f"{ood_method!r} OOD score (at least {MIN_GAUSSIAN_IMAGES}); fitting "
                      "'knn' instead.", stacklevel=2)
        ood_method = "knn"  # on its own layer when the combined one was asked for
        ood_layer = resolve_ood_layer(
            ood_method, "auto" if requested_layer == apply.COMBINED_LAYER else requested_layer)
        features, probabilities, labels = _forward(model, val_images, val_labels, batch_size,
                                                   layer=ood_layer)
    probabilities, labels = fitting._check_probabilities(probabilities, labels)
    n, num_classes = probabilities.shape

    # Temperature scaling (NLL on validation).
    temperature = fitting.fit_temperature(probabilities, labels)
    calibrated = keras.ops.convert_to_numpy(apply.calibrate(probabilities, temperature))

    # Split-conformal threshold, scored by the same TF op as prediction.
    scores = keras.ops.convert_to_numpy(apply.conformal_scores(calibrated, conformal_method))[np.arange(n), labels]
    threshold = fitting.conformal_threshold(scores, alpha)

    if ood_method == "combined":
        ood, held_out = _fit_combined(features, labels, num_classes, seed,
                                      layer_widths(model, ood_layer))
    else:
        ood, held_out = OOD_FITS[ood_method](features, labels, num_classes, seed)
    ood["threshold"] = _threshold(held_out, accept_rate)

    trust = {
        "version": apply.TRUST_VERSION,
        "temperature": temperature,
        "conformal": {"method": conformal_method, "alpha": alpha, "threshold": threshold,
                      "num_calibration": int(n)},
        "ood": {**ood, "layer": ood_layer, "accept_rate": float(accept_rate)},
        "validation": {
            "num_images": int(n),
            "nll_before": fitting.negative_log_likelihood(probabilities, labels),
            "nll_after": fitting.negative_log_likelihood(calibrated, labels),
        },
    }
    store_trust(model, trust)
    return model


def _threshold(scores, accept_rate):
    """The score below which `accept_rate` of the (held-out) scores lie."""
    return float(np.quantile(np.asarray(scores), accept_rate, method="higher"))


def _fit_knn(features, labels, num_classes, seed):
    """The kNN bank (normalized validation features) and held-out scores.

    Written here, not with scikit-learn's `NearestNeighbors`: the exported
    graph must find the neighbours with TensorFlow ops (a matrix product and
    `top_k` over the stored bank), so the score is defined once, in
    `apply.knn_scores`, and used for the threshold too.
    """
    n, width = features.shape
    rows = min(n, MAX_BANK_ROWS, max(KNN_NEIGHBOURS + 1, MAX_BANK_VALUES // max(width, 1)))
    chosen = np.arange(n)
    if rows < n:
        chosen = np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
    bank = keras.ops.convert_to_numpy(apply.normalize_rows(features[chosen]))
    k = min(KNN_NEIGHBOURS, rows - 1)
    # Bank images are scored leave-one-out (not their own neighbour), the
    # rest against the whole bank: both as a new image will be.
    scores = np.empty(n, np.float32)
    scores[chosen] = keras.ops.convert_to_numpy(apply.knn_scores(features[chosen], bank, k, exclude_self=True))
    rest = np.setdiff1d(np.arange(n), chosen)
    for start in range(0, len(rest), MAX_BANK_ROWS):
        part = rest[start: start + MAX_BANK_ROWS]
        scores[part] = keras.ops.convert_to_numpy(apply.knn_scores(features[part], bank, k))
    return {"method": "knn", "k": int(k), "bank": apply.encode_array(bank),
            "num_bank": int(rows)}, scores


def _mahalanobis_values(features, labels, num_classes):
    whitening, centers = fitting.fit_mahalanobis(features, labels, num_classes)
    return {"method": "mahalanobis",
            "whitening": apply.encode_array(whitening),
            "centers": apply.encode_array(centers)}


def _relative_mahalanobis_values(features, labels, num_classes):
    background_whitening, background_center = fitting.fit_background(features)
    return {**_mahalanobis_values(features, labels, num_classes),
            "method": "relative_mahalanobis",
            "background_whitening": apply.encode_array(background_whitening),
            "background_center": apply.encode_array(background_center)}


def _out_of_fold_fit(values_of):
    """A Gaussian fit with 5-fold out-of-fold scores of its images.

    In-sample Mahalanobis distances are optimistic in a wide feature space
    (each image pulled its own class mean and covariance), so a threshold
    taken from them would flag new in-distribution images far more often
    than `1 - accept_rate`.
    """
    def fit(features, labels, num_classes, seed):
        n = len(features)
        folds = fitting.fold_ids(n, OOD_FOLDS, seed)
        out_of_fold = np.zeros(n, np.float32)
        for fold in np.unique(folds):
            held = folds == fold
            fit_on = held if held.all() else ~held  # one image: score it in-sample
            values = values_of(features[fit_on], labels[fit_on], num_classes)
            out_of_fold[held] = keras.ops.convert_to_numpy(apply.ood_scores(features[held], values))
        return values_of(features, labels, num_classes), out_of_fold

    return fit


#: The fewest validation images a Gaussian (Mahalanobis) fit takes: each of
#: its out-of-fold fits needs 2.
MIN_GAUSSIAN_IMAGES = 3

#: The `"combined"` score's components, in the order of `apply.COMBINED_LAYER`'s parts.
COMBINED_COMPONENTS = ("knn", "mahalanobis")


def _fit_combined(features, labels, num_classes, seed, widths):
    """Each component fitted on its columns, standardized by its held-out scores.

    The held-out score of an image is the larger standardized held-out score
    of its components (see `apply.combined_scores`), so the threshold is
    taken, as for each component alone, from scores of images no fit saw.
    """
    components, standardized, start = [], [], 0
    for method, width in zip(COMBINED_COMPONENTS, widths):
        stop = start + width
        values, scores = OOD_FITS[method](features[:, start:stop], labels, num_classes, seed)
        scores = scores.astype(np.float64)
        center, scale = float(scores.mean()), float(max(scores.std(), 1e-6))
        components.append({**values, "columns": [start, stop], "center": center,
                           "scale": scale})
        standardized.append((scores - center) / scale)
        start = stop
    return {"method": "combined", "components": components}, np.max(standardized, axis=0)


#: `fit_trust(ood_layer=...)`: `"auto"` (the method's own: `COMBINED_LAYER`
#: for `"combined"`, else the feature map), the backbone's feature map
#: (averaged), the head's pooled features, or both concatenated.
OOD_LAYERS = ("auto", apply.FEATURE_LAYER, "pool", apply.COMBINED_LAYER)

#: `fit_trust(ood_method=...)`: fits returning the `trust["ood"]` values and
#: the held-out scores of the validation images.
OOD_FITS = {"knn": _fit_knn,
            "mahalanobis": _out_of_fold_fit(_mahalanobis_values),
            "relative_mahalanobis": _out_of_fold_fit(_relative_mahalanobis_values),
            "combined": _fit_combined}


def resolve_ood_layer(ood_method, ood_layer):
    """The layer `ood_method` reads for `ood_layer` (`"auto"` resolved).

    Raises:
        ValueError: an unknown `ood_layer`, or `"combined"` with a layer
            other than `"auto"` or `apply.COMBINED_LAYER`.
    """
    if ood_layer not in OOD_LAYERS:
        raise ValueError(
            f"Unknown `ood_layer` {ood_layer!r}. Known: {', '.join(OOD_LAYERS)}."
        )
    if ood_method == "combined":
        if ood_layer not in ("auto", apply.COMBINED_LAYER):
            raise ValueError(
                f"ood_method='combined' reads the layers {apply.COMBINED_LAYER!r} (kNN on the "
                f"first, Mahalanobis on the second). Received: ood_layer={ood_layer!r}; pass "
                f"'auto' or {apply.COMBINED_LAYER!r}."
            )
        return apply.COMBINED_LAYER
    return resolved_ood_layer(ood_method, ood_layer)


def store_trust(model, trust):
    """Writes `trust` into the model's stored `ModelConfig` (its `class_labels` layer)."""
    layer = model.get_layer(CLASS_LABELS_LAYER)
    config = get_model_config(model).to_dict()  # also for 0.1.0 files without one
    config["trust"] = trust
    layer.model_config = config


def predict_with_trust(model, images, batch_size=32):
    """Calibrated probabilities, prediction sets and the OOD flag for images.

    Args:
        model: a model with trust values (`fit_trust`, or `train` with
            validation data).
        images: `(n, h, w, c)` raw 0-255 pixels.
        batch_size: images per forward pass.

    Returns:
        dict of NumPy arrays: `probabilities` (calibrated, `(n, classes)`),
        `uncalibrated_probabilities`, `prediction_set` (bool `(n, classes)`),
        `ood_score` (`(n,)`; higher is more unusual; the scale is the stored
        method's: for the default `"combined"`, standard deviations from the
        validation images' mean score; see `apply.ood_scores`) and
        `out_of_distribution` (bool `(n,)`).

    Raises:
        ValueError: the model has no trust values.

    Example:

    ```python
    out = predict_with_trust(model, images)
    out["prediction_set"][0], out["out_of_distribution"][0]
    ```
    """
    trust = get_trust(model)
    if not trust:
        raise ValueError(
            f"Model {model.name!r} has no trust values: call "
            "medivision_tf.trust.fit_trust(model, val_images, val_labels) first (train() "
            "does it when it has validation data)."
        )
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    features, probabilities, _ = _forward(model, images, None, batch_size)
    out = {k: keras.ops.convert_to_numpy(v) for k, v in apply.trust_outputs(probabilities, features, trust).items()}
    return {
        "probabilities": out["calibrated_probabilities"],
        "uncalibrated_probabilities": probabilities,
        "prediction_set": out["prediction_set"],
        "ood_score": out["ood_score"],
        "out_of_distribution": out["out_of_distribution"],
    }
