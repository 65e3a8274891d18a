"""Serving speed: SavedModel vs Keras in process, and the REST round trip vs in process.

Builds a MediVision (random weights: speed does not depend on them), exports
it with `medivision_tf.export.export_saved_model` and measures, batch 1:

1. `serving_default` of the reloaded SavedModel vs the Keras model, three
   ways: an eager `model(x, training=False)` call, `model.predict(x)`, and
   the model call wrapped in a `tf.function` (the same graph the export holds:
   the fair comparison), in alternating blocks; ratios SavedModel/Keras
   (aim: <= 1, the export no slower than Keras).
2. The REST round trip to `medivision serve` (a subprocess on 127.0.0.1,
   uvicorn + FastAPI): PNG bytes in `{"b64": ...}` to the `predict_images`
   signature, one keep-alive connection, vs calling the same `predict_images`
   signature in process with the same PNG bytes; ratio REST/in-process (what
   HTTP, JSON, base64 and the server add).
3. A bounded load test on loopback (500 requests, concurrency 8) with
   latency percentiles.

```
python benchmarks/bench_serving.py             # smallcnn 64x64x1 and mobilenetv2 128x128x3
python benchmarks/bench_serving.py --quick     # smallcnn 64x64x1, few calls
```
"""

import base64
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import common
from load_test import run_load_test


def settings(quick):
    if quick:
        return {"models": [("smallcnn", 64, 1)], "rounds": 3, "calls": 10, "load_requests": 100}
    return {
        "models": [("smallcnn", 64, 1), ("mobilenetv2", 128, 3)],
        "rounds": 5,
        "calls": 40,
        "load_requests": 500,
    }


def _time_calls(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(base, port, log_path):
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "medivision_tf", "serve", base, "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=common.REPO_ROOT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{os.path.basename(base)}", timeout=2):
                return process, log
        except OSError:
            time.sleep(0.5)
    process.kill()
    log.close()
    raise RuntimeError(f"server did not start:\n{open(log_path).read()[-3000:]}")


def measure(backbone, size, channels, rounds, calls, load_requests, workdir):
    import numpy as np
    import tensorflow as tf

    import medivision_tf
    from medivision_tf.export import export_saved_model

    model = medivision_tf.build_medivision(
        4, backbone=backbone, input_shape=(size, size, channels), weights=None
    )
    base = os.path.join(workdir, f"{backbone}{size}")
    path = export_saved_model(model, base)
    loaded = tf.saved_model.load(path)
    serving_default = loaded.signatures["serving_default"]
    predict_images = loaded.signatures["predict_images"]

    image = np.random.default_rng(0).integers(0, 256, (1, size, size, channels)).astype("uint8")
    x = tf.constant(image.astype("float32"))
    png = tf.io.encode_png(image[0]).numpy()
    png_tensor = tf.constant([png])
    body = json.dumps(
        {"signature_name": "predict_images", "instances": [{"b64": base64.b64encode(png).decode()}]}
    ).encode()
    np.testing.assert_allclose(
        serving_default(image=x)["probabilities"].numpy(), model(x, training=False).numpy(), atol=1e-5
    )

    port = _free_port()
    process, log = _start_server(base, port, os.path.join(workdir, f"{backbone}.log"))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        route = f"/v1/models/{os.path.basename(base)}:predict"

        def rest():
            connection.request("POST", route, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            assert response.status == 200, data

        keras_graph = tf.function(lambda images: model(images, training=False))
        runners = {
            "keras_call": lambda: model(x, training=False).numpy(),
            "keras_tf_function": lambda: keras_graph(x).numpy(),
            "keras_predict": lambda: model.predict(x, verbose=0),
            "savedmodel": lambda: serving_default(image=x)["probabilities"].numpy(),
            "inprocess_images": lambda: predict_images(image_bytes=png_tensor)["probabilities"].numpy(),
            "rest_images": rest,
        }
        for fn in runners.values():  # warm-up
            for _ in range(3):
                fn()
        blocks = {name: [] for name in runners}
        for _ in range(rounds):  # alternating blocks: a slow period hits all
            for name, fn in runners.items():
                blocks[name].append(_time_calls(fn, calls))
        connection.close()
        load = run_load_test(
            "127.0.0.1", port, route, [json.loads(body)], total=load_requests, concurrency=8
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    ms = {name: statistics.median(b) * 1000 for name, b in blocks.items()}
    return {
        "backbone": backbone,
        "input_shape": [size, size, channels],
        "latency_ms": {k: round(v, 3) for k, v in ms.items()},
        "savedmodel_vs_keras_call": common.paired_ratio(blocks["keras_call"], blocks["savedmodel"]),
        "savedmodel_vs_keras_tf_function": common.paired_ratio(
            blocks["keras_tf_function"], blocks["savedmodel"]
        ),
        "savedmodel_vs_keras_predict": common.paired_ratio(
            blocks["keras_predict"], blocks["savedmodel"]
        ),
        "rest_vs_inprocess": common.paired_ratio(blocks["inprocess_images"], blocks["rest_images"]),
        "rest_overhead_ms": ms["rest_images"] - ms["inprocess_images"],
        "load_test": load,
    }


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = settings(args.quick)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for backbone, size, channels in config["models"]:
            row = measure(
                backbone, size, channels, config["rounds"], config["calls"],
                config["load_requests"], workdir,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    results = {
        "benchmark": "serving",
        "description": "batch-1 latency: SavedModel vs Keras; REST (PNG b64) vs in process",
        "quick": args.quick,
        "settings": config,
        "machine": common.machine_info(),
        "rows": rows,
    }
    print()
    print(render_table(results))
    common.write_results(results, args.json)
    return results


def render_table(results):
    """The results as Markdown tables."""
    latency = common.format_table(
        ["model", "Keras call ms", "Keras tf.function ms", "Keras predict ms", "SavedModel ms",
         "SavedModel/Keras call", "SavedModel/Keras tf.function", "SavedModel/Keras predict", "in-process PNG ms", "REST PNG ms", "REST/in-process"],
        [
            [f"{r['backbone']} {'x'.join(map(str, r['input_shape']))}",
             r["latency_ms"]["keras_call"], r["latency_ms"]["keras_tf_function"],
             r["latency_ms"]["keras_predict"], r["latency_ms"]["savedmodel"],
             f"{r['savedmodel_vs_keras_call']:.2f}", f"{r['savedmodel_vs_keras_tf_function']:.2f}",
             f"{r['savedmodel_vs_keras_predict']:.2f}", r["latency_ms"]["inprocess_images"],
             r["latency_ms"]["rest_images"], f"{r['rest_vs_inprocess']:.2f}"]
            for r in results["rows"]
        ],
    )
    load = common.format_table(
        ["model", "requests", "concurrency", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        [
            [r["backbone"], r["load_test"]["requests"], r["load_test"]["concurrency"],
             r["load_test"]["errors"], r["load_test"]["requests_per_second"],
             r["load_test"]["p50_ms"], r["load_test"]["p90_ms"], r["load_test"]["p99_ms"],
             r["load_test"]["max_ms"]]
            for r in results["rows"]
        ],
    )
    return f"Batch-1 latency (median over alternating blocks)\n\n{latency}\n\nLoad test (PNG via predict_images)\n\n{load}"


if __name__ == "__main__":
    main()
