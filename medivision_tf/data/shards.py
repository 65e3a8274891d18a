"""Sharded TFRecords: decode every image once, read them back with graph ops only.

`write_shards(source, out)` decodes each image of any source we read (folders,
CSV, npz, DICOM, prepared datasets; with the same decode options as
`make_dataset`), optionally resizes it, and writes split-aware shards
`OUT/{split}-{i:05d}-of-{n:05d}.tfrecord` of `tf.train.Example`s:

| feature | content |
|---------|---------|
| `image` | the decoded image, PNG-encoded (lossless), uint8 |
| `label` / `labels` | class id (single-label) / class ids (multi-label) |
| `index` | the example's row number in `examples.csv` (unique) |
| `group`, `path`, `split` | patient group, original path, split |
| `height`, `width`, `channels` | the stored image's shape |

plus `OUT/shards.json` (the manifest: class names, decode options, counts
per split and class, every shard with its example count and SHA-256),
`OUT/examples.csv` (one row per example: the sample table of the folder) and
`OUT/bad_files.csv` (files that could not be used, with `scan`'s reasons).
Rows are shuffled (seeded) before they are dealt to shards, so each shard
holds a mix of classes. A shard is written to a temporary name and renamed
when complete: an interrupted run keeps the finished shards and writes only
the others when run again. Every path may be local or a `tf.io.gfile` URL
(`gs://bucket/data`, `ram://...`).

Reading: `as_table(folder)` (and so `make_dataset`, `train`, `evaluate`,
`reproduce`) recognises a shard folder by its `shards.json` and returns its
sample table; `make_dataset` then reads the shards with `shard_examples`:
TensorFlow ops only (no `numpy_function`, so it runs on TPU workers), shard
files read in parallel (`interleave`), shuffled across shards (file order and
a record buffer, seeded), and under `MultiWorkerMirroredStrategy` sharded by
file when there are at least as many files as workers (else by data).

Example:

```python
import tempfile
from medivision_tf.data import make_synthetic_lesions, make_dataset
from medivision_tf.data.shards import write_shards

root, out = tempfile.mkdtemp(), tempfile.mkdtemp()
make_synthetic_lesions(24, 32, 2).to_directory(root)
manifest = write_shards(root, out, image_size=32, channels=1, examples_per_shard=8)
ds = make_dataset(out, image_size=32, channels=1, batch_size=4, training=True)
images, labels = next(iter(ds))       # (4, 32, 32, 1) float32, (4,) int32
```
"""

import hashlib
import io
import json
import os
import posixpath

import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.data import decode
from medivision_tf.data.table import class_names_of, is_multi_label

MANIFEST_NAME = "shards.json"
INDEX_NAME = "examples.csv"
REPORT_NAME = "bad_files.csv"
PLAN_NAME = "plan.json"
FORMAT_VERSION = 1
# Python-function op types: none may appear in the shard reader's graph.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc", "NumpyFunction"})


def _join(folder, name):
    folder = os.fspath(folder)
    if "://" in folder:
        return posixpath.join(folder, name)
    return os.path.join(folder, name)


def _read_text(path):
    with tf.io.gfile.GFile(path, "r") as handle:
        return handle.read()


