"""SavedModel export in TF Serving's layout, with three serving signatures.

`export_saved_model(model, "saved_models/NAME")` writes
`saved_models/NAME/VERSION/` (the next integer version unless one is given), a
SavedModel that TF Serving, KServe and `tf.saved_model.load` read without Keras
or this package. Its signatures:

| signature         | inputs                                   | outputs                                         |
|-------------------|------------------------------------------|-------------------------------------------------|
| `serving_default` | `image` float32 `(batch, H, W, C)`, 0-255 | `probabilities` `(batch, classes)`              |
| `predict_images`  | `image_bytes` string `(batch,)` JPEG/PNG/BMP/GIF | `probabilities`, `class_index` int64, `class_name` string; with trust values (`medivision_tf.trust`): `calibrated_probabilities`, `prediction_set` bool `(batch, classes)`, `ood_score` float32, `out_of_distribution` bool |
| `explain`         | `image` float32 `(batch, H, W, C)`, 0-255 | `probabilities`, `class_index`, `heatmap` `(batch, H, W)` in [0, 1] (Grad-CAM of the top class) |

`predict_images` decodes and resizes inside the graph (any image size, gray or
color) with the training pipeline's own `medivision_tf.data.decode.finish_image`
(channels, letterbox resize, rounding), so a client sends the file bytes as TF Serving's REST API expects them:
`{"instances": [{"b64": "<base64 of the PNG>"}], "signature_name":
"predict_images"}`.

What a client needs besides the graph is stored in the export, readable without
Keras:
- `assets.extra/medivision.json`: class names, input shape, multi-label flag,
  signature names and the full `ModelConfig` (`model_config`: the
  `build_medivision` arguments) as plain JSON (no TensorFlow needed);
  `assets.extra/labels.txt` has one class name per line;
  `assets.extra/tf_serving_warmup_requests` holds TF Serving's warm-up
  requests (one `PredictionLog` per signature, replayed at load). `assets.extra/` is the SavedModel folder meant
  for files that sit beside the graph without being loaded by it.
- on the object loaded by `tf.saved_model.load`: `loaded.class_names[0]`
  (string tensor) and `loaded.input_shape[0]` (int32 `[H, W, C]`).

`export_tflite(model, "lesions.tflite", quantization="float16" | "dynamic" |
None)` writes a TFLite (LiteRT) file for on-device use (batch 1, builtin ops).
ONNX is not offered: tf2onnx is not a dependency of this package.

Example:

```python
import numpy as np
import tensorflow as tf
import medivision_tf
from medivision_tf.export import export_saved_model, read_export_metadata

model = medivision_tf.build_medivision(
    3, backbone="smallcnn", input_shape=(64, 64, 1), weights=None
)
path = export_saved_model(model, "saved_models/lesions")   # saved_models/lesions/1
loaded = tf.saved_model.load(path)
out = loaded.signatures["serving_default"](image=tf.zeros((2, 64, 64, 1)))
out["probabilities"].shape                                  # (2, 3)
read_export_metadata("saved_models/lesions")["class_names"]  # ['class_0', ...]
```
"""

import json
import os
import re
import shlex
import shutil
import uuid
from typing import NamedTuple

import keras
import tensorflow as tf

from medivision_tf.data.decode import check_min_size, check_pixel_budget, finish_image
from medivision_tf.model import CLASS_LABELS_LAYER, FEATURE_MAP_LAYER, get_model_config
from medivision_tf.trust import feature_model, trust_outputs

SIGNATURES = ("serving_default", "predict_images", "explain")
METADATA_DIR = "assets.extra"
METADATA_FILE = "medivision.json"
LABELS_FILE = "labels.txt"
# TF Serving replays this file's PredictionLog records before it reports a
# version AVAILABLE (SavedModel warm-up), so the first client request does not
# pay the one-off graph costs.
WARMUP_FILE = "tf_serving_warmup_requests"
_VERSION_DIR = re.compile(r"^[0-9]+$")


