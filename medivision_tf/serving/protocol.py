"""TF Serving's V1 REST protocol: request parsing, validation, response building.

Pure functions over JSON values and a signature's input specs
(`{input name: tf.TensorSpec}`): no HTTP server and no KServe here, so the
protocol is tested alone and any server (ours, a test client) can reuse it.
Every bad request raises `InvalidRequest` (a `ValueError`) whose message names
what was received and what is allowed; a server answers it with HTTP 400.

The formats (as `tensorflow/serving` reads and writes them):

```
{"instances": [...], "signature_name": "..."}  -> {"predictions": [...]}   row format
{"inputs": ... , "signature_name": "..."}      -> {"outputs": ...}         columnar format
{"b64": "..."}                                  bytes of a string input
```

Example:

```python
import tensorflow as tf
from medivision_tf.serving import protocol

specs = {"serving_default": {"image": tf.TensorSpec((None, 2, 2, 1), tf.float32)}}
name, inputs, row_format = protocol.parse_request(
    {"instances": [[[[0.0], [1.0]], [[2.0], [3.0]]]]}, specs
)
name, inputs["image"].shape, row_format       # ('serving_default', (1, 2, 2, 1), True)
protocol.build_response({"probabilities": [[0.2, 0.8]]}, row_format)
# {'predictions': [[0.2, 0.8]]}
```
"""

import base64
import binascii
import json
import os

import numpy as np
import tensorflow as tf

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_BATCH_SIZE = 64
#: The documented range of pixel inputs (raw pixels, as in training).
PIXEL_RANGE = (0.0, 255.0)

_NUMPY_DTYPES = {
    tf.float32: np.float32,
    tf.float64: np.float64,
    tf.float16: np.float16,
    tf.int32: np.int32,
    tf.int64: np.int64,
    tf.uint8: np.uint8,
}


class InvalidRequest(ValueError):
    """A request that breaks TF Serving's REST format or a signature's inputs (HTTP 400)."""


def parse_request(payload, signatures, max_batch_size=DEFAULT_MAX_BATCH_SIZE):
    """Parses one TF Serving REST predict body against the served signatures.

    Args:
        payload: the request body: a dict, or JSON text / bytes (TF Serving,
            like `curl -d`, does not require a JSON content type).
        signatures: `{signature name: {input name: tf.TensorSpec}}`, e.g.
            `{k: fn.structured_input_signature[1] for k, fn in loaded.signatures.items()}`.
        max_batch_size: most instances accepted in one request.

    Returns:
        `(signature_name, {input name: tf.Tensor}, row_format)`; `row_format`
        is True for `"instances"` (answer with `"predictions"`).

    Raises:
        InvalidRequest: the body is not valid JSON, names an unknown
            signature or input, or has wrong shapes, dtypes, base64, or
            batch sizes.

    Example:

    ```python
    specs = {"predict_images": {"image_bytes": tf.TensorSpec((None,), tf.string)}}
    parse_request('{"signature_name": "predict_images", "instances": [{"b64": "iVBO"}]}', specs)
    ```
    """
    if isinstance(payload, (bytes, str)):
        try:
            payload = json.loads(payload)
        except ValueError as error:
            # "Unrecognized request format" is KServe's wording for the same case.
            raise InvalidRequest(
                f"Unrecognized request format: the body is not valid JSON ({error})."
            ) from None
    if not isinstance(payload, dict):
        raise InvalidRequest(
            "The request body must be a JSON object with \"instances\" or "
            f"\"inputs\". Received: {type(payload).__name__}"
        )
    signature_name = payload.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(signature_name, str) or signature_name not in signatures:
        raise InvalidRequest(
            f"Unknown signature_name {signature_name!r}. "
            f"Allowed: {', '.join(sorted(signatures))}."
        )
    unknown = set(payload) - {"instances", "inputs", "signature_name"}
    if unknown or ("instances" in payload) == ("inputs" in payload):
        raise InvalidRequest(
            "The request body needs exactly one of \"instances\" (row format) "
            "or \"inputs\" (columnar format), plus an optional "
            f"\"signature_name\". Received keys: {sorted(payload)}"
        )
    specs = signatures[signature_name]
    row_format = "instances" in payload
    if row_format:
        columns = columns_from_instances(payload["instances"], specs, max_batch_size)
    else:
        columns = columns_from_inputs(payload["inputs"], specs, max_batch_size)
    inputs = {
        key: to_tensor(columns[key], spec, f"input {key!r} of signature {signature_name!r}")
        for key, spec in specs.items()
    }
    sizes = {int(t.shape[0]) for t in inputs.values()}
    if len(sizes) > 1:
        raise InvalidRequest(
            f"All inputs need the same batch size. Received sizes: {sorted(sizes)}"
        )
    return signature_name, inputs, row_format


