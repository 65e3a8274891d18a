"""What `medivision_tf.train` trains on: datasets built from any data, in one pass.

`training_inputs` turns a config's `source`, `(images, labels)` arrays, sample
tables or a user's `tf.data.Dataset` into the batched `(float32 images,
one-hot | multi-hot targets)` datasets `fit` takes, with the epoch length,
the class names, the class weights and the held-out test table. The source
is read once; tables go through `make_dataset` (uint8 until batched, resized,
seeded shuffle, augmentation, cache); a user's dataset is used as given.

Example:

```python
from medivision_tf.data.inputs import training_inputs
from medivision_tf.training import TrainConfig

inputs = training_inputs(TrainConfig(source="data/chest_xray"), global_batch=32)
inputs.train, inputs.steps, inputs.class_names, len(inputs.test_table)
```
"""

import dataclasses
import json
import math
import os
import sys
import typing
import uuid

import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.config import check_class_names
from medivision_tf.data.pipeline import as_table, make_dataset
from medivision_tf.data.volumes import reexpand_volumes
from medivision_tf.data.sources import class_names_of, from_numpy, is_multi_label
from medivision_tf.data.splits import by_split, class_weights, split_table


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


def load_source(config):
    """Reads `config.source` with `medivision_tf.data` and splits it.

    A table with a `split` column (train/val/test folders, MedMNIST `.npz`,
    prepared datasets) keeps its split (`medivision_tf.data.by_split`); when it
    has train and test but no val rows and `val_split > 0`, `val_split` of the
    train rows become the validation split. A table without a split column (or
    with an empty one) is split by `medivision_tf.data.split_table` with
    `val_split`, `test_split`, `seed`. Either way a `group` column keeps each
    patient in one split.

    Args:
        config: a `TrainConfig` with `source` set.

    Returns:
        `(splits, class_names)`: `splits` maps "train", "val", "test" to
        sample tables (val and test may be empty).

    The splits are checked for leakage (`check_duplicates`: a validation or
    test image that duplicates a training image is refused unless
    `config.allow_duplicates`).

    Raises:
        ValueError: no source, a multi-label mismatch, split values other
            than train/val/test (blank ones included), no training rows, or
            leakage between the splits.

    Example:

    ```python
    splits, names = load_source(TrainConfig(source="data/chest_xray"))
    len(splits["train"]), len(splits["val"]), len(splits["test"])
    ```
    """

    if config.source is None:
        raise ValueError("No training data: set the config key 'source' or pass train_data.")
    # A prepared folder (manifest.csv) keeps its split and patient groups.
    table = as_table(config.source)
    decode = config.decode_options()
    table = reexpand_volumes(table, decode.frames, decode.nifti_slices, decode.nifti_axis)
    class_names = class_names_of(table)
    # Every file checked before any split: bad, hostile, duplicated files are
    # counted and reported (run folder and console), never dropped silently.
    table = scan_inputs(table, f"Source {config.source!r}")
    if is_multi_label(table) != config.multi_label:
        raise ValueError(
            f"Source {config.source!r} is {'multi' if is_multi_label(table) else 'single'}"
            f"-label but the config has multi_label={config.multi_label}."
        )
    group = "group" if "group" in table.columns else None
    if "split" in table.columns and table["split"].notna().any():
        values = table["split"]
        blank = values.isna() | (values.astype(str).str.strip() == "")
        if blank.any():
            raise ValueError(
                f"Source {config.source!r}: {int(blank.sum())} of {len(table)} rows have a "
                "blank split value. Give every row one of train, val, test, or drop the "
                "split column to split by val_split/test_split."
            )
        try:
            train, val, test = by_split(table)
        except ValueError as error:
            raise ValueError(f"Source {config.source!r}: {error}") from None
        if val.empty and config.val_split > 0 and len(train):
            train, val, _ = split_table(
                train, val=config.val_split, test=0, seed=config.seed, group_column=group
            )
    else:
        train, val, test = split_table(
            table, val=config.val_split, test=config.test_split, seed=config.seed,
            group_column=group,
        )
    if train.empty:
        raise ValueError(f"Source {config.source!r} has no training images.")
    splits = {"train": train, "val": val, "test": test}
    if not config.multi_label:
        warn_missing_classes(splits, class_names, f"Source {config.source!r}")
    # Every image hashed once: a val/test copy of a training image is refused
    # (or, allowed, recorded).
    leakage = check_duplicates(config, train, val, test, f"Source {config.source!r}")
    return mark_checked(splits, leakage), class_names


