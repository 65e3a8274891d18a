"""The `pipeline` stage: sample tables -> batched `tf.data` datasets for `fit`.

| module | its one job |
|--------|-------------|
| `dataset` | `make_dataset`: a table (or any source) -> `(images, labels)` batches |
| `streams` | the passes over a table (seeded, resumable) and the batch/augment end of the stream |
| `augment` | per-example stateless augmentation, and the same as a layer for the accelerator |
| `training_inputs` | `training_inputs`: what `medivision_tf.train` fits on, built in one pass |

An image comes in as a path (or array) in a table, is read and finished by
`io.sample_reader` (decoded with the one `DecodeOptions`), and leaves as a
batch: the pipeline never calls back into decoding. The public names are
exported by `medivision_tf.data` (`make_dataset`, `augmentation_model`,
`Augmentation`, `DEFAULT_AUGMENTATION`, ...).

Example:

```python
from medivision_tf.config import DecodeOptions
from medivision_tf.data import from_directory, make_dataset

train = make_dataset(from_directory("ct/"), image_size=224, training=True,
                     decode=DecodeOptions(dicom_window=(40, 400)))
```
"""
