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

The work is done in three modules of this package, whose public names are
available here: `writer` (writing), `folder` (the folder's files: manifest,
example index, checksums, and the example index read back as a sample
table) and `reader` (reading with graph ops). They are loaded on first use,
so `sources` and `pipeline` can read a shard folder without loading the
writer (which reads every source).
"""

import importlib

_EXPORTS = {
    "FORMAT_VERSION": "folder",
    "INDEX_NAME": "folder",
    "MANIFEST_NAME": "folder",
    "PLAN_NAME": "folder",
    "REPORT_NAME": "folder",
    "is_shard_folder": "folder",
    "is_shard_table": "folder",
    "load_shards": "folder",
    "read_manifest": "folder",
    "verify_shards": "folder",
    "PYTHON_OPS": "reader",
    "python_ops": "reader",
    "record_functions": "reader",
    "shard_examples": "reader",
    "write_shards": "writer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
