"""Which Keras backend runs, and the one error for what runs on TensorFlow only.

The model core (`build_medivision`, `build_pooling_baseline`, `load_model`,
`set_backbone_trainable`, `calibrate_batchnorm`, `attention_weights`) and
Grad-CAM / Grad-CAM++ / attention maps (`medivision_tf.explain.explain`,
`gradcam_heatmaps`) run on every Keras 3 backend: TensorFlow, JAX and
PyTorch. Keras fixes its backend when it is first imported (`KERAS_BACKEND`,
else `~/.keras/keras.json`, else TensorFlow). What is built on TensorFlow
itself (tf.data pipelines and the image-file readers, SavedModel / TFLite
export, the TF Serving server, tf.distribute training, evaluation and
prediction on files, the command line, Score-CAM / LayerCAM from
tf-keras-vis) calls `require_tensorflow` first: under another backend it
raises `BackendError`, naming the backend and what to do, before any
TensorFlow import (so on a machine without TensorFlow the user sees this,
not an `ImportError`). The table is in `docs/backends.md`.

Example:

```python
import os
os.environ["KERAS_BACKEND"] = "jax"      # before Keras is imported

import medivision_tf
from medivision_tf.backend import BackendError, current_backend

current_backend()                         # 'jax'
model = medivision_tf.build_medivision(3, backbone="smallcnn",
                                       input_shape=(64, 64, 1), weights=None)
try:
    medivision_tf.export_saved_model(model, "saved_models/x")
except BackendError as error:
    print(error)   # ...runs on the TensorFlow backend only; Keras runs on 'jax'...
```
"""

import os

#: The Keras 3 backends the model core is tested on.
BACKENDS = ("tensorflow", "jax", "torch")


#: What to use instead on JAX and PyTorch, per TensorFlow-only part (the
#: sentence `require_tensorflow` adds to its message).
INSTEAD = {
    "data": "On this backend feed the model NumPy arrays or a keras.utils.PyDataset "
    "(on PyTorch also a torch.utils.data.DataLoader)",
    "export": "Save the model as a .keras file (model.save) and export that file from a "
    "process on the TensorFlow backend: .keras files load on every backend",
    "serving": "Serve an export made on the TensorFlow backend; .keras files load on every "
    "backend",
    "training": "On this backend compile and fit the model with Keras (model.compile, "
    "model.fit) on NumPy arrays or a keras.utils.PyDataset",
    "evaluation": "On this backend run model.predict on arrays and score the probabilities",
    "prediction": "On this backend run model.predict on arrays of raw 0-255 pixels",
    "cli": "On this backend use the Python API",
}

#: How to reach the TensorFlow backend, per caller kind.
_REMEDY = (
    "To use it, start Python with KERAS_BACKEND=tensorflow (TensorFlow installed); "
    "Keras cannot switch backends once imported."
)
_CLI_REMEDY = "Run the command with KERAS_BACKEND unset or set to tensorflow."


class BackendError(RuntimeError):
    """A TensorFlow-only feature was called while Keras runs on another backend."""


def current_backend():
    """The backend Keras runs on: `"tensorflow"`, `"jax"`, `"torch"` (or `"numpy"`).

    Imports Keras (which, on the TensorFlow backend, imports TensorFlow).
    """
    import keras

    return keras.config.backend()


def require_tensorflow(feature, instead=None, command_line=False):
    """Raises `BackendError` unless Keras runs on TensorFlow.

    Call it before importing TensorFlow, so that a machine with JAX or
    PyTorch and no TensorFlow gets this message instead of an ImportError.

    Args:
        feature: what was called, as the user knows it, e.g.
            `"medivision_tf.data.make_dataset (tf.data)"`.
        instead: what works on every backend instead, as a sentence, or None.
        command_line: the caller is the `medivision` command (the remedy is
            an environment variable for the command, not for Python).

    Raises:
        BackendError: Keras runs on another backend; the message names it,
            where that choice came from, and what to do.
    """
    backend = current_backend()
    if backend == "tensorflow":
        return
    if os.environ.get("KERAS_BACKEND"):
        source = f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}"
    else:
        source = "from keras.json in KERAS_HOME, default ~/.keras"
    message = (
        f"{feature} runs on the TensorFlow backend only; Keras runs on {backend!r} "
        f"({source}). "
    )
    if instead:
        message += instead.rstrip(".") + ". "
    message += (_CLI_REMEDY if command_line else _REMEDY) + " See docs/backends.md."
    raise BackendError(message)
