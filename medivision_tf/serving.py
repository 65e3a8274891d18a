"""A local model server speaking TF Serving's REST API, built on KServe.

`serve("saved_models/lesions")` loads the newest version of an export written
by `medivision_tf.export.export_saved_model` and serves every signature on
127.0.0.1 with KServe's Python `ModelServer`, whose V1 protocol is TF
Serving's REST API. The same requests work against `tensorflow/serving`:

```
GET  /v1/models/lesions                    version status (TF Serving format)
GET  /v1/models/lesions/metadata           signature defs (TF Serving format)
POST /v1/models/lesions:predict            {"instances": [...]}  -> {"predictions": [...]}
POST /v1/models/lesions/versions/2:predict (the served version only)
                                           {"inputs": ...}       -> {"outputs": ...}
                                           "signature_name": "predict_images" | "explain"
                                           {"b64": "..."} for image bytes
```

What KServe provides: the HTTP server (uvicorn + FastAPI), routing of
`/v1/models/NAME:predict`, JSON decoding, model registry and readiness,
404 for unknown models, 400 for `kserve.errors.InvalidInput`. What this module
adds: the `kserve.Model` that parses TF Serving's request formats against the
SavedModel's signature defs (names, dtypes, shapes, base64), runs the
signature in KServe's thread pool, and writes TF Serving's response formats;
a request-size limit (413); TF Serving's status and metadata routes; binding to
127.0.0.1 (KServe binds 0.0.0.0).

Example:

```python
from medivision_tf.serving import serve

serve("saved_models/lesions", port=8501)   # blocks; Ctrl-C stops it
```
and from another shell:
```
curl -s localhost:8501/v1/models/lesions:predict \\
  -d '{"signature_name": "predict_images", "instances": [{"b64": "'$(base64 -w0 x.png)'"}]}'
```
"""

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import http.client
import json
import os
import sys
import threading
import time

import numpy as np
import tensorflow as tf

from medivision_tf.export import latest_version_path, read_export_metadata


@contextlib.contextmanager
def _argv_hidden():
    # kserve.model_server parses sys.argv at import time (parse_known_args);
    # keep our own command line away from it.
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


try:
    with _argv_hidden():
        import kserve
        import kserve.model_server
        from kserve.errors import InvalidInput
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "medivision_tf.serving needs KServe: pip install 'medivision-tf[serve]' "
        f"(or pip install kserve). Import failed with: {error}"
    ) from error

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

_NUMPY_DTYPES = {
    tf.float32: np.float32,
    tf.float64: np.float64,
    tf.float16: np.float16,
    tf.int32: np.int32,
    tf.int64: np.int64,
    tf.uint8: np.uint8,
}


