"""A shard folder's files: their names, the manifest, the example index read back as a sample table, checksums.

The folder `write_shards` writes (see `medivision_tf.data.shards` for the
format) holds `shards.json` (the manifest), `examples.csv` (one row per
example), `bad_files.csv`, `plan.json` and the `*.tfrecord` files. Every path
may be local or a `tf.io.gfile` URL (`gs://bucket/data`, `ram://...`).

Example:

```python
from medivision_tf.data.shards.folder import is_shard_folder, load_shards, read_manifest

if is_shard_folder("gs://bucket/oct-shards"):
    table = load_shards("gs://bucket/oct-shards")     # the sample table
    read_manifest("gs://bucket/oct-shards")["counts"]
```
"""

import hashlib
import json
import os
import posixpath

import pandas as pd
import tensorflow as tf

MANIFEST_NAME = "shards.json"
INDEX_NAME = "examples.csv"
REPORT_NAME = "bad_files.csv"
PLAN_NAME = "plan.json"
FORMAT_VERSION = 1


def join_path(folder, name):
    """`folder/name`, with `/` for URLs (`gs://...`) and the OS separator for local folders."""
    folder = os.fspath(folder)
    if "://" in folder:
        return posixpath.join(folder, name)
    return os.path.join(folder, name)


def read_text(path):
    """The text of a file (local or a `tf.io.gfile` URL)."""
    with tf.io.gfile.GFile(path, "r") as handle:
        return handle.read()


def write_text(path, text):
    """Writes `path` whole (a temporary name, then a rename)."""
    partial = path + ".partial"
    with tf.io.gfile.GFile(partial, "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(partial, path, overwrite=True)


def sha256(path):
    """The SHA-256 hex digest of a file (local or a `tf.io.gfile` URL)."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as handle:
        while True:
            block = handle.read(1 << 22)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def is_shard_folder(path):
    """Whether `path` (local or a `tf.io.gfile` URL) holds a `shards.json`."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    try:
        return tf.io.gfile.exists(join_path(path, MANIFEST_NAME))
    except (tf.errors.OpError, ValueError):
        return False


def read_manifest(folder):
    """The `shards.json` of a shard folder, as a dict.

    Raises:
        FileNotFoundError: `folder` holds no `shards.json`.
    """
    path = join_path(folder, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"Not a shard folder (no {MANIFEST_NAME}): {os.fspath(folder)!r}. "
            "Write one with `medivision shard SOURCE --out DIR`."
        )
    return json.loads(read_text(path))


def labels_text(ids):
    """Multi-label class ids as `examples.csv` stores them: `"0;2"`."""
    return ";".join(str(int(i)) for i in ids)


def parse_labels(text):
    """The class-id tuple of an `examples.csv` labels cell (`"0;2"` -> `(0, 2)`)."""
    if isinstance(text, float) or text is None or str(text) == "":  # NaN: no labels
        return ()
    return tuple(int(i) for i in str(text).split(";"))


def load_shards(folder):
    """The sample table of a shard folder (read from its `examples.csv`).

    The table has the columns `path` (the original file), `label` and
    `class_name` (or `labels`, multi-label), `group` and `split` (when the
    source had them), `shard` (the file holding the example) and `index`,
    in the source's row order (so a seeded split of it equals the source's);
    `attrs` hold `class_names`, `multi_label` and `shards` (the folder and
    its stored image size and channels), which `make_dataset` reads.

    Args:
        folder: a folder written by `write_shards` (local or gfile URL).

    Returns:
        The sample table.

    Example:

    ```python
    table = load_shards("gs://bucket/oct-shards")
    table.groupby("split").size()
    ```
    """
    folder = os.fspath(folder)
    manifest = read_manifest(folder)
    with tf.io.gfile.GFile(join_path(folder, INDEX_NAME), "r") as handle:
        table = pd.read_csv(handle, dtype={"path": str, "group": str, "split": str,
                                           "shard": str, "class_name": str, "labels": str},
                            keep_default_na=False)
    table = table.drop(columns="source_row").reset_index(drop=True)
    if manifest["multi_label"]:
        table["labels"] = [parse_labels(t) for t in table["labels"]]
    else:
        table["label"] = table["label"].astype(int)
    for column, key in (("split", "has_split"), ("group", "has_group")):
        if column in table and not manifest.get(key):
            table = table.drop(columns=column)
    table.attrs["class_names"] = list(manifest["class_names"])
    table.attrs["multi_label"] = bool(manifest["multi_label"])
    table.attrs["shards"] = {
        "folder": folder,
        "image_size": manifest["decode"]["image_size"],
        "channels": manifest["decode"]["channels"],
        "num_examples": int(manifest["num_examples"]),
        "counts": {shard["file"]: int(shard["count"]) for shard in manifest["shards"]},
    }
    return table


def is_shard_table(table):
    """Whether a sample table comes from `load_shards` (and is read from shards)."""
    return isinstance(table, pd.DataFrame) and "shard" in table and bool(
        table.attrs.get("shards")
    )


def verify_shards(folder):
    """Checks every shard of a folder against the manifest's SHA-256 sums.

    Returns:
        A list of the shard files that are missing or differ (empty: all good).

    Example:

    ```python
    assert verify_shards("gs://bucket/cxr-224") == []
    ```
    """
    manifest = read_manifest(folder)
    bad = []
    for shard in manifest["shards"]:
        path = join_path(folder, shard["file"])
        if not tf.io.gfile.exists(path) or sha256(path) != shard["sha256"]:
            bad.append(shard["file"])
    return bad
