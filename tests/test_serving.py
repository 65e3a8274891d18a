"""`medivision serve`: a real server (uvicorn, KServe model) on 127.0.0.1 speaking TF Serving's REST API."""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

import medivision_tf
from medivision_tf.export import export_saved_model

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH_DIR)

from load_test import run_load_test  # noqa: E402  (benchmarks/ is not a package)

HOST = "127.0.0.1"
MAX_BATCH = 16
MAX_BODY_MB = 2


def _free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_model, tmp_path_factory):
    """A `medivision serve` subprocess; always terminated at the end."""
    root = tmp_path_factory.mktemp("serving")
    base = root / "lesions"
    first = export_saved_model(trained_model, base)
    shutil.copytree(first, base / "2")  # the newest version must be served
    port = _free_port()
    log_path = root / "server.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "medivision_tf", "serve", str(base), "--port", str(port),
         "--max-batch-size", str(MAX_BATCH), "--max-body-mb", str(MAX_BODY_MB)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models/lesions", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "port": port, "process": process, "log": log_path, "base": base}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        log.close()


def _post(server, body, model="lesions", raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{server['url']}/v1/models/{model}:predict", data=data,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(server, path):
    try:
        with urllib.request.urlopen(server["url"] + path, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _b64_png(image):
    return {"b64": base64.b64encode(tf.io.encode_png(image.astype("uint8")).numpy()).decode()}


@pytest.fixture(scope="module")
def images(lesion_data):
    return lesion_data["test"].images[:4]


def test_binds_loopback_and_reports_tf_serving_status(server):
    assert f"Uvicorn running on http://127.0.0.1:{server['port']}" in server["log"].read_text()
    status, body = _get(server, "/v1/models/lesions")
    assert status == 200 and body["ready"] is True
    assert body["model_version_status"][0] == {
        "version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}
    }
    status, meta = _get(server, "/v1/models/lesions/metadata")
    assert status == 200 and meta["model_spec"]["version"] == "2"
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "predict_images", "explain"}
    assert signatures["predict_images"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    dims = signatures["serving_default"]["inputs"]["image"]["tensor_shape"]["dim"]
    assert [d["size"] for d in dims] == ["-1", "64", "64", "1"]
    assert meta["medivision"]["input_shape"] == [64, 64, 1]
    status, body = _get(server, "/v1/models/nope")
    assert status == 404 and "'nope' not found" in body["error"]


def test_predict_row_and_columnar_match_keras(server, trained_model, images):
    expected = trained_model.predict(images, verbose=0)
    status, body = _post(server, {"instances": images.tolist()})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], expected, atol=1e-5)
    status, body = _post(server, {"inputs": {"image": images.tolist()}})
    assert status == 200
    np.testing.assert_allclose(body["outputs"], expected, atol=1e-5)


def test_predict_images_with_b64_png(server, trained_model, images):
    expected = trained_model.predict(images, verbose=0)
    names = medivision_tf.get_class_names(trained_model)
    body = {"signature_name": "predict_images", "instances": [_b64_png(i) for i in images]}
    status, answer = _post(server, body)
    assert status == 200, answer
    rows = answer["predictions"]
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, atol=1e-5)
    assert [r["class_index"] for r in rows] == expected.argmax(axis=1).tolist()
    assert [r["class_name"] for r in rows] == [names[i] for i in expected.argmax(axis=1)]


def test_explain_signature_over_rest(server, trained_model, images):
    status, answer = _post(server, {"signature_name": "explain", "inputs": images[:2].tolist()})
    assert status == 200, answer
    heatmap = np.array(answer["outputs"]["heatmap"])
    assert heatmap.shape == (2, 64, 64) and 0 <= heatmap.min() and heatmap.max() <= 1
    np.testing.assert_allclose(
        answer["outputs"]["probabilities"], trained_model.predict(images[:2], verbose=0), atol=1e-5
    )


def _bad_requests():
    zero = [[[0]] * 64] * 64
    return {
        "wrong shape": ({"instances": [[[[0.0]] * 64] * 32]}, 400, "Wrong shape"),
        "ragged": ({"instances": [zero, [[0.0]]]}, 400, "ragged"),
        "wrong dtype": ({"instances": [[[["x"]] * 64] * 64]}, 400, "not float32"),
        "b64 for floats": ({"instances": [{"b64": "AAAA"}]}, 400, "only for string"),
        "not base64": (
            {"signature_name": "predict_images", "instances": [{"b64": "%%%"}]},
            400, "not valid base64",
        ),
        "not an image": (
            {"signature_name": "predict_images",
             "instances": [{"b64": base64.b64encode(b"hello").decode()}]},
            400, "Unknown image file format",
        ),
        "number for bytes": (
            {"signature_name": "predict_images", "instances": [3]}, 400, "must be {\"b64\""
        ),
        "too many instances": (
            {"instances": [zero] * (MAX_BATCH + 1)}, 400, f"received {MAX_BATCH + 1}, at most",
        ),
        "empty": ({"instances": []}, 400, "no instances"),
        "unknown signature": (
            {"signature_name": "train", "instances": [zero]}, 400, "Unknown signature_name 'train'",
        ),
        "both formats": ({"instances": [zero], "inputs": [zero]}, 400, "exactly one of"),
        "not json": (b"{instances: [", 400, "Unrecognized request format"),  # KServe's message
        "oversized body": (b" " * (MAX_BODY_MB * 1024 * 1024 + 1), 413, "too large"),
    }


