"""Sample tables of folders written by `prepare_dataset`: `load_prepared`.

A prepared folder holds `CLASS/...` image folders and `manifest.csv` (path,
label, class_name, split, group, source); reading the manifest keeps the
dataset's own split and its patient groups, and the registry's class order
(`medivision_tf.data.datasets.registry`). `as_table` (hence `make_dataset`,
`scan`, `train`) reads a folder holding a manifest this way.

Example:

```python
from medivision_tf.data import by_split, load_prepared

table = load_prepared("data/oct")
train, val, test = by_split(table)
```
"""

import os

import pandas as pd

from medivision_tf.data.sources.csv_files import from_csv

MANIFEST = "manifest.csv"


def is_prepared(folder):
    """Whether `folder` was written by `prepare_dataset`: it holds a
    `manifest.csv` with `path` and `class_name` columns."""
    manifest = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.isfile(manifest):
        return False
    try:
        header = pd.read_csv(manifest, nrows=0).columns
    except (ValueError, OSError):  # empty or unreadable file
        return False
    return {"path", "class_name"} <= set(header)


def load_prepared(out_dir, name=None):
    """The sample table of a folder written by `prepare_dataset`.

    `make_dataset`, `scan`, `as_table` and `medivision scan` call it for a
    folder holding `manifest.csv` (or that file's path), so the dataset's
    `split` and patient `group` columns are kept.

    Args:
        out_dir: the prepared folder (holding `manifest.csv`).
        name: the dataset name, to use its class order (default: the one
            `prepare_dataset` wrote in the manifest's `dataset` column, so the
            class ids stay the registry's even if a class's rows were
            removed; for a manifest without it, its sorted class names).

    Returns:
        The sample table, paths absolute under `out_dir` (its root).

    Raises:
        FileNotFoundError: no `manifest.csv` in `out_dir`.
        ValueError: the manifest names an unknown dataset, or several.

    Example:

    ```python
    table = load_prepared("data/oct")
    train, val, test = by_split(table)
    ```
    """
    manifest = os.path.join(out_dir, MANIFEST)
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"No {MANIFEST} in {os.fspath(out_dir)!r}: run prepare first.")
    # The registry is read here (not at import: `datasets` imports this module).
    from medivision_tf.data.datasets.registry import get_dataset

    # Read once; from_csv takes the frame (root given: paths stay confined to it).
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if name is None and "dataset" in frame:
        names = sorted(set(frame["dataset"]) - {""})
        if len(names) > 1:
            raise ValueError(
                f"{manifest} mixes datasets {names}: prepare each into its own folder."
            )
        name = names[0] if names else None
    table = from_csv(
        frame,
        root=out_dir,
        path_column="path",
        label_column="class_name",
        class_names=get_dataset(name).classes if name else None,
        group_column="group" if "group" in frame else None,
        split_column="split" if "split" in frame else None,
    )
    # prepare_dataset(mode="symlink") links into the downloaded folder: the
    # links it wrote are trusted (`..` and absolute paths still are not).
    table.attrs["trusted_links"] = True
    return table
