"""`export_tflite`: a MediVision model as a TFLite (LiteRT) file for on-device use, optionally quantized.

Example:

```python
from medivision_tf.export import export_tflite

path = export_tflite(model, "saved_models/lesions.tflite", quantization="dynamic")
```
"""

import os

import keras
import tensorflow as tf

from medivision_tf.export.signatures import check_model

TFLITE_QUANTIZATIONS = (None, "float16", "dynamic")


def export_tflite(model, filepath, quantization="float16"):
    """Exports a MediVision model to TFLite (LiteRT), optionally quantized.

    Uses Keras' own `model.export(format="litert")` with a batch-1 input
    signature: with a fixed batch the LSTM converts to builtin TFLite ops only
    (no Flex delegate needed). The class names are written beside the file,
    one per line, in `<filepath without .tflite>.labels.txt`.

    Args:
        model: a model from `build_medivision`.
        filepath: path of the `.tflite` file to write.
        quantization: `"float16"` (weights stored as float16, about half the
            size), `"dynamic"` (dynamic-range: int8 weights, float
            activations, about a quarter of the size) or None (float32).

    Returns:
        The path of the `.tflite` file. Its single signature takes one
        `(1, H, W, C)` float32 image of raw 0-255 pixels and returns the class
        probabilities.

    Example:

    ```python
    import numpy as np
    import tensorflow as tf
    path = export_tflite(model, "saved_models/lesions.tflite", quantization="float16")
    interpreter = tf.lite.Interpreter(path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           np.zeros((1, 64, 64, 1), "float32"))
    interpreter.invoke()
    probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    ```
    """
    if quantization not in TFLITE_QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Choose one of: "
            f"{', '.join(repr(q) for q in TFLITE_QUANTIZATIONS)}."
        )
    input_shape, class_names = check_model(model)
    filepath = os.fspath(filepath)
    if not filepath.endswith(".tflite"):
        raise ValueError(f"`filepath` must end in .tflite. Received: {filepath!r}")
    options = {}
    if quantization is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
    model.export(
        filepath,
        format="litert",
        verbose=False,
        input_signature=[keras.InputSpec(shape=(1,) + input_shape, dtype="float32")],
        **options,
    )
    with open(filepath[: -len(".tflite")] + ".labels.txt", "w") as f:
        f.write("".join(f"{name}\n" for name in class_names))
    return filepath