def check_batch(count, max_batch_size=DEFAULT_MAX_BATCH_SIZE):
    """Raises `InvalidRequest` unless `1 <= count <= max_batch_size`."""
    if count == 0:
        raise InvalidRequest("The request has no instances: send at least one.")
    if count > max_batch_size:
        raise InvalidRequest(
            f"Too many instances: received {count}, at most "
            f"{max_batch_size} per request (server --max-batch-size)."
        )


def columns_from_instances(instances, specs, max_batch_size=DEFAULT_MAX_BATCH_SIZE):
    """Row format (`"instances"`) to `{input name: list of values}`.

    Example:

    ```python
    columns_from_instances([{"a": 1, "b": 2}], {"a": spec, "b": spec})   # {"a": [1], "b": [2]}
    ```
    """
    if not isinstance(instances, list):
        raise InvalidRequest(
            f"\"instances\" must be a list. Received: {type(instances).__name__}"
        )
    check_batch(len(instances), max_batch_size)
    names = list(specs)
    named = all(isinstance(row, dict) and not is_b64(row) for row in instances)
    if not named:
        if len(names) != 1:
            raise InvalidRequest(
                f"This signature has inputs {names}: each instance must be an "
                "object naming them."
            )
        return {names[0]: instances}
    columns = {}
    for key in names:
        missing = [i for i, row in enumerate(instances) if key not in row]
        if missing:
            raise InvalidRequest(f"Instance {missing[0]} lacks input {key!r}. Inputs: {names}")
        columns[key] = [row[key] for row in instances]
    extra = {k for row in instances for k in row} - set(names)
    if extra:
        raise InvalidRequest(f"Unknown inputs {sorted(extra)}. Inputs: {names}")
    return columns


def columns_from_inputs(inputs, specs, max_batch_size=DEFAULT_MAX_BATCH_SIZE):
    """Columnar format (`"inputs"`) to `{input name: value}`.

    Example:

    ```python
    columns_from_inputs([[0.0]], {"image": spec})   # {"image": [[0.0]]}
    ```
    """
    names = list(specs)
    if isinstance(inputs, dict) and not is_b64(inputs):
        extra = set(inputs) - set(names)
        missing = set(names) - set(inputs)
        if extra or missing:
            raise InvalidRequest(
                f"\"inputs\" must name exactly the inputs {names}. Received: {sorted(inputs)}"
            )
        columns = dict(inputs)
    elif len(names) == 1:
        columns = {names[0]: inputs}
    else:
        raise InvalidRequest(f"\"inputs\" must be an object naming the inputs {names}.")
    for value in columns.values():
        check_batch(len(value) if isinstance(value, list) else 1, max_batch_size)
    return columns