@pytest.mark.parametrize("case", list(_bad_requests()))
def test_malformed_requests_get_4xx_and_server_keeps_serving(server, images, case):
    body, code, message = _bad_requests()[case]
    raw = body if isinstance(body, bytes) else None
    status, answer = _post(server, body, raw=raw)
    assert status == code, answer
    assert message in answer["error"]
    status, answer = _post(server, {"instances": images[:1].tolist()})
    assert status == 200 and len(answer["predictions"]) == 1


def test_unknown_model_is_404(server, images):
    status, answer = _post(server, {"instances": images[:1].tolist()}, model="other")
    assert status == 404 and "other" in answer["error"]


def test_versioned_predict_route(server, trained_model, images):
    body = {"instances": images[:2].tolist()}
    status, answer = _post(server, body, model="lesions/versions/2")
    assert status == 200
    np.testing.assert_allclose(
        answer["predictions"], trained_model.predict(images[:2], verbose=0), atol=1e-5
    )
    status, answer = _post(server, body, model="lesions/versions/1")
    assert status == 404 and "serves version 2" in answer["error"]
    status, answer = _post(server, {"instances": [[1]]}, model="lesions/versions/2")
    assert status == 400 and "Wrong shape" in answer["error"]


class _FakePredictor:
    """Stands in for a loaded SavedModelPredictor in the route tests."""

    version = 1

    def __init__(self, name):
        self.name = name

    def status(self):
        return {"name": self.name, "model_version_status": [{"version": "1"}]}

    def metadata_response(self):
        return {"model_spec": {"name": self.name}}


def test_prepare_app_twice_gives_fresh_apps_with_routes_once():
    import warnings

    from medivision_tf.serving import BodySizeLimit, prepare_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient deprecation
        from starlette.testclient import TestClient
    first = prepare_app({"a": _FakePredictor("a")}, max_body_bytes=100)
    with TestClient(first) as client:  # the first app has started
        assert client.get("/v1/models/a").json()["name"] == "a"
        assert client.post("/v1/models/a/versions/1:predict", content=b"x" * 200).status_code == 413
    second = prepare_app({"b": _FakePredictor("b")}, max_body_bytes=100)
    assert second is not first
    for app in (first, second):
        paths = [route.path for route in app.routes]
        assert paths.count("/v1/models/{model_name}") == 1
        assert paths.count("/v1/models/{model_name}/metadata") == 1
        assert paths.count("/v1/models/{model_name}:predict") == 1
        assert [m.cls for m in app.user_middleware] == [BodySizeLimit]
    # More middleware can still go on the new (not yet started) app.
    second.add_middleware(BodySizeLimit, max_bytes=1000)
    with TestClient(second) as client:
        assert client.get("/v1/models/b/metadata").json() == {"model_spec": {"name": "b"}}
        assert client.get("/v1/models/a").status_code == 404
        assert client.post("/v1/models/a:predict", content=b"{}").status_code == 404
    with pytest.raises(ValueError, match="Received: 0"):
        prepare_app({}, max_body_bytes=0)


def test_serving_uses_public_apis_only():
    # No private KServe hooks (ModelServer._serve, _rest_server) and no
    # replaced globals (kserve.model_server.app).
    package = os.path.join(REPO, "medivision_tf")
    for folder, _, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as f:
                    text = f.read()
                for needle in ("def _serve", "_rest_server", "model_server.app"):
                    assert needle not in text, (name, needle)


def test_protocol_works_without_a_server():
    import subprocess as sp

    # protocol imports neither KServe nor FastAPI.
    script = (
        "import sys; sys.modules['kserve'] = None; sys.modules['fastapi'] = None\n"
        "import tensorflow as tf\n"
        "from medivision_tf.serving import protocol\n"
        "specs = {'serving_default': {'image': tf.TensorSpec((None, 2, 2, 1), tf.float32)}}\n"
        "name, inputs, rows = protocol.parse_request('{\"instances\": [[[[0], [1]], [[2], [3]]]]}', specs)\n"
        "assert (name, tuple(inputs['image'].shape), rows) == ('serving_default', (1, 2, 2, 1), True)\n"
        "try:\n"
        "    protocol.parse_request({'instances': [[[0]]]}, specs)\n"
        "except protocol.InvalidRequest as error:\n"
        "    assert 'Wrong shape' in str(error) and isinstance(error, ValueError)\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
        "print(protocol.build_response({'p': [[1.0]], 'k': [0]}, True))\n"
    )
    result = sp.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "{'predictions': [{'p': [1.0], 'k': 0}]}" in result.stdout


