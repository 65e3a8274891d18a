"""Native batched Grad-CAM on every Keras backend, with the backend's own gradients.

- TensorFlow: one `tf.GradientTape` pass inside a `tf.function` (`_gradcam_tf`),
  from TensorFlow ops only, so it can be traced into an exported SavedModel
  signature; it gives the same maps as tf-keras-vis' `Gradcam`.
- JAX (`jax.vjp`, jitted) and PyTorch (`torch.autograd`): `_gradients`, the
  same maps to float32 rounding on the same weights.

Either way: gradients of the class probability, averaged over the feature
map, weight its channels; ReLU; bilinear upsampling to the image; per-image
min-max scaling to [0, 1].
"""

import keras
import numpy as np
from keras import ops

from medivision_tf.model_access import FEATURE_MAP_LAYER


def gradcam_heatmaps(model, images, class_index=None, layer_name=FEATURE_MAP_LAYER):
    """Grad-CAM maps for a batch, computed in one pass.

    For each image, the gradient of the chosen class's output with respect to
    the feature map of `layer_name` is averaged over the map's positions to
    weight its channels; the weighted sum, through a ReLU, is resized
    (bilinear) to the image and scaled to [0, 1].

    On TensorFlow it is built from TensorFlow ops only: call it eagerly or
    inside a `tf.function` (e.g. an exported serving signature, with a
    dynamic batch size). On JAX and PyTorch it runs with the backend's own
    gradients (eagerly; the JAX pass is jitted). Images whose size or channel
    count differ from the model input are resized / converted first, and the
    maps are returned at the size of `images`.

    Args:
        model: a model from `medivision_tf.build_medivision` (or any Keras
            functional model with a single image input).
        images: `(batch, height, width, channels)` raw 0-255 pixels, NumPy or
            tensor, any float or integer dtype.
        class_index: None for each image's top class, an integer for the
            same class for every image, or a `(batch,)` integer vector. Out of
            range values raise `ValueError` (or, for a tensor inside a graph,
            `tf.errors.InvalidArgumentError` when run).
        layer_name: the layer whose output is explained; default
            `"feature_map"`, the backbone's last convolutional feature map.

    Returns:
        float32 tensor of the backend (`tf.Tensor`, `jax.Array`,
        `torch.Tensor`) `(batch, height, width)` with values in [0, 1];
        `keras.ops.convert_to_numpy` makes it a NumPy array on any backend.

    Raises:
        ValueError: unknown layer (the message lists the valid ones) or class
            index out of range.

    Example:

    ```python
    import numpy as np
    import medivision_tf
    from medivision_tf.explain import gradcam_heatmaps

    model = medivision_tf.build_medivision(
        3, backbone="smallcnn", input_shape=(64, 64, 1), weights=None
    )
    maps = gradcam_heatmaps(model, np.zeros((2, 64, 64, 1)), class_index=1)
    maps.shape   # (2, 64, 64)
    ```
    """
    return gradcam_and_probabilities(model, images, class_index, layer_name)[0]


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
        width)` in [0, 1], float32 `(batch, classes)`, int32 `(batch,)`,
        tensors of the backend.
    """
    if keras.config.backend() == "tensorflow":
        from medivision_tf.explain import _gradcam_tf

        return _gradcam_tf.gradcam_and_probabilities(model, images, class_index, layer_name)
    return backend_cams(model, images, class_index, layer_name, method="gradcam")


def backend_cams(model, images, class_index, layer_name, method):
    """Grad-CAM (`method="gradcam"`) or Grad-CAM++ (`"gradcam++"`) on JAX or
    PyTorch: `(heatmaps, probabilities, class_index)` as in
    `gradcam_and_probabilities`."""
    from medivision_tf.explain import _checks, _gradients, _inputs_keras

    layer = _checks.check_layer(model, layer_name)
    images = ops.convert_to_tensor(images)
    if len(images.shape) == 3:
        images = images[..., None]
    if len(images.shape) != 4:
        raise ValueError(
            "`images` must be a batch (batch, height, width, channels). "
            f"Received shape: {tuple(images.shape)}"
        )
    if class_index is not None:
        class_index = np.asarray(ops.convert_to_numpy(class_index))
    indices = _checks.check_class_index(
        class_index, int(images.shape[0]), _checks.num_classes(model)
    )
    inputs = _inputs_keras.fit_to_model(images, model)
    features, grads, probabilities, index = _gradients.class_gradients(
        model, inputs, indices, layer.name
    )
    if method == "gradcam":
        cams = _gradients.gradcam(features, grads)
    else:
        scores = ops.take_along_axis(probabilities, ops.expand_dims(index, -1), axis=1)[:, 0]
        cams = _gradients.gradcam_plus_plus(features, grads, scores)
    heatmaps = _inputs_keras.maps_to_images(cams, tuple(images.shape[1:3]), model)
    return heatmaps, probabilities, index
