"""A bounded HTTP load-test client for TF Serving's REST API (no TensorFlow needed).

Used by `bench_serving.py` and `tests/test_serving.py`; it lives with the
benchmarks, not in the package, because it is a measuring tool, not part of
serving.

Example:

```python
import sys; sys.path.insert(0, "benchmarks")
from load_test import run_load_test
stats = run_load_test("127.0.0.1", 8501, "/v1/models/lesions:predict",
                      [{"instances": images.tolist()}], total=500)
```
"""

import concurrent.futures
import http.client
import json
import threading
import time

import numpy as np


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
