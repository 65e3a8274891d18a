"""The `datasets` stage: the paper's ten public datasets, and synthetic lesions.

| module | its one job |
|--------|-------------|
| `registry` | `DatasetSpec` and `PAPER_DATASETS`: each dataset's source, layout and classes |
| `prepare` | `prepare_dataset`: a downloaded dataset -> class folders + `manifest.csv` |
| `synthetic` | `make_synthetic_lesions`: images with a known lesion box per class |

A prepared folder is read back by `sources.prepared.load_prepared` (and by
`as_table`, so `make_dataset`, `scan` and `train` read it too). The public
names are exported by `medivision_tf.data`.

Example:

```python
from medivision_tf.data import available_datasets, load_prepared, prepare_dataset

available_datasets()[:2]           # ['alzheimer_mri', 'blood_cells']
table = prepare_dataset("brain_tumor_mri", "downloads/brain-tumor-mri", "data/brain")
table = load_prepared("data/brain")              # later runs
```
"""
