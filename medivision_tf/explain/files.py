"""Explaining image files: read, explain, write overlays and grid PNGs."""

import os

import cv2
import numpy as np

from medivision_tf.explain import _inputs
from medivision_tf.explain.methods import METHODS, attention_maps, explain
from medivision_tf.explain.overlays import (
    overlay,
    prediction_captions,
    save_explanation_grid,
    save_png,
)
from medivision_tf.model import get_class_names


def read_image(path):
    """Reads an image file (PNG, JPEG, BMP, TIFF, ... via OpenCV) as raw
    0-255 pixels: `(h, w, 1)` gray or `(h, w, 3)` RGB, float32. 16-bit images
    are scaled to 0-255, an alpha channel is dropped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: OpenCV cannot decode it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(
            f"Could not decode image {path!r}: not an image format OpenCV reads "
            "(PNG, JPEG, BMP, TIFF, ...)."
        )
    scale = 257.0 if image.dtype == np.uint16 else 1.0
    image = image.astype("float32") / scale
    if image.ndim == 2:
        return image[..., None]
    if image.shape[-1] == 4:
        image = image[..., :3]
    return image[..., ::-1].copy()  # BGR -> RGB


def explain_images(
    model,
    images,
    out_dir,
    method="gradcam",
    names=None,
    class_index=None,
    layer_name=None,
    batch_size=16,
):
    """Explains images (of any sizes) and writes overlays and grid PNGs.

    For each image it writes `out_dir/<name>_<method>.png` (the map blended
    over the image at the image's size); for each batch of `batch_size`
    images, `out_dir/grid_<k>.png` with the image, the method's map and the
    attention map, and the prediction and its probability as caption.

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

    Returns:
        One dict per image: `name`, `prediction`, `probability`, `overlay`
        (path), `grid` (path).

    Example:

    ```python
    images = [read_image(p) for p in ["a.png", "b.png"]]
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
    class_names = get_class_names(model)
    rows = []
    for k, start in enumerate(range(0, len(images), batch_size)):
        batch = [np.asarray(image, "float32") for image in images[start : start + batch_size]]
        maps, attention, probabilities = _explain_mixed_sizes(
            model, batch, method, class_index, layer_name
        )
        grid = save_explanation_grid(
            os.path.join(out_dir, f"grid_{k:03d}.png"),
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
    return rows


def _explain_mixed_sizes(model, batch, method, class_index, layer_name):
    """Runs each group of same-shaped images together; keeps the order."""
    maps = [None] * len(batch)
    attention = [None] * len(batch)
    probabilities = [None] * len(batch)
    groups = {}
    for i, image in enumerate(batch):
        groups.setdefault(image.shape, []).append(i)
    for indices in groups.values():
        images = np.stack([batch[i] for i in indices])
        group_maps = explain(
            model, images, method=method, class_index=class_index, layer_name=layer_name
        )
        group_attention = (
            group_maps if method == "attention" else attention_maps(model, images)
        )
        inputs = _inputs.fit_to_model(images, model)
        group_probs = np.asarray(model(inputs, training=False))
        for j, i in enumerate(indices):
            maps[i], attention[i] = group_maps[j], group_attention[j]
            probabilities[i] = group_probs[j]
    return maps, attention, np.stack(probabilities)