def warn_missing_classes(splits, class_names, what="The data"):
    """Warns when a non-empty validation or test split lacks a class of the
    training split: its metrics (ROC AUC, balanced accuracy, calibration)
    are then undefined or misleading. Group splits make it likely: a few
    volumes or patients per class go to one side or the other.

    Example:

    ```python
    warn_missing_classes({"train": train, "val": val, "test": test}, ["a", "b"])
    ```
    """
    import warnings

    trained = set(splits["train"]["label"])
    for name in ("val", "test"):
        part = splits.get(name)
        if part is None or not len(part):
            continue
        missing = sorted(trained - set(part["label"]))
        if missing:
            groups = (f" in {part['group'].nunique()} group(s)" if "group" in part else "")
            warnings.warn(
                f"{what}: the {name} split ({len(part)} images{groups}) has no image of "
                f"{[class_names[i] for i in missing]}: its accuracy, ROC AUC and calibration "
                "say little. Add data, give that split a larger fraction "
                "(val_split/test_split), or split by hand (a split column).",
                stacklevel=3,
            )


REPORT_FILE = "skipped_files.csv"
SUMMARY_FILE = "inputs.json"
SPLIT_FILE = "split.csv"
SPLIT_COLUMNS = ("path", "label", "group", "split")


LEAKS_FILE = "leaking_pairs.csv"


def check_duplicates(config, train, val=None, test=None, what="The data"):
    """Refuses leakage: a val/test image that duplicates a training image.

    `medivision_tf.data.duplicates.check_leakage` on the sample tables (each
    image hashed once, decoded with the config's decode options). With
    `config.allow_duplicates` the leaking pairs are found all the same and
    returned, so the run records them (`inputs.json`, `leaking_pairs.csv`,
    the test report's `metrics.json`) instead of leaving no trace. Shard
    tables are left alone (their images are checked when the shards are
    written from a source), and so are a user's tf.data datasets (None here).

    Returns:
        None when nothing was checked (shards, tf.data), else a dict:
        `checked` (True), `allowed`, `threshold`, `leaking_pairs`, `exact`,
        `near`, `held_out_images` (`{"val": n, "test": n}`), `held_out`
        (the held-out paths per split) and `pairs` (one dict per pair).

    Raises:
        ValueError: naming the count and a few pairs (not allowed).

    Example:

    ```python
    splits, _ = load_source(config)
    check_duplicates(config, splits["train"], splits["val"], splits["test"])
    ```
    """
    from medivision_tf.data.duplicates import check_leakage
    from medivision_tf.data.shards import is_shard_table

    if train is None or is_shard_table(train):
        return None
    val, test = (None if t is None or is_shard_table(t) else t for t in (val, test))
    allowed = bool(config.allow_duplicates)
    try:
        leaks = check_leakage(train, val, test, decode=config.decode_options(), allow=allowed)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    held_out = leaks.attrs["held_out"]
    exact = int((leaks["kind"] == "exact").sum())
    return {
        "checked": True, "allowed": allowed, "threshold": leaks.attrs["threshold"],
        "leaking_pairs": int(len(leaks)), "exact": exact, "near": int(len(leaks)) - exact,
        "held_out_images": {split: len(paths) for split, paths in held_out.items()},
        "held_out": held_out,
        "pairs": json.loads(leaks.to_json(orient="records")),
    }


def leakage_of(table):
    """The `check_duplicates` record a split table carries (None: unchecked)."""
    return None if table is None else table.attrs.get(_LEAKAGE)


