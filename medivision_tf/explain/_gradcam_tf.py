"""The TensorFlow backend's Grad-CAM: one `tf.GradientTape` pass inside a `tf.function`.

It gives the same maps as tf-keras-vis' `Gradcam` (gradients of the class
probability, averaged over the feature map, weight its channels; ReLU;
upsampling; per-image min-max scaling), but for a whole batch in one graph
and from TensorFlow ops only, so it can be traced into an exported
SavedModel signature. `medivision_tf.explain.gradcam` calls it on the
TensorFlow backend (JAX and PyTorch: `_gradients`).
"""

import keras
import numpy as np
import tensorflow as tf

from medivision_tf.explain import _cache, _inputs
from medivision_tf.model import FEATURE_MAP_LAYER


def gradcam_and_probabilities(
    model, images, class_index=None, layer_name=FEATURE_MAP_LAYER
):
    """Grad-CAM maps plus the forward pass they were computed from.

    The same single pass as `gradcam_heatmaps` (same arguments), also
    returning what it computes on the way: the model's probabilities and the
    class each map explains. The exported `explain` signature uses it, so a
    request runs the model once.

    Returns:
        `(heatmaps, probabilities, class_index)`: float32 `(batch, height,
        width)` in [0, 1], float32 `(batch, classes)`, int32 `(batch,)`.
    """
    _inputs.check_layer(model, layer_name)
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 3:
        images = images[..., None]
    if images.shape.rank != 4:
        raise ValueError(
            "`images` must be a batch (batch, height, width, channels). "
            f"Received shape: {images.shape}"
        )
    num_classes = _inputs.num_classes(model)
    if class_index is None:
        indices = tf.constant(-1, tf.int32)  # -1: each image's top class
    elif tf.is_tensor(class_index):
        indices = tf.cast(class_index, tf.int32)
        if tf.executing_eagerly():
            _inputs.check_class_index(
                indices.numpy(), int(tf.shape(images)[0]), num_classes
            )
    elif np.ndim(class_index) == 0:
        indices = tf.constant(_inputs.check_class_index(class_index, 1, num_classes)[0])
    else:
        batch = images.shape[0] if images.shape[0] is not None else len(class_index)
        indices = tf.constant(_inputs.check_class_index(class_index, batch, num_classes))
    size = [images.shape[i] or tf.shape(images)[i] for i in (1, 2)]
    inputs = _inputs.fit_to_model(images, model)
    graph = _cache.cached(
        model, ("gradcam", layer_name), lambda: _build_graph(model, layer_name)
    )
    cams, probabilities, index = graph(inputs, indices)
    return _inputs.maps_to_images(cams, size, model), probabilities, index


def _build_graph(model, layer_name):
    """The traced Grad-CAM of one layer, at the feature map's resolution.

    The traced function returns `(cams, probabilities, class_index)`: the
    probabilities and chosen classes come from the same forward pass.
    """
    probe = keras.Model(
        model.inputs, [model.get_layer(layer_name).output, model.outputs[0]]
    )
    num_classes = _inputs.num_classes(model)
    image_spec = tf.TensorSpec((None, *_inputs.model_image_shape(model)), tf.float32)
    # class_index: a scalar (-1: each image's top class) or one per image.
    index_spec = tf.TensorSpec(None, tf.int32)

    @tf.function(input_signature=[image_spec, index_spec])
    def cams(inputs, class_index):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(inputs)
            features, probabilities = probe(inputs, training=False)
            batch = tf.shape(probabilities)[0]
            top = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            index = tf.where(
                class_index < 0, top, tf.broadcast_to(class_index, [batch])
            )
            tf.debugging.assert_less(
                index, num_classes, message="class_index out of range"
            )
            scores = tf.gather(probabilities, index, axis=1, batch_dims=1)
        grads = tape.gradient(scores, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))
        return cams, probabilities, index

    return cams
