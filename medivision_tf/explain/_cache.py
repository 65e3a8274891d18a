"""One per-model cache for everything `explain` builds once per model.

Everything here is keyed by the model in a single `weakref.WeakKeyDictionary`
(a model that is no longer used elsewhere is freed with its entries):

- `("probe",)`: a traced forward pass returning `(probabilities, attention
  weights)` in one call (`probe_outputs`);
- `("gradcam", layer_name)`: the traced Grad-CAM of a layer
  (`medivision_tf.explain._gradcam_tf`);
- `("quiet",)`: the silent view that tf-keras-vis' Score-CAM predicts with
  (`medivision_tf.explain._tf_keras_vis`);
- `("split", layer_name)`, `("jax_gradients", layer_name)`: the views and
  the jitted pass of Grad-CAM on JAX and PyTorch
  (`medivision_tf.explain._gradients`).

The cached values reference the model's layers and variables, never the model
object itself, so the weak key can expire.
"""

import weakref

import keras
import numpy as np

from medivision_tf.explain import _checks
from medivision_tf.model_access import ATTENTION_LAYER

_CACHE = weakref.WeakKeyDictionary()


def cached(model, key, build):
    """`_CACHE[model][key]`, built with `build()` on first use."""
    entries = _CACHE.setdefault(model, {})
    if key not in entries:
        entries[key] = build()
    return entries[key]


def probe_outputs(model, inputs, batch_size=32):
    """Class probabilities and attention weights in one forward pass.

    Args:
        model: a model from `medivision_tf.build_medivision`.
        inputs: `(n, H, W, C)` images already fitted to the model's input
            (`_inputs.fit_to_model`, or `_inputs_keras`' on JAX and PyTorch).
        batch_size: images per pass.

    Returns:
        `(probabilities, weights)`: float32 NumPy arrays `(n, classes)` and
        `(n, steps)` (the attention layer's weights over the sequence).
    """
    probe = cached(model, ("probe",), lambda: _build_probe(model))
    if keras.config.backend() != "tensorflow":
        # A functional view's `predict` (jitted on JAX, no autograd on PyTorch).
        probabilities, weights = probe.predict(
            keras.ops.convert_to_numpy(inputs), batch_size=batch_size, verbose=0
        )
        return np.asarray(probabilities, "float32"), np.asarray(weights, "float32")
    import tensorflow as tf

    inputs = tf.cast(inputs, tf.float32)
    probabilities, weights = [], []
    for start in range(0, int(inputs.shape[0]), batch_size):
        p, w = probe(inputs[start : start + batch_size])
        probabilities.append(p.numpy())
        weights.append(w.numpy())
    return np.concatenate(probabilities), np.concatenate(weights)


def _build_probe(model):
    try:
        attention = model.get_layer(ATTENTION_LAYER)
    except ValueError:
        raise ValueError(
            f"Model {model.name!r} has no layer {ATTENTION_LAYER!r}: it was not "
            "built by medivision_tf.build_medivision."
        ) from None
    view = keras.Model(model.inputs, [model.outputs[0], attention.output[1]])
    if keras.config.backend() != "tensorflow":
        return view
    import tensorflow as tf

    spec = tf.TensorSpec((None, *_checks.model_image_shape(model)), tf.float32)

    @tf.function(input_signature=[spec])
    def probe(inputs):
        probabilities, weights = view(inputs, training=False)
        return probabilities, weights

    return probe
