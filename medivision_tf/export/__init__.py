"""SavedModel export in TF Serving's layout, with three serving signatures.

`export_saved_model(model, "saved_models/NAME")` writes
`saved_models/NAME/VERSION/` (the next integer version unless one is given), a
SavedModel that TF Serving, KServe and `tf.saved_model.load` read without Keras
or this package. Its signatures:

| signature         | inputs                                   | outputs                                         |
|-------------------|------------------------------------------|-------------------------------------------------|
| `serving_default` | `image` float32 `(batch, H, W, C)`, 0-255 | `probabilities` `(batch, classes)`              |
| `predict_images`  | `image_bytes` string `(batch,)` JPEG/PNG/BMP/GIF | `probabilities`, `class_index` int64, `class_name` string; with trust values (`medivision_tf.trust`): `calibrated_probabilities`, `prediction_set` bool `(batch, classes)`, `ood_score` float32, `out_of_distribution` bool |
| `explain`         | `image` float32 `(batch, H, W, C)`, 0-255 | `probabilities`, `class_index`, `heatmap` `(batch, H, W)` in [0, 1] (Grad-CAM of the top class) |

`predict_images` decodes and resizes inside the graph (any image size, gray or
color) with the training pipeline's own `medivision_tf.data.io.finish.finish_image`
(channels, letterbox resize, rounding), so a client sends the file bytes as TF Serving's REST API expects them:
`{"instances": [{"b64": "<base64 of the PNG>"}], "signature_name":
"predict_images"}`.

What a client needs besides the graph is stored in the export, readable without
Keras:
- `assets.extra/medivision.json`: class names, input shape, multi-label flag,
  signature names and the full `ModelConfig` (`model_config`: the
  `build_medivision` arguments) as plain JSON (no TensorFlow needed);
  `assets.extra/labels.txt` has one class name per line;
  `assets.extra/tf_serving_warmup_requests` holds TF Serving's warm-up
  requests (one `PredictionLog` per signature, replayed at load). `assets.extra/` is the SavedModel folder meant
  for files that sit beside the graph without being loaded by it.
- on the object loaded by `tf.saved_model.load`: `loaded.class_names[0]`
  (string tensor) and `loaded.input_shape[0]` (int32 `[H, W, C]`).

`export_tflite(model, "lesions.tflite", quantization="float16" | "dynamic" |
None)` writes a TFLite (LiteRT) file for on-device use (batch 1, builtin ops).
ONNX is not offered: tf2onnx is not a dependency of this package.

Example:

```python
import numpy as np
import tensorflow as tf
import medivision_tf
from medivision_tf.export import export_saved_model, read_export_metadata

model = medivision_tf.build_medivision(
    3, backbone="smallcnn", input_shape=(64, 64, 1), weights=None
)
path = export_saved_model(model, "saved_models/lesions")   # saved_models/lesions/1
loaded = tf.saved_model.load(path)
out = loaded.signatures["serving_default"](image=tf.zeros((2, 64, 64, 1)))
out["probabilities"].shape                                  # (2, 3)
read_export_metadata("saved_models/lesions")["class_names"]  # ['class_0', ...]
```

The work is done in five modules, whose public names are re-exported here:
`saved_model` (`export_saved_model`, `export_for_serving`), `signatures`
(the three endpoints), `layout` (version folders, metadata), `warmup` (TF
Serving's warm-up file) and `tflite` (`export_tflite`).
"""

from medivision_tf.backend import INSTEAD, require_tensorflow

# Before TensorFlow is imported: on JAX or PyTorch, one clear error (docs/backends.md).
require_tensorflow(
    "medivision_tf.export (SavedModel and TFLite export)",
    INSTEAD["export"],
)

from medivision_tf.export.layout import (  # noqa: F401
    LABELS_FILE,
    METADATA_DIR,
    METADATA_FILE,
    SIGNATURES,
    WARMUP_FILE,
    existing_versions,
    latest_version_path,
    next_version,
    read_export_metadata,
)
from medivision_tf.export.saved_model import (  # noqa: F401
    ServingExport,
    export_for_serving,
    export_saved_model,
)
from medivision_tf.export.tflite import TFLITE_QUANTIZATIONS, export_tflite  # noqa: F401
from medivision_tf.export.warmup import warmup_inputs, write_warmup_requests  # noqa: F401
