"""Data sources, tf.data pipelines, splits, scans, the paper's datasets and
synthetic lesion data.

Example:

```python
from medivision_tf import data

table = data.from_directory("chest_xray/")           # or from_csv / from_npz
table, report = data.scan(table)                      # skip bad files
train, val, test = data.split_table(table, seed=0, group_column=None)
train_ds = data.make_dataset(train, image_size=224, training=True)
val_ds = data.make_dataset(val, image_size=224)
weights = data.class_weights(train)
```
"""

from medivision_tf.data.datasets import (
    PAPER_DATASETS,
    DatasetSpec,
    available_datasets,
    datasets_table,
    get_dataset,
    is_prepared,
    load_prepared,
    prepare_dataset,
)
from medivision_tf.data.decode import (
    check_window,
    decode_image,
    finish_image,
    load_image,
    load_images,
    read_dicom,
    read_images,
    read_tiff,
    resize_image,
    sniff_format,
    to_channels,
)
from medivision_tf.data.formats import nifti_slices, read_nifti, split_frame, with_frame
from medivision_tf.data.volumes import expand_volumes, reexpand_volumes
from medivision_tf.data.augment import (
    DEFAULT_AUGMENTATION,
    Augmentation,
    augmentation_layers,
    augmentation_model,
)
from medivision_tf.data.pipeline import as_table, make_dataset
from medivision_tf.data.scan import REASONS, NoUsableSamplesError, check_file, scan
from medivision_tf.data.table import class_names_of, is_multi_label, with_attrs
from medivision_tf.data.files import IMAGE_EXTENSIONS, inside_root, list_images
from medivision_tf.data.sources import from_csv, from_dicom, from_directory
from medivision_tf.data.arrays import from_npz, from_numpy
from medivision_tf.data.duplicates import check_leakage, find_duplicates, image_hashes
from medivision_tf.data.shards import (
    is_shard_folder,
    load_shards,
    verify_shards,
    write_shards,
)
from medivision_tf.data.splits import by_split, class_weights, kfold, split_table, summarize
from medivision_tf.data.synthetic import (
    LESION_PATTERNS,
    SyntheticLesions,
    make_synthetic_lesions,
)
