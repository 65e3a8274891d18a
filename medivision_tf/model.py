"""`build_medivision()`: the hybrid CNN-LSTM-attention classifier.

```
image (H, W, 1|3), raw 0-255 pixels           layer names
  -> repeat 1 channel to 3 (if needed)         "to_rgb"
  -> backbone preprocess_input                 "preprocessing"
  -> CNN backbone (built flat, by name)        keras.applications layer names
  -> last feature map (h, w, c)                "feature_map"
  -> sequence: spatial (h*w, c) | rows (h, w*c) "to_sequence"
  -> Dense(projection_units, no bias) per step "projection" (if it narrows)
  -> LSTM(return_sequences=True)               "lstm"
  -> SequenceAttention                         "attention"
  -> Add([attention output, LSTM output])      "attention_skip"
  -> GlobalAveragePooling1D -> Dropout         "pool", "dropout"
  -> Dense(num_classes, softmax | sigmoid)     "predictions"
  -> class names carried in the config         "class_labels"
```

Reading a built model (`load_model`, `get_model_config`, ...) is
`model_access`'s job and the fine-tuning controls (`set_backbone_trainable`,
`calibrate_batchnorm`, ...) are `finetune`'s; both are re-exported here.
"""

import os
import urllib.error

import keras
import numpy as np

from medivision_tf import backbones
from medivision_tf.backbone_weights import copy_backbone_weights, load_backbone_weights
from medivision_tf.config import (  # noqa: F401 (check_class_names: public here too)
    SEQUENCE_MODES,
    ModelConfig,
    check_class_names,
)
from medivision_tf.layers import BackbonePreprocessing, ClassLabels, SequenceAttention
from medivision_tf.model_access import (  # noqa: F401 (re-exported)
    ATTENTION_LAYER,
    CLASS_LABELS_LAYER,
    FEATURE_MAP_LAYER,
    attention_weights,
    backbone_layers,
    get_class_names,
    get_model_config,
    is_multi_label,
    load_model,
    sequence_grid,
)
from medivision_tf.finetune import (  # noqa: F401 (re-exported)
    calibrate_batchnorm,
    set_backbone_trainable,
    set_batchnorm_momentum,
)


def build_medivision(
    num_classes,
    *,
    backbone="efficientnetb0",
    input_shape=(224, 224, 3),
    weights="imagenet",
    sequence="spatial",
    lstm_units=128,
    projection_units=128,
    attention_units=64,
    dropout=0.3,
    multi_label=False,
    class_names=None,
    lstm_unroll=False,
    name="medivision",
    decode=None,
):
    """Builds a MediVision classifier as a functional `keras.Model`.

    A pretrained CNN backbone's last feature map is read as a sequence of
    feature vectors, run through an LSTM, re-weighted by an attention layer,
    merged with the LSTM output by an `Add` skip, pooled and classified. The
    model takes raw 0-255 pixels: the backbone's preprocessing is inside it.

    Args:
        num_classes: number of output classes (>= 2 unless `multi_label`).
        backbone: a name from `medivision_tf.available_backbones()`, e.g.
            `"efficientnetb0"`, `"resnet50"`, `"densenet121"` or `"smallcnn"`
            (small, trained from scratch, for inputs from 28x28).
        input_shape: `(height, width, channels)` with 1 or 3 channels;
            1-channel images are repeated to RGB inside the model.
        weights: `"imagenet"` (downloads the pretrained backbone), `None`
            (random initialization) or the path of a local backbone weights
            file (e.g. Keras' `*_notop.h5`) for machines without internet.
        sequence: how the `(h, w, c)` feature map becomes a sequence:
            `"spatial"` gives `h*w` positions of `c` features, `"rows"` gives
            `h` rows of `w*c` features.
        lstm_units: LSTM width.
        projection_units: width each sequence element is projected to,
            by one linear map shared over the sequence, before the LSTM; `None`
            feeds the LSTM the raw features (the paper's literal form). The
            projection followed by the LSTM's input weights is a rank-limited
            factorization of those weights, so it is only added when it
            narrows the elements (wider than `projection_units`); otherwise
            the LSTM alone computes the same family of functions. With 1280
            backbone channels and the default widths the head has 2.4x fewer
            weights and multiply-adds than without it, which keeps its
            training cost within the 5% aim over a pooling head
            (`benchmarks/bench_head.py`).
        attention_units: width of the attention scoring projection.
        dropout: dropout rate before the classifier, in `[0, 1)`.
        multi_label: sigmoid outputs (one independent probability per class)
            instead of a softmax.
        class_names: names of the classes (default `class_0`, `class_1`, ...);
            they are saved with the model.
        lstm_unroll: unroll the LSTM over its (short, fixed-length) sequence:
            the same function, computed without a `while` loop. Whether that
            is faster depends on the hardware (on our 2-core CPU it was not).
            Keep False on GPUs, where Keras runs a rolled LSTM with the fused
            cuDNN kernel.
        name: the model name.
        decode: how image files are read for this model (DICOM window,
            16-bit scaling, frames, NIfTI slicing): a
            `medivision_tf.config.DecodeOptions`, its dict, or None (the
            defaults). Stored in the model's config; `predict`, `explain`
            and exports read files with it.

    Returns:
        A `keras.Model` mapping `(batch, *input_shape)` images to
        `(batch, num_classes)` probabilities. It is not compiled.

    Example:

    ```python
    import numpy as np
    import medivision_tf

    model = medivision_tf.build_medivision(
        3, backbone="smallcnn", input_shape=(64, 64, 1), weights=None
    )
    probs = model.predict(np.zeros((2, 64, 64, 1)), verbose=0)   # (2, 3)
    ```
    """
    spec = backbones.get_backbone(backbone)
    input_shape = _check_input_shape(input_shape, spec)
    _check_head(num_classes, dropout, multi_label)
    _check_sequence_head(sequence, lstm_units, attention_units, projection_units)
    num_classes, lstm_units, attention_units = (
        int(n) for n in (num_classes, lstm_units, attention_units)
    )
    class_names = _check_class_names(class_names, num_classes)
    weights = _check_weights(weights, spec)

    # === Backbone (raw pixels in, last feature map out) ===
    inputs, features = _backbone_graph(spec, input_shape, weights)

    # === Sequence head ===
    height, width, channels = features.shape[1:]
    if sequence == "spatial":
        x = keras.layers.Reshape((height * width, channels), name="to_sequence")(
            features
        )
    else:
        x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="to_sequence")(
            features
        )
    if projection_units is not None and x.shape[-1] > projection_units:
        # Dense on a (batch, steps, features) tensor maps every step with the
        # same weights (TimeDistributed). No bias: the LSTM adds its own.
        x = keras.layers.Dense(int(projection_units), use_bias=False, name="projection")(x)
    lstm_out = keras.layers.LSTM(
        lstm_units, return_sequences=True, unroll=bool(lstm_unroll), name="lstm"
    )(x)
    attended, _ = SequenceAttention(attention_units, name=ATTENTION_LAYER)(lstm_out)
    x = keras.layers.Add(name="attention_skip")([attended, lstm_out])
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)

    # === Classifier ===
    config = ModelConfig(
        num_classes=num_classes, backbone=backbone, input_shape=input_shape,
        weights=weights if weights is None or weights == "imagenet" else os.fspath(weights),
        sequence=sequence, lstm_units=lstm_units,
        projection_units=None if projection_units is None else int(projection_units),
        attention_units=attention_units, dropout=float(dropout),
        multi_label=bool(multi_label), class_names=class_names,
        lstm_unroll=bool(lstm_unroll), name=name, decode=decode,
    )
    outputs = _classifier(x, config)
    return keras.Model(inputs, outputs, name=name)


