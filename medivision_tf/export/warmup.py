"""TF Serving's warm-up file: one `PredictionLog` request per signature, replayed when a version loads.

Example:

```python
from medivision_tf.export.warmup import warmup_inputs, write_warmup_requests

write_warmup_requests("saved_models/lesions/1", "lesions", (64, 64, 1))
sorted(warmup_inputs((64, 64, 1)))    # ['explain', 'predict_images', 'serving_default']
```
"""

import os

import tensorflow as tf

from medivision_tf.export.layout import METADATA_DIR, WARMUP_FILE


def _warmup_message_classes():
    """Message classes wire-compatible with TF Serving's PredictionLog.

    `tensorflow-serving-api` (which has the real classes) requires the
    newest TensorFlow, so the export builds the few messages it needs from a
    descriptor with protobuf's public API, with TF Serving's field numbers
    (tensorflow_serving/apis/prediction_log.proto, predict.proto,
    model.proto). A TensorProto is stored as the bytes of a length-delimited
    field: on the wire that is what a message field is. The test parses the
    file with tensorflow-serving-api's own classes.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="medivision_tf/warmup.proto", package="medivision_tf.warmup", syntax="proto3"
    )

    def message(name, *fields):
        proto = file.message_type.add(name=name)
        for field_name, number, kind, type_name, label in fields:
            field = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = f".medivision_tf.warmup.{type_name}"

    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message(
        "ModelSpec",
        ("name", 1, F.TYPE_STRING, None, optional),
        ("signature_name", 3, F.TYPE_STRING, None, optional),
    )
    # map<string, TensorProto> inputs = 2 is, on the wire, repeated entries.
    message(
        "InputsEntry",
        ("key", 1, F.TYPE_STRING, None, optional),
        ("value", 2, F.TYPE_BYTES, None, optional),
    )
    message(
        "PredictRequest",
        ("model_spec", 1, F.TYPE_MESSAGE, "ModelSpec", optional),
        ("inputs", 2, F.TYPE_MESSAGE, "InputsEntry", repeated),
    )
    message("PredictLog", ("request", 1, F.TYPE_MESSAGE, "PredictRequest", optional))
    message("PredictionLog", ("predict_log", 6, F.TYPE_MESSAGE, "PredictLog", optional))
    pool = descriptor_pool.DescriptorPool()  # private: no clash with real TF Serving protos
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("medivision_tf.warmup.PredictionLog")
    )


def warmup_inputs(input_shape):
    """One small valid input per signature: `{signature: {input: numpy array}}`.

    A zero image for `serving_default` and `explain`, the PNG bytes of a zero
    image for `predict_images`.

    Example:

    ```python
    warmup_inputs((64, 64, 1))["predict_images"]["image_bytes"]   # array([b'\\x89PNG...'])
    ```
    """
    import numpy as np

    height, width, channels = input_shape
    image = np.zeros((1, height, width, channels), np.float32)
    png = tf.io.encode_png(tf.zeros((height, width, channels), tf.uint8)).numpy()
    return {
        "serving_default": {"image": image},
        "predict_images": {"image_bytes": np.array([png], dtype=object)},
        "explain": {"image": image},
    }


def write_warmup_requests(version_dir, model_name, input_shape):
    """Writes TF Serving's warm-up file, `assets.extra/tf_serving_warmup_requests`.

    A TFRecord file of `tensorflow.serving.PredictionLog` records, one
    `predict_log.request` per signature (see `warmup_inputs`). TF Serving
    replays them when it loads the version.

    Args:
        version_dir: the SavedModel version folder.
        model_name: the served model name written in each `model_spec`.
        input_shape: the model's `(H, W, C)`.

    Returns:
        The path of the written file.

    Example:

    ```python
    write_warmup_requests("saved_models/lesions/1", "lesions", (64, 64, 1))
    ```
    """
    prediction_log_class = _warmup_message_classes()
    folder = os.path.join(os.fspath(version_dir), METADATA_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in warmup_inputs(input_shape).items():
            record = prediction_log_class()
            request = record.predict_log.request
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for key, value in inputs.items():
                request.inputs.add(
                    key=key, value=tf.make_tensor_proto(value).SerializeToString()
                )
            writer.write(record.SerializeToString())
    return path
