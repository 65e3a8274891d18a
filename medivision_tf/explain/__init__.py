"""Explanations: Grad-CAM family, attention maps, overlays, faithfulness.

- `gradcam_heatmaps(model, images, class_index=None, layer_name="feature_map")`:
  native batched Grad-CAM in one `tf.function` (TF ops only: it can be traced
  into an exported signature); returns a `(batch, H, W)` tensor in [0, 1].
- `explain(model, images, method=..., class_index=None, layer_name=None)`:
  Grad-CAM (the native one above), tf-keras-vis' Grad-CAM++, Score-CAM and
  LayerCAM, or the attention maps; NumPy maps in [0, 1] at the images' size.
- `attention_maps(model, images)`: the attention layer's weights over the
  feature map, upsampled to the image (no gradient).
- `overlay(image, heatmap)`, `save_explanation_grid(path, images, maps, ...)`,
  `prediction_captions(...)`, `save_png(...)`: OpenCV overlays and grid PNGs.
- `pointing_game(maps, boxes)`, `energy_in_box(maps, boxes)`,
  `box_area_share(boxes, size)`, `map_correlation(a, b)`: faithfulness
  against known lesion boxes.
- `explain_report(model, images, labels, boxes, out_dir)`: all of the above
  on held-out images: a grid PNG, a JSON file and per-method scores.
- `read_image(path, channels=3)` (decoded by the data layer: DICOM, TIFF,
  16-bit PNG included), `explain_images(model, images, out_dir, method=...)`:
  what `medivision explain` runs on image files (overlays + grid PNGs).

The target layer defaults to `"feature_map"`, the backbone's last
convolutional feature map in every `build_medivision` model; any layer with
a `(batch, h, w, c)` output can be named.

Example:

```python
import medivision_tf
from medivision_tf import explain as mx
from medivision_tf.data import make_synthetic_lesions

model = medivision_tf.load_model("runs/demo-.../model.keras")
test = make_synthetic_lesions(16, 64, 4, seed=2)
cams = mx.explain(model, test.images, method="gradcam++")
mx.pointing_game(cams, test.boxes).mean()
mx.save_explanation_grid(
    "grid.png", test.images, {"gradcam++": cams,
                              "attention": mx.attention_maps(model, test.images)}
)
```
"""

from medivision_tf.explain._inputs import spatial_layer_names
from medivision_tf.explain.faithfulness import (
    box_area_share,
    energy_in_box,
    map_correlation,
    pointing_game,
)
from medivision_tf.explain.files import explain_images, read_image
from medivision_tf.explain.gradcam import gradcam_heatmaps
from medivision_tf.explain.methods import METHODS, attention_maps, explain
from medivision_tf.explain.overlays import (
    overlay,
    prediction_captions,
    save_explanation_grid,
    save_png,
)
from medivision_tf.explain.report import explain_report

__all__ = [
    "METHODS",
    "attention_maps",
    "box_area_share",
    "energy_in_box",
    "explain",
    "explain_images",
    "explain_report",
    "gradcam_heatmaps",
    "map_correlation",
    "overlay",
    "pointing_game",
    "prediction_captions",
    "read_image",
    "save_explanation_grid",
    "save_png",
    "spatial_layer_names",
]
