"""Custom Keras layers of MediVision, registered for `.keras` serialization.

Keras has no layer for these three jobs, so they are written here:

- `SequenceAttention`: additive attention over the LSTM's output sequence
  whose weights (one per feature-map position) can be read out.
- `BackbonePreprocessing`: a backbone's `preprocess_input` as a layer, so the
  model (and its SavedModel) takes raw 0-255 pixels.
- `ClassLabels`: carries the class names in the model's saved config.
"""

import keras
import numpy as np
from keras import ops

from medivision_tf.backbones import PREPROCESSING_MODES, preprocess_function

PACKAGE = "medivision_tf"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SequenceAttention(keras.layers.Layer):
    """Additive (Bahdanau-style) attention over a sequence of feature vectors.

    For a sequence `h` of shape `(batch, T, d)` it scores every position,
    `e_t = v . tanh(W h_t + b)`, and normalizes the scores with a softmax over
    the sequence, `a_t = softmax(e)_t` (so `sum_t a_t = 1`).

    It returns two tensors:
    - the sequence re-weighted by its attention, `T * a_t * h_t`, shape
      `(batch, T, d)`: the same shape as the LSTM output, so MediVision can
      merge them with an `Add` skip, and its mean over the sequence is the
      attention context vector `sum_t a_t h_t`;
    - the attention weights `a`, shape `(batch, T)`: a gradient-free
      explanation (one weight per feature-map position).

    Args:
        units: size of the hidden scoring projection `W`.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    ```python
    import numpy as np
    layer = SequenceAttention(units=16)
    weighted, weights = layer(np.random.rand(2, 49, 32).astype("float32"))
    weighted.shape, weights.shape   # (2, 49, 32), (2, 49)
    ```
    """

    def __init__(self, units=64, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ValueError(
                f"`units` must be a positive integer. Received: units={units!r}"
            )
        self.units = int(units)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "SequenceAttention expects a 3-D input (batch, steps, features). "
                f"Received shape: {input_shape}"
            )
        features = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(features, self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer="zeros"
        )
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units, 1), initializer="glorot_uniform"
        )

    def call(self, inputs):
        hidden = ops.tanh(ops.matmul(inputs, self.kernel) + self.bias)
        scores = ops.squeeze(ops.matmul(hidden, self.score_vector), axis=-1)
        weights = ops.softmax(scores, axis=-1)
        steps = ops.cast(ops.shape(inputs)[1], inputs.dtype)
        weighted = inputs * ops.expand_dims(weights, -1) * steps
        return weighted, weights

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), tuple(input_shape[:2])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BackbonePreprocessing(keras.layers.Layer):
    """Applies a backbone family's `preprocess_input` to raw 0-255 RGB pixels.

    Args:
        mode: the keras.applications module whose `preprocess_input` applies
            (e.g. `"resnet"`, `"densenet"`), or `"unit"` to divide by 255.
            See `medivision_tf.backbones.PREPROCESSING_MODES`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    layer = BackbonePreprocessing("mobilenet_v2")
    layer(np.full((1, 4, 4, 3), 255.0, "float32")).numpy().max()   # 1.0
    ```
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(
                f"Unknown preprocessing mode {mode!r}. Choose one of: "
                f"{', '.join(PREPROCESSING_MODES)}."
            )
        self.mode = mode
        self._preprocess = preprocess_function(mode)

    def call(self, inputs):
        return self._preprocess(ops.cast(inputs, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassLabels(keras.layers.Layer):
    """Pass-through output layer that stores the class names and model config.

    A functional model's config holds only its layers, so the class names and
    the `ModelConfig` the model was built with (`medivision_tf.config`)
    travel with the model (in `.keras` files and exports) inside this layer.

    Args:
        class_names: one name per output unit.
        multi_label: whether the outputs are independent sigmoids.
        model_config: `ModelConfig.to_dict()` of the model (None in files
            saved by release 0.1.0).
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, class_names, multi_label=False, model_config=None, **kwargs):
        super().__init__(**kwargs)
        self.class_names = [str(name) for name in class_names]
        self.multi_label = bool(multi_label)
        self.model_config = dict(model_config) if model_config else None

    def build(self, input_shape):
        if input_shape[-1] != len(self.class_names):
            raise ValueError(
                f"ClassLabels has {len(self.class_names)} class names but its "
                f"input has {input_shape[-1]} outputs."
            )

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "class_names": list(self.class_names),
            "multi_label": self.multi_label,
            "model_config": self.model_config,
        }
