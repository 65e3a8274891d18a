"""Sources: sample tables from folders of images (one per class), DICOM folders and CSV files.

The sample table (columns and attrs) is described in `medivision_tf.data.table`;
array and `.npz` sources are in `medivision_tf.data.arrays`, file listing in
`medivision_tf.data.files`. Their public names are re-exported here, so
`medivision_tf.data.sources.from_numpy`, `.class_names_of`, `.list_images` ...
keep working.

Example:

```python
import tempfile
from medivision_tf.data import make_synthetic_lesions, from_directory, class_names_of

root = tempfile.mkdtemp()
make_synthetic_lesions(6, 32, 3).to_directory(root)
table = from_directory(root)
class_names_of(table)       # ['calcification_cluster', 'ring_lesion', 'solid_nodule']
table[["label", "class_name"]]
```
"""

import os
import re

import numpy as np
import pandas as pd

from medivision_tf.data.decode import check_window
from medivision_tf.data.files import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    inside_root,
    is_dicom_file,
    list_images,
)
from medivision_tf.data.table import SPLIT_ALIASES, finish_table
from medivision_tf.data.volumes import expand_volumes

# Re-exported: the names this module held before it was split.
from medivision_tf.data.arrays import from_npz, from_numpy  # noqa: F401
from medivision_tf.data.table import (  # noqa: F401
    SPLITS,
    class_names_of,
    is_multi_label,
    with_attrs,
)

_PATH_COLUMNS = ("path", "image_path", "filepath", "file_path", "filename", "file", "image", "image_id", "id")
_LABEL_COLUMNS = ("label", "class", "class_name", "diagnosis", "target", "labels")


def _split_name(folder):
    return SPLIT_ALIASES.get(folder.strip().lower())


def _subdirs(folder):
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_dir() and not entry.name.startswith((".", "__"))
    )


def _check_dir(root, arg="root"):
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"`{arg}` must be a folder path. Received: {arg}={root!r}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"No such folder: {arg}={os.fspath(root)!r}")
    return os.path.abspath(os.fspath(root))


