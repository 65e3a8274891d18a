"""MediVision-TF: a hybrid CNN-LSTM-attention classifier for medical images.

Example:

```python
import medivision_tf

model = medivision_tf.build_medivision(4)   # EfficientNetB0, ImageNet weights
```

The model core (`build_medivision`, `build_pooling_baseline`, `load_model`,
`set_backbone_trainable`, `calibrate_batchnorm`, `attention_weights`, ...)
and `medivision_tf.explain`'s Grad-CAM, Grad-CAM++ and attention maps run on
every Keras 3 backend (TensorFlow, JAX, PyTorch) without importing
TensorFlow elsewhere; what is built on TensorFlow (`data`, `training`,
`evaluation`, `prediction`, `export`, serving, the command line) raises
`medivision_tf.backend.BackendError` on JAX and PyTorch (docs/backends.md).

Names and the pipeline-stage modules (`medivision_tf.data`, `.training`,
`.evaluation`, `.explain`, `.export`) are imported on first use, so the
command line starts without TensorFlow and imports it only for the command
that needs it. The custom layers that `.keras` files need are registered by
`medivision_tf.load_model` and every model function; when Keras is already
imported, `import medivision_tf` registers them at once, so
`import keras, medivision_tf; keras.saving.load_model(path)` works as well.
"""

import importlib
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "available_backbones": "medivision_tf.backbones",
    "ModelConfig": "medivision_tf.config",
    "attention_weights": "medivision_tf.model",
    "backbone_layers": "medivision_tf.model",
    "build_medivision": "medivision_tf.model",
    "build_pooling_baseline": "medivision_tf.model",
    "calibrate_batchnorm": "medivision_tf.model",
    "get_class_names": "medivision_tf.model",
    "get_model_config": "medivision_tf.model",
    "is_multi_label": "medivision_tf.model",
    "load_model": "medivision_tf.model",
    "sequence_grid": "medivision_tf.model",
    "set_backbone_trainable": "medivision_tf.model",
    "evaluate_model": "medivision_tf.evaluation",
    "export_saved_model": "medivision_tf.export",
    "export_tflite": "medivision_tf.export",
    "read_export_metadata": "medivision_tf.export",
    "predict_files": "medivision_tf.prediction",
    "TrainConfig": "medivision_tf.training.config",
    "train": "medivision_tf.training.loop",
}
# The pipeline stages (`serving` is left out: it needs the optional kserve).
_MODULES = ("data", "evaluation", "explain", "export", "training", "prediction", "model")

__all__ = sorted(set(_EXPORTS) | set(_MODULES))

# The parts built on TensorFlow: on another backend, a BackendError names what was
# asked for (before the module's own guard or any TensorFlow import).
_TENSORFLOW_ONLY = {
    "medivision_tf.data": "data",
    "medivision_tf.evaluation": "evaluation",
    "medivision_tf.export": "export",
    "medivision_tf.prediction": "prediction",
    "medivision_tf.training.loop": "training",
}


if "keras" in sys.modules:  # a Keras user: register the layers now (Keras is loaded)
    importlib.import_module(f"{__name__}.layers")


def __getattr__(name):
    path = f"{__name__}.{name}" if name in _MODULES else _EXPORTS.get(name)
    if path in _TENSORFLOW_ONLY:
        from medivision_tf.backend import INSTEAD, require_tensorflow

        require_tensorflow(f"medivision_tf.{name}", INSTEAD[_TENSORFLOW_ONLY[path]])
    if name in _MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    path = _EXPORTS.get(name)
    if path is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
