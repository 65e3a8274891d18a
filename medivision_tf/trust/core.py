"""`fit_trust` and `predict_with_trust`: fit on validation, store in the model, apply."""

import numpy as np

from medivision_tf.model import CLASS_LABELS_LAYER, get_model_config
from medivision_tf.trust import apply, fitting

OOD_FOLDS = 5


def get_trust(model):
    """The trust values stored in a model (`ModelConfig.trust`), or None.

    Example:

    ```python
    get_trust(model)["temperature"]   # e.g. 1.37
    ```
    """
    return get_model_config(model).trust


def feature_model(model):
    """A `keras.Model` from the model's input to `[pooled features, probabilities]`.

    It shares the model's layers and weights (nothing is copied).
    """
    import keras

    try:
        pool = model.get_layer(apply.FEATURE_LAYER)
    except ValueError as error:
        raise ValueError(
            f"Model {model.name!r} has no layer {apply.FEATURE_LAYER!r} (the pooled "
            "features the OOD score reads): build it with build_medivision or "
            "build_pooling_baseline."
        ) from error
    return keras.Model(model.inputs, [pool.output, model.output])


def _forward(model, images, labels=None, batch_size=32):
    """`(features, probabilities, labels)` as float32 / int arrays."""
    import tensorflow as tf

    probe = feature_model(model)
    if isinstance(images, tf.data.Dataset):
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
        f, p = probe(tf.cast(x, tf.float32), training=False)
        features.append(np.asarray(tf.cast(f, tf.float32)))
        probabilities.append(np.asarray(tf.cast(p, tf.float32)))
        if y is not None:
            seen.append(np.asarray(y))
    if not features:
        raise ValueError("No images: fit_trust needs validation images.")
    labels_out = np.concatenate(seen) if seen else None
    if labels_out is not None and labels_out.ndim == 2:
        labels_out = labels_out.argmax(axis=1)  # one-hot
    return np.concatenate(features), np.concatenate(probabilities), labels_out


def fit_trust(model, val_images, val_labels=None, alpha=0.1, *, accept_rate=0.95,
              batch_size=32, seed=0):
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
        batch_size: images per forward pass.
        seed: seed of the folds that place the OOD threshold.

    Returns:
        `model` (the same object, now with `get_trust(model)`).

    Raises:
        ValueError: a multi-label model, `alpha`/`accept_rate` outside (0, 1),
            or no (labelled) images.

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
    features, probabilities, labels = _forward(model, val_images, val_labels, batch_size)
    if labels is None:
        raise ValueError("fit_trust needs labels: pass `val_labels` or (images, labels) batches.")
    probabilities, labels = fitting._check_probabilities(probabilities, labels)
    n, num_classes = probabilities.shape

    # Temperature scaling (NLL on validation).
    temperature = fitting.fit_temperature(probabilities, labels)
    calibrated = np.asarray(apply.calibrate(probabilities, temperature))

    # Split-conformal APS threshold, scored by the same TF op as prediction.
    scores = np.asarray(apply.aps_scores(calibrated))[np.arange(n), labels]
    threshold = fitting.conformal_threshold(scores, alpha)

    # Mahalanobis OOD score; threshold from out-of-fold distances.
    folds = fitting.fold_ids(n, OOD_FOLDS, seed)
    out_of_fold = np.zeros(n, np.float32)
    for fold in np.unique(folds):
        held = folds == fold
        if held.all():  # one image: score it in-sample
            held_fit = held
        else:
            held_fit = ~held
        fold_ood = _fit_ood(features[held_fit], labels[held_fit], num_classes)
        out_of_fold[held] = np.asarray(apply.ood_scores(features[held], fold_ood))
    ood_threshold = float(np.quantile(out_of_fold, accept_rate, method="higher"))
    ood = _fit_ood(features, labels, num_classes)

    trust = {
        "version": apply.TRUST_VERSION,
        "temperature": temperature,
        "conformal": {"method": "aps", "alpha": alpha, "threshold": threshold,
                      "num_calibration": int(n)},
        "ood": {**ood, "layer": apply.FEATURE_LAYER,
                "accept_rate": float(accept_rate), "threshold": ood_threshold},
        "validation": {
            "num_images": int(n),
            "nll_before": fitting.negative_log_likelihood(probabilities, labels),
            "nll_after": fitting.negative_log_likelihood(calibrated, labels),
        },
    }
    store_trust(model, trust)
    return model


def _fit_ood(features, labels, num_classes):
    """The relative Mahalanobis fit as the JSON-ready `trust["ood"]` arrays."""
    whitening, centers = fitting.fit_mahalanobis(features, labels, num_classes)
    background_whitening, background_center = fitting.fit_background(features)
    return {"method": "relative_mahalanobis",
            "whitening": apply.encode_array(whitening),
            "centers": apply.encode_array(centers),
            "background_whitening": apply.encode_array(background_whitening),
            "background_center": apply.encode_array(background_center)}


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
        `ood_score` (`(n,)`, relative Mahalanobis score of the pooled
        features: squared distance to the nearest class mean minus that to
        the mean of all validation images; see `apply.ood_scores`) and
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
    out = {k: np.asarray(v) for k, v in apply.trust_outputs(probabilities, features, trust).items()}
    return {
        "probabilities": out["calibrated_probabilities"],
        "uncalibrated_probabilities": probabilities,
        "prediction_set": out["prediction_set"],
        "ood_score": out["ood_score"],
        "out_of_distribution": out["out_of_distribution"],
    }