class SavedModelPredictor(kserve.Model):
    """A KServe model serving every signature of a SavedModel, TF Serving style.

    Requests follow TF Serving's REST predict API: `{"instances": [...]}` (row
    format, answered with `{"predictions": [...]}`) or `{"inputs": ...}`
    (columnar, answered with `{"outputs": ...}`), an optional
    `"signature_name"` (default `"serving_default"`), and `{"b64": "..."}`
    for the bytes of string inputs. Bad requests raise
    `kserve.errors.InvalidInput`, which KServe answers with HTTP 400 and
    `{"error": "..."}`.

    Args:
        name: the model name in the URL (`/v1/models/NAME:predict`).
        model_dir: a TF Serving model base path (the newest integer version is
            loaded) or one version folder.
        max_batch_size: most instances accepted in one request.

    Example:

    ```python
    import asyncio
    predictor = SavedModelPredictor("lesions", "saved_models/lesions")
    predictor.load()
    body = {"instances": [[[[0.0]] * 64] * 64]}
    asyncio.run(predictor.predict(body))   # {"predictions": [[p0, p1, p2]]}
    ```
    """

    def __init__(self, name, model_dir, max_batch_size=DEFAULT_MAX_BATCH_SIZE):
        super().__init__(name)
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(
                f"`max_batch_size` must be a positive integer. Received: {max_batch_size!r}"
            )
        self.model_dir = os.fspath(model_dir)
        self.max_batch_size = max_batch_size
        self.version_dir = None
        self.version = None
        self.signatures = {}
        self.metadata = {}

    def load(self):
        """Loads the newest version and warms up each signature once."""
        self.version_dir = latest_version_path(self.model_dir)
        base = os.path.basename(os.path.normpath(self.version_dir))
        self.version = int(base) if base.isdigit() else 1
        loaded = tf.saved_model.load(self.version_dir)
        self._loaded = loaded  # keeps the variables alive
        self.signatures = {
            key: fn for key, fn in loaded.signatures.items() if not key.startswith("__")
        }
        try:
            self.metadata = read_export_metadata(self.version_dir)
        except FileNotFoundError:
            self.metadata = {}
        self.signature_defs = _signature_defs(self.version_dir)
        self._warm_up()
        self.ready = True
        return self.ready

    def _warm_up(self):
        # The first call of each concrete function pays one-off costs; pay
        # them before reporting ready.
        for fn in self.signatures.values():
            inputs = {}
            for key, spec in fn.structured_input_signature[1].items():
                shape = [1 if d is None else d for d in spec.shape]
                if spec.dtype == tf.string:
                    inputs[key] = tf.fill(shape, tf.io.encode_png(tf.zeros((8, 8, 1), tf.uint8)))
                else:
                    inputs[key] = tf.zeros(shape, spec.dtype)
            fn(**inputs)

    async def predict(self, payload, headers=None):
        """Runs one TF Serving REST predict request; returns the response dict."""
        # Parsing JSON lists into arrays and running the graph both take
        # time: do them in KServe's thread pool (TF releases the GIL) so the
        # event loop keeps answering other requests meanwhile.
        loop = asyncio.get_running_loop()
        outputs, row_format = await loop.run_in_executor(None, self._run, payload)
        if row_format:
            if len(outputs) == 1:
                return {"predictions": next(iter(outputs.values()))}
            count = len(next(iter(outputs.values())))
            return {
                "predictions": [
                    {key: value[i] for key, value in outputs.items()} for i in range(count)
                ]
            }
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values()))}
        return {"outputs": outputs}

    def _run(self, payload):
        signature_name, inputs, row_format = self._parse(payload)
        try:
            outputs = self.signatures[signature_name](**inputs)
        except tf.errors.InvalidArgumentError as error:
            message = _op_error_reason(error.message)
            raise InvalidInput(
                f"Signature {signature_name!r} rejected the input: {message}"
            ) from None
        return {key: _to_json(value.numpy()) for key, value in outputs.items()}, row_format

    def _parse(self, payload):
        if isinstance(payload, (bytes, str)):
            # KServe decodes JSON only under a JSON content type; TF Serving
            # (and curl -d) do not require one.
            try:
                payload = json.loads(payload)
            except ValueError as error:
                raise InvalidInput(f"The request body is not valid JSON: {error}") from None
        if not isinstance(payload, dict):
            raise InvalidInput(
                "The request body must be a JSON object with \"instances\" or "
                f"\"inputs\". Received: {type(payload).__name__}"
            )
        signature_name = payload.get("signature_name", "serving_default")
        if not isinstance(signature_name, str) or signature_name not in self.signatures:
            raise InvalidInput(
                f"Unknown signature_name {signature_name!r} for model {self.name!r}. "
                f"Allowed: {', '.join(sorted(self.signatures))}."
            )
        unknown = set(payload) - {"instances", "inputs", "signature_name"}
        if unknown or ("instances" in payload) == ("inputs" in payload):
            raise InvalidInput(
                "The request body needs exactly one of \"instances\" (row format) "
                "or \"inputs\" (columnar format), plus an optional "
                f"\"signature_name\". Received keys: {sorted(payload)}"
            )
        specs = self.signatures[signature_name].structured_input_signature[1]
        row_format = "instances" in payload
        if row_format:
            columns = self._columns_from_instances(payload["instances"], specs)
        else:
            columns = self._columns_from_inputs(payload["inputs"], specs)
        inputs = {
            key: self._to_tensor(columns[key], spec, key, signature_name)
            for key, spec in specs.items()
        }
        sizes = {int(t.shape[0]) for t in inputs.values()}
        if len(sizes) > 1:
            raise InvalidInput(
                f"All inputs need the same batch size. Received sizes: {sorted(sizes)}"
            )
        return signature_name, inputs, row_format

    def _check_batch(self, count):
        if count == 0:
            raise InvalidInput("The request has no instances: send at least one.")
        if count > self.max_batch_size:
            raise InvalidInput(
                f"Too many instances: received {count}, at most "
                f"{self.max_batch_size} per request (server --max-batch-size)."
            )

    def _columns_from_instances(self, instances, specs):
        if not isinstance(instances, list):
            raise InvalidInput(
                f"\"instances\" must be a list. Received: {type(instances).__name__}"
            )
        self._check_batch(len(instances))
        names = list(specs)
        named = all(
            isinstance(row, dict) and not _is_b64(row) for row in instances
        )
        if not named:
            if len(names) != 1:
                raise InvalidInput(
                    f"This signature has inputs {names}: each instance must be an "
                    "object naming them."
                )
            return {names[0]: instances}
        columns = {}
        for key in names:
            missing = [i for i, row in enumerate(instances) if key not in row]
            if missing:
                raise InvalidInput(
                    f"Instance {missing[0]} lacks input {key!r}. Inputs: {names}"
                )
            columns[key] = [row[key] for row in instances]
        extra = {k for row in instances for k in row} - set(names)
        if extra:
            raise InvalidInput(f"Unknown inputs {sorted(extra)}. Inputs: {names}")
        return columns

    def _columns_from_inputs(self, inputs, specs):
        names = list(specs)
        if isinstance(inputs, dict) and not _is_b64(inputs):
            extra = set(inputs) - set(names)
            missing = set(names) - set(inputs)
            if extra or missing:
                raise InvalidInput(
                    f"\"inputs\" must name exactly the inputs {names}. "
                    f"Received: {sorted(inputs)}"
                )
            columns = dict(inputs)
        elif len(names) == 1:
            columns = {names[0]: inputs}
        else:
            raise InvalidInput(f"\"inputs\" must be an object naming the inputs {names}.")
        for value in columns.values():
            self._check_batch(len(value) if isinstance(value, list) else 1)
        return columns

    def _to_tensor(self, value, spec, key, signature_name):
        where = f"input {key!r} of signature {signature_name!r}"
        expected = tuple(-1 if d is None else d for d in spec.shape)
        if spec.dtype == tf.string:
            array = _decode_strings(value, where)
        else:
            if _contains_b64(value):
                raise InvalidInput(
                    f"{where} is {spec.dtype.name} numbers; {{\"b64\": ...}} is "
                    "only for string (bytes) inputs such as predict_images' "
                    "image_bytes."
                )
            try:
                array = np.asarray(value, dtype=_NUMPY_DTYPES.get(spec.dtype, np.float32))
            except (ValueError, TypeError) as error:
                kind = "a nested list of numbers with shape " + str(expected)
                reason = (
                    "ragged nesting (wrong shape)"
                    if "inhomogeneous" in str(error) or "sequence" in str(error)
                    else f"values that are not {spec.dtype.name} numbers"
                )
                raise InvalidInput(
                    f"{where} must be {kind}; received {reason}: {error}"
                ) from None
        if array.ndim != len(expected) or any(
            e != -1 and e != a for e, a in zip(expected, array.shape)
        ):
            raise InvalidInput(
                f"Wrong shape for {where}: received {tuple(array.shape)}, expected "
                f"{expected} (-1: any batch size)."
            )
        return tf.constant(array, dtype=spec.dtype)

    def status(self):
        """TF Serving's `GET /v1/models/NAME` answer (plus KServe's fields)."""
        return {
            "name": self.name,
            "ready": self.ready,
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE" if self.ready else "LOADING",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ],
        }

    def metadata_response(self):
        """TF Serving's `GET /v1/models/NAME/metadata` answer (plus class names)."""
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": self.signature_defs}},
            "medivision": self.metadata,
        }


