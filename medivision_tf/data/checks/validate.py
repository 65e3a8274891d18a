"""The rules a sample table must meet before it is read: `validate_table`.

`make_dataset` and `write_shards` call it before building anything: a table
whose labels, paths or files would make the reader fail (or block) is
refused up front with what to do, rather than failing mid-epoch.
`check_slicing` refuses decode options that would read a table's NIfTI
slices along another axis than its source cut them.

Example:

```python
from medivision_tf.data.checks.validate import validate_table

rows = validate_table(table, split="train")     # ValueError names what is wrong
```
"""

import os
import re
import stat

from medivision_tf.data.io.frame_paths import split_frame
from medivision_tf.data.io.options import check_nifti_axis
from medivision_tf.data.shards.folder import is_shard_table
from medivision_tf.data.sources.image_files import inside_root
from medivision_tf.data.sources.table import class_names_of, is_multi_label

# A sample path naming a NIfTI slice (`volumes.expand_volumes`).
_NIFTI_SLICE = re.compile(r"(?is).*\.nii(\.gz)?#frame=[0-9]+")


def validate_table(table, split=None):
    """The rows of `table` (of `split`) a dataset or shard writer may read, checked.

    Refuses, naming a few offenders: an empty table (or split), a table
    without class names, labels outside the classes, file paths outside the
    table's root, and paths that are not regular files (a FIFO or device
    would block the reader). Nothing is opened (`os.stat` only); `scan`
    finds the files that are unusable for other reasons.

    Args:
        table: a sample table.
        split: keep only rows whose `split` column equals this (None: all).

    Returns:
        The rows to read (the table itself when `split` is None).

    Raises:
        ValueError: one of the above, with what to do (usually: run
            `medivision_tf.data.scan(table)` to skip them).

    Example:

    ```python
    test = validate_table(table, "test")
    ```
    """
    if split is not None:
        if "split" not in table:
            raise ValueError(f"split={split!r} given but the table has no 'split' column.")
        table = table[table["split"] == split]
    if table.empty:
        raise ValueError(
            "The dataset is empty" + (f" (no rows with split={split!r})" if split else "") + "."
        )
    names = class_names_of(table)
    if not names:
        raise ValueError("The table has no classes (attrs['class_names'] is empty).")
    if is_multi_label(table):
        ids = [i for labels in table["labels"] for i in labels]
        bad = [i for i in ids if not 0 <= i < len(names)]
    else:
        bad = table.loc[(table["label"] < 0) | (table["label"] >= len(names)), "class_name"]
        bad = list(bad)
    if bad:
        raise ValueError(
            f"{len(bad)} samples have labels outside the {len(names)} classes "
            f"(e.g. {bad[:5]}). Run medivision_tf.data.scan(table) to skip them."
        )
    root = table.attrs.get("root")
    if root is not None and "image" not in table:
        links = bool(table.attrs.get("trusted_links", False))
        outside = [p for p in table["path"] if not p or not inside_root(p, root, links)]
        if outside:
            raise ValueError(
                f"Refusing {len(outside)} paths outside the root {root!r}: "
                f"{outside[:5]}. Run medivision_tf.data.scan(table) to skip them."
            )
    if "image" not in table and not is_shard_table(table):  # shards: read as records
        special = _not_regular(table["path"])
        if special:
            raise ValueError(
                f"Refusing {len(special)} paths that are not regular files (FIFO, device, "
                f"socket, folder; reading one can block forever): {special[:5]}. "
                "Run medivision_tf.data.scan(table) to skip them."
            )
    return table


def _not_regular(paths):
    """Existing paths that are not regular files (`os.stat` only, nothing
    opened; a `#frame=N` path is its file's)."""
    special = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(split_frame(path)[0]).st_mode):
                special.append(path)
        except OSError:  # missing: skipped by skip_errors, reported by scan
            pass
    return special


def check_slicing(table, decode):
    """Refuses to read a table's NIfTI slices along another axis than they were cut.

    A slice row names its slice by number (`"brain.nii.gz#frame=41"`), counted
    along the axis its source cut the volume with (`attrs["nifti_axis"]`, set by
    `volumes.expand_volumes`); read along another axis, the number would name
    another slice (or none).

    Args:
        table: a sample table.
        decode: the `DecodeOptions` the table is about to be read with.

    Raises:
        ValueError: the table has NIfTI slice rows cut along an axis other than
            `decode.nifti_axis` (both named, with the two ways on).

    Example:

    ```python
    check_slicing(from_directory("mri/", nifti_axis="coronal"), DecodeOptions())  # ValueError
    ```
    """
    axis = table.attrs.get("nifti_axis")
    if axis is None or "path" not in table or "image" in table:
        return
    if check_nifti_axis(axis) == check_nifti_axis(decode.nifti_axis):
        return
    slices = [p for p in table["path"].astype(str) if _NIFTI_SLICE.fullmatch(p)]
    if slices:
        raise ValueError(
            f"The table's NIfTI slices were cut along {axis!r} (attrs['nifti_axis']; e.g. "
            f"{slices[0]!r}) but the decode options read along {decode.nifti_axis!r}: each "
            f"slice number would name another slice. Pass decode options with "
            f"nifti_axis={axis!r}, or cut the table again: "
            f"reexpand_volumes(table, nifti_axis={decode.nifti_axis!r})."
        )
