"""The sample table: its columns, its attrs and the helpers that read them.

A sample table is a pandas DataFrame, one row per image:

| column       | meaning                                                       |
|--------------|---------------------------------------------------------------|
| `path`       | absolute file path (array sources: a provenance string)       |
| `label`      | int class id (single-label tables; -1 = unknown label)        |
| `labels`     | tuple of int class ids (multi-label tables, instead of label) |
| `class_name` | the class name (multi-label: names joined with `"|"`)         |
| `group`      | optional patient/study id; splits never divide a group        |
| `split`      | optional `"train"`, `"val"` or `"test"`                       |
| `image`      | array sources only: the uint8 `(H, W, C)` pixels              |

`table.attrs` carries `class_names` (list, index = class id; sorted unless
you pass your own order), `multi_label` (bool) and `root` (the folder paths
must stay inside, or None). Read them with `class_names_of(table)` and
`is_multi_label(table)`, which also work when pandas dropped the attrs.
Every source (`folders`, `csv_files`, `arrays`, `shards.folder`) ends with
`finish_table`. A table read from files also records how its source read them
(`dicom_window`, `frames`, `nifti_axis`, `nifti_slices`): `decode_options_of`
gives them as one `DecodeOptions`.

Example:

```python
import pandas as pd
from medivision_tf.data.sources.table import class_names_of, finish_table

table = finish_table(pd.DataFrame({"path": ["a.png"], "label": [1], "class_name": ["tumor"]}),
                     ["normal", "tumor"])
class_names_of(table)       # ['normal', 'tumor']
```
"""

import os

from medivision_tf.config import DecodeOptions

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
SPLITS = ("train", "val", "test")


def class_names_of(table):
    """The class names of a sample table (index = class id).

    Reads `table.attrs["class_names"]`; if pandas dropped the attrs, rebuilds
    them from the `label`/`class_name` columns.
    """
    names = table.attrs.get("class_names")
    if names is not None:
        return list(names)
    if "label" in table and "class_name" in table:
        known = table[table["label"] >= 0]
        pairs = dict(zip(known["label"].astype(int), known["class_name"].astype(str)))
        if pairs:
            return [pairs.get(i, f"class_{i}") for i in range(max(pairs) + 1)]
    raise ValueError(
        "The table has no class names: expected table.attrs['class_names'] or "
        f"'label' and 'class_name' columns. Received columns: {list(table.columns)}"
    )


def is_multi_label(table):
    """Whether a sample table is multi-label (a `labels` column of id tuples)."""
    return bool(table.attrs.get("multi_label", "labels" in table and "label" not in table))


def with_attrs(table, like):
    """Copies `like`'s attrs (class names, multi_label, root...) onto `table`.

    pandas drops `DataFrame.attrs` in some operations (e.g. `concat` of
    tables with different attrs, `groupby`); call this on the result to keep
    the sample-table metadata. `table` is changed in place and returned.

    Args:
        table: the DataFrame to update.
        like: the sample table whose attrs are copied.

    Returns:
        `table`.

    Example:

    ```python
    subset = with_attrs(table[table["label"] == 0].reset_index(drop=True), table)
    ```
    """
    table.attrs.update({k: v for k, v in like.attrs.items()})
    return table


def finish_table(table, class_names, root=None, multi_label=False, **extra):
    """Gives a new sample table its index and attrs (every source ends with it).

    Args:
        table: the DataFrame built by a source.
        class_names: names per class id.
        root: the folder the paths must stay inside (None: not confined).
        multi_label: whether the table has a `labels` column of id tuples.
        **extra: more attrs, e.g. `refused=[...]` (folders not entered).

    Returns:
        The table with a fresh `RangeIndex` and its attrs set.

    Example:

    ```python
    table = finish_table(pd.DataFrame({"path": ["a.png"], "label": [0]}), ["normal"])
    table.attrs["class_names"], table.attrs["root"]     # (['normal'], None)
    ```
    """
    table = table.reset_index(drop=True)
    table.attrs["class_names"] = list(class_names)
    table.attrs["multi_label"] = bool(multi_label)
    table.attrs["root"] = None if root is None else os.path.abspath(str(root))
    table.attrs.update(extra)
    return table


def decode_options_of(table):
    """The `DecodeOptions` a table's source read its files with, from its attrs.

    `dicom_window` (`from_dicom`), `frames` and `nifti_axis` (`volumes.expand_volumes`:
    how volumes became rows) as the table records them, else the defaults;
    `bit_depth_16` is the default (`"auto"`): no source chooses it. What
    `make_dataset` and `image_hashes` read a table's files with when they are
    given no `decode`.

    Example:

    ```python
    table = from_dicom("ct_scans/", window=(40, 400))
    decode_options_of(table).dicom_window       # (40.0, 400.0)
    ```
    """
    attrs = table.attrs
    return DecodeOptions(
        dicom_window=attrs.get("dicom_window", "auto"),
        frames=attrs.get("frames", "middle"),
        nifti_axis=attrs.get("nifti_axis", "axial"),
    )
