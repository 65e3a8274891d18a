"""Any supported source -> its sample table: `as_table`, the one entry of the later stages.

`make_dataset`, `scan` (`medivision scan`), `write_shards`, `train` and
`evaluate` accept a table or anything `as_table` reads, told apart by what it
is (a DataFrame, arrays, a shard folder, a prepared folder or its manifest,
a folder of class folders, a `.csv` or `.npz` file).

Example:

```python
from medivision_tf.data import as_table

table = as_table("data/oct")                  # prepared: split + group kept
table = as_table("chest_xray/")               # class folders
```
"""

import os

import pandas as pd

from medivision_tf.data.shards.folder import is_shard_folder, load_shards
from medivision_tf.data.sources.arrays import from_npz, from_numpy
from medivision_tf.data.sources.csv_files import from_csv
from medivision_tf.data.sources.folders import from_directory
from medivision_tf.data.sources.prepared import MANIFEST, is_prepared, load_prepared

def as_table(source, root=None):
    """Any supported source -> sample table.

    | source | read with |
    |--------|-----------|
    | a sample table (DataFrame) | returned as is |
    | `(images, labels)` arrays | `from_numpy` |
    | a folder holding `manifest.csv` (from `prepare_dataset`) | `load_prepared`: keeps its `split` and `group` |
    | a `manifest.csv` of such a folder | `load_prepared` on its folder |
    | any other folder | `from_directory` (class folders, pre-split folders) |
    | any other `.csv` file | `from_csv(path, root=root)` |
    | a `.npz` file | `from_npz` (MedMNIST layout) |
    | a folder (or gfile URL) holding `shards.json` | `shards.load_shards` (read from TFRecords) |

    Args:
        source: one of the above (str or `os.PathLike` paths).
        root: folder the paths of a plain `.csv` are relative to (default:
            the CSV's folder); ignored for other sources.

    Returns:
        The sample table.

    Raises:
        FileNotFoundError: a path that is not a folder, `.csv` or `.npz` file.
        TypeError: any other kind of source.

    Example:

    ```python
    table = as_table("data/oct")                  # prepared: split + group kept
    table = as_table("chest_xray/")               # class folders
    table = as_table("labels.csv", root="images/")
    ```
    """
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, tuple) and len(source) == 2:
        return from_numpy(*source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if is_shard_folder(path):  # local or gs://, ram://...
            return load_shards(path)
        if os.path.isdir(path):
            if is_prepared(path):
                return load_prepared(path)
            return from_directory(path)
        if os.path.basename(path) == MANIFEST and is_prepared(os.path.dirname(path) or "."):
            return load_prepared(os.path.dirname(path) or ".")
        if path.lower().endswith(".csv"):
            return from_csv(path, root=root)
        if path.lower().endswith(".npz"):
            return from_npz(path)
        raise FileNotFoundError(
            f"Not a folder, .csv or .npz file: {path!r}"
        )
    raise TypeError(
        "`source` must be a sample table (DataFrame), a folder, a .csv/.npz "
        f"path or an (images, labels) pair. Received: {type(source).__name__}"
    )
