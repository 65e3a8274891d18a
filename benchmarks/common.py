"""Helpers shared by the benchmark scripts.

Every benchmark script is a small program with the same shape:

```
python benchmarks/bench_head.py [--quick] [--json OUT.json]
```

It prints a table, then writes its results (a JSON-serializable dict) to
`--json` when given. `run_all.py` runs each script in its own subprocess (so
that each starts with a clean TensorFlow runtime and its own memory
accounting) and gathers the JSON files.

Timing rules, because this machine is shared and timings vary run to run:

- MediVision and its baseline are measured in the same process, after the
  same warm-up, in alternating blocks (A B A B ...), and the reported figure
  is the median over blocks of the per-block ratio: a slow period hits both
  sides of a pair.
- Only ratios are compared; absolute images/s are printed for context.

This module imports TensorFlow lazily, so `run_all.py` (which only starts
subprocesses) stays light.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULT_MARKER = "BENCHMARK_RESULT_JSON:"

# Quiet TensorFlow's C++ start-up logging in every benchmark process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def argument_parser(description):
    """An `argparse` parser with the options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings (32x32 inputs, 2 timed steps): checks the code path, "
        "the figures mean nothing",
    )
    parser.add_argument("--json", help="write the results to this JSON file")
    return parser


def write_results(results, path):
    """Writes `results` to `path` (JSON) when `path` is given; returns it."""
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(results, f, indent=2, default=_json_default)
    return results


def _json_default(value):
    # NumPy scalars and arrays without importing NumPy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Not JSON serializable: {type(value).__name__}")


def cpu_flags():
    """The CPU feature flags from /proc/cpuinfo (empty set elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model():
    """The CPU model name from /proc/cpuinfo, else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores():
    """Cores this process may run on (CPU affinity), else `os.cpu_count()`."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def machine_info():
    """Where the figures were measured: CPU, cores, load, library versions, date.

    The load average is recorded because other processes on a shared machine
    slow the benchmarks down unevenly.
    """
    flags = cpu_flags()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "simd": sorted(
            f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma"))
        ),
        "bf16_hardware": bool({"avx512_bf16", "amx_bf16"} & flags),
        "amx": "amx_bf16" in flags,
        "load_average_1_5_15": load,
        "python": platform.python_version(),
        "tensorflow": package_version("tensorflow", "tensorflow-cpu"),
        "keras": package_version("keras"),
        "scikit_learn": package_version("scikit-learn"),
        "onednn": onednn_enabled(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def package_version(*names):
    """The installed version of the first of `names` found (no import)."""
    import importlib.metadata

    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def onednn_enabled():
    """Whether TensorFlow's oneDNN optimizations are on in this process.

    Asks TensorFlow when it is already imported; otherwise reads
    `TF_ENABLE_ONEDNN_OPTS` (on by default on x86 Linux builds).
    """
    if "tensorflow" in sys.modules:
        try:
            from tensorflow.python.util import _pywrap_util_port

            return bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):
            pass
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


def random_images(batch_size, size, channels=3, seed=0):
    """A batch of random uint8 images and integer labels (NumPy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, size, size, channels), dtype="uint8")
    labels = rng.integers(0, 2, batch_size).astype("int32")
    return images, labels


def compile_for_training(model, jit_compile=False, learning_rate=1e-3):
    """Compiles `model` the same way for every timed training run."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    return model


def train_step_runner(model, images, labels):
    """A zero-argument function that runs one training step on a fixed batch.

    The batch is converted to tensors once, so the timing is the model's
    step, not the NumPy-to-tensor copy. `train_on_batch` returns NumPy
    values, so each call waits for the step to finish.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(images)
    y = tf.convert_to_tensor(labels)
    return lambda: model.train_on_batch(x, y)


def inference_step_runner(model, images):
    """A zero-argument function that runs one forward pass (inference mode)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images)
    return lambda: model.predict_on_batch(x)


def time_steps(step, steps):
    """Seconds taken by `steps` calls of `step()`."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def compare_throughput(runners, batch_size, warmup=2, rounds=3, steps=3):
    """Images/s of several step functions, measured interleaved.

    Args:
        runners: dict name -> zero-argument step function (one batch each).
        batch_size: images per step.
        warmup: untimed steps per runner first (tracing, compilation, caches).
        rounds: timed blocks per runner; blocks alternate between runners,
            and the order rotates every round, so no runner always runs first
            (or always right after the same other runner).
        steps: steps per block.

    Returns:
        dict name -> {"images_per_s": median over blocks, "block_images_per_s":
        every block, "step_s": median seconds per step}, plus "_blocks": the
        raw block seconds, so callers can form per-block (paired) ratios.
    """
    for step in runners.values():
        for _ in range(warmup):
            step()
    seconds = {name: [] for name in runners}
    names = list(runners)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(time_steps(runners[name], steps))
    results = {}
    for name, blocks in seconds.items():
        rates = [batch_size * steps / s for s in blocks]
        results[name] = {
            "images_per_s": statistics.median(rates),
            "block_images_per_s": rates,
            "step_s": statistics.median(blocks) / steps,
        }
    results["_blocks"] = seconds
    return results


def paired_ratio(blocks_a, blocks_b):
    """Median over blocks of time(b) / time(a) (> 1: b is slower)."""
    return statistics.median(b / a for a, b in zip(blocks_a, blocks_b))


def run_json_subprocess(args, env=None, timeout=900):
    """Runs `python <args>` and returns the dict it printed after RESULT_MARKER.

    Used for measurements that need a fresh process: peak memory (the
    process's own high-water mark) and settings read once at TensorFlow
    import (`TF_ENABLE_ONEDNN_OPTS`).

    Raises:
        RuntimeError: the subprocess failed or printed no result; the message
            carries the end of its stderr.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (BENCH_DIR, full_env.get("PYTHONPATH")) if p
    )
    completed = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise RuntimeError(
        f"Subprocess {args} exited with {completed.returncode} and no result.\n"
        f"stderr (end):\n{completed.stderr[-3000:]}"
    )


def print_result_line(result):
    """Prints `result` on one line after RESULT_MARKER (read by the parent)."""
    print(RESULT_MARKER + json.dumps(result, default=_json_default), flush=True)


def format_table(headers, rows):
    """A Markdown table (also readable as plain text) from rows of values."""

    def cell(value):
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(ratio):
    """`1.043` -> `"+4.3%"`."""
    return f"{(ratio - 1) * 100:+.1f}%"
