"""Class activation maps and attention maps.

`explain()` runs one of `METHODS` on a batch and returns NumPy maps in
[0, 1] at the images' size. Grad-CAM is the native batched one
(`gradcam_heatmaps`: one graph, identical to tf-keras-vis' `Gradcam` to
~1e-5, tested). Grad-CAM++, Score-CAM and LayerCAM are tf-keras-vis' own
classes (`GradcamPlusPlus`, `Scorecam`, `Layercam`) asked for the map at the
feature-map resolution (`expand_cam=False`); every method's map is then
upsampled the same way (`_inputs.maps_to_images`, bilinear with half-pixel
centers), so methods differ only in how they weight the feature map, and a
feature-map cell lands on the pixels it covers.
"""

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.scores import CategoricalScore

from medivision_tf.explain import METHODS, _cache, _inputs
from medivision_tf.explain.gradcam import gradcam_heatmaps
from medivision_tf.model import sequence_grid

# tf-keras-vis classes of the CAMs not computed natively.
_CAM_CLASSES = {
    "gradcam++": GradcamPlusPlus,
    "scorecam": Scorecam,
    "layercam": Layercam,
}
# The names `explain()` accepts; listed in the package so the CLI needs no TensorFlow.
if METHODS != ("gradcam", *_CAM_CLASSES, "attention"):
    raise ImportError(f"explain.METHODS {METHODS} does not list the methods of explain().")


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
            `"gradcam++"`, `"scorecam"`, `"layercam"` (tf-keras-vis) or
            `"attention"` (the attention
            layer's weights, no gradient; `class_index` and `layer_name` do
            not apply).
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
    batch = _inputs.to_batch(images)
    if method == "attention":
        return attention_maps(model, batch, batch_size=batch_size)
    layer = _inputs.check_layer(model, layer_name)
    num_classes = _inputs.num_classes(model)
    indices = _inputs.check_class_index(class_index, len(batch), num_classes)
    maps = []
    if method == "gradcam":
        for start in range(0, len(batch), batch_size):
            chunk_indices = None if indices is None else indices[start : start + batch_size]
            maps.append(
                gradcam_heatmaps(
                    model, batch[start : start + batch_size], chunk_indices, layer.name
                ).numpy()
            )
        return np.concatenate(maps)
    for start in range(0, len(batch), batch_size):
        chunk = _inputs.fit_to_model(batch[start : start + batch_size], model)
        chunk_indices = None if indices is None else indices[start : start + batch_size]
        maps.append(
            _cam(model, chunk, method, chunk_indices, layer.name, scorecam_max_n)
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
    batch = _inputs.to_batch(images)
    inputs = _inputs.fit_to_model(batch, model)
    _, weights = _cache.probe_outputs(model, inputs, batch_size=batch_size)
    return weights_to_maps(model, weights, batch.shape[1:3])


def weights_to_maps(model, weights, image_size):
    """Attention weights `(n, steps)` -> maps `(n, *image_size)` in [0, 1]."""
    grid = np.reshape(weights, (len(weights), *sequence_grid(model)))
    return _inputs.maps_to_images(grid, image_size, model).numpy()


def _cam(model, images, method, class_index, layer_name, scorecam_max_n):
    """One tf-keras-vis CAM at the feature-map resolution, `(n, h, w)`."""
    if class_index is None:
        probabilities, _ = _cache.probe_outputs(model, images)
        class_index = np.argmax(probabilities, axis=-1)
    visualizer = _CAM_CLASSES[method](_quiet(model), clone=False)
    options = dict(
        penultimate_layer=layer_name,
        # The named layer itself, not the nearest Conv2D below it.
        seek_penultimate_conv_layer=False,
        expand_cam=False,
        normalize_cam=False,
    )
    if method == "scorecam":
        options.update(batch_size=64, max_N=scorecam_max_n)
    score = CategoricalScore([int(i) for i in class_index])
    cam = visualizer(score, tf.convert_to_tensor(images), **options)
    return np.asarray(cam, dtype="float32").reshape((len(images), *cam.shape[-2:]))


class _SilentPredict(keras.Model):
    """A functional view of a model whose `predict` defaults to `verbose=0`.

    tf-keras-vis' Score-CAM calls `self.model.predict(x, batch_size=...)`
    with Keras' default verbosity, which prints a progress bar per call. This
    subclass (Keras' documented functional-subclass pattern) only changes
    that default; it shares the model's layers and weights.
    """

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        return super().predict(
            x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks
        )


def _quiet(model):
    """`_SilentPredict` view of `model`, kept per model (`_cache`) so its
    predict function is traced once, not per call."""

    def build():
        return _SilentPredict(inputs=model.inputs, outputs=model.outputs, name=model.name)

    return _cache.cached(model, ("quiet",), build)
