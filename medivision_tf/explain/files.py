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
from medivision_tf.prediction import progress_bar


def read_image(path, channels=3, dicom_window="auto"):
    """Reads one image file as raw 0-255 pixels at its own size.

    A thin alias of `medivision_tf.data.decode.read_images` (the one file
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
            `medivision_tf.data.decode.read_dicom`.

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
    its probability as caption. Volumes: `explain_volume`.

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
        One dict per image: `name`, `prediction`, `probability`, `overlay`
        (path), `grid` (path).

    Example:

    ```python
    images = read_images(["a.png", "b.dcm"], channels=1)   # medivision_tf.data.decode
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
    class_names = list(get_model_config(model).class_names)
    rows = []
    bar = progress_bar(len(images), verbose, desc=f"Explaining ({method})")
    for k, start in enumerate(range(0, len(images), batch_size)):
        batch = [np.asarray(image, "float32") for image in images[start : start + batch_size]]
        maps, attention, probabilities = _explain_mixed_sizes(
            model, batch, method, class_index, layer_name
        )
        grid = save_explanation_grid(
            os.path.join(out_dir, f"{grid_prefix}_{k:03d}.png"),
            batch,
            {method: maps, "attention": attention},
            captions=prediction_captions(probabilities, class_names),
        )
        for image, name, heatmap, probs in zip(
            batch, names[start : start + batch_size], maps, probabilities
        ):
            path = save_png(
                os.path.join(out_dir, f"{name}_{method}.png"), overlay(image, heatmap)
            )
            rows.append(
                {
                    "name": name,
                    "prediction": class_names[int(probs.argmax())],
                    "probability": float(probs.max()),
                    "overlay": path,
                    "grid": grid,
                }
            )
        bar.update(len(batch))
    bar.close()
    return rows


def _explain_mixed_sizes(model, batch, method, class_index, layer_name):
    """Runs each group of same-shaped images together; keeps the order.

    Per group, one cached forward pass gives the probabilities and the
    attention weights; the predicted classes are handed to the CAM, so the
    CAM does not run its own prediction pass.
    """
    maps = [None] * len(batch)
    attention = [None] * len(batch)
    probabilities = [None] * len(batch)
    groups = {}
    for i, image in enumerate(batch):
        groups.setdefault(image.shape, []).append(i)
    for indices in groups.values():
        images = np.stack([batch[i] for i in indices])
        size = images.shape[1:3]
        group_probs, weights = _cache.probe_outputs(
            model, _inputs.fit_to_model(images, model)
        )
        group_attention = weights_to_maps(model, weights, size)
        if method == "attention":
            group_maps = group_attention
        else:
            targets = group_probs.argmax(axis=-1) if class_index is None else class_index
            group_maps = explain(
                model, images, method=method, class_index=targets, layer_name=layer_name
            )
        for j, i in enumerate(indices):
            maps[i], attention[i] = group_maps[j], group_attention[j]
            probabilities[i] = group_probs[j]
    return maps, attention, np.stack(probabilities)
