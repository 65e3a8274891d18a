"""Class activation maps and attention maps, on every Keras backend.

`explain()` runs one of `METHODS` on a batch and returns NumPy maps in
[0, 1] at the images' size.

- TensorFlow: Grad-CAM is the native batched one (`gradcam_heatmaps`: one
  graph, identical to tf-keras-vis' `Gradcam` to ~1e-5, tested). Grad-CAM++,
  Score-CAM and LayerCAM are tf-keras-vis' own classes (`GradcamPlusPlus`,
  `Scorecam`, `Layercam`) asked for the map at the feature-map resolution
  (`expand_cam=False`; `_tf_keras_vis`).
- JAX and PyTorch: Grad-CAM and Grad-CAM++ with the backend's own gradients
  (`jax.vjp`, `torch.autograd`; `_gradients`), equal to the TensorFlow maps
  on the same weights (tested to 1e-4). Score-CAM and LayerCAM come from
  tf-keras-vis, which is built on TensorFlow: they raise `BackendError`.

Every method's map is then upsampled the same way (bilinear with
half-pixel centers), so methods differ only in how they weight the feature
map, and a feature-map cell lands on the pixels it covers.
"""

import keras
import numpy as np

from medivision_tf.explain import METHODS, _cache, _checks
from medivision_tf.explain.gradcam import backend_cams, gradcam_heatmaps
from medivision_tf.model_access import sequence_grid

#: The methods that run on TensorFlow only (tf-keras-vis).
TENSORFLOW_ONLY_METHODS = ("scorecam", "layercam")


def explain(
    model,
    images,
    method="gradcam",
    class_index=None,
    layer_name=None,
    batch_size=32,
    scorecam_max_n=None,
):
    """Explanation maps for a batch of images, one method at a time.

    Args:
        model: a model from `medivision_tf.build_medivision`.
        images: `(n, height, width[, channels])` raw 0-255 pixels. Images of
            another size (or channel count) than the model's input are resized
            like the data pipeline does (aspect ratio kept, padded) or
            converted first; maps come back at the size of `images`.
        method: one of `METHODS`: `"gradcam"` (native, `gradcam_heatmaps`),
            `"gradcam++"` (tf-keras-vis on TensorFlow, native on JAX and
            PyTorch), `"scorecam"`, `"layercam"` (tf-keras-vis: TensorFlow
            only) or `"attention"` (the attention layer's weights, no
            gradient; `class_index` and `layer_name` do not apply).
        class_index: None for each image's predicted (top) class, an integer
            for the same class for all images, or one integer per image.
        layer_name: the layer to explain; default `"feature_map"`, the
            backbone's last convolutional feature map. Any layer with a
            `(batch, h, w, c)` output may be named.
        batch_size: images per pass.
        scorecam_max_n: Score-CAM only: use only the `N` channels of largest
            variance (tf-keras-vis' Faster Score-CAM); None uses all.

    Returns:
        float32 NumPy array `(n, height, width)` with values in [0, 1].

    Raises:
        ValueError: unknown method or layer (the message lists the valid
            ones), class index out of range, or malformed images.
        medivision_tf.backend.BackendError: `"scorecam"` or `"layercam"`
            while Keras runs on JAX or PyTorch.

    Example:

    ```python
    from medivision_tf.data import make_synthetic_lesions
    from medivision_tf.explain import explain

    data = make_synthetic_lesions(4, 64, 3, seed=1)
    maps = explain(model, data.images, method="gradcam++")   # (4, 64, 64)
    ```
    """
    if method not in METHODS:
        raise ValueError(
            f"Unknown explanation method {method!r}. Choose one of: "
            f"{', '.join(METHODS)}."
        )
    backend = keras.config.backend()
    if method in TENSORFLOW_ONLY_METHODS and backend != "tensorflow":
        from medivision_tf.backend import require_tensorflow

        require_tensorflow(
            f"explain(method={method!r}) (tf-keras-vis)",
            instead="On this backend use method='gradcam', 'gradcam++' or 'attention'",
        )
    batch = _checks.to_batch(images)
    if method == "attention":
        return attention_maps(model, batch, batch_size=batch_size)
    layer = _checks.check_layer(model, layer_name)
    num_classes = _checks.num_classes(model)
    indices = _checks.check_class_index(class_index, len(batch), num_classes)
    maps = []
    if method == "gradcam" or backend != "tensorflow":
        for start in range(0, len(batch), batch_size):
            chunk = batch[start : start + batch_size]
            chunk_indices = None if indices is None else indices[start : start + batch_size]
            if method == "gradcam":
                chunk_maps = gradcam_heatmaps(model, chunk, chunk_indices, layer.name)
            else:  # gradcam++ on JAX or PyTorch
                chunk_maps = backend_cams(model, chunk, chunk_indices, layer.name, method)[0]
            maps.append(keras.ops.convert_to_numpy(chunk_maps))
        return np.concatenate(maps)
    from medivision_tf.explain import _inputs, _tf_keras_vis

    for start in range(0, len(batch), batch_size):
        chunk = _inputs.fit_to_model(batch[start : start + batch_size], model)
        chunk_indices = None if indices is None else indices[start : start + batch_size]
        maps.append(
            _tf_keras_vis.cam(model, chunk, method, chunk_indices, layer.name, scorecam_max_n)
        )
    cams = np.concatenate(maps)
    return _inputs.maps_to_images(cams, batch.shape[1:3], model).numpy()


def attention_maps(model, images, batch_size=32):
    """The attention layer's weights laid over the images.

    The attention layer gives one weight per position of the LSTM's sequence
    (what `medivision_tf.attention_weights` returns; here read by the
    explanation module's cached forward pass); they are reshaped to `medivision_tf.sequence_grid`
    (the feature map's `(h, w)` for `"spatial"` models, `(h, 1)` rows for
    `"rows"` models), upsampled bilinearly to the image and scaled to [0, 1].
    No gradient is needed.

    Args:
        model: a model from `medivision_tf.build_medivision`.
        images: `(n, height, width[, channels])` raw 0-255 pixels (resized
            to the model's input if needed; maps come back at this size).
        batch_size: images per forward pass.

    Returns:
        float32 NumPy array `(n, height, width)` in [0, 1].

    Example:

    ```python
    maps = attention_maps(model, data.images)   # (n, 64, 64)
    ```
    """
    batch = _checks.to_batch(images)
    inputs = _image_inputs().fit_to_model(batch, model)
    _, weights = _cache.probe_outputs(model, inputs, batch_size=batch_size)
    return weights_to_maps(model, weights, batch.shape[1:3])


def weights_to_maps(model, weights, image_size):
    """Attention weights `(n, steps)` -> maps `(n, *image_size)` in [0, 1]."""
    grid = np.reshape(weights, (len(weights), *sequence_grid(model)))
    maps = _image_inputs().maps_to_images(grid, image_size, model)
    return keras.ops.convert_to_numpy(maps)


def _image_inputs():
    """The image and map conversions of the backend: `_inputs` (TensorFlow
    ops, as the exported signatures) or `_inputs_keras` (`keras.ops`)."""
    if keras.config.backend() == "tensorflow":
        from medivision_tf.explain import _inputs

        return _inputs
    from medivision_tf.explain import _inputs_keras

    return _inputs_keras
