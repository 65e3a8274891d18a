"""A local model server speaking TF Serving's REST API.

`serve("saved_models/lesions")` loads the newest version of an export written
by `medivision_tf.export.export_saved_model` and serves every signature on
127.0.0.1 (uvicorn + FastAPI, the model a `kserve.Model`). The same requests
work against `tensorflow/serving`:

```
GET  /v1/models/lesions                    version status (TF Serving format)
GET  /v1/models/lesions/metadata           signature defs (TF Serving format)
POST /v1/models/lesions:predict            {"instances": [...]}  -> {"predictions": [...]}
POST /v1/models/lesions/versions/2:predict (the served version only)
                                           {"inputs": ...}       -> {"outputs": ...}
                                           "signature_name": "predict_images" | "explain"
                                           {"b64": "..."} for image bytes
```

Modules: `protocol` parses and validates TF Serving V1 REST requests and
builds the answers (no server, no KServe: usable alone); `server` holds the
KServe model, the FastAPI app and `serve`.

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

from medivision_tf.backend import INSTEAD, require_tensorflow

# Before TensorFlow is imported: on JAX or PyTorch, one clear error (docs/backends.md).
require_tensorflow(
    "medivision_tf.serving (TF Serving's REST API)",
    INSTEAD["serving"],
)

from medivision_tf.serving import protocol
from medivision_tf.serving.protocol import InvalidRequest, parse_request, predict_request_to_json

# The server names need KServe (the optional `serve` extra): imported on
# first use, so `medivision_tf.serving.protocol` works without it.
_SERVER_NAMES = (
    "DEFAULT_HOST",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "BodySizeLimit",
    "SavedModelPredictor",
    "prepare_app",
    "serve",
)


def __getattr__(name):
    if name in _SERVER_NAMES:
        from medivision_tf.serving import server

        return getattr(server, name)
    raise AttributeError(f"module 'medivision_tf.serving' has no attribute {name!r}")


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "BodySizeLimit",
    "InvalidRequest",
    "SavedModelPredictor",
    "parse_request",
    "predict_request_to_json",
    "prepare_app",
    "protocol",
    "serve",
]
