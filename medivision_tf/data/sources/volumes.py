"""Multi-frame DICOM and NIfTI volumes as samples: one row per frame/slice.

`expand_volumes(table)` (called by `from_directory` and `from_csv`) turns a
NIfTI volume into one row per selected 2-D slice, and (with `frames="all"`) a
multi-frame DICOM into one row per frame. Each new row's `path` names its
frame (`"brain.nii.gz#frame=41"`, see `io.frame_paths.with_frame`); `source_path`
keeps the file, and `group` is the file (or the patient already in `group`),
so `split_table` never puts slices of one volume on both sides of a split.

Example:

```python
import numpy as np, nibabel, pandas as pd, tempfile, os
from medivision_tf.data import from_csv

folder = tempfile.mkdtemp()
nibabel.save(nibabel.Nifti1Image(np.random.rand(8, 8, 6).astype("float32"), np.eye(4)),
             os.path.join(folder, "a.nii.gz"))
table = from_csv(pd.DataFrame({"path": ["a.nii.gz"], "label": ["ad"]}), root=folder)
len(table), table["group"].nunique()     # (6, 1): six slices, one group
```
"""

import os

import pandas as pd

from medivision_tf.data.io.dicom import dicom_frame_count
from medivision_tf.data.io.frame_paths import split_frame, with_frame
from medivision_tf.data.io.nifti import nifti_slices as select_slices
from medivision_tf.data.io.options import NIFTI_EXTENSIONS, check_frames, check_nifti_axis
from medivision_tf.data.io.regular_files import read_head
from medivision_tf.data.io.sniff import sniff_format
from medivision_tf.data.sources.image_files import inside_root


def is_nifti_path(path):
    """Whether a path names a NIfTI file (`.nii` or `.nii.gz`)."""
    return str(path).lower().endswith(NIFTI_EXTENSIONS)


def expand_volumes(table, frames="middle", nifti_slices="nonempty", nifti_axis="axial"):
    """One row per frame of multi-frame DICOM (`frames="all"`) and per
    selected slice of NIfTI volumes; other rows are unchanged.

    Args:
        table: a sample table with a `path` column.
        frames: `"first"`, `"middle"` (default) or `"all"` for multi-frame
            DICOM files.
        nifti_slices: `"all"`, `"nonempty"` (default), `"middle"` or an int
            k (the middle k slices); see `io.nifti.nifti_slices`.
        nifti_axis: `"axial"` (default), `"coronal"` or `"sagittal"`.

    Returns:
        The table (same attrs, plus `frames`, `nifti_slices`, `nifti_axis`),
        with `source_path` and `frame` columns when anything was expanded.

    Raises:
        ValueError: an unknown option (named with the allowed values).
    """
    check_frames(frames)
    check_nifti_axis(nifti_axis)

    attrs = dict(table.attrs)
    root, trusted = attrs.get("root"), bool(attrs.get("trusted_links", False))
    rows, expanded = [], False
    for record in table.to_dict("records"):
        path = record.get("path")
        indices = None
        # Only regular files inside the root are opened (isfile: no FIFO);
        # the others stay one row each, for `scan` to report.
        if (isinstance(path, str) and split_frame(path)[1] is None
                and os.path.isfile(path) and (root is None or inside_root(path, root, trusted))):
            if is_nifti_path(path):
                try:
                    indices = select_slices(path, nifti_axis, nifti_slices)
                except ValueError:
                    indices = None  # scan reports the unreadable volume
                else:
                    if not indices:  # an empty volume: kept as one row, scan decides
                        indices = None
            elif frames == "all" and _maybe_dicom(path):
                try:
                    count = dicom_frame_count(path)
                except Exception:
                    count = 1
                indices = list(range(count)) if count > 1 else None
        if indices is None:
            rows.append(record)
            continue
        expanded = True
        group = record.get("group", path)
        for index in indices:
            rows.append(
                {**record, "path": with_frame(path, index), "source_path": path,
                 "frame": int(index), "group": group if isinstance(group, str) else path}
            )
    out = pd.DataFrame(rows, columns=None if rows else table.columns)
    if expanded:
        out["source_path"] = out.get("source_path", out["path"]).fillna(out["path"])
        out["frame"] = out["frame"].fillna(-1).astype("int64")
        if "group" in out:
            out["group"] = out["group"].fillna(out["path"]).astype(str)
        for column in ("label",):
            if column in out:
                out[column] = out[column].astype(table[column].dtype)
    out.attrs.update(attrs)
    out.attrs.update(frames=frames, nifti_slices=nifti_slices, nifti_axis=nifti_axis)
    return out


