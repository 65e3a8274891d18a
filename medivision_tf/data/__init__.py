"""Data sources, tf.data pipelines, splits, scans, the paper's datasets and
synthetic lesion data.

The subpackages are the stages an image goes through, in order; each
imports only the stages before it:

```
sources/    folders, CSV files, DICOM trees, arrays/.npz, volumes, shard folders -> sample tables
io/         image files -> pixels: format sniffing, DICOM/NIfTI/TIFF/16-bit readers,
            graph decode, pixel budget, finish (channels, resize)
checks/     scan, duplicates and leakage, splits, a run's input report
pipeline/   make_dataset (decode options as one DecodeOptions), augmentation, training inputs
shards/     sharded TFRecords: writer, reader, folder
datasets/   the paper's ten public datasets, synthetic lesions
```
A table's image goes one way: `sources` lists it, `io` reads and finishes it
(`io.sample_reader`, with the one `medivision_tf.config.DecodeOptions`), the
`pipeline` batches it. Every public name is available here.

Example:

```python
from medivision_tf import data
from medivision_tf.config import DecodeOptions

table = data.from_directory("chest_xray/")           # or from_csv / from_npz
table, report = data.scan(table)                      # skip bad files
train, val, test = data.split_table(table, seed=0, group_column=None)
train_ds = data.make_dataset(train, image_size=224, training=True)
val_ds = data.make_dataset(val, image_size=224, decode=DecodeOptions(bit_depth_16="12bit"))
weights = data.class_weights(train)
```
"""

from medivision_tf.backend import INSTEAD, require_tensorflow

# Before TensorFlow is imported: on JAX or PyTorch, one clear error (docs/backends.md).
require_tensorflow(
    "medivision_tf.data (tf.data pipelines, sources, image-file readers, shards)",
    INSTEAD["data"],
)

from medivision_tf.data.io.dicom import read_dicom
from medivision_tf.data.io.finish import finish_image, resize_image, to_channels
from medivision_tf.data.io.frame_paths import split_frame, with_frame
from medivision_tf.data.io.graph_decode import decode_image, load_image
from medivision_tf.data.io.nifti import nifti_slices, read_nifti
from medivision_tf.data.io.options import check_window
from medivision_tf.data.io.read_files import load_images, read_images
from medivision_tf.data.io.sniff import sniff_format
from medivision_tf.data.io.tiff import read_tiff
from medivision_tf.data.sources.any_source import as_table
from medivision_tf.data.sources.arrays import from_npz, from_numpy
from medivision_tf.data.sources.csv_files import from_csv
from medivision_tf.data.sources.folders import from_dicom, from_directory
from medivision_tf.data.sources.image_files import IMAGE_EXTENSIONS, inside_root, list_images
from medivision_tf.data.sources.prepared import is_prepared, load_prepared
from medivision_tf.data.sources.table import (
    class_names_of,
    decode_options_of,
    is_multi_label,
    with_attrs,
)
from medivision_tf.data.sources.volumes import expand_volumes, reexpand_volumes
from medivision_tf.data.checks.duplicates import find_duplicates
from medivision_tf.data.checks.hashes import image_hashes
from medivision_tf.data.checks.leakage import check_leakage
from medivision_tf.data.checks.scan import REASONS, NoUsableSamplesError, check_file, scan
from medivision_tf.data.checks.splits import (
    by_split,
    class_weights,
    kfold,
    split_table,
    summarize,
)
from medivision_tf.data.pipeline.augment import (
    DEFAULT_AUGMENTATION,
    Augmentation,
    augmentation_layers,
    augmentation_model,
)
from medivision_tf.data.pipeline.dataset import make_dataset
from medivision_tf.data.shards import (
    is_shard_folder,
    load_shards,
    verify_shards,
    write_shards,
)
from medivision_tf.data.datasets.prepare import prepare_dataset
from medivision_tf.data.datasets.registry import (
    PAPER_DATASETS,
    DatasetSpec,
    available_datasets,
    datasets_table,
    get_dataset,
)
from medivision_tf.data.datasets.synthetic import (
    LESION_PATTERNS,
    SyntheticLesions,
    make_synthetic_lesions,
)