def export_saved_model(model, export_dir, version=None, *, overwrite=False, verbose=False):
    """Exports a MediVision model as a SavedModel in TF Serving's layout.

    The SavedModel is written to `export_dir/VERSION/` (first to a hidden
    temporary folder, then renamed, so a TF Serving instance watching
    `export_dir` never loads a half-written version).

    Args:
        model: a model from `medivision_tf.build_medivision` (one image input
            `(H, W, C)` of raw 0-255 pixels, a `"class_labels"` output layer
            and a `"feature_map"` layer for Grad-CAM).
        export_dir: the model's base folder, e.g. `"saved_models/lesions"`;
            its last part is the model name TF Serving serves it under.
        version: a positive integer; `None` takes the next one (1 + the
            largest existing version, 1 for a new folder).
        overwrite: replace `export_dir/version` if it exists (otherwise an
            existing version is an error).
        verbose: print the endpoints (Keras' `ExportArchive` listing).

    Returns:
        The path of the written version folder, e.g. `"saved_models/lesions/2"`.

    Raises:
        ValueError: `version` is not a positive integer, or the model lacks
            an image input / the layers named above.
        FileExistsError: the version folder exists and `overwrite` is False.

    Example:

    ```python
    path = export_saved_model(model, "saved_models/lesions")            # .../1
    path = export_saved_model(model, "saved_models/lesions")            # .../2
    path = export_saved_model(model, "saved_models/lesions", version=10)
    ```
    """
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ValueError(
            f"`export_dir` must be a folder (TF Serving's model base path). "
            f"Received the file: {export_dir!r}"
        )
    input_shape, class_names = _check_model(model)
    if version is None:
        version = next_version(export_dir)
    version = _check_version(version)
    target = os.path.join(export_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists: {target!r}. Pass another "
            "`version`, version=None for the next one, or overwrite=True."
        )

    archive = _build_archive(model, input_shape, class_names)
    os.makedirs(export_dir, exist_ok=True)
    staging = os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        archive.write_out(staging, verbose=verbose)
        _write_metadata(staging, model, input_shape, class_names, version)
        write_warmup_requests(staging, _model_name(staging), input_shape)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return target


def _check_model(model):
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


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, int):
        try:
            if isinstance(version, str) and _VERSION_DIR.match(version):
                version = int(version)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                "`version` must be a positive integer (TF Serving version "
                f"folder) or None for the next one. Received: version={version!r}"
            ) from None
    if version < 1:
        raise ValueError(
            f"`version` must be a positive integer. Received: version={version!r}"
        )
    return version


def existing_versions(export_dir):
    """The integer versions present under `export_dir`, ascending.

    Only folders named by digits and holding a `saved_model.pb` count, as in
    TF Serving.

    Example:

    ```python
    existing_versions("saved_models/lesions")   # [1, 2]
    ```
    """
    export_dir = os.fspath(export_dir)
    if not os.path.isdir(export_dir):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(export_dir)
        if _VERSION_DIR.match(entry)
        and os.path.isfile(os.path.join(export_dir, entry, "saved_model.pb"))
    )


def next_version(export_dir):
    """1 + the largest version under `export_dir` (1 when there is none)."""
    versions = existing_versions(export_dir)
    # Also skip digit folders without a saved_model.pb (e.g. a copy in
    # progress): never write into them.
    taken = [
        int(entry)
        for entry in (os.listdir(export_dir) if os.path.isdir(export_dir) else [])
        if _VERSION_DIR.match(entry)
    ]
    return max(versions + taken, default=0) + 1


def latest_version_path(path):
    """The newest version folder of a TF Serving model base path.

    Args:
        path: `export_dir` holding integer version folders, or one version
            folder itself (returned as is).

    Returns:
        The path of the version folder with the largest number.

    Raises:
        FileNotFoundError: `path` holds no SavedModel version.

    Example:

    ```python
    latest_version_path("saved_models/lesions")   # "saved_models/lesions/2"
    ```
    """
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = existing_versions(path)
    if not versions:
        raise FileNotFoundError(
            f"No SavedModel version under {path!r}: expected folders named by "
            "integers (1, 2, ...) holding saved_model.pb, as written by "
            "`medivision export` / export_saved_model."
        )
    return os.path.join(path, str(versions[-1]))


