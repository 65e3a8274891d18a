"""Explaining image files: read, explain, write overlays and grid PNGs."""

import os

import numpy as np

from medivision_tf.data.io.read_files import read_images
from medivision_tf.explain import _cache, _inputs
from medivision_tf.explain.methods import METHODS, explain, weights_to_maps
from medivision_tf.explain.overlays import (
    overlay,
    prediction_captions,
    save_explanation_grid,
    save_png,
)
from medivision_tf.model import get_model_config
from medivision_tf.model_access import named_layer
from medivision_tf.prediction import progress_bar, trust_columns, trust_values

#: A normalised map whose largest value is below this is blank: the method
#: gave every position the same value (see `map_note`).
BLANK_MAP_MAX = 1e-6


def read_image(path, channels=3, dicom_window="auto"):
    """Reads one image file as raw 0-255 pixels at its own size.

    A thin alias of `medivision_tf.data.io.read_files.read_images` (the one file
    reader, the same decoding as training): PNG (8/16-bit), JPEG, BMP, GIF,
    WebP, TIFF and DICOM (the modality's rescale and window applied), the
    format sniffed from the file's bytes. 16-bit images are scaled to 0-255,
    an alpha channel is dropped. The image keeps its own size (explanations
    are drawn at it). For many files call `read_images` once.

    Args:
        path: the image file.
        channels: 1 (grayscale) or 3 (RGB); pass the model's input channels
            (`medivision_tf.get_model_config(model).channels`) to see the
            image as the model does.
        dicom_window: DICOM only: `"auto"` (the file's window),
            `"minmax"` or `(center, width)`; see
            `medivision_tf.data.io.dicom.read_dicom`.

    Returns:
        float32 NumPy array `(height, width, channels)` in [0, 255].

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image the data layer decodes.

    Example:

    ```python
    image = read_image("scan.dcm", channels=1)   # (512, 512, 1)
    ```
    """
    return read_images([os.fspath(path)], channels, dicom_window=dicom_window)[0]


def explain_images(
    model,
    images,
    out_dir,
    method="gradcam",
    names=None,
    class_index=None,
    layer_name=None,
    batch_size=16,
    verbose="auto",
    grid_prefix="grid",
):
    """Explains images (of any sizes) and writes overlays and grid PNGs.

    For each image it writes `out_dir/<name>_<method>.png` (the map blended
    over the image at the image's size); for each batch of `batch_size`
    images, `out_dir/<grid_prefix>_<k>.png` (`grid_000.png`, ...) with the
    image, the method's map and the attention map, and the prediction and
    its probability as caption. A model with trust values gives the answer
    `medivision predict` gives for the same file: the calibrated probability,
    the prediction set and the out-of-distribution flag (also in the
    captions). A map that shows nothing says so (`map_note`, and "(empty
    map)" in its caption). Volumes: `explain_volume`.

    Args:
        model: a model from `medivision_tf.build_medivision`.
        images: list of `(h, w, 1|3)` raw 0-255 images (sizes may differ;
            each is resized for the model like the data pipeline does).
        out_dir: output folder (created if needed).
        method: one of `METHODS`.
        names: one file stem per image (default `image_00000`, ...).
        class_index: None (predicted class), or a class id for all images.
        layer_name: target layer (default `"feature_map"`).
        batch_size: images per grid and per pass.
        verbose: progress bar on stderr: `"auto"` (default: above
            `medivision_tf.prediction.PROGRESS_MIN_IMAGES` images), 1/True or
            0/False (see `medivision_tf.prediction.progress_bar`).
        grid_prefix: file name prefix of the grid PNGs (default `"grid"`).

    Returns:
        One dict per image: `name`, `prediction`, `probability` (calibrated
        with trust values), `overlay` (path), `grid` (path), `map_note`
        (`""`, or why the map is empty) and, with trust values,
        `prediction_set` (`"a|b"`), `ood_score`, `out_of_distribution`.

    Example:

    ```python
    images = read_images(["a.png", "b.dcm"], channels=1)   # medivision_tf.data.io.read_files
    rows = explain_images(model, images, "out", method="gradcam++")
    ```
    """
    if method not in METHODS:
        raise ValueError(
            f"Unknown explanation method {method!r}. Choose one of: "
            f"{', '.join(METHODS)}."
        )
    _inputs.check_layer(model, layer_name)
    names = names or [f"image_{i:05d}" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"{len(names)} names for {len(images)} images.")
    config = get_model_config(model)
    class_names = list(config.class_names)
    rows = []
    bar = progress_bar(len(images), verbose, desc=f"Explaining ({method})")
    for k, start in enumerate(range(0, len(images), batch_size)):
        batch = [np.asarray(image, "float32") for image in images[start : start + batch_size]]
        maps, attention, answers = _explain_mixed_sizes(
            model, batch, method, class_index, layer_name
        )
        grid = save_explanation_grid(
            os.path.join(out_dir, f"{grid_prefix}_{k:03d}.png"),
            batch,
            {method: maps, "attention": attention},
            captions=_captions(answers, maps, class_names),
        )
        for j, (image, name, heatmap) in enumerate(
            zip(batch, names[start : start + batch_size], maps)
        ):
            path = save_png(
                os.path.join(out_dir, f"{name}_{method}.png"), overlay(image, heatmap)
            )
            probs = answers["probabilities"][j]
            row = {
                "name": name,
                "prediction": class_names[int(probs.argmax())],
                "probability": float(probs.max()),
                "overlay": path,
                "grid": grid,
                "map_note": map_note(model, heatmap, method, layer_name),
            }
            for key in ("prediction_set", "ood_score", "out_of_distribution"):
                if key in answers:
                    row[key] = answers[key][j]
            rows.append(row)
        bar.update(len(batch))
    bar.close()
    return rows


