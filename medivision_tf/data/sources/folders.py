"""Sample tables from folders of images: a folder per class (`from_directory`), DICOM trees (`from_dicom`).

The usual Kaggle layout, `root/CLASS/...`, or one already split,
`root/train|val|test/CLASS/...` (a `split` column then). Files are found by
`image_files.list_images` (extension, or DICOM bytes for files without one;
never leaving the root), volumes become one row per slice or frame
(`volumes.expand_volumes`), and the table ends in `table.finish_table`.

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

import pandas as pd

from medivision_tf.data.io.options import check_window
from medivision_tf.data.sources.image_files import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    inside_root,
    is_dicom_file,
    list_images,
)
from medivision_tf.data.sources.table import SPLIT_ALIASES, finish_table
from medivision_tf.data.sources.volumes import expand_volumes

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