def from_directory(
    root,
    *,
    class_names=None,
    extensions=IMAGE_EXTENSIONS,
    exclude=(),
    group_pattern=None,
    predicate=None,
    frames="middle",
    nifti_slices="nonempty",
    nifti_axis="axial",
):
    """A sample table from a folder per class (the usual Kaggle layout).

    Two layouts are recognized:

    ```
    root/CLASS/[...]/image.png              one folder per class
    root/train|val|test/CLASS/image.png     already split (also "training",
                                            "valid", "validation", "testing")
    ```
    In the second, the table gets a `split` column. Class ids follow
    `class_names` (default: the sorted folder names).

    Args:
        root: the top folder.
        class_names: the class folders to use, in class-id order (default:
            every sub-folder, sorted). A listed class without a folder or
            without images is an error.
        extensions: file extensions to keep (lower case).
        exclude: glob patterns of file names to skip (e.g. `"*_mask.png"`).
        group_pattern: a regular expression whose first group, searched in
            the file name, is the patient id (`group` column), e.g.
            `r"^[A-Z]+-(\\d+)-"` for `CNV-1016042-1.jpeg`.
        predicate: optional `f(path) -> bool` keeping only some files.
        frames: multi-frame DICOM: `"first"`, `"middle"` (default: one
            sample per file) or `"all"` (every frame a sample, grouped by
            file); see `volumes.expand_volumes`.
        nifti_slices: NIfTI volumes become one sample per slice: `"all"`,
            `"nonempty"` (default), `"middle"` or an int k (middle k).
        nifti_axis: slicing axis: `"axial"` (default), `"coronal"`,
            `"sagittal"`.

    Returns:
        The sample table (see module docstring).

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: no class folders, or a class with no images.

    Example:

    ```python
    from medivision_tf.data import make_synthetic_lesions, from_directory
    import tempfile

    root = tempfile.mkdtemp()
    make_synthetic_lesions(6, 32, 3).to_directory(root)
    table = from_directory(root)
    table.attrs["class_names"]   # ['calcification_cluster', 'ring_lesion', 'solid_nodule']
    ```
    """
    root = _check_dir(root)
    top = _subdirs(root)
    split_folders = {name: _split_name(name) for name in top}
    presplit = bool(top) and all(split_folders.values())
    if presplit:
        parts = [(split_folders[name], os.path.join(root, name)) for name in top]
    else:
        parts = [(None, root)]
    found_classes = sorted({c for _, folder in parts for c in _subdirs(folder)})
    if not found_classes:
        raise ValueError(
            f"No class folders under {root!r}: expected root/CLASS/image files"
            " or root/train|val|test/CLASS/image files."
        )
    if class_names is None:
        class_names = found_classes
    else:
        class_names = [str(c) for c in class_names]
        missing = [c for c in class_names if c not in found_classes]
        if missing:
            raise ValueError(
                f"Class folders {missing} not found under {root!r}. "
                f"Found: {found_classes}"
            )
    pattern = re.compile(group_pattern) if group_pattern else None
    rows = []
    refused = []
    for split, folder in parts:
        for label, name in enumerate(class_names):
            class_dir = os.path.join(folder, name)
            if not os.path.isdir(class_dir):
                continue
            if not inside_root(class_dir, root):
                refused.append((class_dir, "outside_root",
                                f"linked folder {class_dir!r} resolves outside {root!r}"))
                continue
            for path in list_images(class_dir, extensions, exclude, root=root, refused=refused):
                if predicate is not None and not predicate(path):
                    continue
                row = {"path": path, "label": label, "class_name": name}
                if pattern is not None:
                    match = pattern.search(os.path.basename(path))
                    row["group"] = match.group(1) if match else os.path.basename(path)
                if split is not None:
                    row["split"] = split
                rows.append(row)
    table = pd.DataFrame(rows, columns=["path", "label", "class_name"])
    if rows:
        table = pd.DataFrame(rows)
    counts = table["label"].value_counts()
    empty = [name for i, name in enumerate(class_names) if counts.get(i, 0) == 0]
    if empty:
        links = "".join(f"\n  refused {detail}" for _, _, detail in refused[:5])
        raise ValueError(
            f"Class folders with no images (extensions {list(extensions)}): "
            f"{empty} under {root!r}.{links}"
        )
    table["label"] = table["label"].astype("int32")
    # Folders not entered (links out of the root): `scan` lists them.
    return expand_volumes(
        finish_table(table, class_names, root, refused=refused), frames, nifti_slices, nifti_axis
    )


def from_dicom(root, *, class_names=None, window="auto", exclude=(), group_pattern=None):
    """A sample table of DICOM files in a folder per class.

    Files ending in `.dcm`/`.dicom`, and files of any name that carry the
    DICOM preamble (e.g. named by their UID, `1.2.840....`), are taken; they are
    decoded with pydicom (`read_dicom`) with the modality rescale and the
    window applied. The window travels in `table.attrs["dicom_window"]` and
    `make_dataset` uses it.

    Args:
        root: `root/CLASS/*.dcm` (or pre-split `root/train/CLASS/*.dcm`).
        class_names, exclude, group_pattern: as in `from_directory`.
        window: `"auto"` (the file's Window Center/Width), `"minmax"`, or
            `(center, width)`, e.g. `(40, 400)` for CT soft tissue.

    Example:

    ```python
    table = from_dicom("ct_scans/", window=(-600, 1500))   # lung window
    ```
    """
    window = check_window(window)
    table = from_directory(
        root,
        class_names=class_names,
        extensions=("*",),
        exclude=exclude,
        group_pattern=group_pattern,
        predicate=lambda p: p.lower().endswith(DICOM_EXTENSIONS) or is_dicom_file(p),
    )
    table.attrs["dicom_window"] = window
    return table


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