def to_tensor(value, spec, where="input"):
    """One input's JSON value as a tensor of `spec`'s dtype and shape.

    Args:
        value: nested lists of numbers, or (for string inputs) strings and
            `{"b64": ...}` objects.
        spec: the input's `tf.TensorSpec` (`None` dimensions take any size).
        where: how error messages name the input.

    Example:

    ```python
    to_tensor([[1, 2]], tf.TensorSpec((None, 2), tf.float32)).shape   # (1, 2)
    ```
    """
    expected = tuple(-1 if d is None else d for d in spec.shape)
    if spec.dtype == tf.string:
        array = decode_strings(value, where)
    else:
        if contains_b64(value):
            raise InvalidRequest(
                f"{where} is {spec.dtype.name} numbers; {{\"b64\": ...}} is "
                "only for string (bytes) inputs such as predict_images' "
                "image_bytes."
            )
        boolean = find_boolean(value)
        if boolean is not None:
            raise InvalidRequest(
                f"{where} must be {spec.dtype.name} numbers (pixels in "
                f"{PIXEL_RANGE[0]:g}-{PIXEL_RANGE[1]:g}); received a boolean ({boolean!r})."
            )
        try:
            array = np.asarray(value, dtype=_NUMPY_DTYPES.get(spec.dtype, np.float32))
        except OverflowError as error:
            raise InvalidRequest(
                f"{where} holds a number outside {PIXEL_RANGE[0]:g}-{PIXEL_RANGE[1]:g} "
                f"({error})."
            ) from None
        except (ValueError, TypeError) as error:
            kind = "a nested list of numbers with shape " + str(expected)
            reason = (
                "ragged nesting (wrong shape)"
                if "inhomogeneous" in str(error) or "sequence" in str(error)
                else f"values that are not {spec.dtype.name} numbers"
            )
            raise InvalidRequest(f"{where} must be {kind}; received {reason}: {error}") from None
    if array.ndim != len(expected) or any(
        e != -1 and e != a for e, a in zip(expected, array.shape)
    ):
        raise InvalidRequest(
            f"Wrong shape for {where}: received {tuple(array.shape)}, expected "
            f"{expected} (-1: any batch size)."
        )
    if spec.dtype != tf.string:
        check_pixels(array, where)
    return tf.constant(array, dtype=spec.dtype)


def find_boolean(value):
    """The first JSON boolean in nested lists, or None (Python's `True == 1`
    would let `true` pass as a pixel)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            return item
        if isinstance(item, list):
            if item and not isinstance(item[0], list):
                if any(isinstance(v, bool) for v in item):
                    return next(v for v in item if isinstance(v, bool))
                if any(isinstance(v, list) for v in item):
                    stack.extend(item)
            else:
                stack.extend(item)
    return None


def check_pixels(array, where="input"):
    """Refuses NaN, infinities and values outside `PIXEL_RANGE` (HTTP 400).

    Example:

    ```python
    check_pixels(np.array([0.0, 255.0]))      # fine
    check_pixels(np.array([-1e9]))            # InvalidRequest
    ```
    """
    if array.size == 0:
        return
    values = np.asarray(array, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = values[~np.isfinite(values)].flat[0]
        raise InvalidRequest(
            f"{where} holds {bad} : pixels must be finite numbers in "
            f"{PIXEL_RANGE[0]:g}-{PIXEL_RANGE[1]:g}."
        )
    low, high = float(values.min()), float(values.max())
    if low < PIXEL_RANGE[0] or high > PIXEL_RANGE[1]:
        raise InvalidRequest(
            f"{where} holds values from {low:g} to {high:g}: pixels must be raw "
            f"values in {PIXEL_RANGE[0]:g}-{PIXEL_RANGE[1]:g} (as in training)."
        )


def is_b64(value):
    """Whether `value` is TF Serving's `{"b64": ...}` bytes object."""
    return isinstance(value, dict) and set(value) == {"b64"}


def contains_b64(value):
    """Whether `value` is, or (first-element-wise) nests, a `{"b64": ...}` object."""
    if is_b64(value):
        return True
    return isinstance(value, list) and bool(value) and contains_b64(value[0])


