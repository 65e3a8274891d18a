"""Training: config, strategy and precision, compile, callbacks, run folder, the loop.

| module | its job |
| --- | --- |
| `config` | `TrainConfig`, `load_config` (no TensorFlow import) |
| `distribute` | `choose_strategy`, `choose_precision`, `dtype_policy` |
| `compile` | `make_loss`, `make_optimizer`, `make_metrics`, `compile_model` |
| `callbacks` | best checkpoint, epoch backup, NaN stop (public Keras API) |
| `run_dir` | `state.json`, atomic writes, history, `finished_run` |
| `loop` | `train`, `train_and_evaluate`, `TrainResult` |

The data a run trains on is built by `medivision_tf.data.pipeline.training_inputs`.

Example:

```python
from medivision_tf.data import make_synthetic_lesions
from medivision_tf.training import TrainConfig, train

data = make_synthetic_lesions(256, 64, 3, seed=0)
config = TrainConfig(backbone="smallcnn", weights=None, image_size=64, channels=1,
                     epochs=2, fine_tune_epochs=2, batch_size=32)
result = train(config, train_data=(data.images, data.labels),
               class_names=data.class_names, run_dir="runs/example")
```

Names are imported on first use, so `from medivision_tf.training import
TrainConfig` does not start TensorFlow. `TrainConfig` and `load_config` work
on every Keras backend; the rest is built on TensorFlow (tf.distribute,
tf.data) and raises `medivision_tf.backend.BackendError` on JAX and PyTorch.
"""

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "load_config": "config",
    "STRATEGIES": "config",
    "OPTIMIZERS": "config",
    "LR_SCHEDULES": "config",
    "LOSSES": "config",
    "CLASS_WEIGHTS": "config",
    "MIXED_PRECISION": "config",
    "choose_strategy": "distribute",
    "choose_precision": "distribute",
    "dtype_policy": "distribute",
    "worker_role": "distribute",
    "make_loss": "compile",
    "make_optimizer": "compile",
    "make_metrics": "compile",
    "compile_model": "compile",
    "make_callbacks": "callbacks",
    "BestCheckpoint": "callbacks",
    "EpochBackup": "callbacks",
    "StopOnNaN": "callbacks",
    "RunState": "run_dir",
    "finished_run": "run_dir",
    "train": "loop",
    "train_and_evaluate": "loop",
    "resolve_config": "loop",
    "TrainResult": "loop",
    "load_source": "medivision_tf.data.checks.source_splits",
    "table_dataset": "medivision_tf.data.pipeline.training_inputs",
}

__all__ = sorted(_EXPORTS)


_MODULES = ("config", "distribute", "compile", "callbacks", "run_dir", "loop")


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    path = module if module.startswith("medivision_tf.") else f"{__name__}.{module}"
    if module != "config":
        from medivision_tf.backend import INSTEAD, require_tensorflow

        require_tensorflow(f"medivision_tf.training.{name}", INSTEAD["training"])
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