def map_note(model, heatmap, method, layer_name=None):
    """Why a map shows nothing, in one sentence; `""` for a map that shows something.

    A CAM is min-max scaled to [0, 1], so a map that gives every position of
    the feature map the same value (for Grad-CAM: every position's weighted
    sum at or below zero, all cut to zero by its ReLU) becomes all zeros, and
    an overlay of it would look like "no region matters". This says so
    instead, with the feature grid's size (a coarse grid, e.g. 3x3 at 96
    pixels, makes it likelier) and what to try.

    Args:
        model: the explained model.
        heatmap: one map `(height, width)` in [0, 1] from `explain`.
        method: the method that made it.
        layer_name: the explained layer (default `"feature_map"`).

    Returns:
        A sentence, or `""`.

    Example:

    ```python
    note = map_note(model, explain(model, image[None])[0], "gradcam")
    ```
    """
    if float(np.max(heatmap)) >= BLANK_MAP_MAX:
        return ""
    grid = named_layer(model, layer_name or "feature_map").output.shape[1:3]
    others = [m for m in ("gradcam++", "scorecam", "layercam") if m != method]
    return (
        f"empty map: {method} gave every position of the {grid[0]}x{grid[1]} feature map "
        "the same value (for Grad-CAM: no position's weighted sum is above zero, and its "
        "ReLU cuts them all to zero), so it shows no region; this is not a finding about "
        f"the image. Try --method {others[0]} or {others[1]}, or train at a larger image "
        "size for a finer feature grid."
    )


def _captions(answers, maps, class_names):
    """Grid captions: class and (calibrated) probability, set and OOD flag, blank maps."""
    captions = prediction_captions(answers["probabilities"], class_names)
    out = []
    for j, caption in enumerate(captions):
        if "prediction_set" in answers:
            members = answers["prediction_set"][j].replace("|", ",")
            caption += f" set{{{members}}}"
            if answers["out_of_distribution"][j]:
                caption += " OOD"
        if float(np.max(maps[j])) < BLANK_MAP_MAX:
            caption += " (empty map)"
        out.append(caption)
    return out


def _explain_mixed_sizes(model, batch, method, class_index, layer_name):
    """Runs each group of same-shaped images together; keeps the order.

    Per group, one cached forward pass gives the probabilities and the
    attention weights; the predicted classes are handed to the CAM, so the
    CAM does not run its own prediction pass. A model with trust values gets
    the answer `medivision predict` gives (`prediction.trust_values`):
    calibrated probabilities, prediction set and OOD flag.

    Returns:
        `(maps, attention, answers)`: the maps, the attention maps, and a dict
        of per-image `probabilities` (calibrated with trust values) plus, with
        trust values, `prediction_set` (`"a|b"`), `ood_score` and
        `out_of_distribution`.
    """
    config = get_model_config(model)
    trusted = bool(config.trust) and not config.multi_label
    maps = [None] * len(batch)
    attention = [None] * len(batch)
    answers = {}
    groups = {}
    for i, image in enumerate(batch):
        groups.setdefault(image.shape, []).append(i)
    for indices in groups.values():
        images = np.stack([batch[i] for i in indices])
        size = images.shape[1:3]
        fitted = _inputs.fit_to_model(images, model)
        group_probs, weights = _cache.probe_outputs(model, fitted)
        group_attention = weights_to_maps(model, weights, size)
        if method == "attention":
            group_maps = group_attention
        else:
            targets = group_probs.argmax(axis=-1) if class_index is None else class_index
            group_maps = explain(
                model, images, method=method, class_index=targets, layer_name=layer_name
            )
        group_answers = {"probabilities": group_probs}
        if trusted:
            values = trust_values(model, np.asarray(fitted), group_probs)
            rows = [("", "", np.array([j])) for j in range(len(indices))]
            group_answers = {"probabilities": values["probabilities"],
                             **trust_columns(rows, values["probabilities"], values, config)}
        for j, i in enumerate(indices):
            maps[i], attention[i] = group_maps[j], group_attention[j]
            for key, values in group_answers.items():
                answers.setdefault(key, [None] * len(batch))[i] = values[j]
    answers = {key: (np.stack(values) if key == "probabilities" else np.asarray(values))
               for key, values in answers.items()}
    return maps, attention, answers