def decode_strings(value, where="input"):
    """A string input's JSON value (`{"b64": ...}` or text) as a numpy bytes array.

    Example:

    ```python
    decode_strings([{"b64": "aGk="}, "text"])   # array([b'hi', b'text'], dtype=object)
    ```
    """
    if not isinstance(value, list):
        value = [value]
    decoded = []
    for index, item in enumerate(value):
        if is_b64(item):
            if not isinstance(item["b64"], str):
                raise InvalidRequest(f"{where}[{index}]: \"b64\" must be a string.")
            try:
                decoded.append(base64.b64decode(item["b64"], validate=True))
            except (binascii.Error, ValueError):
                raise InvalidRequest(
                    f"{where}[{index}] is not valid base64 (received "
                    f"{item['b64'][:40]!r}...). Send {{\"b64\": base64(file bytes)}}."
                ) from None
        elif isinstance(item, str):
            decoded.append(item.encode("utf-8"))
        else:
            raise InvalidRequest(
                f"{where}[{index}] must be {{\"b64\": \"...\"}} (image file bytes in "
                f"base64) or a string. Received: {type(item).__name__}"
            )
    return np.array(decoded, dtype=object)


def to_json(array):
    """A numpy output as JSON values (bytes decoded as UTF-8 text, as TF Serving does)."""
    if array.dtype == object:
        return [
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
            for item in array.tolist()
        ]
    return array.tolist()


def build_response(outputs, row_format):
    """TF Serving's predict answer from `{output name: JSON value}`.

    Row format gives `{"predictions": ...}` (one object per instance when
    there are several outputs), columnar `{"outputs": ...}`.

    Example:

    ```python
    build_response({"p": [[1.0]], "k": [0]}, row_format=True)
    # {'predictions': [{'p': [1.0], 'k': 0}]}
    ```
    """
    if row_format:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        count = len(next(iter(outputs.values())))
        return {
            "predictions": [{key: value[i] for key, value in outputs.items()} for i in range(count)]
        }
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values()))}
    return {"outputs": dict(outputs)}


def op_error_reason(message):
    """The one line that says why a graph rejected its input.

    A graph error reads "Graph execution error: / Detected at node ... /
    <stack> / REASON / [[{{node ...}}]]": this returns REASON.
    """
    lines = [line.strip() for line in message.splitlines()]
    reasons = [
        line
        for line in lines
        if line
        and not line.startswith(("Graph execution error", "Detected at node", "<stack", "[[", "File "))
    ]
    return reasons[-1] if reasons else lines[0]


def status_response(name, version, ready=True):
    """TF Serving's `GET /v1/models/NAME` answer (plus KServe's `name` and `ready`)."""
    return {
        "name": name,
        "ready": ready,
        "model_version_status": [
            {
                "version": str(version),
                "state": "AVAILABLE" if ready else "LOADING",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ],
    }


def metadata_response(name, version, signature_defs, medivision=None):
    """TF Serving's `GET /v1/models/NAME/metadata` answer (plus the export's metadata)."""
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": signature_defs}},
        "medivision": medivision or {},
    }


def read_signature_defs(version_dir):
    """A SavedModel's serving SignatureDefs as JSON, as TF Serving's metadata API gives them.

    Example:

    ```python
    read_signature_defs("saved_models/lesions/1")["serving_default"]["method_name"]
    # 'tensorflow/serving/predict'
    ```
    """
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(os.fspath(version_dir), "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = next(g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags)
    return {
        key: json_format.MessageToDict(value, preserving_proto_field_name=True)
        for key, value in graph.signature_def.items()
        if not key.startswith("__")
    }


def predict_request_to_json(request):
    """A TF Serving `PredictRequest` proto as the equivalent REST body.

    Works on any message with `model_spec.signature_name` and an `inputs`
    map of `TensorProto`s, e.g. the records of a
    `tf_serving_warmup_requests` file. String tensors become `{"b64": ...}`.

    Example:

    ```python
    body = predict_request_to_json(prediction_log.predict_log.request)
    # {"signature_name": "serving_default", "inputs": {"image": [[[[0.0]]]]}}
    ```
    """
    inputs = {}
    for key, tensor_proto in request.inputs.items():
        array = tf.make_ndarray(tensor_proto)
        if array.dtype == object:
            inputs[key] = [{"b64": base64.b64encode(item).decode()} for item in array.ravel()]
        else:
            inputs[key] = array.tolist()
    return {"signature_name": request.model_spec.signature_name or DEFAULT_SIGNATURE, "inputs": inputs}
