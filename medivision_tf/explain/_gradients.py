"""Grad-CAM and Grad-CAM++ on JAX and PyTorch, with the backend's own gradients.

The TensorFlow backend has its own path (`_gradcam_tf`: `tf.GradientTape` in
a `tf.function`, traced into exported signatures; tf-keras-vis for
Grad-CAM++). Here the model is split at the explained layer into two Keras
functional views that share its layers and weights:

- `lower`: image -> the layer's output (the feature map);
- `upper`: (image, feature map) -> probabilities. The feature map is an
  input of this view (Keras builds functional models from intermediate
  tensors), so the gradient of a class probability with respect to it is an
  ordinary input gradient; the image input feeds only paths that bypass the
  layer (none for `"feature_map"`; a backbone's residual skips for an inner
  layer).

JAX: `jax.vjp` of `upper.stateless_call` (the weights as arguments), one
`jax.jit`-compiled function per model and layer. PyTorch: `torch.autograd.grad`
from the chosen probabilities to the feature map. The maps are then the same
arithmetic as the TensorFlow path (Grad-CAM: channel weights = mean gradient;
Grad-CAM++: tf-keras-vis' `GradcamPlusPlus` formula), in float32 `keras.ops`,
so the three backends agree to float32 rounding on the same weights.
"""

import numpy as np
from keras import ops

from medivision_tf.explain import _cache


def class_gradients(model, inputs, class_index, layer_name):
    """One forward and backward pass: the layer's output and the gradient of
    the chosen class's probability with respect to it.

    Args:
        model: a Keras functional model with one image input.
        inputs: `(n, H, W, C)` float32 images of the model's input size
            (backend tensor or NumPy).
        class_index: None (each image's top class) or an int32 NumPy
            `(n,)` array, already checked.
        layer_name: the explained layer, already checked.

    Returns:
        `(features, grads, probabilities, index)`: float32 backend tensors
        `(n, h, w, c)`, `(n, h, w, c)`, `(n, classes)` and int32 `(n,)`.
    """
    import keras

    backend = keras.config.backend()
    lower, upper = _cache.cached(
        model, ("split", layer_name), lambda: _split(model, layer_name)
    )
    inputs = ops.convert_to_tensor(inputs, "float32")
    indices = np.full(int(inputs.shape[0]), -1, "int32") if class_index is None else class_index
    indices = ops.convert_to_tensor(np.asarray(indices, "int32"))
    if backend == "jax":
        step = _cache.cached(model, ("jax_gradients", layer_name), lambda: _jax_step(lower, upper))
        outputs = step(
            [v.value for v in lower.trainable_variables],
            [v.value for v in lower.non_trainable_variables],
            [v.value for v in upper.trainable_variables],
            [v.value for v in upper.non_trainable_variables],
            inputs,
            indices,
        )
    elif backend == "torch":
        outputs = _torch_step(lower, upper, inputs, indices)
    else:
        from medivision_tf.backend import BackendError

        raise BackendError(
            f"Grad-CAM needs gradients, which Keras' {backend!r} backend does not "
            "compute. Use the TensorFlow, JAX or PyTorch backend, or "
            "method='attention' (no gradient)."
        )
    features, grads, probabilities, index = outputs
    return (
        ops.cast(features, "float32"),
        ops.cast(grads, "float32"),
        ops.cast(probabilities, "float32"),
        index,
    )


def gradcam(features, grads):
    """Grad-CAM at the feature map's resolution, `(n, h, w)`: the gradients
    averaged over the map weight its channels; ReLU."""
    weights = ops.mean(grads, axis=(1, 2), keepdims=True)
    return ops.relu(ops.sum(features * weights, axis=-1))


def gradcam_plus_plus(features, grads, scores):
    """Grad-CAM++ at the feature map's resolution, `(n, h, w)`.

    tf-keras-vis' `GradcamPlusPlus` (its default ReLU activation modifier,
    `normalize_cam=False`), step for step, so that the maps equal the
    TensorFlow backend's: the score is `exp(probability)`, its derivatives are
    taken as powers of the probability's gradient, and a zero denominator is
    replaced by one.

    Args:
        features, grads: `(n, h, w, c)` float32.
        scores: `(n,)` float32, the explained class's probability per image.
    """
    scores = ops.reshape(ops.exp(scores), (-1, 1, 1, 1))
    first = scores * grads
    second = first * grads
    third = second * grads
    global_sum = ops.sum(features, axis=(1, 2), keepdims=True)
    denominator = second * 2.0 + third * global_sum
    denominator = denominator + ops.cast(ops.equal(second, 0.0), second.dtype)
    alphas = second / denominator
    norm = ops.sum(alphas, axis=(1, 2), keepdims=True)
    alphas = alphas / (norm + ops.cast(ops.equal(norm, 0.0), norm.dtype))
    weights = ops.sum(ops.relu(first) * alphas, axis=(1, 2), keepdims=True)
    return ops.relu(ops.sum(weights * features, axis=-1))


def _split(model, layer_name):
    """`(lower, upper)` functional views of `model` around `layer_name`."""
    import keras

    image = model.inputs[0]
    features = model.get_layer(layer_name).output
    lower = keras.Model(image, features, name=f"{model.name}_to_{layer_name}")
    upper = keras.Model([image, features], model.outputs[0], name=f"{model.name}_from_{layer_name}")
    return lower, upper


def _pick(probabilities, indices):
    """The class per image: `indices`, or the top class where it is -1."""
    top = ops.cast(ops.argmax(probabilities, axis=-1), "int32")
    return ops.where(indices < 0, top, indices)


def _jax_step(lower, upper):
    """A jitted `(weights..., inputs, indices) -> outputs` for `class_gradients`."""
    import jax

    def step(lower_trainable, lower_other, upper_trainable, upper_other, inputs, indices):
        features, _ = lower.stateless_call(
            lower_trainable, lower_other, inputs, training=False
        )

        def probabilities_of(feature_map):
            outputs, _ = upper.stateless_call(
                upper_trainable, upper_other, [inputs, feature_map], training=False
            )
            return outputs

        probabilities, pullback = jax.vjp(probabilities_of, features)
        index = _pick(probabilities, indices)
        one_hot = jax.nn.one_hot(index, probabilities.shape[-1], dtype=probabilities.dtype)
        (grads,) = pullback(one_hot)
        return features, grads, probabilities, index

    return jax.jit(step)


def _torch_step(lower, upper, inputs, indices):
    """`class_gradients`' pass with `torch.autograd`."""
    import torch

    with torch.no_grad():
        features = lower(inputs, training=False)
    features = features.detach().requires_grad_(True)
    with torch.enable_grad():
        probabilities = upper([inputs, features], training=False)
        index = _pick(probabilities.detach(), indices)
        scores = torch.gather(probabilities, 1, index[:, None].long()).sum()
        (grads,) = torch.autograd.grad(scores, features)
    return features.detach(), grads, probabilities.detach(), index