def _write_text(path, text):
    """Writes `path` whole (a temporary name, then a rename)."""
    partial = path + ".partial"
    with tf.io.gfile.GFile(partial, "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(partial, path, overwrite=True)


def _sha256(path):
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
        return tf.io.gfile.exists(_join(path, MANIFEST_NAME))
    except (tf.errors.OpError, ValueError):
        return False


def read_manifest(folder):
    """The `shards.json` of a shard folder, as a dict.

    Raises:
        FileNotFoundError: `folder` holds no `shards.json`.
    """
    path = _join(folder, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"Not a shard folder (no {MANIFEST_NAME}): {os.fspath(folder)!r}. "
            "Write one with `medivision shard SOURCE --out DIR`."
        )
    return json.loads(_read_text(path))


def _labels_text(ids):
    return ";".join(str(int(i)) for i in ids)


def _parse_labels(text):
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
    with tf.io.gfile.GFile(_join(folder, INDEX_NAME), "r") as handle:
        table = pd.read_csv(handle, dtype={"path": str, "group": str, "split": str,
                                           "shard": str, "class_name": str, "labels": str},
                            keep_default_na=False)
    table = table.drop(columns="source_row").reset_index(drop=True)
    if manifest["multi_label"]:
        table["labels"] = [_parse_labels(t) for t in table["labels"]]
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


# === Writing ===


def _example(png, height, width, channels, row, index, multi_label):
    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def raw(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        "image": raw(png),
        "index": ints([index]),
        "height": ints([height]),
        "width": ints([width]),
        "channels": ints([channels]),
        "path": raw(str(row["path"]).encode()),
        "group": raw(str(row.get("group", "") if pd.notna(row.get("group", "")) else "").encode()),
        "split": raw(str(row.get("split", "") or "").encode()),
    }
    if multi_label:
        features["labels"] = ints(row["labels"])
    else:
        features["label"] = ints([int(row["label"])])
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _encoder(size, channels, window, bit_depth_16, resize, interpolation, antialias,
             compression):
    def encode(index, path):
        image = decode.load_image(path, channels, window, bit_depth_16)
        if size is None:
            image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        else:
            image = decode.finish_image(image, size, channels, resize, interpolation,
                                        antialias, dtype=tf.uint8)
        shape = tf.shape(image)
        return index, tf.io.encode_png(image, compression=compression), shape[0], shape[1]

    return encode


def _decode_error(path, channels, window, bit_depth_16):
    try:
        decode.load_image(path, channels, window, bit_depth_16)
    except (tf.errors.OpError, ValueError) as error:
        message = str(getattr(error, "message", error)).strip().splitlines()
        return (message[0] if message else type(error).__name__)[:300]
    return "decoding failed"


def write_shards(
    source,
    out,
    *,
    image_size=None,
    channels=3,
    resize="pad",
    interpolation="bilinear",
    antialias=False,
    dicom_window=None,
    bit_depth_16="auto",
    examples_per_shard=1024,
    png_compression=0,
    seed=0,
    root=None,
    verbose=True,
):
    """Decodes every image of a source once and writes sharded TFRecords.

    Files that cannot be used are reported (`OUT/bad_files.csv`, with the
    reasons of `medivision_tf.data.scan`: missing, empty, not an image, too
    large, unknown label, corrupt) and left out, never silently dropped.
    Running it again on the same folder keeps the finished shards; a folder
    holding shards of another source or other options is refused.

    Args:
        source: anything `as_table` reads (folder, prepared folder, `.csv`,
            `.npz`, sample table, `(images, labels)` arrays).
        out: output folder, local or a `tf.io.gfile` URL (`gs://...`).
        image_size: resize every image to this int or `(height, width)`
            (`resize`, `interpolation`, `antialias` as in `make_dataset`);
            None keeps each image's own size. Shards made at the training
            size are read fastest (no resize per epoch).
        channels: 1 (grayscale) or 3 (RGB) stored channels.
        resize, interpolation, antialias: see `make_dataset`.
        dicom_window: DICOM window (default: the table's or `"auto"`).
        bit_depth_16: 16-bit PNG/TIFF handling, one of
            `medivision_tf.data.formats.BIT_DEPTH_16_MODES` (default "auto").
        examples_per_shard: examples per shard file (the last of each split
            may hold fewer). 100-200 MB shards suit buckets best.
        png_compression: zlib level of the PNGs, 0-9. 0 (default): stored
            blocks, about the size of the raw pixels and decoded ~4x faster
            than level 6 (measured here: 2800 vs 430 images/s at 224x224x3);
            6-9: smaller shards for slow networks, slower reads.
        seed: seed of the shuffle that deals rows to shards.
        root: folder relative CSV paths start from (CSV sources only).
        verbose: tqdm progress bar and a summary line.

    Returns:
        The manifest (the dict written to `OUT/shards.json`), with
        `"bad_files"`: the report DataFrame.

    Raises:
        ValueError: an option that is not allowed, no usable image, or an
            output folder holding other shards.

    Example:

    ```python
    manifest = write_shards("data/chest_xray", "gs://bucket/cxr-224", image_size=224)
    manifest["counts"]["train"]["total"], len(manifest["shards"])
    ```
    """
    from tqdm.auto import tqdm

    from medivision_tf.data.pipeline import as_table, _validate
    from medivision_tf.data.scan import REPORT_COLUMNS, scan

    size = None if image_size is None else decode.check_size(image_size)
    channels = decode.check_channels(channels)
    if resize not in decode.RESIZE_MODES:
        raise ValueError(
            f"Unknown resize mode {resize!r}. Choose one of: {', '.join(decode.RESIZE_MODES)}."
        )
    if bit_depth_16 not in decode.BIT_DEPTH_16_MODES:
        raise ValueError(
            f"Unknown bit_depth_16 {bit_depth_16!r}. Choose one of: "
            f"{', '.join(decode.BIT_DEPTH_16_MODES)}."
        )
    if not isinstance(examples_per_shard, (int, np.integer)) or examples_per_shard < 1:
        raise ValueError(
            "`examples_per_shard` must be a positive integer. "
            f"Received: examples_per_shard={examples_per_shard!r}"
        )
    if png_compression not in range(10):
        raise ValueError(
            f"`png_compression` must be an integer 0-9. Received: {png_compression!r}")
    if is_shard_folder(source):
        raise ValueError(f"{os.fspath(source)!r} is already a shard folder.")
    table = _validate(as_table(source, root=root), None)
    if "image" in table:
        raise ValueError(
            "Array sources (npz, arrays) are already decoded: train on them directly, or "
            "write them as image files first. Received a table with an 'image' column."
        )
    names = class_names_of(table)
    multi = is_multi_label(table)
    if dicom_window is None:
        dicom_window = table.attrs.get("dicom_window", "auto")
    window = decode.check_window(dicom_window)
    has_split = "split" in table and table["split"].notna().any()
    has_group = "group" in table and table["group"].notna().any()
    out = os.fspath(out)
    tf.io.gfile.makedirs(out)

    # Cheap checks first (as `scan` does: missing, empty, format, size, label);
    # decoding happens once, while writing, and its failures join the report.
    table = table.assign(source_row=np.arange(len(table)))
    clean, report = scan(table, decode=False, verbose=False, dicom_window=dicom_window)
    report = report.copy()
    rng = np.random.default_rng(seed)
    clean = clean.iloc[rng.permutation(len(clean))]
    if has_split:
        order = {"train": 0, "val": 1, "test": 2}
        keys = clean["split"].map(lambda s: order.get(s, 3))
        clean = clean.iloc[np.argsort(keys.to_numpy(), kind="stable")]
        split_of = clean["split"].astype(str).to_numpy()
    else:
        split_of = np.array(["data"] * len(clean))
    paths = clean["path"].astype(str).to_numpy()

    options = {
        "image_size": None if size is None else list(size), "channels": channels,
        "resize": resize, "interpolation": interpolation, "antialias": bool(antialias),
        "dicom_window": list(window) if isinstance(window, tuple) else window,
        "bit_depth_16": bit_depth_16, "png_compression": int(png_compression),
    }
    plan = []
    for split in dict.fromkeys(split_of):
        rows = np.flatnonzero(split_of == split)
        count = max(1, -(-len(rows) // examples_per_shard))
        for i in range(count):
            chunk = rows[i * examples_per_shard:(i + 1) * examples_per_shard]
            plan.append({"file": f"{split}-{i:05d}-of-{count:05d}.tfrecord", "split": split,
                         "rows": chunk.tolist()})
    labels_of = (clean["labels"] if multi else clean["label"]).tolist()
    fingerprint = hashlib.sha256(json.dumps({
        "options": options, "classes": names, "seed": seed, "per_shard": examples_per_shard,
        "rows": [[p, str(l), s] for p, l, s in zip(paths, labels_of, split_of)],
    }, sort_keys=True).encode()).hexdigest()
    plan_path = _join(out, PLAN_NAME)
    if tf.io.gfile.exists(plan_path):
        previous = json.loads(_read_text(plan_path)).get("fingerprint")
        if previous != fingerprint:
            raise ValueError(
                f"{out!r} holds shards of another source or other options "
                f"(plan fingerprint {str(previous)[:12]} != {fingerprint[:12]}). "
                "Choose another --out, or delete the folder to start over."
            )
    else:
        _write_text(plan_path, json.dumps({"fingerprint": fingerprint}))

    encode = _encoder(size, channels, window, bit_depth_16, resize, interpolation, antialias,
                      png_compression)
    infos = {}
    for shard in plan:  # finished earlier (the file and its sidecar exist): kept
        final = _join(out, shard["file"])
        if tf.io.gfile.exists(final) and tf.io.gfile.exists(final + ".json"):
            infos[shard["file"]] = json.loads(_read_text(final + ".json"))
    pending = [shard for shard in plan if shard["file"] not in infos]
    bar = tqdm(total=len(clean), desc="Writing shards", unit="img", disable=not verbose)
    bar.update(sum(len(s["rows"]) for s in plan if s["file"] in infos))
    rows = [r for shard in pending for r in shard["rows"]]
    decoded = iter(())
    if rows:  # one parallel decode over every pending row, in plan order
        dataset = tf.data.Dataset.from_tensor_slices((np.asarray(rows, "int64"), paths[rows]))
        decoded = iter(dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=True).ignore_errors().prefetch(8))
    ahead = next(decoded, None)
    for shard in pending:
        final = _join(out, shard["file"])
        partial = final + ".partial"
        members, written = set(shard["rows"]), []
        with tf.io.TFRecordWriter(partial) as writer:
            while ahead is not None and int(ahead[0]) in members:
                row, png, height, width = ahead
                row = int(row)
                writer.write(_example(png.numpy(), int(height), int(width), channels,
                                      clean.iloc[row], row, multi))
                written.append(row)
                bar.update(1)
                ahead = next(decoded, None)
        failed = [r for r in shard["rows"] if r not in set(written)]
        bar.update(len(failed))
        tf.io.gfile.rename(partial, final, overwrite=True)
        info = {
            "file": shard["file"], "split": shard["split"], "count": len(written),
            "rows": written, "bytes": int(tf.io.gfile.stat(final).length),
            "sha256": _sha256(final),
            "failed": [[r, paths[r], _decode_error(paths[r], channels, window, bit_depth_16)]
                       for r in failed],
        }
        _write_text(final + ".json", json.dumps(info))
        infos[shard["file"]] = info
    rows_out, shards_out, failed_all = [], [], []
    for shard in plan:
        info = infos[shard["file"]]
        failed_all.extend(info["failed"])
        if info["count"]:
            rows_out.extend((r, shard["file"]) for r in info["rows"])
            shards_out.append({k: info[k] for k in ("file", "split", "count", "bytes", "sha256")})
    bar.close()
    for r, path, detail in failed_all:
        report.loc[len(report)] = [clean.index[r], path, "corrupt", detail]
    if not rows_out:
        raise ValueError(f"No usable images in {source!r}: all {len(table)} were refused.")

    index_rows = np.array([r for r, _ in rows_out])
    examples = clean.iloc[index_rows].copy()
    examples["shard"] = [f for _, f in rows_out]
    examples["index"] = index_rows
    columns = ["index", "path"] + (["labels"] if multi else ["label", "class_name"])
    examples["group"] = examples["group"].fillna("").astype(str) if "group" in examples else ""
    examples["split"] = split_of[index_rows] if has_split else ""
    if multi:
        examples["labels"] = [_labels_text(ids) for ids in examples["labels"]]
    elif "class_name" not in examples:
        examples["class_name"] = [names[i] for i in examples["label"]]
    examples = examples[columns + ["group", "split", "shard", "source_row"]]
    # In the source's order: the same seed splits it as it splits the source.
    examples = examples.sort_values("source_row")
    buffer = io.StringIO()
    examples.to_csv(buffer, index=False)
    _write_text(_join(out, INDEX_NAME), buffer.getvalue())
    report_buffer = io.StringIO()
    report[list(REPORT_COLUMNS)].to_csv(report_buffer, index=False)
    _write_text(_join(out, REPORT_NAME), report_buffer.getvalue())

    counts = {}
    for split in dict.fromkeys(examples["split"] if has_split else ["data"]):
        part = examples[examples["split"] == split] if has_split else examples
        if multi:
            ids = [i for text in part["labels"] for i in _parse_labels(text)]
            per_class = {names[i]: ids.count(i) for i in range(len(names))}
        else:
            per_class = {names[i]: int((part["label"] == i).sum()) for i in range(len(names))}
        counts[split] = {"total": int(len(part)), "per_class": per_class}
    manifest = {
        "format_version": FORMAT_VERSION,
        "class_names": list(names),
        "multi_label": bool(multi),
        "has_split": bool(has_split),
        "has_group": bool(has_group),
        "decode": options,
        "num_examples": int(index_rows.max()) + 1,
        "num_written": int(len(examples)),
        "num_bad_files": int(len(report)),
        "counts": counts,
        "shards": shards_out,
        "source": str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__,
        "seed": seed,
        "examples_per_shard": int(examples_per_shard),
    }
    _write_text(_join(out, MANIFEST_NAME), json.dumps(manifest, indent=1))
    if verbose:
        print(f"Wrote {len(examples)} images in {len(shards_out)} shards to {out}; "
              f"{len(report)} files refused (see {REPORT_NAME}).")
    manifest["bad_files"] = report
    return manifest


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
        path = _join(folder, shard["file"])
        if not tf.io.gfile.exists(path) or _sha256(path) != shard["sha256"]:
            bad.append(shard["file"])
    return bad


# === Reading ===


def _num_workers():
    """Workers of the `TF_CONFIG` cluster (chief included), 1 without one."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def record_functions(table, finish, image_size, channels):
    """The per-record functions of the shard reader (graph ops only).

    Args:
        table: a shard sample table (`load_shards`, or rows of one).
        finish: `image -> model-ready uint8 image` (`decode.finish_image`
            with the pipeline's options), used when the stored size or
            channels differ from the requested ones.
        image_size: `(height, width)` requested.
        channels: channels requested.

    Returns:
        `(parse, keep, decode)`: `parse(serialized)` gives `(index, png,
        label)`: a class id (int32) or a float32 multi-hot vector;
        `keep(index, png, label)` is True for the table's rows (None when
        the table holds every row of its shard files: nothing to filter);
        `decode(index, png, label)` gives `(uint8 image, label)`.

    Example:

    ```python
    parse, keep, decode = record_functions(table, finish, (32, 32), 1)
    graph = tf.function(parse).get_concrete_function(tf.TensorSpec([], tf.string)).graph
    ```
    """
    info = table.attrs["shards"]
    multi = is_multi_label(table)
    num_classes = len(class_names_of(table))
    stored_size = info["image_size"]
    stored_channels = int(info["channels"])
    as_stored = stored_size is not None and tuple(stored_size) == tuple(image_size) and (
        stored_channels == channels
    )
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "index": tf.io.FixedLenFeature([], tf.int64)}
    if multi:
        spec["labels"] = tf.io.VarLenFeature(tf.int64)
    else:
        spec["label"] = tf.io.FixedLenFeature([], tf.int64)

    def parse(serialized):
        features = tf.io.parse_single_example(serialized, spec)
        if multi:
            ids = tf.sparse.to_dense(features["labels"])
            label = tf.minimum(tf.reduce_sum(tf.one_hot(ids, num_classes), axis=0), 1.0)
        else:
            label = tf.cast(features["label"], tf.int32)
        return features["index"], features["image"], label

    keep = None
    per_file = info.get("counts") or {}
    files = set(table["shard"])
    if len(table) != sum(per_file.get(f, -1) for f in files):  # a subset of the rows
        mask = np.zeros(int(info["num_examples"]), bool)
        mask[table["index"].to_numpy(int)] = True
        mask = tf.constant(mask)

        def keep(index, png, label):
            return tf.gather(mask, index)

    def decode(index, png, label):
        image = tf.io.decode_png(png, channels=stored_channels)
        if as_stored:
            image.set_shape([*image_size, channels])
        else:
            image = finish(image)
        return image, label

    return parse, keep, decode


def shard_examples(table, finish, *, image_size, channels, shuffle=False, seed=0,
                   shuffle_buffer=None, cycle_length=16, by_file=True):
    """Unbatched `(uint8 image, label)` examples of a shard table's rows.

    Shard files holding the table's rows are read in parallel
    (`interleave`); with `shuffle` their order is reshuffled each epoch and
    records pass a seeded shuffle buffer before decoding; without it they
    are read one file after another. Under a `TF_CONFIG` cluster the
    dataset is sharded by file (`AutoShardPolicy.FILE`) when there are at
    least as many files as workers, else by data.

    Args:
        table: a shard sample table (see `load_shards`).
        finish: see `record_functions`.
        image_size: `(height, width)`.
        channels: 1 or 3.
        shuffle: shuffle files and records (reshuffled each epoch).
        seed: shuffle seed.
        shuffle_buffer: records in the shuffle buffer (default: all rows, at
            most 2048).
        cycle_length: shard files read at once.
        by_file: allow sharding by file across workers (False: by data; a
            cache between reader and model needs that).

    Returns:
        A `tf.data.Dataset`.

    Example:

    ```python
    ds = shard_examples(load_shards("shards/"), finish, image_size=(32, 32), channels=1)
    ```
    """
    info = table.attrs["shards"]
    files = sorted(set(table["shard"]))
    paths = [_join(info["folder"], f) for f in files]
    parse, keep, decode_record = record_functions(table, finish, image_size, channels)
    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=1 << 20),
        cycle_length=min(len(paths), cycle_length) if shuffle else 1,
        block_length=1,
        **({"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True} if shuffle else {}),
    )
    if shuffle:  # serialized records: cheap to hold
        buffer = min(len(table), shuffle_buffer or 2048)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if keep is not None:
        dataset = dataset.filter(keep)
    dataset = dataset.map(decode_record, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policy.FILE if by_file and len(paths) >= _num_workers() else policy.DATA
    )
    return dataset.with_options(options)


def python_ops(function, *specs):
    """The Python-function op types (`PyFunc`, `EagerPyFunc`, ...) in the
    graph of `function` traced on `specs`, nested functions included (empty:
    the function runs on TPU workers).

    Example:

    ```python
    assert not python_ops(parse, tf.TensorSpec([], tf.string))
    ```
    """
    graph = tf.function(function).get_concrete_function(*specs).graph
    graph_def = graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for fn in graph_def.library.function:
        types.update(node.op for node in fn.node_def)
    return sorted(types & PYTHON_OPS)
