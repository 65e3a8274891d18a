"""The SavedModel's three serving signatures (`serving_default`, `predict_images`, `explain`) as a Keras `ExportArchive`.

The signatures' inputs and outputs are listed in `medivision_tf.export`.

Example:

```python
from medivision_tf.export.signatures import build_archive, check_model

input_shape, class_names = check_model(model)
build_archive(model, input_shape, class_names).write_out("saved_models/lesions/1")
```
"""

import keras
import tensorflow as tf

from medivision_tf.data.io.budget import check_pixel_budget
from medivision_tf.data.io.finish import finish_image
from medivision_tf.data.io.read_files import check_min_size
from medivision_tf.model import CLASS_LABELS_LAYER, FEATURE_MAP_LAYER, get_model_config
from medivision_tf.trust import feature_model, trust_outputs


def check_model(model):
    """Checks that `model` can be served; returns its `(H, W, C)` input shape and class names.

    Raises:
        TypeError: `model` is not a `keras.Model`.
        ValueError: it lacks one fixed `(H, W, 1|3)` image input, or the
            `"class_labels"` / `"feature_map"` layers of a MediVision model.

    Example:

    ```python
    check_model(model)     # ((64, 64, 1), ['class_0', 'class_1', 'class_2'])
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model from build_medivision. Received: "
            f"{type(model).__name__}"
        )
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            "`model` must have one image input of shape (batch, height, width, "
            f"channels). Received inputs: {[tuple(t.shape) for t in model.inputs]}"
        )
    input_shape = tuple(model.inputs[0].shape[1:])
    if None in input_shape or input_shape[-1] not in (1, 3):
        raise ValueError(
            "`model` needs a fixed (height, width, 1 | 3) input to be served. "
            f"Received input shape: {input_shape}"
        )
    layer_names = {layer.name for layer in model.layers}
    missing = {CLASS_LABELS_LAYER, FEATURE_MAP_LAYER} - layer_names
    if missing:
        raise ValueError(
            f"`model` lacks the layers {sorted(missing)} that a MediVision "
            "model has (class names and Grad-CAM target). Build it with "
            "medivision_tf.build_medivision."
        )
    return tuple(int(d) for d in input_shape), list(get_model_config(model).class_names)


def build_archive(model, input_shape, class_names):
    """The three endpoints, written with Keras' `ExportArchive`.

    Why `ExportArchive` and not a hand-made `tf.Module` + `tf.saved_model.save`:
    it is Keras' own SavedModel writer (what `model.export` uses): it tracks
    the Keras 3 variables the endpoints use, turns each endpoint into a
    `tf.function` with a fixed input signature, and registers each under its
    own signature key, so `saved_model_cli` shows exactly these three clean
    signatures with named inputs and dict outputs. The endpoints themselves are
    plain TF ops around the model call, so image decoding and Grad-CAM live in
    the graph.
    """
    height, width, channels = input_shape
    bit_depth_16 = get_model_config(model).decode.bit_depth_16
    names = tf.constant(class_names, dtype=tf.string)
    # Fitted trust values (medivision_tf.trust) become extra named outputs of
    # predict_images, applied with TF ops from the stored values (the same
    # function predict_with_trust runs). serving_default keeps its single
    # output: TF Serving answers a one-output signature with bare rows, so
    # another output would change its REST response's shape for clients.
    trust = get_model_config(model).trust
    trust_probe = feature_model(model) if trust else None
    image_spec = tf.TensorSpec((None, height, width, channels), tf.float32, name="image")
    bytes_spec = tf.TensorSpec((None,), tf.string, name="image_bytes")

    def top_class(probabilities):
        return tf.argmax(probabilities, axis=-1, output_type=tf.int64)

    def serving_default(image):
        return {"probabilities": model(image, training=False)}

    def decode(encoded):
        # decode_image handles JPEG, PNG (8/16-bit), BMP and (the first frame
        # of) GIF; TIFF, DICOM and NIfTI need Python (tf.numpy_function), which
        # a SavedModel cannot hold. dtype=float32 gives [0, 1] of the file's
        # range: x 255 and rounded, 8-bit files keep their exact values; 16-bit
        # PNGs follow the model's `decode.bit_depth_16` as the data layer does
        # ("auto": max <= 4095 is 12-bit data).
        # The pixel budget first, from the header (graph ops): a few-KB PNG
        # claiming 20000x20000 pixels is refused (HTTP 400), never decoded.
        encoded = check_pixel_budget(encoded)
        image = tf.io.decode_image(
            encoded, channels=0, dtype=tf.float32, expand_animations=False
        )
        image = check_min_size(image)
        # Read from the first 25 bytes padded with zeros: a `substr` past the
        # end of a short request would fail in parallel with the decoder, and
        # either error could reach the client (the decoder's names the cause).
        head = tf.strings.join([tf.strings.substr(encoded, 0, 25), b"\0" * 25])
        is_png16 = tf.logical_and(
            tf.equal(tf.strings.substr(head, 0, 4), b"\x89PNG"),
            tf.equal(tf.strings.substr(head, 24, 1), b"\x10"),
        )
        if bit_depth_16 == "minmax":
            low, high = tf.reduce_min(image), tf.reduce_max(image)
            stretched = tf.math.divide_no_nan(image - low, high - low)
            image = tf.where(is_png16, stretched, image)
        elif bit_depth_16 in ("auto", "12bit"):
            twelve = tf.reduce_max(image) * 65535.0 <= 4095.0 + 0.5
            if bit_depth_16 == "12bit":
                twelve = tf.constant(True)
            image = tf.where(tf.logical_and(is_png16, twelve), image * (65535.0 / 4095.0), image)
        image = tf.round(image * 255.0)
        # Then exactly what the training pipeline does after decoding
        # (medivision_tf.data.io.finish.finish_image): channels (alpha dropped,
        # gray <-> RGB), resize with the default "pad" (aspect kept, black
        # bands), round and clip to 0-255. Served images are training images.
        image = finish_image(image, (height, width), channels, resize="pad")
        return tf.ensure_shape(image, (height, width, channels))

    def predict_images(image_bytes):
        images = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec((height, width, channels), tf.float32),
        )
        if trust:
            # One forward pass gives the pooled features and the probabilities.
            features, probabilities = trust_probe(images, training=False)
        else:
            probabilities = model(images, training=False)
        index = top_class(probabilities)
        outputs = {
            "probabilities": probabilities,
            "class_index": index,
            "class_name": tf.gather(names, index),
        }
        if trust:
            outputs.update(trust_outputs(probabilities, features, trust))
        return outputs

    def explain(image):
        from medivision_tf.explain.gradcam import gradcam_and_probabilities

        # One pass: the Grad-CAM graph's forward pass gives the probabilities
        # and the top class as well (no second model call).
        heatmap, probabilities, index = gradcam_and_probabilities(
            model, image, class_index=None, layer_name=FEATURE_MAP_LAYER
        )
        return {
            "probabilities": probabilities,
            "class_index": tf.cast(index, tf.int64),
            "heatmap": heatmap,
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_default, [image_spec])
    archive.add_endpoint("predict_images", predict_images, [bytes_spec])
    archive.add_endpoint("explain", explain, [image_spec])
    # Readable on the loaded object without Keras: loaded.class_names[0].
    archive.add_variable_collection(
        "class_names", [tf.Variable(names, trainable=False, name="class_names")]
    )
    archive.add_variable_collection(
        "input_shape",
        [tf.Variable(list(input_shape), dtype=tf.int32, trainable=False, name="input_shape")],
    )
    return archive
