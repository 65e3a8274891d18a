"""Reading shards as `tf.data` examples with TensorFlow ops only (no Python functions: TPU-ready).

`make_dataset` calls `shard_examples` for a table from `load_shards`; see
`medivision_tf.data.shards` for the format.

Example:

```python
import tensorflow as tf
from medivision_tf.data.io.finish import finish_image
from medivision_tf.data.shards.folder import load_shards
from medivision_tf.data.shards.reader import python_ops, record_functions, shard_examples

table = load_shards("shards/")
finish = lambda image: finish_image(image, (32, 32), 1, dtype=tf.uint8)
ds = shard_examples(table, finish, image_size=(32, 32), channels=1, shuffle=True, seed=0)
parse, keep, decode_record = record_functions(table, finish, (32, 32), 1)
assert python_ops(parse, tf.TensorSpec([], tf.string)) == []
```
"""

import json
import os

import numpy as np
import tensorflow as tf

from medivision_tf.data.shards.folder import join_path
from medivision_tf.data.sources.table import class_names_of, is_multi_label

# Python-function op types: none may appear in the shard reader's graph.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc", "NumpyFunction"})


def _num_workers():
    """Workers of the `TF_CONFIG` cluster (chief included), 1 without one."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def record_functions(table, finish, image_size, channels):
    """The per-record functions of the shard reader (graph ops only).

    Args:
        table: a shard sample table (`load_shards`, or rows of one).
        finish: `image -> model-ready uint8 image` (`io.finish.finish_image`
            with the pipeline's options), used when the stored size or
            channels differ from the requested ones.
        image_size: `(height, width)` requested.
        channels: channels requested.

    Returns:
        `(parse, keep, decode)`: `parse(serialized)` gives `(index, png,
        label)`: a class id (int32) or a float32 multi-hot vector;
        `keep(index, png, label)` is True for the table's rows (None when
        the table holds every row of its shard files: nothing to filter);
        `decode(index, png, label)` gives `(uint8 image, label)`.

    Example:

    ```python
    parse, keep, decode = record_functions(table, finish, (32, 32), 1)
    graph = tf.function(parse).get_concrete_function(tf.TensorSpec([], tf.string)).graph
    ```
    """
    info = table.attrs["shards"]
    multi = is_multi_label(table)
    num_classes = len(class_names_of(table))
    stored_size = info["image_size"]
    stored_channels = int(info["channels"])
    as_stored = stored_size is not None and tuple(stored_size) == tuple(image_size) and (
        stored_channels == channels
    )
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "index": tf.io.FixedLenFeature([], tf.int64)}
    if multi:
        spec["labels"] = tf.io.VarLenFeature(tf.int64)
    else:
        spec["label"] = tf.io.FixedLenFeature([], tf.int64)

    def parse(serialized):
        features = tf.io.parse_single_example(serialized, spec)
        if multi:
            ids = tf.sparse.to_dense(features["labels"])
            label = tf.minimum(tf.reduce_sum(tf.one_hot(ids, num_classes), axis=0), 1.0)
        else:
            label = tf.cast(features["label"], tf.int32)
        return features["index"], features["image"], label

    keep = None
    per_file = info.get("counts") or {}
    files = set(table["shard"])
    if len(table) != sum(per_file.get(f, -1) for f in files):  # a subset of the rows
        mask = np.zeros(int(info["num_examples"]), bool)
        mask[table["index"].to_numpy(int)] = True
        mask = tf.constant(mask)

        def keep(index, png, label):
            return tf.gather(mask, index)

    def decode(index, png, label):
        image = tf.io.decode_png(png, channels=stored_channels)
        if as_stored:
            image.set_shape([*image_size, channels])
        else:
            image = finish(image)
        return image, label

    return parse, keep, decode


def shard_examples(table, finish, *, image_size, channels, shuffle=False, seed=0,
                   shuffle_buffer=None, cycle_length=16, by_file=True):
    """Unbatched `(uint8 image, label)` examples of a shard table's rows.

    Shard files holding the table's rows are read in parallel
    (`interleave`); with `shuffle` their order is reshuffled each epoch and
    records pass a seeded shuffle buffer before decoding; without it they
    are read one file after another. Under a `TF_CONFIG` cluster the
    dataset is sharded by file (`AutoShardPolicy.FILE`) when there are at
    least as many files as workers, else by data.

    Args:
        table: a shard sample table (see `load_shards`).
        finish: see `record_functions`.
        image_size: `(height, width)`.
        channels: 1 or 3.
        shuffle: shuffle files and records (reshuffled each epoch).
        seed: shuffle seed.
        shuffle_buffer: records in the shuffle buffer (default: all rows, at
            most 2048).
        cycle_length: shard files read at once.
        by_file: allow sharding by file across workers (False: by data; a
            cache between reader and model needs that).

    Returns:
        A `tf.data.Dataset`.

    Example:

    ```python
    ds = shard_examples(load_shards("shards/"), finish, image_size=(32, 32), channels=1)
    ```
    """
    info = table.attrs["shards"]
    files = sorted(set(table["shard"]))
    paths = [join_path(info["folder"], f) for f in files]
    parse, keep, decode_record = record_functions(table, finish, image_size, channels)
    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=1 << 20),
        cycle_length=min(len(paths), cycle_length) if shuffle else 1,
        block_length=1,
        **({"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True} if shuffle else {}),
    )
    if shuffle:  # serialized records: cheap to hold
        buffer = min(len(table), shuffle_buffer or 2048)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if keep is not None:
        dataset = dataset.filter(keep)
    dataset = dataset.map(decode_record, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policy.FILE if by_file and len(paths) >= _num_workers() else policy.DATA
    )
    return dataset.with_options(options)


def python_ops(function, *specs):
    """The Python-function op types (`PyFunc`, `EagerPyFunc`, ...) in the
    graph of `function` traced on `specs`, nested functions included (empty:
    the function runs on TPU workers).

    Example:

    ```python
    assert not python_ops(parse, tf.TensorSpec([], tf.string))
    ```
    """
    graph = tf.function(function).get_concrete_function(*specs).graph
    graph_def = graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for fn in graph_def.library.function:
        types.update(node.op for node in fn.node_def)
    return sorted(types & PYTHON_OPS)
