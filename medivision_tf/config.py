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

#: The out-of-distribution score `ood_method="auto"` stands for
#: (`medivision_tf.trust.fit_trust`, `TrainConfig`): in
#: benchmarks/bench_unseen.py it flagged more images of an unseen class than
#: `"knn"` (the earlier default) on two independent sets of models, at a
#: smaller cost on unrelated images than the Mahalanobis score alone
#: (docs/trust.md).
DEFAULT_OOD_METHOD = "combined"
#: The default before it (run folders that recorded it resume with it).
EARLIER_DEFAULT_OOD_METHOD = "knn"
#: The layers the combined score reads (kNN on the first, Mahalanobis on the second).
COMBINED_OOD_LAYER = "feature_map+pool"


def resolved_ood_method(ood_method, ood_layer="auto"):
    """The score `ood_method="auto"` stands for (others as given).

    `"combined"`, or `"knn"` where `ood_layer` names a single layer (what
    such a request meant before `"combined"` became the default). Here, not
    in `medivision_tf.trust`, so the command line and a run folder's checks
    resolve it without importing Keras.

    Example:

    ```python
    resolved_ood_method("auto")           # 'combined'
    resolved_ood_method("auto", "pool")   # 'knn'
    ```
    """
    if ood_method != "auto":
        return ood_method
    if ood_layer in ("auto", COMBINED_OOD_LAYER):
        return DEFAULT_OOD_METHOD
    return EARLIER_DEFAULT_OOD_METHOD


def resolved_ood_layer(ood_method, ood_layer):
    """The layer `ood_layer="auto"` stands for with `ood_method` (others as given):
    `COMBINED_OOD_LAYER` for the combined score, else `"feature_map"`."""
    if ood_layer != "auto":
        return ood_layer
    combined = resolved_ood_method(ood_method, ood_layer) == "combined"
    return COMBINED_OOD_LAYER if combined else "feature_map"


# The same choices as `medivision_tf.data.io.options` (not imported here: no TF).
_WINDOWS = ("auto", "minmax")
_BIT_DEPTH_16 = ("auto", "scale", "12bit", "minmax")
_FRAMES = ("first", "middle", "all")
_AXES = ("axial", "coronal", "sagittal")


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How image files are read into pixels; saved with the model, so
    `predict`, `explain`, `evaluate` and exports read files as training did.

    Attributes:
        dicom_window: `"auto"` (the file's VOI LUT / window, else min..max),
            `"minmax"` or `(center, width)`, e.g. `(40, 400)`.
        bit_depth_16: 16-bit PNG/TIFF: `"auto"` (max <= 4095: 12-bit data),
            `"scale"` (/257), `"12bit"` or `"minmax"`.
        frames: multi-frame DICOM: `"first"`, `"middle"` or `"all"`.
        nifti_axis: `"axial"`, `"coronal"` or `"sagittal"`.
        nifti_slices: `"all"`, `"nonempty"`, `"middle"` or an int k.

    Example:

    ```python
    options = DecodeOptions(dicom_window=(40, 400))
    DecodeOptions.from_dict(options.to_dict()) == options     # True
    ```
    """

    dicom_window: typing.Union[str, tuple] = "auto"
    bit_depth_16: str = "auto"
    frames: str = "middle"
    nifti_axis: str = "axial"
    nifti_slices: typing.Union[str, int] = "nonempty"

    def __post_init__(self):
        window = self.dicom_window
        if isinstance(window, str) and "," in window:
            window = window.split(",")
        if not (isinstance(window, str) and window in _WINDOWS):
            try:
                window = tuple(float(v) for v in window)
            except (TypeError, ValueError):
                window = ()
            if len(window) != 2 or window[1] <= 0:
                raise ValueError(
                    '`dicom_window` must be "auto", "minmax" or (center, width) with '
                    f"width > 0. Received: dicom_window={self.dicom_window!r}"
                )
        object.__setattr__(self, "dicom_window", window)
        for field, allowed in (("bit_depth_16", _BIT_DEPTH_16), ("frames", _FRAMES),
                               ("nifti_axis", _AXES)):
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"Unknown {field} {getattr(self, field)!r}. Choose one of: "
                    f"{', '.join(allowed)}."
                )
        slices = self.nifti_slices
        if isinstance(slices, str) and slices.isdigit():
            slices = int(slices)
        if not (slices in ("all", "nonempty", "middle") or (
            isinstance(slices, int) and not isinstance(slices, bool) and slices >= 1
        )):
            raise ValueError(
                "`nifti_slices` must be 'all', 'nonempty', 'middle' or a positive int k. "
                f"Received: nifti_slices={self.nifti_slices!r}"
            )
        object.__setattr__(self, "nifti_slices", slices)

    def to_dict(self):
        """JSON-ready dict (the window as a list)."""
        values = dataclasses.asdict(self)
        if isinstance(self.dicom_window, tuple):
            values["dicom_window"] = list(self.dicom_window)
        return values

    @classmethod
    def from_dict(cls, values):
        """From `to_dict()` output (None: the defaults); unknown keys are refused."""
        if values is None:
            return cls()
        if isinstance(values, cls):
            return values
        return _from_fields(cls, values, "decode option")

    def image_kwargs(self):
        """Keyword arguments for `data.io.read_files.load_images`/`read_images`."""
        return {
            "dicom_window": self.dicom_window, "bit_depth_16": self.bit_depth_16,
            "frames": "middle" if self.frames == "all" else self.frames,
            "nifti_axis": self.nifti_axis,
        }


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
        decode: the `DecodeOptions` image files are read with (DICOM
            window, 16-bit scaling, frames, NIfTI slicing); a dict or None
            (the defaults) is accepted.
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
    decode: typing.Optional[DecodeOptions] = None
    trust: typing.Optional[dict] = None

    def __post_init__(self):
        object.__setattr__(self, "decode", DecodeOptions.from_dict(self.decode))
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def to_dict(self):
        """JSON-ready `{argument: value}` (tuples as lists); `from_dict` reads it."""
        values = dataclasses.asdict(self)
        values["input_shape"] = list(self.input_shape)
        if self.class_names is not None:
            values["class_names"] = list(self.class_names)
        values["decode"] = self.decode.to_dict()
        return values

    @classmethod
    def from_dict(cls, values):
        """A `ModelConfig` from `to_dict()` output; unknown keys are refused.

        Raises:
            ValueError: a key that is not a `ModelConfig` field (named).
        """
        return _from_fields(cls, values, "model config key")

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


def _from_fields(cls, values, what):
    """`cls(**values)`, refusing keys that are not fields of the dataclass `cls`."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"Unknown {what}(s) {', '.join(map(repr, unknown))}. "
            f"Valid keys: {', '.join(sorted(names))}."
        )
    return cls(**values)