def _signature_defs(version_dir):
    # TF Serving's metadata answer is the SignatureDef protos as JSON.
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = next(g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags)
    return {
        key: json_format.MessageToDict(value, preserving_proto_field_name=True)
        for key, value in graph.signature_def.items()
        if not key.startswith("__")
    }


def _op_error_reason(message):
    # A graph error reads "Graph execution error: / Detected at node ... /
    # <stack> / REASON / [[{{node ...}}]]": keep REASON.
    lines = [line.strip() for line in message.splitlines()]
    reasons = [
        line
        for line in lines
        if line
        and not line.startswith(("Graph execution error", "Detected at node", "<stack", "[[", "File "))
    ]
    return reasons[-1] if reasons else lines[0]


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _contains_b64(value):
    if _is_b64(value):
        return True
    return isinstance(value, list) and bool(value) and _contains_b64(value[0])


def _decode_strings(value, where):
    if not isinstance(value, list):
        value = [value]
    decoded = []
    for index, item in enumerate(value):
        if _is_b64(item):
            if not isinstance(item["b64"], str):
                raise InvalidInput(f"{where}[{index}]: \"b64\" must be a string.")
            try:
                decoded.append(base64.b64decode(item["b64"], validate=True))
            except (binascii.Error, ValueError):
                raise InvalidInput(
                    f"{where}[{index}] is not valid base64 (received "
                    f"{item['b64'][:40]!r}...). Send {{\"b64\": base64(file bytes)}}."
                ) from None
        elif isinstance(item, str):
            decoded.append(item.encode("utf-8"))
        else:
            raise InvalidInput(
                f"{where}[{index}] must be {{\"b64\": \"...\"}} (image file bytes in "
                f"base64) or a string. Received: {type(item).__name__}"
            )
    return np.array(decoded, dtype=object)


