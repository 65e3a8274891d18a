"""Splits and balance: stratified and group-aware splits, k-fold, class weights.

All splits use scikit-learn with a seed: the same seed gives the same split.
With `group_column` (a patient id), every group lands in exactly one split,
so no patient's images leak from training into evaluation.

Example:

```python
import numpy as np
from medivision_tf.data import from_numpy, split_table, class_weights

table = from_numpy(np.zeros((40, 8, 8), "uint8"), np.arange(40) % 2)
train, val, test = split_table(table, val=0.2, test=0.2, seed=0)
class_weights(train)          # {0: 1.0, 1: 1.0}
```
"""

import difflib
import os
import warnings

import numpy as np
import pandas as pd
from sklearn import model_selection
from sklearn.utils.class_weight import compute_class_weight

from medivision_tf.data.sources.table import SPLITS, class_names_of, is_multi_label, with_attrs


def _strata(table):
    """Per-row stratification labels (multi-label: the first class id)."""
    if is_multi_label(table):
        return np.array([ids[0] if ids else -1 for ids in table["labels"]])
    return table["label"].to_numpy()


def _groups(table, group_column):
    if group_column is None:
        return None
    if group_column not in table:
        raise ValueError(
            f"Group column {group_column!r} not in the table. Columns: {list(table.columns)}"
        )
    return table[group_column].astype(str).to_numpy()


def _can_stratify(y, parts):
    _, counts = np.unique(y, return_counts=True)
    return counts.min() >= parts


def _holdout(table, fraction, seed, groups, stratify):
    """Indices (rest, held) with about `fraction` of rows (or groups) held out."""
    if fraction <= 0:
        return np.arange(len(table)), np.array([], int)
    y = _strata(table)
    parts = max(2, int(round(1.0 / fraction)))
    if groups is not None:
        if len(np.unique(groups)) < 2:
            raise ValueError(
                "Cannot split: every row belongs to the same group "
                f"({groups[0]!r}); a group must stay in one split."
            )
        if stratify and _can_stratify(y, parts) and len(np.unique(groups)) >= parts:
            splitter = model_selection.StratifiedGroupKFold(parts, shuffle=True, random_state=seed)
            rest, held = next(splitter.split(np.zeros(len(y)), y, groups))
        else:
            splitter = model_selection.GroupShuffleSplit(1, test_size=fraction, random_state=seed)
            rest, held = next(splitter.split(np.zeros(len(y)), y, groups))
        return rest, held
    stratify_y = y if stratify and _can_stratify(y, 2) else None
    if stratify and stratify_y is None:
        warnings.warn(
            "Some class has fewer than 2 samples: splitting without stratification.",
            stacklevel=3,
        )
    count = max(1, int(round(fraction * len(table))))
    if stratify_y is not None:
        count = max(count, len(np.unique(y)))
    if count >= len(table):
        raise ValueError(
            f"Cannot hold out {fraction:.0%} of {len(table)} samples: too few samples."
        )
    rest, held = model_selection.train_test_split(
        np.arange(len(table)), test_size=count, random_state=seed, stratify=stratify_y
    )
    return np.sort(rest), np.sort(held)


def check_class_sizes(table, parts):
    """Refuses a class with fewer images than the `parts` splits need.

    A CSV label typo (`class_c_typo` once among hundreds of `class_c`)
    would otherwise make one more class, that no split can learn or test.

    Args:
        table: a single-label sample table.
        parts: how many splits each class must populate (1 to 3).

    Raises:
        ValueError: naming each too-small class, its image count and the
            closest other class name (`difflib`).

    Example:

    ```python
    check_class_sizes(table, parts=3)   # train, val and test
    ```
    """
    if is_multi_label(table) or "label" not in table:
        return
    names = class_names_of(table)
    counts = table["label"].value_counts()
    small = [(names[i], int(counts.get(i, 0))) for i in range(len(names))
             if 0 < counts.get(i, 0) < parts]
    if not small:
        return
    lines = []
    for name, count in small:
        others = [n for n in names if n != name]
        close = difflib.get_close_matches(name, others, n=1, cutoff=0.0)
        hint = f"; closest existing class: {close[0]!r} (a typo?)" if close else ""
        lines.append(f"class {name!r} has {count} image(s){hint}")
    raise ValueError(
        f"{len(small)} class(es) have fewer images than the {parts} splits need "
        f"(train, val, test): " + "; ".join(lines)
        + ". Fix the labels, merge or drop the class, or lower val_split/test_split."
    )


def drop_duplicates(table):
    """Rows naming the same file (resolved path) kept once: `(table, dropped)`.

    A file listed twice must not land in two splits (a test image seen in
    training). `split_table` calls it and warns with the count.

    Example:

    ```python
    table, dropped = drop_duplicates(table)
    ```
    """
    if "image" in table or "path" not in table or table.empty:
        return table, table.iloc[:0]
    keys = table["path"].astype(str).map(os.path.realpath)
    duplicated = keys.duplicated(keep="first")
    if not duplicated.any():
        return table, table.iloc[:0]
    dropped = table[duplicated]
    return with_attrs(table[~duplicated].reset_index(drop=True), table), dropped


