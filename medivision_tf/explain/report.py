"""`explain_report()`: overlays and faithfulness figures on labeled images."""

import json
import os

import numpy as np

from medivision_tf.explain import faithfulness
from medivision_tf.explain.methods import METHODS, explain
from medivision_tf.explain.overlays import prediction_captions, save_explanation_grid
from medivision_tf.model import get_class_names

_TARGETS = ("label", "prediction")


def explain_report(
    model,
    images,
    labels,
    boxes,
    out_dir,
    methods=METHODS,
    target="label",
    num_overlays=8,
    batch_size=32,
    scorecam_max_n=None,
):
    """Scores every method on images with known lesion boxes; writes overlays.

    For each method, on all `images`: the pointing-game hit rate (the map's
    peak is inside the box) and the mean share of the map's energy inside the
    box, next to their chance level (the boxes' mean share of the image). It
    writes `out_dir/explanations.png` (the first `num_overlays` images: the
    image and one overlay per method, boxes in green, prediction and
    probability in the caption) and `out_dir/explanations.json` (the
    returned figures).

    Args:
        model: a trained model from `medivision_tf.build_medivision`.
        images: `(n, height, width[, channels])` raw 0-255 held-out images.
        labels: `(n,)` true class ids.
        boxes: `(n, 4)` lesion boxes `[y_min, x_min, y_max, x_max]` in pixels.
        out_dir: folder for the PNG and JSON (created if needed).
        methods: names from `medivision_tf.explain.METHODS`.
        target: class explained: `"label"` (the true class, the pointing
            game's usual protocol) or `"prediction"` (the top class).
        num_overlays: images shown in the grid PNG (0 writes none).
        batch_size: images per pass.
        scorecam_max_n: passed to `explain` for Score-CAM (None: all channels).

    Returns:
        A dict: `methods` (`{method: {"pointing_game", "energy_in_box"}}`),
        `chance` (same keys), `attention_gradcam_correlation` (mean per-image
        Pearson correlation, when both were computed), `accuracy`,
        `num_images`, `target`, `grid_path`, `json_path`.

    Example:

    ```python
    test = make_synthetic_lesions(200, 64, 4, seed=2)
    report = explain_report(model, test.images, test.labels, test.boxes, "runs/x")
    report["methods"]["gradcam"]["pointing_game"]   # e.g. 0.95
    ```
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(
            f"Unknown explanation methods {unknown or list(methods)!r}. Choose "
            f"from: {', '.join(METHODS)}."
        )
    if target not in _TARGETS:
        raise ValueError(
            f"Unknown target {target!r}. Choose one of: {', '.join(_TARGETS)}."
        )
    images = np.asarray(images)
    labels = np.asarray(labels)
    boxes = np.asarray(boxes)
    if not len(images) == len(labels) == len(boxes):
        raise ValueError(
            f"images, labels and boxes must have the same length. Received: "
            f"{len(images)}, {len(labels)}, {len(boxes)}"
        )
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    class_index = labels.astype("int64") if target == "label" else None
    maps = {
        method: explain(
            model,
            images,
            method=method,
            class_index=class_index,
            batch_size=batch_size,
            scorecam_max_n=scorecam_max_n,
        )
        for method in methods
    }
    chance = float(faithfulness.box_area_share(boxes, images.shape[1:3]).mean())
    report = {
        "num_images": int(len(images)),
        "target": target,
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "methods": {
            method: {
                "pointing_game": float(faithfulness.pointing_game(m, boxes).mean()),
                "energy_in_box": float(faithfulness.energy_in_box(m, boxes).mean()),
            }
            for method, m in maps.items()
        },
        "chance": {"pointing_game": chance, "energy_in_box": chance},
    }
    if "gradcam" in maps and "attention" in maps:
        report["attention_gradcam_correlation"] = float(
            faithfulness.map_correlation(maps["gradcam"], maps["attention"]).mean()
        )
    os.makedirs(out_dir, exist_ok=True)
    report["grid_path"] = None
    if num_overlays:
        shown = slice(0, num_overlays)
        report["grid_path"] = save_explanation_grid(
            os.path.join(out_dir, "explanations.png"),
            images[shown],
            {method: m[shown] for method, m in maps.items()},
            captions=prediction_captions(
                probabilities[shown], get_class_names(model), labels[shown]
            ),
            boxes=boxes[shown],
        )
    report["json_path"] = os.path.join(out_dir, "explanations.json")
    with open(report["json_path"], "w") as f:
        json.dump(report, f, indent=2)
    return report
