"""The HTTP side: a KServe model over a SavedModel, and a FastAPI app served by uvicorn.

`SavedModelPredictor` is a `kserve.Model` (KServe's public model API) that
runs a SavedModel's signatures on requests parsed by
`medivision_tf.serving.protocol`. `prepare_app` builds a FastAPI app with TF
Serving's REST routes for such predictors, and `serve` runs it with uvicorn on
127.0.0.1.

Why not `kserve.ModelServer`: it binds 0.0.0.0 with no public option to
change it (its REST server hard-codes the host in its `uvicorn.Config`) and
serves one module-level global app. A plain FastAPI app served with
`uvicorn.Server(uvicorn.Config(app, host=..., port=...))` gets the loopback
default, a fresh app per call and our routes, through public APIs only.

Example:

```python
from medivision_tf.serving import serve

serve("saved_models/lesions", port=8501)   # blocks; Ctrl-C stops it
```
"""

import asyncio
import contextlib
import json
import os
import sys

import tensorflow as tf

from medivision_tf.export import latest_version_path, read_export_metadata
from medivision_tf.serving import protocol


@contextlib.contextmanager
def _argv_hidden():
    # `import kserve` imports kserve.model_server, which parses sys.argv at
    # import time (parse_known_args): keep our own command line away from it.
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


try:
    with _argv_hidden():
        import kserve
        from kserve.errors import InvalidInput
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "medivision_tf.serving needs KServe: pip install 'medivision-tf[serve]' "
        f"(or pip install kserve). Import failed with: {error}"
    ) from error

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_MAX_BATCH_SIZE = protocol.DEFAULT_MAX_BATCH_SIZE
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class SavedModelPredictor(kserve.Model):
    """A KServe model serving every signature of a SavedModel, TF Serving style.

    Requests follow TF Serving's REST predict API (see
    `medivision_tf.serving.protocol`): `{"instances": [...]}` answered with
    `{"predictions": [...]}`, or `{"inputs": ...}` answered with
    `{"outputs": ...}`, an optional `"signature_name"` (default
    `"serving_default"`) and `{"b64": "..."}` for bytes. Bad requests raise
    `kserve.errors.InvalidInput` (HTTP 400 with `{"error": "..."}`).

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
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(
                f"`max_batch_size` must be a positive integer. Received: {max_batch_size!r}"
            )
        self.model_dir = os.fspath(model_dir)
        self.max_batch_size = max_batch_size
        self.version_dir = None
        self.version = None
        self.signatures = {}
        self.metadata = {}
        self.signature_defs = {}

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
        self.input_specs = {
            key: fn.structured_input_signature[1] for key, fn in self.signatures.items()
        }
        try:
            self.metadata = read_export_metadata(self.version_dir)
        except FileNotFoundError:
            self.metadata = {}
        self.signature_defs = protocol.read_signature_defs(self.version_dir)
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
        # time: do them in the loop's thread pool (TF releases the GIL) so the
        # event loop keeps answering other requests meanwhile.
        loop = asyncio.get_running_loop()
        outputs, row_format = await loop.run_in_executor(None, self._run, payload)
        return protocol.build_response(outputs, row_format)

    def _run(self, payload):
        try:
            signature_name, inputs, row_format = protocol.parse_request(
                payload, self.input_specs, self.max_batch_size
            )
        except protocol.InvalidRequest as error:
            raise InvalidInput(str(error)) from None
        try:
            outputs = self.signatures[signature_name](**inputs)
        except tf.errors.InvalidArgumentError as error:
            message = protocol.op_error_reason(error.message)
            raise InvalidInput(
                f"Signature {signature_name!r} rejected the input: {message}"
            ) from None
        return {key: protocol.to_json(value.numpy()) for key, value in outputs.items()}, row_format

    def status(self):
        """TF Serving's `GET /v1/models/NAME` answer (plus KServe's fields)."""
        return protocol.status_response(self.name, self.version, self.ready)

    def metadata_response(self):
        """TF Serving's `GET /v1/models/NAME/metadata` answer (plus class names)."""
        return protocol.metadata_response(
            self.name, self.version, self.signature_defs, self.metadata
        )