def _check_fraction(name, value):
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a fraction in [0, 1). Received: {name}={value!r}")


def split_table(table, val=0.15, test=0.15, seed=0, group_column=None, stratify=True):
    """Splits a sample table into train, val and test tables.

    Stratified by class (multi-label: by each row's first class) so every
    split keeps the class proportions. With `group_column`, whole groups
    (patients) go to one split (scikit-learn `StratifiedGroupKFold`), so the
    fractions are approximate.

    Args:
        table: a sample table.
        val: fraction of samples for validation (0 for none).
        test: fraction of samples for testing (0 for none).
        seed: random seed; the same seed gives the same split.
        group_column: column of patient/study ids (e.g. `"group"`) that
            must not be divided between splits.
        stratify: keep class proportions (falls back to a plain random split
            with a warning when a class is too small).

    Returns:
        `(train, val, test)` sample tables, each with a `split` column and
        the input's attrs (class names).

    Example:

    ```python
    train, val, test = split_table(table, val=0.1, test=0.2, group_column="group")
    ```
    """
    _check_fraction("val", val)
    _check_fraction("test", test)
    if val + test >= 1:
        raise ValueError(f"`val + test` must be below 1. Received: val={val}, test={test}")
    if len(table) < 3:
        raise ValueError(f"Need at least 3 samples to split. Received: {len(table)} samples")
    table, dropped = drop_duplicates(table.reset_index(drop=True).pipe(with_attrs, table))
    if len(dropped):
        warnings.warn(
            f"{len(dropped)} duplicated rows (a file listed twice) kept once, so no file is "
            f"in two splits: {list(dropped['path'])[:5]}",
            stacklevel=2,
        )
    if stratify:
        check_class_sizes(table, 1 + (val > 0) + (test > 0))
    groups = _groups(table, group_column)
    rest, test_idx = _holdout(table, test, seed, groups, stratify)
    remainder = table.iloc[rest].reset_index(drop=True)
    val_fraction = val / (1 - test) if test < 1 else 0
    sub_groups = None if groups is None else groups[rest]
    train_idx, val_idx = _holdout(remainder, val_fraction, seed + 1, sub_groups, stratify)
    parts = []
    for name, frame in (
        ("train", remainder.iloc[train_idx]),
        ("val", remainder.iloc[val_idx]),
        ("test", table.iloc[test_idx]),
    ):
        frame = frame.reset_index(drop=True).assign(split=name)
        parts.append(with_attrs(frame, table))
    return tuple(parts)


def by_split(table):
    """The `(train, val, test)` tables of an already split table (a `split`
    column, e.g. from pre-split folders). Missing splits are empty tables."""
    if "split" not in table:
        raise ValueError(f"The table has no 'split' column. Columns: {list(table.columns)}")
    values = table["split"]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        raise ValueError(
            f"{int(blank.sum())} rows have no split name (blank or NaN). "
            f"Allowed: {list(SPLITS)}"
        )
    unknown = sorted(set(values.astype(str)) - set(SPLITS))
    if unknown:
        raise ValueError(f"Unknown split names {unknown}. Allowed: {list(SPLITS)}")
    table, dropped = drop_duplicates(table.reset_index(drop=True).pipe(with_attrs, table))
    if len(dropped):
        warnings.warn(
            f"{len(dropped)} duplicated rows (a file listed twice) kept once, in its first "
            f"split, so no file is in two splits: {list(dropped['path'])[:5]}",
            stacklevel=2,
        )
    return tuple(
        with_attrs(table[table["split"] == s].reset_index(drop=True), table) for s in SPLITS
    )


def kfold(table, k=5, seed=0, group_column=None, stratify=True):
    """K-fold cross-validation splits of a sample table.

    Args:
        table: a sample table.
        k: number of folds (>= 2).
        seed: random seed (the folds are shuffled).
        group_column: column whose groups stay inside one fold.
        stratify: keep class proportions in each fold.

    Returns:
        A list of `k` `(train, val)` table pairs; each sample is in exactly
        one `val` table.

    Example:

    ```python
    for fold, (train, val) in enumerate(kfold(table, k=5, group_column="group")):
        ...
    ```
    """
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"`k` must be an integer >= 2. Received: k={k!r}")
    if k > len(table):
        raise ValueError(f"`k` ({k}) exceeds the number of samples ({len(table)}).")
    table = table.reset_index(drop=True).pipe(with_attrs, table)
    y = _strata(table)
    groups = _groups(table, group_column)
    stratify = stratify and _can_stratify(y, k)
    if groups is not None:
        if len(np.unique(groups)) < k:
            raise ValueError(
                f"`k` ({k}) exceeds the number of groups ({len(np.unique(groups))})."
            )
        splitter = (
            model_selection.StratifiedGroupKFold(k, shuffle=True, random_state=seed)
            if stratify
            else model_selection.GroupKFold(k)
        )
        if not stratify:  # GroupKFold does not shuffle: permute groups ourselves
            rng = np.random.default_rng(seed)
            unique = np.unique(groups)
            mapping = dict(zip(unique, rng.permutation(len(unique))))
            groups = np.array([mapping[g] for g in groups])
        folds = splitter.split(np.zeros(len(y)), y, groups)
    elif stratify:
        folds = model_selection.StratifiedKFold(k, shuffle=True, random_state=seed).split(
            np.zeros(len(y)), y
        )
    else:
        folds = model_selection.KFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)))
    pairs = []
    for train_idx, val_idx in folds:
        train = with_attrs(table.iloc[train_idx].reset_index(drop=True).assign(split="train"), table)
        val = with_attrs(table.iloc[val_idx].reset_index(drop=True).assign(split="val"), table)
        pairs.append((train, val))
    return pairs


