"""The `sources` stage: folders, CSV files, DICOM trees, arrays, volumes and shard folders -> sample tables.

Every source ends in the same sample table (a pandas DataFrame, one row per
image; columns and attrs in `table`), which the later stages read: `checks`
(scan, duplicates, leakage, splits) and `pipeline` (`make_dataset`).

| module | its one job |
|--------|-------------|
| `table` | the sample table's contract: columns, attrs, `class_names_of`, `finish_table`, `decode_options_of` |
| `image_files` | finding image files on disk: extensions, DICOM sniffing, walks that stay inside a root |
| `folders` | `from_directory` (a folder per class, pre-split folders) and `from_dicom` |
| `csv_files` | `from_csv` (a CSV file or DataFrame of paths and labels) |
| `arrays` | `from_numpy` and `from_npz` (MedMNIST layout) |
| `volumes` | multi-frame DICOM and NIfTI volumes as one row per frame/slice |
| `prepared` | `load_prepared`: a folder written by `prepare_dataset` (`manifest.csv`) |
| `any_source` | `as_table`: any of the above (or a shard folder) by what it is |

The public names are exported by `medivision_tf.data` (`from_directory`,
`from_csv`, `from_dicom`, `from_numpy`, `from_npz`, `as_table`, ...).

Example:

```python
from medivision_tf.data.sources.any_source import as_table

table = as_table("chest_xray/")               # class folders
table = as_table("labels.csv", root="images/")
```
"""