def read_export_metadata(path):
    """Reads an export's class names, input shape and signatures (plain JSON).

    Needs neither Keras nor TensorFlow: it reads
    `VERSION/assets.extra/medivision.json`.

    Args:
        path: a model base path (its newest version is read) or a version
            folder.

    Returns:
        A dict with `class_names`, `input_shape` (`[H, W, C]`),
        `multi_label`, `signatures`, `version`, `model_name`, `model_config`
        (`medivision_tf.get_model_config(model).to_dict()`; rebuild it with
        `ModelConfig.from_dict`) and `warmup_file`.

    Example:

    ```python
    read_export_metadata("saved_models/lesions")["input_shape"]   # [64, 64, 1]
    ```
    """
    version_dir = latest_version_path(path)
    metadata_path = os.path.join(version_dir, METADATA_DIR, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(
            f"{metadata_path!r} not found: {version_dir!r} was not written by "
            "medivision_tf.export.export_saved_model."
        )
    with open(metadata_path) as f:
        return json.load(f)


def _build_archive(model, input_shape, class_names):
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
        is_png16 = tf.logical_and(
            tf.equal(tf.strings.substr(encoded, 0, 4), b"\x89PNG"),
            tf.equal(tf.strings.substr(encoded, 24, 1), b"\x10"),
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
        # (medivision_tf.data.decode.finish_image): channels (alpha dropped,
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


def _model_name(version_dir):
    return os.path.basename(os.path.dirname(os.path.abspath(version_dir)))


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


def _write_metadata(version_dir, model, input_shape, class_names, version):
    folder = os.path.join(version_dir, METADATA_DIR)
    os.makedirs(folder, exist_ok=True)
    config = get_model_config(model)
    metadata = {
        "model_name": _model_name(version_dir),
        "version": version,
        "class_names": list(class_names),
        "input_shape": list(input_shape),
        "input_range": [0, 255],
        "multi_label": bool(config.multi_label),
        "signatures": list(SIGNATURES),
        "keras_model_name": model.name,
        # build_medivision's arguments: later stages read them, never infer.
        "model_config": config.to_dict(),
        "warmup_file": f"{METADATA_DIR}/{WARMUP_FILE}",
    }
    with open(os.path.join(folder, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    with open(os.path.join(folder, LABELS_FILE), "w") as f:
        f.write("".join(f"{name}\n" for name in class_names))


class ServingExport(NamedTuple):
    """What `export_for_serving` wrote and how to serve it."""

    path: str
    version: int
    model_name: str
    serve_command: str


def export_for_serving(model, name="medivision", export_root="saved_models", port=8501):
    """Exports `model` to `export_root/name/NEXT_VERSION` and says how to serve it.

    Meant for the end of a training run (e.g. `medivision demo`): print
    `result.serve_command` for the user.

    Args:
        model: a model from `build_medivision`.
        name: the model name (folder under `export_root`, URL path part).
        export_root: parent of the model folders.
        port: port shown in the serving command.

    Returns:
        A `ServingExport(path, version, model_name, serve_command)`.

    Example:

    ```python
    result = export_for_serving(model, "lesions")
    print(f"SavedModel: {result.path}\\nServe it: {result.serve_command}")
    ```
    """
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ValueError(
            "`name` must be a model name of letters, digits, '_', '.', '-' "
            f"(it becomes a URL path part). Received: name={name!r}"
        )
    base = os.path.join(os.fspath(export_root), name)
    path = export_saved_model(model, base)
    command = f"medivision serve {shlex.quote(base)} --port {int(port)}"
    return ServingExport(path, int(os.path.basename(path)), name, command)


TFLITE_QUANTIZATIONS = (None, "float16", "dynamic")


def export_tflite(model, filepath, quantization="float16"):
    """Exports a MediVision model to TFLite (LiteRT), optionally quantized.

    Uses Keras' own `model.export(format="litert")` with a batch-1 input
    signature: with a fixed batch the LSTM converts to builtin TFLite ops only
    (no Flex delegate needed). The class names are written beside the file,
    one per line, in `<filepath without .tflite>.labels.txt`.

    Args:
        model: a model from `build_medivision`.
        filepath: path of the `.tflite` file to write.
        quantization: `"float16"` (weights stored as float16, about half the
            size), `"dynamic"` (dynamic-range: int8 weights, float
            activations, about a quarter of the size) or None (float32).

    Returns:
        The path of the `.tflite` file. Its single signature takes one
        `(1, H, W, C)` float32 image of raw 0-255 pixels and returns the class
        probabilities.

    Example:

    ```python
    import numpy as np
    import tensorflow as tf
    path = export_tflite(model, "saved_models/lesions.tflite", quantization="float16")
    interpreter = tf.lite.Interpreter(path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           np.zeros((1, 64, 64, 1), "float32"))
    interpreter.invoke()
    probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    ```
    """
    if quantization not in TFLITE_QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r}. Choose one of: "
            f"{', '.join(repr(q) for q in TFLITE_QUANTIZATIONS)}."
        )
    input_shape, class_names = _check_model(model)
    filepath = os.fspath(filepath)
    if not filepath.endswith(".tflite"):
        raise ValueError(f"`filepath` must end in .tflite. Received: {filepath!r}")
    options = {}
    if quantization is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
    model.export(
        filepath,
        format="litert",
        verbose=False,
        input_signature=[keras.InputSpec(shape=(1,) + input_shape, dtype="float32")],
        **options,
    )
    with open(filepath[: -len(".tflite")] + ".labels.txt", "w") as f:
        f.write("".join(f"{name}\n" for name in class_names))
    return filepath