def _to_json(array):
    if array.dtype == object:
        return [
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
            for item in array.tolist()
        ]
    return array.tolist()


class _BodySizeLimit:
    """ASGI middleware: requests with a body over `max_bytes` get HTTP 413."""

    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._drain(receive, 4 * self.max_bytes)
            return await self._reject(send, int(length))
        # Chunked or unknown length: read up to the limit, then replay.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                if more:
                    await self._drain(receive, 4 * self.max_bytes)
                return await self._reject(send, size)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive, limit):
        # Read (and drop, without keeping it) the rest of the body before
        # answering, so the client gets the 413 instead of a broken pipe;
        # past `limit` bytes the answer goes out anyway.
        seen = 0
        while seen <= limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, send, size):
        content = json.dumps(
            {
                "error": f"Request body too large: {size} bytes, at most "
                f"{self.max_bytes} (server --max-body-mb)."
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


class _LoopbackModelServer(kserve.ModelServer):
    """KServe's ModelServer, bound to `host` instead of 0.0.0.0."""

    def __init__(self, host, **kwargs):
        super().__init__(**kwargs)
        self.host = host

    async def _serve(self):
        # KServe's RESTServer hard-codes host="0.0.0.0" in its uvicorn.Config;
        # the config is only read when serving starts, i.e. here.
        self._rest_server.config.host = self.host
        await super()._serve()


def serve(
    model_dir,
    name=None,
    host=DEFAULT_HOST,
    port=DEFAULT_PORT,
    max_batch_size=DEFAULT_MAX_BATCH_SIZE,
    max_body_bytes=DEFAULT_MAX_BODY_BYTES,
):
    """Serves an export over TF Serving's REST API until interrupted (blocks).

    Args:
        model_dir: TF Serving model base path (e.g. `"saved_models/lesions"`);
            its newest integer version is served.
        name: model name in the URLs (default: the folder name).
        host: interface to bind; the default `127.0.0.1` is reachable from
            this machine only. Use `0.0.0.0` in a container.
        port: TCP port (TF Serving's REST default, 8501).
        max_batch_size: most instances in one request (more: HTTP 400).
        max_body_bytes: largest request body (more: HTTP 413).

    Example:

    ```python
    serve("saved_models/lesions", port=8501)
    ```
    """
    model_dir = os.fspath(model_dir)
    name = name or os.path.basename(os.path.normpath(model_dir))
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"`port` must be in 1-65535. Received: port={port!r}")
    if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise ValueError(
            f"`max_body_bytes` must be a positive integer. Received: {max_body_bytes!r}"
        )
    predictor = SavedModelPredictor(name, model_dir, max_batch_size=max_batch_size)
    predictor.load()
    prepare_app({name: predictor}, max_body_bytes)
    print(
        f"Serving {name!r} version {predictor.version} ({predictor.version_dir}) "
        f"on http://{host}:{port}/v1/models/{name} with signatures "
        f"{sorted(predictor.signatures)}",
        flush=True,
    )
    server = _LoopbackModelServer(host, http_port=port, enable_grpc=False, workers=1)
    server.start([predictor])


def prepare_app(predictors, max_body_bytes=DEFAULT_MAX_BODY_BYTES):
    """A fresh FastAPI app with TF Serving's routes, installed for KServe.

    KServe's `ModelServer` serves the module-level app
    `kserve.model_server:app` (it imports it by that name at start, adds its
    own routes and middleware to it, and uvicorn loads it by that name too).
    Adding ours to that one global app would make a second `serve()` in the
    same process register every route twice and fail on the middleware
    (Starlette refuses middleware on an app that has started). So each call
    builds a new app, configured like KServe's, adds this module's routes
    and body-size limit to it, and installs it as `kserve.model_server.app`:
    calling it again (or serving again) starts from a clean app.

    Args:
        predictors: `{model name: SavedModelPredictor}` served by the app.
        max_body_bytes: largest request body (more: HTTP 413).

    Returns:
        The new `fastapi.FastAPI` app (also `kserve.model_server.app` now).

    Example:

    ```python
    predictor = SavedModelPredictor("lesions", "saved_models/lesions")
    predictor.load()
    app = prepare_app({"lesions": predictor})
    ```
    """
    from fastapi import FastAPI

    template = kserve.model_server.app
    app = FastAPI(
        title=template.title,
        version=template.version,
        docs_url=template.docs_url,
        redoc_url=template.redoc_url,
        default_response_class=template.router.default_response_class,
    )
    _add_tf_serving_routes(app, predictors)
    app.add_middleware(_BodySizeLimit, max_bytes=max_body_bytes)
    kserve.model_server.app = app
    return app


def _add_tf_serving_routes(app, predictors):
    from fastapi import Request
    from fastapi.responses import JSONResponse

    def find(model_name):
        predictor = predictors.get(model_name)
        if predictor is None:
            return None, JSONResponse(
                status_code=404,
                content={
                    "error": f"Model {model_name!r} not found. Served models: "
                    f"{sorted(predictors)}"
                },
            )
        return predictor, None

    async def model_status(model_name: str):
        predictor, error = find(model_name)
        return error or predictor.status()

    async def model_metadata(model_name: str):
        predictor, error = find(model_name)
        return error or predictor.metadata_response()

    async def versioned_predict(model_name: str, version: str, request: Request):
        # TF Serving's /v1/models/NAME/versions/N:predict, for the served N.
        predictor, error = find(model_name)
        if error:
            return error
        if version != str(predictor.version):
            return JSONResponse(
                status_code=404,
                content={
                    "error": f"Version {version!r} of model {model_name!r} is not "
                    f"served; this server serves version {predictor.version}."
                },
            )
        try:
            return await predictor.predict(await request.body())
        except InvalidInput as invalid:
            return JSONResponse(status_code=400, content={"error": str(invalid)})

    # Added before KServe registers its own routes at start, so these answer
    # GET /v1/models/NAME in TF Serving's format (KServe's "name" and "ready"
    # fields are kept in it).
    app.add_api_route("/v1/models/{model_name}", model_status, methods=["GET"])
    app.add_api_route("/v1/models/{model_name}/metadata", model_metadata, methods=["GET"])
    app.add_api_route(
        "/v1/models/{model_name}/versions/{version}:predict", versioned_predict, methods=["POST"]
    )


def run_load_test(host, port, path, bodies, total=500, concurrency=8, timeout=30.0):
    """Sends `total` POST requests with `concurrency` workers; returns latencies.

    Each worker keeps one HTTP/1.1 connection open (as a client library
    would). The test is bounded: exactly `total` requests, then it stops.

    Args:
        host: server host, e.g. `"127.0.0.1"`.
        port: server port.
        path: request path, e.g. `"/v1/models/lesions:predict"`.
        bodies: list of JSON-serializable request bodies, used round-robin.
        total: number of requests.
        concurrency: number of concurrent workers.
        timeout: per-request socket timeout in seconds.

    Returns:
        A dict: `requests`, `errors` (non-200 or failed), `error_samples`,
        `seconds`, `requests_per_second`, and latency percentiles in ms
        (`p50_ms`, `p90_ms`, `p99_ms`, `max_ms`).

    Example:

    ```python
    stats = run_load_test("127.0.0.1", 8501, "/v1/models/lesions:predict",
                          [{"instances": images.tolist()}], total=500)
    stats["p99_ms"], stats["errors"]
    ```
    """
    if total < 1 or concurrency < 1 or not bodies:
        raise ValueError(
            f"Need total >= 1, concurrency >= 1 and bodies. Received: total={total}, "
            f"concurrency={concurrency}, {len(bodies)} bodies"
        )
    encoded = [json.dumps(body).encode() for body in bodies]
    counter = iter(range(total))
    lock = threading.Lock()
    latencies, errors = [], []

    def worker():
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                body = encoded[index % len(encoded)]
                start = time.perf_counter()
                try:
                    connection.request(
                        "POST", path, body, {"Content-Type": "application/json"}
                    )
                    response = connection.getresponse()
                    data = response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException) as error:
                    ok, data = False, repr(error).encode()
                    connection.close()
                    connection = http.client.HTTPConnection(host, port, timeout=timeout)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if not ok:
                        errors.append(data[:200].decode(errors="replace"))
        finally:
            connection.close()

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "requests_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }
