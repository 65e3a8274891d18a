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

__version__ = "0.1.0"
