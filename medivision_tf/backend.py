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


class BackendError(RuntimeError):
    """A TensorFlow-only feature was called while Keras runs on another backend."""


def current_backend():
    """The backend Keras runs on: `"tensorflow"`, `"jax"`, `"torch"` (or `"numpy"`).

    Imports Keras (which, on the TensorFlow backend, imports TensorFlow).
    """
    import keras

    return keras.config.backend()


def require_tensorflow(feature, instead=None):
    """Raises `BackendError` unless Keras runs on TensorFlow.

    Call it before importing TensorFlow, so that a machine with JAX or
    PyTorch and no TensorFlow gets this message instead of an ImportError.

    Args:
        feature: what was called, as the user knows it, e.g.
            `"medivision_tf.data.make_dataset (tf.data)"`.
        instead: what works on every backend instead, as a sentence, or None.

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
        source = "set in ~/.keras/keras.json"
    message = (
        f"{feature} runs on the TensorFlow backend only; Keras runs on {backend!r} "
        f"({source}). "
    )
    if instead:
        message += instead.rstrip(".") + ". "
    message += (
        "To use it, start Python with KERAS_BACKEND=tensorflow (TensorFlow installed); "
        "Keras cannot switch backends once imported. See docs/backends.md."
    )
    raise BackendError(message)
