"""Sample tables from CSV files (or DataFrames) of image paths and labels: `from_csv`.

The path, label, group and split columns are found by their usual names
(`path`/`filename`/`image_id`..., `label`/`class`/`diagnosis`...,
`GROUP_COLUMNS`) or named; several 0/1 label columns make a multi-label
table. Relative paths start from `root` (default: the CSV's folder) and must
stay inside it; volumes become one row per slice or frame
(`volumes.expand_volumes`).

Example:

```python
import pandas as pd
from medivision_tf.data import from_csv

frame = pd.DataFrame({"file": ["a.png", "b.png"], "finding": ["mass", "normal"]})
table = from_csv(frame, root="images/", label_column="finding")
table[["path", "label", "class_name"]]
```
"""

import os

import numpy as np
import pandas as pd

from medivision_tf.data.sources.table import SPLIT_ALIASES, finish_table
from medivision_tf.data.sources.volumes import expand_volumes

_PATH_COLUMNS = ("path", "image_path", "filepath", "file_path", "filename", "file", "image", "image_id", "id")
_LABEL_COLUMNS = ("label", "class", "class_name", "diagnosis", "target", "labels")
#: Columns `from_csv` takes as the patient/group id when none is named.
GROUP_COLUMNS = ("group", "patient_id", "patient", "PatientID", "subject_id", "subject",
                 "study_id")


def _pick_column(frame, wanted, candidates, arg):
    if wanted is not None:
        if wanted not in frame:
            raise ValueError(
                f"Column {wanted!r} (`{arg}`) not in the table. "
                f"Columns: {list(frame.columns)}"
            )
        return wanted
    for name in candidates:
        if name in frame:
            return name
    raise ValueError(
        f"No `{arg}` column found: pass {arg}=... . Tried {list(candidates)}; "
        f"columns: {list(frame.columns)}"
    )