def test_serve_cli_reports_a_missing_export(tmp_path, capsys):
    from medivision_tf.cli import main

    assert main(["serve", str(tmp_path / "none"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "No SavedModel version under" in err and "none" in err


# The 500-request figure is benchmarks/load_test.py's; here, enough requests
# for eight concurrent clients to overlap the server's batching many times.
LOAD_TEST_REQUESTS = 100


def test_bounded_load_test_has_no_errors(server, images):
    bodies = [{"instances": [image.tolist()]} for image in images]
    bodies.append({"signature_name": "predict_images", "instances": [_b64_png(images[0])]})
    stats = run_load_test(
        HOST, server["port"], "/v1/models/lesions:predict", bodies, total=LOAD_TEST_REQUESTS,
        concurrency=8,
    )
    print(f"\nload test: {json.dumps(stats)}")
    assert stats["requests"] == LOAD_TEST_REQUESTS and stats["errors"] == 0, (
        stats["error_samples"])
    assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert server["process"].poll() is None


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_curl_requests_work_against_the_server(server, tmp_path):
    with open(os.path.join(REPO, "docs", "serving.md")) as f:
        docs = f.read()
    make_image = next(line for line in docs.splitlines() if line.startswith("python -c"))
    curls = [
        line for line in docs.splitlines()
        if line.startswith("curl -s") and "localhost:8501" in line
    ]
    assert len(curls) == 5
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    for command in [make_image] + curls:
        command = command.replace("localhost:8501", f"{HOST}:{server['port']}")
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, (command, result.stderr[-2000:])
        if command.startswith("curl"):
            answer = json.loads(result.stdout)
            assert "error" not in answer, (command, answer)
            assert answer.get("predictions") or answer.get("outputs") or answer.get(
                "model_version_status") or answer.get("metadata"), answer


def test_kserve_manifest_serves_the_export_with_tf_serving():
    import yaml

    with open(os.path.join(REPO, "deploy", "kserve-inferenceservice.yaml")) as f:
        manifest = yaml.safe_load(f)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["protocolVersion"] == "v1"
    assert model["storageUri"].endswith("saved_models/lesions")


def _warmup_logs(version_dir):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    path = os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(path)
    ]


def test_warmup_requests_are_accepted_by_the_server(server):
    from medivision_tf.serving import predict_request_to_json

    logs = _warmup_logs(server["base"] / "2")
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == [
        "serving_default", "predict_images", "explain"
    ]
    for log in logs:
        body = predict_request_to_json(log.predict_log.request)
        status, answer = _post(server, body)
        assert status == 200, (body["signature_name"], answer)
        outputs = answer["outputs"]  # a single output is not wrapped in a dict
        probabilities = outputs["probabilities"] if isinstance(outputs, dict) else outputs
        assert np.array(probabilities).shape == (1, 3)


def _version_tuple(text):
    return tuple(int(part) for part in text.split(".")[:3])


def test_manifest_pins_a_tf_serving_runtime_that_loads_the_export(server):
    from tensorflow.core.protobuf import saved_model_pb2

    import yaml

    with open(os.path.join(REPO, "deploy", "kserve-inferenceservice.yaml")) as f:
        runtime = yaml.safe_load(f)["spec"]["predictor"]["model"]["runtimeVersion"]
    assert isinstance(runtime, str) and re.fullmatch(r"\d+\.\d+\.\d+", runtime), runtime
    proto = saved_model_pb2.SavedModel()
    with open(server["base"] / "2" / "saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0]
    # TF Serving X.Y is built on TensorFlow X.Y: a runtime at least as new as
    # the exporting TensorFlow has every op and attribute the export uses.
    assert _version_tuple(runtime) >= _version_tuple(graph.meta_info_def.tensorflow_version)
    nodes = list(graph.graph_def.node) + [
        node for function in graph.graph_def.library.function for node in function.node_def
    ]
    ops = {node.op for node in nodes}
    # The op that KServe's default TF Serving 2.6 lacks: documented, and the
    # pinned runtime is past the releases without it (<= 2.9).
    assert "DisableCopyOnRead" in ops
    assert _version_tuple(runtime) >= (2, 10, 0)
    with open(os.path.join(REPO, "docs", "serving.md")) as f:
        docs = f.read()
    assert "DisableCopyOnRead" in docs and f"tensorflow/serving:{runtime}" in docs
    assert "tensorflow/serving:latest" not in docs