def class_weights(table_or_labels, num_classes=None):
    """Class weights for imbalanced data, as Keras' `fit(class_weight=...)` wants.

    "Balanced" weights (scikit-learn `compute_class_weight`):
    `n_samples / (n_classes * count[c])`, so rare classes weigh more. For
    multi-label data the count of class `c` is the number of rows where it
    is present. Unknown labels (`-1`) are left out.

    A class with no samples has no finite weight: that is an error (it
    names the classes), never a silent weight. Such data cannot teach the
    class anyway; drop it from `class_names` or add samples.

    Args:
        table_or_labels: a sample table, or labels: an int array `(N,)` of
            class ids, or a 0/1 multi-hot array `(N, K)`.
        num_classes: the number of classes (default: the table's class
            names; for arrays, `max(label) + 1` or `K`).

    Returns:
        `{class_id: weight}` for every class `0 .. num_classes - 1`.

    Raises:
        ValueError: a class has no samples, a label is `>= num_classes`, or
            `num_classes` differs from the table's class count.

    Example:

    ```python
    model.fit(dataset, class_weight=class_weights(train))
    class_weights([0, 0, 0, 1])              # {0: 0.667, 1: 2.0}
    class_weights(np.array([0, 1]), num_classes=3)   # ValueError: class 2 has no samples
    ```
    """
    if isinstance(table_or_labels, pd.DataFrame):
        table = table_or_labels
        names = class_names_of(table)
        if num_classes is not None and num_classes != len(names):
            raise ValueError(
                f"`num_classes` ({num_classes}) differs from the table's "
                f"{len(names)} classes {names}."
            )
        if is_multi_label(table):
            labels = np.zeros((len(table), len(names)))
            for row, ids in enumerate(table["labels"]):
                labels[row, [i for i in ids if 0 <= i < len(names)]] = 1
        else:
            labels = table["label"].to_numpy()
    else:
        labels = np.asarray(table_or_labels)
        names = None
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim not in (1, 2) or (labels.size and not np.all(labels == np.round(labels))):
            raise ValueError(
                "`table_or_labels` must be a sample table, int class ids (N,) or "
                f"multi-hot 0/1 labels (N, K). Received: array of shape {labels.shape} "
                f"and dtype {labels.dtype}"
            )
    multi = labels.ndim == 2
    if multi:
        count = labels.shape[1] if num_classes is None else int(num_classes)
        if labels.shape[1] != count:
            raise ValueError(
                f"Multi-hot labels have {labels.shape[1]} columns but num_classes={count}."
            )
        counts = (labels > 0).sum(axis=0)
        y = None
    else:
        y = labels.astype("int64")
        y = y[y >= 0]
        if num_classes is not None:
            count = int(num_classes)
        elif names is not None:
            count = len(names)
        else:
            count = int(y.max()) + 1 if len(y) else 0
        if len(y) and y.max() >= count:
            raise ValueError(
                f"Label {int(y.max())} is outside the {count} classes (ids 0..{count - 1})."
            )
        counts = np.bincount(y, minlength=count)[:count]
    if count < 1:
        raise ValueError("No labels: cannot compute class weights of an empty dataset.")
    names = names or [str(i) for i in range(count)]
    empty = [names[i] for i, c in enumerate(counts) if c == 0]
    if empty:
        raise ValueError(
            f"Classes with no samples, so no class weight: {empty} "
            f"(of {count} classes). Add samples or drop these classes."
        )
    if multi:
        weights = len(labels) / (count * counts)
    else:
        weights = compute_class_weight("balanced", classes=np.arange(count), y=y)
    return {i: float(w) for i, w in enumerate(weights)}


def summarize(table):
    """Samples per class (and per split if there is a `split` column)."""
    names = class_names_of(table)
    if is_multi_label(table):
        exploded = table.assign(class_id=table["labels"]).explode("class_id").dropna(subset=["class_id"])
        exploded["class_name"] = [names[int(i)] for i in exploded["class_id"]]
        frame = exploded
    else:
        frame = table
    keys = ["split", "class_name"] if "split" in frame else ["class_name"]
    return frame.groupby(keys).size().rename("images").reset_index()