def build_pooling_baseline(
    num_classes,
    *,
    backbone="efficientnetb0",
    input_shape=(224, 224, 3),
    weights="imagenet",
    dropout=0.3,
    multi_label=False,
    class_names=None,
    name="pooling_baseline",
    decode=None,
):
    """The same backbone with a plain pooling head, for comparisons.

    Identical to `build_medivision` up to the `"feature_map"` layer, then
    `GlobalAveragePooling2D -> Dropout -> Dense`: the usual transfer-learning
    classifier, which the benchmarks measure MediVision against. Arguments
    mean the same as in `build_medivision`.

    Example:

    ```python
    baseline = build_pooling_baseline(3, backbone="smallcnn",
                                      input_shape=(64, 64, 1), weights=None)
    ```
    """
    spec = backbones.get_backbone(backbone)
    input_shape = _check_input_shape(input_shape, spec)
    _check_head(num_classes, dropout, multi_label)
    num_classes = int(num_classes)
    class_names = _check_class_names(class_names, num_classes)
    weights = _check_weights(weights, spec)
    inputs, features = _backbone_graph(spec, input_shape, weights)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    config = ModelConfig(
        num_classes=num_classes, backbone=backbone, input_shape=input_shape,
        weights=weights if weights is None or weights == "imagenet" else os.fspath(weights),
        dropout=float(dropout), multi_label=bool(multi_label), class_names=class_names,
        name=name, head="pooling", decode=decode,
    )
    outputs = _classifier(x, config)
    return keras.Model(inputs, outputs, name=name)