def from_csv(
    path_or_frame,
    root=None,
    *,
    path_column=None,
    label_column=None,
    label_columns=None,
    label_separator=None,
    group_column=None,
    split_column=None,
    class_names=None,
    extension="",
    frames="middle",
    nifti_slices="nonempty",
    nifti_axis="axial",
):
    """A sample table from a CSV file or DataFrame naming images and labels.

    Single-label: one label column with class names or integer ids.
    Multi-label: several 0/1 columns (`label_columns=[...]`, one per class,
    class ids in that order) or one column of separated names
    (`label_separator="|"`, class names sorted); the table then has a
    `labels` column of class-id tuples instead of `label`.

    Paths are relative to `root`. Rows with paths that resolve outside
    `root` are kept but flagged by `scan` and refused by `make_dataset`;
    labels not in `class_names` get `label = -1` and are reported by `scan`.

    Integer labels: when every (non-empty) label is an integer and none of
    them is one of the class names, they are class ids: `n` means
    `class_names[n]` (`0 <= n < len(class_names)`), so `[0, 1, 1]` with
    `class_names=["normal", "tumor"]` gives normal, tumor, tumor. Ids outside
    that range, and empty labels, get `label = -1`.

    Args:
        path_or_frame: a CSV file path or a pandas DataFrame.
        root: folder the paths are relative to (default: the CSV's folder, or
            the current folder for a DataFrame).
        path_column: column of image paths (default: the first of `path`,
            `image_path`, `filepath`, `filename`, `file`, `image`, `id`).
        label_column: single-label column (default: the first of `label`,
            `class`, `class_name`, `diagnosis`, `target`).
        label_columns: multi-hot columns, one per class (multi-label).
        label_separator: multi-label names in one column, e.g. `"|"`.
        group_column: patient/study id column, copied to `group` (default:
            the first of `GROUP_COLUMNS`, e.g. `group`, `patient_id`,
            present; False: none). Splits keep a group on one side.
        split_column: column with train/val/test values, copied to `split`
            (default: a `split` column, when present; False: none).
        class_names: class order (default: sorted names, or `"0".."k-1"`
            for integer labels); integer labels index into it.
        extension: appended to every path, e.g. `".png"` for APTOS's ids.
        frames, nifti_slices, nifti_axis: multi-frame DICOM and NIfTI
            volumes, as in `from_directory` (slices of a volume share a
            `group`, unless `group_column` names the patient).

    Returns:
        The sample table (see module docstring).

    Example:

    ```python
    import pandas as pd
    frame = pd.DataFrame({"file": ["a.png", "b.png"], "finding": ["mass", "normal"]})
    table = from_csv(frame, root="/data/xrays", path_column="file",
                     label_column="finding")
    ```
    """
    if isinstance(path_or_frame, pd.DataFrame):
        frame = path_or_frame.copy()
        default_root = os.getcwd()
    elif isinstance(path_or_frame, (str, os.PathLike)):
        if not os.path.isfile(path_or_frame):
            raise FileNotFoundError(f"No such CSV file: {os.fspath(path_or_frame)!r}")
        frame = pd.read_csv(path_or_frame, dtype=str, keep_default_na=False)
        default_root = os.path.dirname(os.path.abspath(path_or_frame))
    else:
        raise TypeError(
            "`path_or_frame` must be a CSV path or a pandas DataFrame. "
            f"Received: {type(path_or_frame).__name__}"
        )
    # A CSV file (or a given root) confines its paths to that folder; a
    # DataFrame built in memory with no root resolves relative paths against
    # the working folder but confines nothing: the caller wrote those paths.
    confine = root is not None or not isinstance(path_or_frame, pd.DataFrame)
    root = os.path.abspath(os.fspath(root if root is not None else default_root))
    path_column = _pick_column(frame, path_column, _PATH_COLUMNS, "path_column")
    raw_paths = frame[path_column].fillna("").astype(str).str.strip() + extension
    paths = [
        os.path.normpath(p if os.path.isabs(p) else os.path.join(root, p)) if p else ""
        for p in raw_paths
    ]
    table = pd.DataFrame({"path": paths})
    multi = label_columns is not None or label_separator is not None
    if label_columns is not None:
        label_columns = list(label_columns)
        for column in label_columns:
            _pick_column(frame, column, (), "label_columns")
        names = [str(c) for c in (class_names or label_columns)]
        hot = frame[label_columns].apply(pd.to_numeric, errors="coerce").fillna(0)
        table["labels"] = [tuple(int(i) for i in np.flatnonzero(row > 0)) for row in hot.values]
    elif label_separator is not None:
        column = _pick_column(frame, label_column, _LABEL_COLUMNS, "label_column")
        items = [
            [s.strip() for s in str(value).split(label_separator) if s.strip()]
            if not pd.isna(value) else []
            for value in frame[column]
        ]
        names = [str(c) for c in class_names] if class_names else sorted({s for i in items for s in i})
        index = {name: i for i, name in enumerate(names)}
        table["labels"] = [tuple(sorted(index.get(s, -1) for s in i)) for i in items]
        unknown = [", ".join(s for s in i if s not in index) for i in items]
        table["unknown_label"] = unknown
    else:
        column = _pick_column(frame, label_column, _LABEL_COLUMNS, "label_column")
        values = frame[column].fillna("").astype(str).str.strip()
        numeric = pd.to_numeric(values, errors="coerce")
        given = values != ""
        integer = bool(given.any()) and bool(
            (numeric[given].notna() & (numeric[given] == numeric[given].round())).all()
        )
        if class_names is not None:
            names = [str(c) for c in class_names]
        elif integer:
            names = [str(i) for i in range(max(int(numeric.max()) + 1, 0))]
        else:
            names = sorted(set(values) - {""})
        index = {name: i for i, name in enumerate(names)}
        # Integer labels that name no class are class ids (0 <= id < k), with
        # or without `class_names`; ids outside stay unknown (-1, see scan).
        by_position = integer and not values.isin(list(index)).any()
        labels = []
        for value, number in zip(values, numeric):
            if value in index and not by_position:
                labels.append(index[value])
            elif integer and value and 0 <= number < len(names) and (
                by_position or class_names is None
            ):
                labels.append(int(number))
            else:
                labels.append(-1)
        table["label"] = np.asarray(labels, "int32")
        table["class_name"] = [
            names[i] if i >= 0 else str(v) for i, v in zip(labels, values)
        ]
    if multi:
        table["class_name"] = [
            "|".join(names[i] for i in ids if i >= 0) for ids in table["labels"]
        ]
    # A manifest's patient and split columns are used unless turned off: a
    # `group` column silently dropped would let a patient leak across splits.
    if group_column is None:
        group_column = next((c for c in GROUP_COLUMNS if c in frame), None)
    if split_column is None:
        split_column = "split" if "split" in frame else None
    if group_column not in (None, False):
        _pick_column(frame, group_column, (), "group_column")
        table["group"] = frame[group_column].astype(str).values
    if split_column not in (None, False):
        _pick_column(frame, split_column, (), "split_column")
        splits = frame[split_column].astype(str).str.strip().str.lower()
        table["split"] = [SPLIT_ALIASES.get(s, s) for s in splits]
    if table.empty:
        raise ValueError(f"The CSV/DataFrame has no rows: {path_or_frame!r}"[:300])
    table = finish_table(table, names, root if confine else None, multi_label=multi)
    return expand_volumes(table, frames, nifti_slices, nifti_axis)
