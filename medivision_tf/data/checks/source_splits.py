"""`load_source`: a training config's source read, scanned, split and checked for leakage.

What `train` does with `config.source` before any dataset is built, in
order: read it (`as_table`; a prepared folder keeps its split and patient
groups), cut its volumes as the config says (`reexpand_volumes`), scan every
file once (`input_report.scan_inputs`: bad files counted and reported),
keep its split or split it (`splits`), warn about a split missing a class,
and refuse leakage between the splits (`leakage.check_duplicates`).

Example:

```python
from medivision_tf.data.checks.source_splits import load_source
from medivision_tf.training import TrainConfig

splits, names = load_source(TrainConfig(source="data/chest_xray"))
len(splits["train"]), len(splits["val"]), len(splits["test"])
```
"""

from medivision_tf.data.checks.input_report import scan_inputs
from medivision_tf.data.checks.leakage import check_duplicates, mark_checked
from medivision_tf.data.checks.splits import by_split, split_table
from medivision_tf.data.sources.any_source import as_table
from medivision_tf.data.sources.table import class_names_of, is_multi_label
from medivision_tf.data.sources.volumes import reexpand_volumes

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