def _backbone_graph(spec, input_shape, weights):
    """Input layer -> RGB -> preprocessing -> backbone -> "feature_map"."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_shape[-1] == 1:
        x = keras.layers.Concatenate(name="to_rgb")([x, x, x])
    x = BackbonePreprocessing(spec.preprocessing, name="preprocessing")(x)
    # Built flat in our graph (input_tensor=) rather than nested as one layer,
    # so its layers, above all the last feature map, are reachable by name
    # (tf-keras-vis cannot target a layer inside a nested sub-model).
    cnn = _build_backbone(spec, x, input_shape[:2] + (3,), weights)
    return inputs, keras.layers.Identity(name=FEATURE_MAP_LAYER)(cnn.output)


def _classifier(x, config):
    """Dropout -> Dense(softmax | sigmoid) -> class names layer (holding `config`)."""
    num_classes, multi_label = config.num_classes, config.multi_label
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    # float32 outputs keep the probabilities exact under mixed precision.
    x = keras.layers.Dense(
        num_classes,
        activation="sigmoid" if multi_label else "softmax",
        dtype="float32",
        name="predictions",
    )(x)
    return ClassLabels(
        list(config.class_names), multi_label=multi_label, model_config=config.to_dict(),
        dtype="float32", name=CLASS_LABELS_LAYER,
    )(x)


def _check_input_shape(input_shape, spec):
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = None
    if shape is None or len(shape) != 3:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with integer sizes. "
            f"Received: input_shape={input_shape!r}"
        )
    if shape[-1] not in (1, 3):
        raise ValueError(
            "`input_shape` must have 1 (grayscale) or 3 (RGB) channels. "
            f"Received: {shape[-1]} channels in input_shape={shape}"
        )
    if min(shape[:2]) < spec.min_size:
        raise ValueError(
            f"Backbone {spec.name!r} needs inputs of at least "
            f"{spec.min_size}x{spec.min_size}. Received: input_shape={shape}"
        )
    return shape


def _check_head(num_classes, dropout, multi_label):
    smallest = 1 if multi_label else 2
    if not _is_int(num_classes) or num_classes < smallest:
        raise ValueError(
            f"`num_classes` must be an integer >= {smallest} "
            f"({'sigmoid' if multi_label else 'softmax'} output). "
            f"Received: num_classes={num_classes!r}"
        )
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")


def _check_sequence_head(sequence, lstm_units, attention_units, projection_units):
    if sequence not in SEQUENCE_MODES:
        raise ValueError(
            f"Unknown sequence mode {sequence!r}. Choose one of: "
            f"{', '.join(SEQUENCE_MODES)}."
        )
    for arg, value in (("lstm_units", lstm_units), ("attention_units", attention_units)):
        if not _is_int(value) or value < 1:
            raise ValueError(
                f"`{arg}` must be a positive integer. Received: {arg}={value!r}"
            )
    if projection_units is not None and (not _is_int(projection_units) or projection_units < 1):
        raise ValueError(
            "`projection_units` must be a positive integer or None. "
            f"Received: projection_units={projection_units!r}"
        )


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_class_names(class_names, num_classes):
    if class_names is None:
        return [f"class_{i}" for i in range(num_classes)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes or len(set(class_names)) != num_classes:
        raise ValueError(
            f"`class_names` must be {num_classes} distinct names (num_classes). "
            f"Received: class_names={class_names!r}"
        )
    return class_names


def _check_weights(weights, spec):
    if weights is None:
        return None
    if weights == "imagenet":
        if not spec.has_imagenet_weights:
            raise ValueError(
                f"Backbone {spec.name!r} has no ImageNet weights. Use "
                "weights=None or the path of a weights file."
            )
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Backbone weights file not found: {path!r}. `weights` must be "
                '"imagenet", None, or the path of an existing weights file.'
            )
        return path
    raise ValueError(
        '`weights` must be "imagenet", None, or the path of a weights file. '
        f"Received: weights={weights!r}"
    )


def _build_backbone(spec, input_tensor, input_shape, weights):
    build = backbones.constructor(spec)
    if weights is not None and weights != "imagenet":
        # A local file: loaded into a standalone twin (any form: backbone
        # weights, a whole classifier; see backbone_weights), then copied
        # into the flat backbone by layer name.
        cnn = build(include_top=False, weights=None, input_tensor=input_tensor,
                    input_shape=input_shape)
        copy_backbone_weights(load_backbone_weights(spec, weights, input_shape), cnn)
        return cnn
    try:
        return build(
            include_top=False,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
        )
    except Exception as error:  # keras.utils.get_file raises a bare Exception
        if weights == "imagenet" and _is_download_failure(error):
            raise ConnectionError(
                f"Could not download the ImageNet weights of backbone "
                f"{spec.name!r}: {error}\nOn a machine without internet, fetch "
                "that file elsewhere (Keras caches it in ~/.keras/models/) and "
                "pass its path: build_medivision(..., weights='/path/to/"
                f"{spec.name}_notop.h5'), or use weights=None to train from "
                "scratch."
            ) from error
        raise


def _is_download_failure(error):
    return isinstance(error, (OSError, urllib.error.URLError)) or (
        "URL fetch failure" in str(error)
    )


def build_from_config(config):
    """Builds the (untrained) model a `ModelConfig` describes.

    Args:
        config: a `ModelConfig` or its `to_dict()`.

    Returns:
        `build_medivision(...)` (or `build_pooling_baseline(...)` for
        `head="pooling"`) called with the config's arguments.

    Example:

    ```python
    twin = build_from_config(get_model_config(model))   # same architecture
    ```
    """
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    values = config.to_dict()
    head = values.pop("head")
    values.pop("trust", None)  # fitted on data (medivision_tf.trust), not an argument
    if head == "pooling":
        keep = ("num_classes", "backbone", "input_shape", "weights", "dropout", "multi_label",
                "class_names", "name", "decode")
        return build_pooling_baseline(**{k: values[k] for k in keep})
    return build_medivision(**values)
