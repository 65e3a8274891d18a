"""Explanations: Grad-CAM family, attention maps, overlays, faithfulness.

- `gradcam_heatmaps(model, images, class_index=None, layer_name="feature_map")`:
  native batched Grad-CAM with the backend's own gradients: on TensorFlow in
  one `tf.function` (TF ops only: it can be traced into an exported
  signature), on JAX with `jax.vjp`, on PyTorch with `torch.autograd`;
  returns a `(batch, H, W)` tensor of the backend in [0, 1].
- `explain(model, images, method=..., class_index=None, layer_name=None)`:
  Grad-CAM (the native one above), Grad-CAM++ (tf-keras-vis' on TensorFlow,
  the same formula natively on JAX and PyTorch), Score-CAM and LayerCAM
  (tf-keras-vis: TensorFlow only), or the attention maps; NumPy maps in
  [0, 1] at the images' size.
- `attention_maps(model, images)`: the attention layer's weights over the
  feature map, upsampled to the image (no gradient).
- `overlay(image, heatmap)`, `save_explanation_grid(path, images, maps, ...)`,
  `prediction_captions(...)`, `save_png(...)`: OpenCV overlays and grid PNGs.
- `pointing_game(maps, boxes)`, `energy_in_box(maps, boxes)`,
  `box_area_share(boxes, size)`, `map_correlation(a, b)`: faithfulness
  against known lesion boxes.
- `explain_report(model, images, labels, boxes, out_dir)`: all of the above
  on held-out images: a grid PNG, a JSON file and per-method scores.
- `read_image(path, channels=3)`: one file at its own size, a thin alias of
  `medivision_tf.data.io.read_files.read_images` (the one file reader: DICOM, TIFF,
  16-bit PNG included, decoded as in training);
  `explain_images(model, images, out_dir, method=..., verbose="auto")`: what
  `medivision explain` runs on image files (overlays + grid PNGs, a tqdm bar
  on stderr above 8 images; with trust values the calibrated probability,
  prediction set and OOD flag `medivision predict` gives);
  `map_note(model, heatmap, method)`: why a map is empty, or `""`.
- `explain_volume(model, path, out_dir, method=..., top_slices=9)`: a NIfTI
  volume (or a multi-frame DICOM with the model's `frames="all"`): the
  overlays of the slices that speak most for the volume's class
  (`<name>_slice<NNN>_<method>.png`), their montage
  (`<name>_volume_<method>.png`, `save_montage`) and every selected slice's
  scores (`<name>_slices.csv`); `is_volume(model, path)` tells which files
  it takes.

`gradcam_heatmaps`, `explain` (but Score-CAM and LayerCAM), `attention_maps`,
the faithfulness scores, overlays and `explain_report` run on every Keras
backend; what reads image files (`read_image`, `explain_images`,
`explain_volume`, `is_volume`) runs on TensorFlow only and says so
(`medivision_tf.backend.BackendError`) on JAX and PyTorch.

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

import importlib

#: The explanation methods of `explain` (no TensorFlow import needed to list them).
METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "attention")

_EXPORTS = {
    "spatial_layer_names": "_checks",
    "box_area_share": "faithfulness",
    "energy_in_box": "faithfulness",
    "map_correlation": "faithfulness",
    "pointing_game": "faithfulness",
    "explain_images": "files",
    "map_note": "files",
    "read_image": "files",
    "gradcam_heatmaps": "gradcam",
    "attention_maps": "methods",
    "explain": "methods",
    "overlay": "overlays",
    "prediction_captions": "overlays",
    "save_explanation_grid": "overlays",
    "save_montage": "overlays",
    "save_png": "overlays",
    "explain_volume": "volumes",
    "is_volume": "volumes",
    "volume_stem": "volumes",
    "explain_report": "report",
}

__all__ = sorted({"METHODS", *_EXPORTS})

# Modules that read image files with TensorFlow (the data pipeline's reader).
_TENSORFLOW_ONLY = ("files", "volumes")


def __getattr__(name):
    # Imported on first use, so `medivision --help` lists METHODS without TensorFlow.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module in _TENSORFLOW_ONLY:
        from medivision_tf.backend import require_tensorflow

        require_tensorflow(
            f"medivision_tf.explain.{name} (reads image files with TensorFlow)",
            instead="On this backend pass images as arrays to explain(), attention_maps() "
            "or explain_report()",
        )
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