_CHECKED = "duplicates_checked"
_LEAKAGE = "leakage"


def mark_checked(splits, leakage=None):
    """Marks split tables checked together by `check_duplicates` (one token in
    their attrs), so `training_inputs` does not hash them again; `leakage`
    (what `check_duplicates` returned) travels with them, for the run's
    files and the test report."""
    token = uuid.uuid4().hex
    for table in splits.values():
        table.attrs[_CHECKED] = token
        if leakage is not None:
            table.attrs[_LEAKAGE] = leakage
    return splits


def checked_together(train, *others):
    """Whether `train` and the non-empty `others` were checked as one split."""
    token = None if train is None else train.attrs.get(_CHECKED)
    return token is not None and all(
        t is None or not len(t) or t.attrs.get(_CHECKED) == token for t in others
    )


def split_record(tables, class_names):
    """One row per sample of the run: `path`, `label` (class name; several
    joined by `;` for multi-label), `group` (patient or volume; the path when
    the table has no groups) and `split`, for `split.csv`.

    Args:
        tables: `{split name: sample table or None}`.
        class_names: the run's classes, in label-id order.

    Returns:
        A DataFrame with the `SPLIT_COLUMNS`.

    Example:

    ```python
    split_record({"train": train, "val": val, "test": test}, names)
    ```
    """
    frames = []
    for name, table in tables.items():
        if table is None or not len(table):
            continue
        paths = table["path"].astype(str) if "path" in table else pd.Series(
            [f"{name}[{i}]" for i in range(len(table))], index=table.index)
        if is_multi_label(table):
            labels = [";".join(class_names[i] for i in ids if 0 <= i < len(class_names))
                      for ids in table["labels"]]
        else:
            labels = [class_names[i] if 0 <= i < len(class_names) else "" for i in table["label"]]
        groups = table["group"].astype(str) if "group" in table else paths
        frames.append(pd.DataFrame({"path": paths.to_numpy(), "label": labels,
                                    "group": groups.to_numpy(), "split": name}))
    if not frames:
        return pd.DataFrame(columns=list(SPLIT_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def check_same_split(run_dir, tables, class_names):
    """Refuses to go on in a run folder whose `split.csv` says other data.

    A rerun (a resume, or the evaluation after a kill) must see the samples
    the run started with: a file added, removed or relabelled would re-split
    the data, move trained images into the test split and mix two datasets in
    one history. Each split the folder's `split.csv` and `tables` both have
    must hold the same (path, label, group) rows; a split only one side has
    is left alone (`train` records train/val, the evaluation adds test).

    Args:
        run_dir: the run folder (nothing to check without a `split.csv`).
        tables: `{split name: sample table or None}`.
        class_names: the run's classes, in label-id order.

    Raises:
        ValueError: naming how many samples were added, removed or moved,
            with a few paths.

    Example:

    ```python
    check_same_split("runs/x", {"train": train, "val": val}, names)
    ```
    """
    path = os.path.join(run_dir, SPLIT_FILE)
    if not os.path.isfile(path) or all(t is None for t in tables.values()):
        return
    # Strings throughout: a label or group read back from CSV must compare
    # equal to the one in memory.
    before = pd.read_csv(path, dtype=str, keep_default_na=False)
    now = split_record(tables, class_names).astype(str)
    shared = sorted(set(before["split"]) & set(now["split"]))
    keys = ["path", "label", "group"]

    def rows(frame):
        frame = frame[frame["split"].isin(shared)]
        return {tuple(r): s for r, s in zip(frame[keys].itertuples(index=False), frame["split"])}

    old, new = rows(before), rows(now)
    removed = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    moved = sorted(r for r in set(old) & set(new) if old[r] != new[r])
    if not (removed or added or moved):
        return
    parts = [f"{len(items)} {what}" for items, what in (
        (added, "added or relabelled"), (removed, "removed or relabelled"),
        (moved, "moved to another split")) if items]
    examples = [f"  + {r[0]} ({r[1]})" for r in added[:3]]
    examples += [f"  - {r[0]} ({r[1]})" for r in removed[:3]]
    examples += [f"  ~ {r[0]}: {old[r]} -> {new[r]}" for r in moved[:3]]
    raise ValueError(
        f"The data changed since this run started (its {SPLIT_FILE}, splits "
        f"{', '.join(shared)}): {', '.join(parts)}.\n" + "\n".join(examples)
        + f"\nGoing on would mix two datasets in one run. Restore the data, or train "
        f"into a new folder (or remove {run_dir!r})."
    )


def write_split_file(run_dir, tables, class_names):
    """Writes `run_dir/split.csv` (`split_record`) atomically; nothing when
    every table is None (a user's tf.data datasets). A folder that has one
    already must describe the same data (`check_same_split`).

    Example:

    ```python
    splits, names = load_source(config)
    write_split_file("runs/x", splits, names)
    ```
    """
    if all(t is None for t in tables.values()):
        return
    check_same_split(run_dir, tables, class_names)
    record = split_record(tables, class_names)
    _write_atomic(os.path.join(run_dir, SPLIT_FILE), lambda p: record.to_csv(p, index=False))


def _write_atomic(path, write):
    """`write(partial_path)`, then renamed over `path`: a reader never sees half
    a file (`.partial-PID-NAME`, the run folder's convention, removed on error)."""
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".partial-{os.getpid()}-{name}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def scan_inputs(table, what="The data"):
    """Scans a file table once (`medivision_tf.data.scan`) and keeps the usable rows.

    The count and the skipped files travel in `attrs["input_report"]`
    (`num_images`, `num_used`, `skipped`: rows of path/reason/detail) so
    that `TrainingInputs.write_report` can write them to the run folder.
    Array tables are counted (every row used: no file to refuse); shard
    tables (`load_shards`: checked when written) and tables scanned
    already are returned as they are.

    Args:
        table: a sample table.
        what: how error messages name the data.

    Returns:
        The usable rows (attrs kept, `attrs["scanned"] = True`).

    Raises:
        ValueError: no usable file is left.

    Example:

    ```python
    clean = scan_inputs(as_table("data/chest_xray"))
    clean.attrs["input_report"]["num_used"]
    ```
    """
    from medivision_tf.data.scan import scan
    from medivision_tf.data.shards import is_shard_table

    if "image" in table.columns and not table.attrs.get("scanned"):
        # Arrays have no file to refuse: every row is used, and counted.
        counted = table.copy(deep=False)
        counted.attrs["scanned"] = True
        counted.attrs["input_report"] = {"id": uuid.uuid4().hex, "num_images": int(len(table)),
                                         "num_used": int(len(table)), "skipped": []}
        return counted
    if table.attrs.get("scanned") or table.empty or is_shard_table(table):
        return table
    try:
        clean, report = scan(table, verbose=False)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    clean = clean.reset_index(drop=True)
    clean.attrs.update(table.attrs)
    clean.attrs["scanned"] = True
    clean.attrs["input_report"] = {
        "id": uuid.uuid4().hex,  # one report per scan, however often pandas copies attrs
        # A linked folder not entered counts as one skipped input.
        "num_images": int(len(clean) + len(report)),
        "num_used": int(len(clean)),
        "skipped": [
            {"path": str(p), "reason": str(r), "detail": str(d)}
            for p, r, d in zip(report["path"], report["reason"], report["detail"])
        ],
    }
    return clean


def merged_report(*tables):
    """One input report (counts added, skipped files listed) for several tables."""
    total = {"num_images": 0, "num_used": 0, "skipped": []}
    seen = set()
    for table in tables:
        report = None if table is None else table.attrs.get("input_report")
        if not report or report["id"] in seen:
            continue
        seen.add(report["id"])
        total["num_images"] += report["num_images"]
        total["num_used"] += report["num_used"]
        total["skipped"] += report["skipped"]
    return total if seen else None


def table_dataset(table, config, *, training, batch_size, repeat=False,
                  augment_in_pipeline=True):
    """A batched dataset of (images, labels) from a sample table.

    `medivision_tf.data.make_dataset` with the config's `image_size`,
    `channels`, `seed`, `augment` (training only) and `cache`: images are
    resized (aspect kept, padded) and kept uint8 until batched.

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
        dicom_window=config.decode_options().dicom_window,
        bit_depth_16=config.bit_depth_16,
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
        """Writes `run_dir/split.csv`, `skipped_files.csv`, `inputs.json`
        (and `leaking_pairs.csv` when leakage was allowed) and says "N of M
        images used" (`say`: a print function, or None for silence). Each
        file is written atomically.

        `split.csv` (`path`, `label`, `group`, `split`) lists every sample of
        the run's train, val and test tables, NIfTI slices and DICOM frames
        by their `#frame=N` path with the volume (or patient) as group, so a
        result can be audited; it is not written for a user's tf.data
        datasets. `inputs.json` is written for every run: image counts
        (None for a user's tf.data dataset, whose length is not known),
        skipped files by reason (none for arrays: nothing to skip) and the
        duplicate check (`duplicates`: whether it ran, whether leakage was
        allowed, the leaking pairs and held-out images it found).
        """
        write_split_file(run_dir, {"train": self.train_table, "val": self.val_table,
                                   "test": self.test_table}, self.class_names)
        report = self.report or self._unscanned_report()
        skipped = pd.DataFrame(report["skipped"], columns=["path", "reason", "detail"])
        _write_atomic(os.path.join(run_dir, REPORT_FILE),
                      lambda p: skipped.to_csv(p, index=False))
        leakage = self.leakage or {"checked": False}
        summary = {
            "num_images": report["num_images"],
            "num_used": report["num_used"],
            "num_skipped": int(len(skipped)),
            "skipped_by_reason": {str(k): int(v) for k, v in
                                  skipped["reason"].value_counts().items()},
            "duplicates": {k: v for k, v in leakage.items() if k not in ("pairs", "held_out")},
        }
        if leakage.get("leaking_pairs"):
            pairs = pd.DataFrame(leakage["pairs"])
            _write_atomic(os.path.join(run_dir, LEAKS_FILE),
                          lambda p: pairs.to_csv(p, index=False))
            summary["duplicates"]["pairs_file"] = LEAKS_FILE

        def write_summary(partial):
            with open(partial, "w") as handle:
                json.dump(summary, handle, indent=2)

        _write_atomic(os.path.join(run_dir, SUMMARY_FILE), write_summary)
        if leakage.get("leaking_pairs"):
            held = leakage["held_out_images"]
            # Said even when quiet (on stderr then): the results are inflated.
            (say or _to_stderr)(
                f"Leakage allowed (allow_duplicates): {held['val']} val and {held['test']} "
                f"test image(s) duplicate training images ({leakage['leaking_pairs']} pairs), "
                f"listed in {os.path.join(run_dir, LEAKS_FILE)}; results on them are inflated.")
        if say is None:
            return
        if report["num_images"] is not None:
            reasons = ", ".join(f"{k}: {v}" for k, v in summary["skipped_by_reason"].items())
            say(
                f"{report['num_used']} of {report['num_images']} images used"
                + (f"; {len(skipped)} skipped ({reasons}), listed in "
                   f"{os.path.join(run_dir, REPORT_FILE)}" if len(skipped) else "")
            )

    def _unscanned_report(self):
        """Counts for inputs no scan counted: a user's tf.data dataset (its
        length is not known: None) or shard tables (their rows, checked
        when the shards were written)."""
        if self.train_table is None:
            return {"num_images": None, "num_used": None, "skipped": []}
        count = sum(len(t) for t in (self.train_table, self.val_table, self.test_table)
                    if t is not None)
        return {"num_images": count, "num_used": count, "skipped": []}


def _to_stderr(message):
    print(message, file=sys.stderr)


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
