"""MediVision-TF: a hybrid CNN-LSTM-attention classifier for medical images.

Example:

```python
import medivision_tf

model = medivision_tf.build_medivision(4)   # EfficientNetB0, ImageNet weights
```
"""

from medivision_tf.backbones import available_backbones
from medivision_tf.model import (
    attention_weights,
    backbone_layers,
    build_medivision,
    build_pooling_baseline,
    calibrate_batchnorm,
    get_class_names,
    is_multi_label,
    load_model,
    sequence_grid,
    set_backbone_trainable,
)

# The pipeline stages, importable as medivision_tf.data, .training, ...
# (`serving` is left out: it needs the optional kserve dependency).
from medivision_tf import data, evaluation, explain, export, training
from medivision_tf.evaluation import evaluate_model
from medivision_tf.export import export_saved_model, export_tflite, read_export_metadata
from medivision_tf.prediction import predict_files
from medivision_tf.training import TrainConfig, train

__version__ = "0.1.0"
