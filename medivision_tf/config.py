"""`ModelConfig`: the arguments a MediVision model was built with, saved with it.

`build_medivision(num_classes, **options)` records its arguments in a
`ModelConfig` and stores it in the model (in the `class_labels` layer's
config), so it travels in every `.keras` file and export. Later stages read
it with `medivision_tf.get_model_config(model)` instead of inferring facts
from layer names or tensor shapes. This module imports neither TensorFlow
nor Keras.

Example:

```python
import medivision_tf

model = medivision_tf.build_medivision(3, backbone="smallcnn", weights=None,
                                       input_shape=(64, 64, 1), sequence="rows")
config = medivision_tf.get_model_config(model)
config.sequence, config.input_shape, config.class_names   # 'rows', (64, 64, 1), (...)
same = medivision_tf.model.build_from_config(config)  # the same architecture
```
"""

import dataclasses
import typing

#: How the feature map becomes a sequence (see `build_medivision`).
SEQUENCE_MODES = ("spatial", "rows")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Exactly the arguments of `medivision_tf.build_medivision`.

    Attributes:
        num_classes: number of outputs.
        backbone, input_shape, weights, sequence, lstm_units,
        projection_units, attention_units, dropout, multi_label,
        class_names, lstm_unroll, name: as in `build_medivision`
        (`class_names` is always filled in: `class_0`, ... by default).
        head: `"lstm_attention"` (MediVision) or `"pooling"` (the baseline
            of `build_pooling_baseline`, which has no sequence head).
        trust: the values `medivision_tf.trust.fit_trust` fitted on validation
            data (temperature, conformal threshold, OOD statistics), as a
            JSON-ready dict, or None before fitting. Not a `build_medivision`
            argument: fitted, not chosen (see `medivision_tf.trust`).
    """

    num_classes: int
    backbone: str = "efficientnetb0"
    input_shape: tuple = (224, 224, 3)
    weights: typing.Optional[str] = "imagenet"
    sequence: str = "spatial"
    lstm_units: int = 128
    projection_units: typing.Optional[int] = 128
    attention_units: int = 64
    dropout: float = 0.3
    multi_label: bool = False
    class_names: typing.Optional[tuple] = None
    lstm_unroll: bool = False
    name: str = "medivision"
    head: str = "lstm_attention"
    trust: typing.Optional[dict] = None

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def to_dict(self):
        """JSON-ready `{argument: value}` (tuples as lists); `from_dict` reads it."""
        values = dataclasses.asdict(self)
        values["input_shape"] = list(self.input_shape)
        if self.class_names is not None:
            values["class_names"] = list(self.class_names)
        return values

    @classmethod
    def from_dict(cls, values):
        """A `ModelConfig` from `to_dict()` output; unknown keys are refused.

        Raises:
            ValueError: a key that is not a `ModelConfig` field (named).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"Unknown model config key(s) {', '.join(map(repr, unknown))}. "
                f"Valid keys: {', '.join(sorted(names))}."
            )
        return cls(**values)

    @property
    def channels(self):
        """Channels of the input images (1 or 3)."""
        return self.input_shape[-1]

    @property
    def image_size(self):
        """`(height, width)` of the input images."""
        return self.input_shape[:2]


def check_class_names(model_classes, data_classes, what="dataset"):
    """Refuses data whose classes differ from the model's (names and order).

    Args:
        model_classes: the model's class names, in output order (e.g.
            `get_class_names(model)`).
        data_classes: the data's class names, in label-id order.
        what: how the error message calls the data (e.g. `"dataset"`).

    Raises:
        ValueError: the names or their order differ (both lists are shown).

    Example:

    ```python
    check_class_names(get_class_names(model), table.attrs["class_names"])
    ```
    """
    model_classes = [str(c) for c in model_classes]
    data_classes = [str(c) for c in data_classes]
    if model_classes != data_classes:
        raise ValueError(
            f"The {what}'s classes {data_classes} do not match the model's classes "
            f"{model_classes} (same names in the same order are needed)."
        )