def _maybe_dicom(path):
    head = read_head(path, 352)
    return head is not None and sniff_format(head) == "dicom"


def reexpand_volumes(table, frames="middle", nifti_slices="nonempty", nifti_axis="axial"):
    """`expand_volumes` again with other options (a table a source already
    expanded with its defaults: its frame rows are folded back first).

    Example:

    ```python
    table = reexpand_volumes(from_directory("mri/"), nifti_slices=5)
    ```
    """
    current = (table.attrs.get("frames", "middle"), table.attrs.get("nifti_slices", "nonempty"),
               table.attrs.get("nifti_axis", "axial"))
    if current == (frames, nifti_slices, nifti_axis) or "path" not in table:
        return table
    attrs = dict(table.attrs)
    if "source_path" in table:
        table = table.drop_duplicates("source_path").copy()
        table["path"] = table["source_path"]
        table = table.drop(columns=["source_path", "frame"])
        if "group" in table and (table["group"] == table["path"]).all():
            table = table.drop(columns=["group"])
        table = table.reset_index(drop=True)
    table.attrs.update(attrs)
    return expand_volumes(table, frames, nifti_slices, nifti_axis)


def expand_paths(paths, frames="middle", nifti_slices="nonempty", nifti_axis="axial"):
    """The samples `predict`/`explain` read for a list of files, with the
    model's slice selection: `expand_volumes` over a table of the paths.

    Args:
        paths: file paths, in order (a path may appear more than once).
        frames, nifti_slices, nifti_axis: as in `expand_volumes` (pass the
            model's `DecodeOptions`, so files expand as in training).

    Returns:
        DataFrame, one row per sample in input order: `input` (position in
        `paths`), `source_path` (the path given), `path` (what to read:
        `"x.nii.gz#frame=12"` for a slice, the path itself for a 2-D image)
        and `frame` (the slice/frame index, -1 for a 2-D image).

    Raises:
        ValueError: a `.nii`/`.nii.gz` file that is not a readable NIfTI
            volume, or a volume with no slice to use (an all-zero volume
            with `nifti_slices="nonempty"`); the message names the file.

    Example:

    ```python
    import numpy as np, nibabel, tempfile, os
    path = os.path.join(tempfile.mkdtemp(), "a.nii.gz")
    nibabel.save(nibabel.Nifti1Image(np.random.rand(8, 8, 6).astype("float32"), np.eye(4)), path)
    expand_paths([path], nifti_slices=3)["frame"].tolist()     # [1, 2, 3]
    ```
    """
    paths = [os.fspath(p) for p in paths]
    table = pd.DataFrame({"path": paths, "input": range(len(paths))})
    table = expand_volumes(table, frames, nifti_slices, nifti_axis)
    if "source_path" not in table:
        table["source_path"], table["frame"] = table["path"], -1
    for path in table.loc[table["frame"] < 0, "path"]:
        # A NIfTI file expand_volumes kept as one row: say why it gives no slice.
        if is_nifti_path(path) and split_frame(path)[1] is None and os.path.isfile(path):
            check_volume(path, nifti_slices, nifti_axis)
    return table[["input", "source_path", "path", "frame"]].reset_index(drop=True)


def check_volume(path, nifti_slices="nonempty", nifti_axis="axial"):
    """The selected slice indices of a NIfTI file, or the `ValueError` that
    says why it gives none.

    Args:
        path: a `.nii` / `.nii.gz` file.
        nifti_slices, nifti_axis: see `expand_volumes`.

    Returns:
        A non-empty list of slice indices.

    Raises:
        ValueError: not a readable NIfTI volume, or no slice selected
            (`"nonempty"` on a volume that is black after normalisation, such
            as an all-zero one); the message names the file.

    Example:

    ```python
    check_volume("brain.nii.gz", nifti_slices=5)   # e.g. [43, 44, 45, 46, 47]
    ```
    """
    try:
        indices = select_slices(path, nifti_axis, nifti_slices)
    except ValueError as error:
        raise ValueError(f"{path!r}: {error}") from None
    if not indices:
        raise ValueError(
            f"Empty volume {path!r}: nifti_slices={nifti_slices!r} selects no slice "
            "(no slice keeps a non-black pixel after the per-volume normalisation, e.g. an "
            "all-zero volume): there is nothing to predict or explain."
        )
    return indices
