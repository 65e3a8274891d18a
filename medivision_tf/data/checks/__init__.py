"""The `checks` stage: what is wrong with the data, found before any training.

| module | its one job |
|--------|-------------|
| `scan` | `scan` / `check_file`: every file read the way the pipeline will read it; bad ones skipped and listed |
| `hashes` | `image_hashes`: an exact and a perceptual hash of every image, decoded once |
| `near_pairs` | `near_pairs`: hashes within a Hamming distance, exhaustive or by bands |
| `duplicates` | `find_duplicates`: exact and near-duplicate pairs of a table |
| `leakage` | `check_leakage`: a val/test image that copies a training image; the record a run keeps |
| `splits` | `split_table`, `by_split`, `kfold`, `class_weights`: seeded, stratified, group-aware |
| `validate` | `validate_table`: the rules a table must meet before it is read |
| `input_report` | `scan_inputs`: a run's scan and its files (`skipped_files.csv`, `inputs.json`) |
| `split_record` | a run's `split.csv`, and the check that a rerun sees the same data |
| `source_splits` | `load_source`: a training config's source read, scanned, split and checked |

The public names are exported by `medivision_tf.data` (`scan`,
`check_file`, `find_duplicates`, `check_leakage`, `split_table`, ...).

Example:

```python
from medivision_tf import data

table = data.from_directory("chest_xray/")
clean, report = data.scan(table)                       # skip and list bad files
train, val, test = data.split_table(clean, seed=0)
data.check_leakage(train, val, test)                    # refuses copies across splits
```
"""
