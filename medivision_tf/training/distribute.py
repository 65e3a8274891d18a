"""Where training runs: the `tf.distribute` strategy and the mixed-precision policy.

Example:

```python
from medivision_tf.training import choose_precision, choose_strategy, dtype_policy

strategy = choose_strategy("auto")     # TPU, TF_CONFIG cluster, GPUs or default
with strategy.scope(), dtype_policy(choose_precision("auto", strategy)):
    ...                                # build and compile the model here
```
"""

from medivision_tf.backend import INSTEAD, require_tensorflow

# Before TensorFlow is imported: on JAX or PyTorch, one clear error (docs/backends.md).
require_tensorflow(
    "medivision_tf.training.distribute (tf.distribute)",
    INSTEAD["training"],
)

import contextlib
import json
import os

import keras
import tensorflow as tf

from medivision_tf.training.config import MIXED_PRECISION, STRATEGIES

def _tf_config_cluster():
    """The cluster named by the TF_CONFIG environment variable, or None."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cluster = json.loads(raw).get("cluster") or {}
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"TF_CONFIG is not a JSON object with a 'cluster': {raw!r}") from None
    tasks = sum(len(addresses) for addresses in cluster.values())
    return cluster if tasks > 1 else None


def _tpu_resolver():
    """A connected TPUClusterResolver, or None when there is no TPU.

    Physical devices only: listing logical ones would start the TF context,
    after which MultiWorkerMirroredStrategy can no longer be set up.
    """
    if not (
        tf.config.list_physical_devices("TPU")
        or os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
    ):
        return None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, tf.errors.NotFoundError):
        return None


def choose_strategy(name="auto"):
    """Returns the `tf.distribute.Strategy` to build, compile and fit under.

    Create it first thing in the program: MultiWorkerMirroredStrategy and
    TPUs must be set up before TensorFlow runs any other operation.

    Args:
        name: `"auto"` picks, in this order: TPUStrategy when a TPU is
            reachable, MultiWorkerMirroredStrategy when TF_CONFIG names a
            cluster of several tasks, MirroredStrategy when there are several
            GPUs, else the default strategy. `"default"`,
            `"one_device"`, `"mirrored"` (all GPUs, or all logical CPU
            devices when there is no GPU), `"multi_worker"` and `"tpu"` force
            one.

    Returns:
        A `tf.distribute.Strategy`.

    Example:

    ```python
    strategy = choose_strategy("auto")
    with strategy.scope():
        model = medivision_tf.build_medivision(3, backbone="smallcnn", weights=None,
                                               input_shape=(64, 64, 1))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ```
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"Unknown strategy {name!r}. Choose one of: {', '.join(STRATEGIES)}."
        )
    if name == "auto":
        resolver = _tpu_resolver()
        if resolver is not None:
            return tf.distribute.TPUStrategy(resolver)
        if _tf_config_cluster() is not None:
            return tf.distribute.MultiWorkerMirroredStrategy()
        if len(tf.config.list_physical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("CPU")]
        )
    if name == "multi_worker":
        if _tf_config_cluster() is None:
            raise ValueError(
                "strategy='multi_worker' needs TF_CONFIG naming a cluster of at "
                f"least two tasks. Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = _tpu_resolver()
    if resolver is None:
        raise ValueError("strategy='tpu' but no TPU was found (set TPU_NAME, or use 'auto').")
    return tf.distribute.TPUStrategy(resolver)


def _is_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def choose_precision(mode, strategy):
    """The Keras dtype policy name for `TrainConfig.mixed_precision`.

    Args:
        mode: `"none"`, `"auto"`, `"mixed_float16"` or `"mixed_bfloat16"`.
            `"auto"` gives `mixed_bfloat16` on TPU, `mixed_float16` on GPU and
            `float32` on CPU (where float16 math is slow).
        strategy: the `tf.distribute.Strategy` the model is trained under
            (only used by `"auto"`, to recognise a TPU).

    Returns:
        A Keras dtype policy name, for `keras.config.set_dtype_policy` or
        `dtype_policy`.

    Example:

    ```python
    with dtype_policy(choose_precision("auto", strategy)):
        model = build_medivision(3)
    ```
    """
    if mode not in MIXED_PRECISION:
        raise ValueError(
            f"Unknown mixed_precision {mode!r}. Choose one of: {', '.join(MIXED_PRECISION)}."
        )
    if mode == "none":
        return "float32"
    if mode == "auto":
        if _is_tpu(strategy):
            return "mixed_bfloat16"
        return "mixed_float16" if tf.config.list_logical_devices("GPU") else "float32"
    return mode


@contextlib.contextmanager
def dtype_policy(name):
    """Sets Keras' global dtype policy inside the block, then restores it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def worker_role(strategy):
    """(is_chief, worker name) for multi-worker strategies; (True, None) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True, None
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )
    return chief, f"{task_type}-{task_id}"


# === Losses, optimizers, metrics ===