class BodySizeLimit:
    """ASGI middleware: requests with a body over `max_bytes` get HTTP 413.

    Args:
        app: the ASGI app to wrap.
        max_bytes: largest accepted request body.

    Example:

    ```python
    app.add_middleware(BodySizeLimit, max_bytes=16 * 1024 * 1024)
    ```
    """

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
        # Read (and drop) the rest of the body before answering, so the
        # client gets the 413 instead of a broken pipe; past `limit` bytes
        # the answer goes out anyway.
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
    import uvicorn

    model_dir = os.fspath(model_dir)
    name = name or os.path.basename(os.path.normpath(model_dir))
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"`port` must be in 1-65535. Received: port={port!r}")
    predictor = SavedModelPredictor(name, model_dir, max_batch_size=max_batch_size)
    app = prepare_app({name: predictor}, max_body_bytes)  # checks max_body_bytes first
    predictor.load()
    print(
        f"Serving {name!r} version {predictor.version} ({predictor.version_dir}) "
        f"on http://{host}:{port}/v1/models/{name} with signatures "
        f"{sorted(predictor.signatures)}",
        flush=True,
    )
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, workers=1)).run()


def _json(content, status_code=200, headers=None):
    from starlette.responses import Response

    # json.dumps directly: FastAPI's default encoder walks every list element
    # (slow on image-sized outputs).
    return Response(json.dumps(content), status_code=status_code, media_type="application/json",
                    headers=headers)


def prepare_app(predictors, max_body_bytes=DEFAULT_MAX_BODY_BYTES):
    """A new FastAPI app with TF Serving's REST routes for `predictors`.

    Routes: `GET /v1/models/NAME` (status), `GET /v1/models/NAME/metadata`,
    `POST /v1/models/NAME:predict` and `POST /v1/models/NAME/versions/N:predict`
    (the served N only). Unknown models get 404, bad requests 400, bodies
    over `max_body_bytes` 413, all with `{"error": "..."}`. Each call builds a
    fresh app (no global state), so serving twice in one process does not
    stack routes or middleware.

    Args:
        predictors: `{model name: SavedModelPredictor}` (loaded, or loaded
            before the first request).
        max_body_bytes: largest request body (more: HTTP 413).

    Returns:
        A `fastapi.FastAPI` app; serve it with uvicorn, e.g.
        `uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8501)).run()`.

    Example:

    ```python
    predictor = SavedModelPredictor("lesions", "saved_models/lesions")
    predictor.load()
    app = prepare_app({"lesions": predictor})
    ```
    """
    from fastapi import FastAPI, Request

    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise ValueError(
            f"`max_body_bytes` must be a positive integer. Received: {max_body_bytes!r}"
        )
    predictors = dict(predictors)
    app = FastAPI(title="medivision_tf TF Serving REST API", docs_url=None, redoc_url=None)

    def find(model_name):
        predictor = predictors.get(model_name)
        if predictor is None:
            return None, _json(
                {"error": f"Model {model_name!r} not found. Served models: {sorted(predictors)}"},
                404,
            )
        return predictor, None

    async def run_predict(predictor, request):
        try:
            return _json(await predictor.predict(await request.body()))
        except InvalidInput as invalid:
            return _json({"error": str(invalid)}, 400)

    async def model_status(model_name: str):
        predictor, error = find(model_name)
        return error or _json(predictor.status())

    async def model_metadata(model_name: str):
        predictor, error = find(model_name)
        return error or _json(predictor.metadata_response())

    async def predict(model_name: str, request: Request):
        predictor, error = find(model_name)
        return error or await run_predict(predictor, request)

    async def versioned_predict(model_name: str, version: str, request: Request):
        predictor, error = find(model_name)
        if error:
            return error
        if version != str(predictor.version):
            return _json(
                {
                    "error": f"Version {version!r} of model {model_name!r} is not "
                    f"served; this server serves version {predictor.version}."
                },
                404,
            )
        return await run_predict(predictor, request)

    def wrong_method(request):
        return _json(
            {"error": f"Method {request.method} is not allowed on {request.url.path}: "
                      "predict requests are POST."},
            405, headers={"Allow": "POST"},
        )

    async def predict_route(model_name: str, request: Request):
        if request.method != "POST":
            return wrong_method(request)
        return await predict(model_name, request)

    async def versioned_predict_route(model_name: str, version: str, request: Request):
        if request.method != "POST":
            return wrong_method(request)
        return await versioned_predict(model_name, version, request)

    # The predict routes take every method (others answer 405, Allow: POST)
    # and come first: GET /v1/models/x:predict would otherwise match the
    # status route (as model "x:predict") and answer 404.
    methods = ["POST", "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    app.add_api_route("/v1/models/{model_name}:predict", predict_route, methods=methods)
    app.add_api_route(
        "/v1/models/{model_name}/versions/{version}:predict", versioned_predict_route,
        methods=methods,
    )
    app.add_api_route("/v1/models/{model_name}", model_status, methods=["GET"])
    app.add_api_route("/v1/models/{model_name}/metadata", model_metadata, methods=["GET"])
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app
