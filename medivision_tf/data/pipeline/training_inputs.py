"""What `medivision_tf.train` trains on: datasets built from any data, in one pass.

`training_inputs` turns a config's `source`, `(images, labels)` arrays, sample
tables or a user's `tf.data.Dataset` into the batched `(float32 images,
one-hot | multi-hot targets)` datasets `fit` takes, with the epoch length,
the class names, the class weights and the held-out test table. The source
is read, scanned, split and checked once (`checks.source_splits.load_source`);
tables go through `make_dataset` (uint8 until batched, resized, seeded
shuffle, augmentation, cache, the config's one `DecodeOptions`); a user's
dataset is used as given.

Example:

```python
from medivision_tf.data.pipeline.training_inputs import training_inputs
from medivision_tf.training import TrainConfig

inputs = training_inputs(TrainConfig(source="data/chest_xray"), global_batch=32)
inputs.train, inputs.steps, inputs.class_names, len(inputs.test_table)
```
"""

import dataclasses
import math
import typing

import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.config import check_class_names
from medivision_tf.data.checks.input_report import merged_report, scan_inputs, write_input_report
from medivision_tf.data.checks.leakage import check_duplicates, checked_together, leakage_of
from medivision_tf.data.checks.source_splits import load_source
from medivision_tf.data.checks.splits import class_weights
from medivision_tf.data.pipeline.dataset import make_dataset
from medivision_tf.data.sources.arrays import from_numpy
from medivision_tf.data.sources.table import class_names_of, is_multi_label

def to_targets(labels, num_classes, multi_label):
    if multi_label:
        return tf.cast(labels, tf.float32)
    return tf.one_hot(tf.cast(labels, tf.int32), num_classes)


def with_targets(dataset, num_classes, multi_label):
    """(images, class ids | multi-hot) batches -> (float32 images, one-hot |
    multi-hot targets), auto-sharded by data across workers (shard folders: by
    file when there are enough files), prefetched."""
    dataset = dataset.map(
        lambda x, y: (tf.cast(x, tf.float32), to_targets(y, num_classes, multi_label)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    policy = tf.data.experimental.AutoShardPolicy
    # A shard reader has chosen its policy already (FILE when there are enough files).
    if dataset.options().experimental_distribute.auto_shard_policy == policy.AUTO:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = policy.DATA
        dataset = dataset.with_options(options)
    return dataset.prefetch(tf.data.AUTOTUNE)


def user_dataset(data, batch_size, num_classes, multi_label):
    """A user's `tf.data.Dataset` of (images, labels) -> global batches with
    one-hot targets. Used as given: no resize, augmentation or cache."""
    spec = data.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(
            "Training datasets must yield (images, labels) batches. "
            f"Received element_spec={spec}"
        )
    if len(spec[0].shape) == 3:  # unbatched
        data = data.batch(batch_size)
    else:
        data = data.rebatch(batch_size)
    return with_targets(data, num_classes, multi_label)


def sample_table(data, class_names, config, what):
    """`(images, labels)` arrays or a sample table -> a sample table that
    `table_dataset` reads (arrays via `medivision_tf.data.from_numpy`: uint8
    pixels, no float32 copy)."""

    if isinstance(data, pd.DataFrame):
        table = data
        if class_names is not None:
            check_class_names(class_names, class_names_of(table), what)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
        labels = np.asarray(labels)
        if class_names is None:
            multi = labels.ndim == 2 and labels.shape[1] > 1
            count = labels.shape[1] if multi else int(labels.max()) + 1 if labels.size else 0
            class_names = [f"class_{i}" for i in range(count)]
        table = from_numpy(images, labels, class_names=class_names)
    else:
        raise TypeError(
            f"`{what}` must be an (images, labels) pair of arrays, a sample table "
            "(pandas DataFrame from medivision_tf.data) or a tf.data.Dataset of "
            f"(images, labels). Received: {type(data).__name__}"
        )
    if table.empty:
        raise ValueError(f"`{what}` has no images.")
    if is_multi_label(table) != config.multi_label:
        raise ValueError(
            f"`{what}` has {'multi-hot' if is_multi_label(table) else 'single-label'} "
            f"labels but the config has multi_label={config.multi_label}."
        )
    return table


def label_array(dataset):
    """The labels of a user's tf.data dataset, for class weights. Reads the
    whole dataset (images included): only used when no sample table is
    available (sources and arrays have one)."""
    labels = [np.asarray(y) for _, y in dataset]
    return np.concatenate([l.reshape(-1) if l.ndim <= 1 else l for l in labels])


def table_dataset(table, config, *, training, batch_size, repeat=False,
                  augment_in_pipeline=True):
    """A batched dataset of (images, labels) from a sample table.

    `medivision_tf.data.make_dataset` with the config's `image_size`,
    `channels`, `seed`, `augment` (training only), `cache` and decode options
    (`config.decode_options()`, the `DecodeOptions` the model records):
    images are resized (aspect kept, padded) and kept uint8 until batched.

    Args:
        table: a sample table (from a source, `load_source` or
            `medivision_tf.data.from_numpy`).
        config: a `TrainConfig`.
        training: shuffle each epoch and augment (when `config.augment`).
        batch_size: images per batch (`train` passes the global batch).
        repeat: repeat forever (reshuffled each pass); `fit` then needs
            `steps_per_epoch`.
        augment_in_pipeline: False when the model augments instead
            (`augment_on="model"`).

    Returns:
        A `tf.data.Dataset` of float32 images `(batch, size, size, channels)`
        in 0-255 and class ids (or multi-hot labels).

    Example:

    ```python
    splits, names = load_source(config)
    train_ds = table_dataset(splits["train"], config, training=True, batch_size=32)
    ```
    """

    return make_dataset(
        table,
        image_size=config.image_size,
        channels=config.channels,
        batch_size=batch_size,
        training=training,
        shuffle=training,
        seed=config.seed,
        # augment_on="model": the training model augments (see training.loop).
        augment=config.augment and training and augment_in_pipeline,
        cache=config.cache,
        repeat=repeat,
        decode=config.decode_options(),
        # Decoded arrays cannot fail to decode: keep the length known to tf.data.
        skip_errors="image" not in table.columns,
    )


# === Training ===


@dataclasses.dataclass
class TrainingInputs:
    """The datasets and facts `train` needs, from `training_inputs`.

    Attributes:
        train: repeating (for tables) dataset of `(images, targets)` batches.
        val: validation dataset or None.
        steps: steps per epoch (None: a user's dataset of unknown length).
        class_names: the classes, in label-id order.
        class_weight: `{class id: weight}` or None.
        train_table, val_table, test_table: the sample tables (None for a
            user's tf.data dataset, or an empty split).
        global_batch: the batch size of `train`.
        num_classes, multi_label: the targets' shape (for `train_from_epoch`).

    Example:

    ```python
    inputs = training_inputs(config, global_batch=32)
    model.fit(inputs.train_from_epoch(3), steps_per_epoch=inputs.steps, epochs=5,
              initial_epoch=3)    # the batches an uninterrupted run has at epoch 3
    ```
    """

    train: tf.data.Dataset
    val: typing.Optional[tf.data.Dataset]
    steps: typing.Optional[int]
    class_names: list
    class_weight: typing.Optional[dict] = None
    train_table: typing.Optional[pd.DataFrame] = None
    val_table: typing.Optional[pd.DataFrame] = None
    test_table: typing.Optional[pd.DataFrame] = None
    report: typing.Optional[dict] = None
    global_batch: typing.Optional[int] = None
    num_classes: typing.Optional[int] = None
    multi_label: bool = False
    leakage: typing.Optional[dict] = None

    def train_from_epoch(self, epoch):
        """The training dataset as an uninterrupted `fit` reaches it at `epoch`.

        Tables give a repeated stream keyed by pass (see `make_dataset`'s
        `start_at`): each `fit` of a run (each phase, each resume) starts
        where the run's earlier epochs stopped, so a resumed run trains on
        the same batches as one never stopped. A user's dataset, and shards,
        are returned as given (they restart from their first batch).

        Args:
            epoch: epochs already run (0-based index of the next epoch).
        """
        raw = getattr(self.train, "raw", None)
        if raw is None or not hasattr(raw, "start_at") or not self.steps:
            return self.train
        # A new dataset each call, even at epoch 0: no iterator made of
        # another (a calibration, an earlier phase) changes what this one gives.
        stream = raw.start_at(int(epoch) * self.steps * self.global_batch)
        return with_targets(stream, self.num_classes, self.multi_label)

    def write_report(self, run_dir, say=print):
        """Writes the run's input files (`split.csv`, `skipped_files.csv`,
        `inputs.json`, `leaking_pairs.csv` when leakage was allowed) and says
        "N of M images used": `checks.input_report.write_input_report` (`say`:
        a print function, or None for silence)."""
        write_input_report(
            run_dir, {"train": self.train_table, "val": self.val_table, "test": self.test_table},
            self.class_names, self.report or self._unscanned_report(), self.leakage, say)

    def _unscanned_report(self):
        """Counts for inputs no scan counted: a user's tf.data dataset (its
        length is not known: None) or shard tables (their rows, checked
        when the shards were written)."""
        if self.train_table is None:
            return {"num_images": None, "num_used": None, "skipped": []}
        count = sum(len(t) for t in (self.train_table, self.val_table, self.test_table)
                    if t is not None)
        return {"num_images": count, "num_used": count, "skipped": []}


def training_inputs(config, *, global_batch, train_data=None, val_data=None, class_names=None,
                    augment_in_pipeline=True):
    """Builds the training and validation datasets of a run in one pass.

    Args:
        config: a `TrainConfig`.
        global_batch: images per step over all replicas.
        train_data: None (read `config.source`, split by `load_source`),
            `(images, labels)` arrays, a sample table or a `tf.data.Dataset`
            of `(images, labels)`.
        val_data: validation data in any of these forms (optional).
        class_names: the classes of `train_data` (required with a tf.data
            dataset; checked against a source's or table's classes).
        augment_in_pipeline: False when the training model augments
            (`augment_on="model"`): the pipeline then only decodes and resizes.

    Returns:
        A `TrainingInputs`.

    Raises:
        ValueError: no data, classes that do not match, a multi-label mismatch.

    Example:

    ```python
    inputs = training_inputs(config, global_batch=64, train_data=(images, labels))
    ```
    """
    num_test = test_table = None
    if train_data is None:
        splits, source_classes = load_source(config)
        if class_names is not None:
            check_class_names(class_names, source_classes, "source")
        class_names = source_classes
        train_data = splits["train"]
        val_data = splits["val"] if len(splits["val"]) else None
        test_table = splits["test"] if len(splits["test"]) else None
    if isinstance(train_data, tf.data.Dataset):
        if class_names is None:
            raise ValueError("Pass class_names with a tf.data training dataset.")
        train_table = None
    else:
        train_table = sample_table(train_data, class_names, config, "train_data")
        train_table = scan_inputs(train_table, "train_data")
        if class_names is None:
            class_names = class_names_of(train_table)
    class_names = [str(c) for c in class_names]
    num_classes = len(class_names)

    if train_table is not None:
        # make_dataset batches at the global batch already (no rebatch). It skips
        # undecodable files, so its length is unknown to tf.data: the epoch
        # length comes from the table, and the data repeats so that an epoch of
        # `steps` batches never runs dry (Keras would cut the next epoch short).
        raw_train = table_dataset(train_table, config, training=True, batch_size=global_batch,
                                  repeat=True, augment_in_pipeline=augment_in_pipeline)
        train_ds = with_targets(raw_train, num_classes, config.multi_label)
        train_ds.raw = raw_train  # for train_from_epoch
        steps = config.steps_per_epoch or math.ceil(len(train_table) / global_batch)
    else:
        train_ds = user_dataset(train_data, global_batch, num_classes, config.multi_label)
        count = int(train_ds.cardinality())
        steps = config.steps_per_epoch or (count if count > 0 else None)
    val_table = None
    if val_data is None:
        val_ds = None
    elif isinstance(val_data, tf.data.Dataset):
        val_ds = user_dataset(val_data, global_batch, num_classes, config.multi_label)
    else:
        val_table = sample_table(val_data, class_names, config, "val_data")
        val_table = scan_inputs(val_table, "val_data")
        val_ds = with_targets(
            table_dataset(val_table, config, training=False, batch_size=global_batch),
            num_classes, config.multi_label,
        )
    # Tables given here (not split by load_source, which checked its own):
    # hashed once, a val copy of a training image is refused.
    if checked_together(train_table, val_table, test_table):
        leakage = leakage_of(train_table)
    else:
        leakage = check_duplicates(config, train_table, val_table, test_table,
                                   "train_data/val_data")
    weights = None
    if config.class_weight == "balanced":
        # One rule for every kind of data (a class without images is refused).
        labels = train_table if train_table is not None else label_array(train_data)
        weights = class_weights(labels, num_classes)
    return TrainingInputs(
        train=train_ds, val=val_ds, steps=steps, class_names=class_names,
        class_weight=weights, train_table=train_table, val_table=val_table,
        test_table=test_table, report=merged_report(train_table, val_table, test_table),
        global_batch=global_batch, num_classes=num_classes, multi_label=config.multi_label,
        leakage=leakage,
    )
