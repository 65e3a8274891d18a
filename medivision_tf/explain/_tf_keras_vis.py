"""tf-keras-vis' CAMs on the TensorFlow backend: Grad-CAM++, Score-CAM, LayerCAM.

tf-keras-vis' own classes (`GradcamPlusPlus`, `Scorecam`, `Layercam`) asked
for the map at the feature-map resolution (`expand_cam=False`); `methods`
upsamples every method's map the same way. tf-keras-vis is built on
TensorFlow (`tf.GradientTape`), so these run on the TensorFlow backend only;
on JAX and PyTorch, Grad-CAM++ is `_gradients.gradcam_plus_plus` (the same
formula) and Score-CAM / LayerCAM raise `BackendError`.
"""

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.layercam import Layercam
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.scores import CategoricalScore

from medivision_tf.explain import METHODS, _cache

# tf-keras-vis classes of the CAMs not computed natively.
CAM_CLASSES = {
    "gradcam++": GradcamPlusPlus,
    "scorecam": Scorecam,
    "layercam": Layercam,
}
# The names `explain()` accepts; listed in the package so the CLI needs no TensorFlow.
if METHODS != ("gradcam", *CAM_CLASSES, "attention"):
    raise ImportError(f"explain.METHODS {METHODS} does not list the methods of explain().")


def cam(model, images, method, class_index, layer_name, scorecam_max_n):
    """One tf-keras-vis CAM at the feature-map resolution, `(n, h, w)`."""
    if class_index is None:
        probabilities, _ = _cache.probe_outputs(model, images)
        class_index = np.argmax(probabilities, axis=-1)
    visualizer = CAM_CLASSES[method](_quiet(model), clone=False)
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
    result = visualizer(score, tf.convert_to_tensor(images), **options)
    return np.asarray(result, dtype="float32").reshape((len(images), *result.shape[-2:]))


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
