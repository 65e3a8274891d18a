"""Sample tables from in-memory arrays and MedMNIST-style `.npz` files.

The table keeps each image's uint8 pixels in its `image` column (see
`medivision_tf.data.sources.table`); its `path` column holds provenance strings such
as `organmnist.npz#train[3]`.

Example:

```python
import numpy as np
from medivision_tf.data import from_numpy, class_names_of

table = from_numpy(np.zeros((4, 28, 28), "uint8"), [0, 1, 1, 0],
                   class_names=["normal", "tumor"])
class_names_of(table)       # ['normal', 'tumor']
table[["label", "class_name"]]
```
"""

import os

import numpy as np
import pandas as pd

from medivision_tf.data.sources.table import SPLITS, finish_table


def _images_to_uint8(images):
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "`images` must be (N, H, W) or (N, H, W, 1|3|4). "
            f"Received shape: {images.shape}"
        )
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.uint16:
        return np.round(images / 257.0).astype("uint8")
    values = images.astype("float32")
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.round(values), 0, 255).astype("uint8")


def from_numpy(images, labels, *, class_names=None, split=None, name="array"):
    """A sample table from in-memory arrays (MedMNIST-style).

    Args:
        images: `(N, H, W)` or `(N, H, W, C)` array. uint8 is kept; uint16 is
            divided by 257; floats with max <= 1 are multiplied by 255.
        labels: `(N,)` or `(N, 1)` class ids (single-label), or `(N, K)` 0/1
            multi-hot with K > 1 (multi-label).
        class_names: names per class id (default `"0"`, `"1"`, ...).
        split: optional split name for every row.
        name: prefix of the provenance strings in the `path` column.

    Returns:
        A sample table whose `image` column holds each image.

    Example:

    ```python
    import numpy as np
    table = from_numpy(np.zeros((3, 28, 28), "uint8"), [[0], [1], [2]])
    ```
    """
    images = _images_to_uint8(images)
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise ValueError(
            f"`images` and `labels` differ in length: {len(images)} vs {len(labels)}."
        )
    multi = labels.ndim == 2 and labels.shape[1] > 1
    table = pd.DataFrame({"path": [f"{name}[{i}]" for i in range(len(images))]})
    table["image"] = list(images)
    if multi:
        count = labels.shape[1]
        table["labels"] = [tuple(int(i) for i in np.flatnonzero(row)) for row in labels]
    else:
        flat = labels.reshape(len(labels)).astype("int64")
        count = int(flat.max()) + 1 if len(flat) else 0
        table["label"] = flat.astype("int32")
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(count)]
    if len(names) < count:
        raise ValueError(
            f"`class_names` has {len(names)} names but labels go up to {count - 1}. "
            f"Received: class_names={class_names!r}"
        )
    if multi:
        table["class_name"] = ["|".join(names[i] for i in ids) for ids in table["labels"]]
    else:
        table["class_name"] = [names[i] if 0 <= i < len(names) else str(i) for i in table["label"]]
        table.loc[(table["label"] < 0) | (table["label"] >= len(names)), "label"] = -1
    if split is not None:
        table["split"] = split
    return finish_table(table, names, None, multi_label=multi)


def from_npz(path, *, class_names=None):
    """A sample table from a `.npz` file in the MedMNIST layout.

    Keys `train_images`/`train_labels`, `val_images`/`val_labels`,
    `test_images`/`test_labels` give a table with a `split` column; plain
    `images`/`labels` (or `x`/`y`) give one without. A `class_names` key (an
    array of strings, in class-id order) names the classes, so a file
    trained on by `medivision train x.npz` gives a model with real names.

    Args:
        path: the `.npz` file.
        class_names: names per class id (MedMNIST's `INFO[flag]["label"]`
            values, in id order); default: the file's `class_names` key,
            else `"0"`, `"1"`, ...

    Raises:
        ValueError: no known keys, or class names that do not cover the
            labels (their count and the highest label are named).

    Example:

    ```python
    table = from_npz("pathmnist.npz")      # 3 splits, 9 classes
    table["split"].value_counts()
    np.savez("cells.npz", images=images, labels=labels,
             class_names=np.array(["basophil", "eosinophil", "lymphocyte"]))
    from_npz("cells.npz").attrs["class_names"]   # ['basophil', 'eosinophil', 'lymphocyte']
    ```
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .npz file: {os.fspath(path)!r}")
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        pairs = [(s, f"{s}_images", f"{s}_labels") for s in SPLITS]
        pairs = [p for p in pairs if p[1] in keys and p[2] in keys]
        if not pairs:
            for x, y in (("images", "labels"), ("x", "y")):
                if x in keys and y in keys:
                    pairs = [(None, x, y)]
                    break
        if not pairs:
            raise ValueError(
                f"{os.fspath(path)!r} has none of the MedMNIST keys "
                "(train_images/train_labels, val_..., test_...) nor images/labels. "
                f"Keys: {sorted(keys)}"
            )
        arrays = [(s, data[x], data[y]) for s, x, y in pairs]
        stored = data["class_names"] if "class_names" in keys else None
    if class_names is None and stored is not None:
        if stored.dtype.kind not in "US" or stored.ndim != 1:
            raise ValueError(f"{os.fspath(path)!r}: its class_names key must be a 1-D array of "
                             f"strings; received dtype {stored.dtype}, shape {stored.shape}.")
        class_names = [str(n) for n in stored.astype(str)]
    all_labels = np.concatenate([np.asarray(y).reshape(len(y), -1) for _, _, y in arrays])
    multi = all_labels.shape[1] > 1
    count = all_labels.shape[1] if multi else int(all_labels.max()) + 1
    names = class_names if class_names is not None else [str(i) for i in range(count)]
    if multi and len(names) != count:
        raise ValueError(f"{os.fspath(path)!r}: {len(names)} class names {list(names)} for "
                         f"{count} label columns.")
    if len(names) < count:
        raise ValueError(f"{os.fspath(path)!r}: {len(names)} class names {list(names)} for "
                         f"labels up to {count - 1} ({count} classes).")
    base = os.path.basename(os.fspath(path))
    tables = [
        from_numpy(x, y, class_names=names, split=s, name=f"{base}#{s or 'images'}")
        for s, x, y in arrays
    ]
    table = pd.concat(tables, ignore_index=True)
    return finish_table(table, [str(n) for n in names], None, multi_label=multi)
