"""MediVision vs the pooling baseline on an accelerator, through JAX, PyTorch or TensorFlow.

For each backbone (EfficientNetB0, MobileNetV2, ResNet50 at 224², batch 64)
and precision (float32, then `mixed_bfloat16`), one child process builds
`build_pooling_baseline` and `build_medivision` on the same backbone (random
weights: speed does not depend on them) and measures, on whatever device
the Keras backend runs on (a CUDA GPU through JAX or PyTorch, TensorFlow's
GPU where present, else the CPU):

- training and inference images/s: `train_on_batch` / `predict_on_batch` on
  one fixed batch of random uint8 images held on the device, both models in
  alternating blocks after a warm-up (`common.compare_throughput`); both
  calls return NumPy values, so each step is waited for;
- the head's share of MediVision's step: `1 - t_pooling / t_medivision`
  (median over blocks of the paired ratio);
- peak device memory of training: the allocator's peak during the warm-up
  steps minus what was in use before the model was built (weights,
  optimizer state, activations and workspace of this model). PyTorch and
  TensorFlow reset the peak per model; JAX cannot, so the baseline is
  measured first and MediVision's figure is the process's high-water mark
  (MediVision's step needs at least the baseline's);
- what the LSTM runs as: a probe `LSTM(use_cudnn=True)` of the model's LSTM
  shape and precision is trained one step; Keras raises unless it runs the
  fused cuDNN kernel, and the model's own LSTM (`use_cudnn="auto"`, rolled)
  takes that kernel exactly when the probe does.

Synthetic inputs: it needs Keras, this package's model core and the
machine's JAX or PyTorch (no TensorFlow, no data files, no network). It
stops starting new configurations after `--budget-s` seconds (default 450:
the whole run stays under 8 minutes), recording what it skipped. How to
carry Keras and this package to a GPU machine without a package index:
benchmarks/README.md, "GPU machines".

```
KERAS_BACKEND=jax python benchmarks/bench_gpu.py --json benchmarks/results/gpu_jax.json
python benchmarks/bench_gpu.py --backend torch
python benchmarks/bench_gpu.py --quick     # smallcnn, 32x32, batch 4: under a minute on a CPU
```
"""

import json
import os
import sys
import time

import common

BACKBONES = ("efficientnetb0", "mobilenetv2", "resnet50")
PRECISIONS = ("float32", "mixed_bfloat16")
# Modules the model core must not need (Keras imports some of them itself when installed).
HEAVY_MODULES = ("tensorflow", "pandas", "cv2", "sklearn", "matplotlib", "scipy")


def settings(quick):
    """What a full or `--quick` run measures."""
    if quick:
        # smallcnn: the same code path as the full run, for a fraction of JAX's compile time.
        return dict(backbones=["smallcnn"], precisions=list(PRECISIONS), image_size=32,
                    batch_size=4, warmup=1, rounds=1, steps=1, num_classes=4)
    return dict(backbones=list(BACKBONES), precisions=list(PRECISIONS), image_size=224,
                batch_size=64, warmup=2, rounds=5, steps=5, num_classes=4)


def choose_backend(requested=None):
    """`requested`, else `KERAS_BACKEND`, else the first of JAX, PyTorch,
    TensorFlow that is installed (a GPU machine often has no TensorFlow)."""
    import importlib.util

    if requested:
        return requested
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    for backend in ("jax", "torch", "tensorflow"):
        if importlib.util.find_spec(backend) is not None:
            return backend
    raise SystemExit("No Keras backend installed: install jax, torch or tensorflow.")


# === The child: one backbone at one precision ===

def measure_pair(backbone, precision, options):
    """Both models of one configuration: a result row (child process)."""
    import keras
    import numpy as np

    import medivision_tf

    keras.mixed_precision.set_dtype_policy(precision)
    _seed(keras, 0)
    size, batch = options["image_size"], options["batch_size"]
    images, labels = common.random_images(batch, size)
    x = keras.ops.convert_to_tensor(images)  # on the device, converted once
    y = keras.ops.convert_to_tensor(labels % options["num_classes"])
    memory = DeviceMemory()
    models, peaks = {}, {}
    for name, build in (("pooling", medivision_tf.build_pooling_baseline),
                        ("medivision", medivision_tf.build_medivision)):
        start = memory.start()
        model = build(options["num_classes"], backbone=backbone, input_shape=(size, size, 3),
                      weights=None)
        common.compile_for_training(model)
        for _ in range(options["warmup"]):
            model.train_on_batch(x, y)
        peaks[name] = memory.peak_since(start)
        models[name] = model
    lstm = models["medivision"].get_layer("lstm")
    train = common.compare_throughput(
        {name: (lambda m=m: m.train_on_batch(x, y)) for name, m in models.items()},
        batch, warmup=0, rounds=options["rounds"], steps=options["steps"],
    )
    infer = common.compare_throughput(
        {name: (lambda m=m: m.predict_on_batch(x)) for name, m in models.items()},
        batch, warmup=options["warmup"], rounds=options["rounds"], steps=options["steps"],
    )
    row = {"backbone": backbone, "precision": precision, "image_size": size, "batch_size": batch,
           "lstm_sequence": list(lstm.input.shape[1:]),
           "lstm_runs_as": lstm_runs_as(lstm, batch), "memory_measure": memory.method}
    for name in models:
        row[f"{name}_train_images_per_s"] = train[name]["images_per_s"]
        row[f"{name}_infer_images_per_s"] = infer[name]["images_per_s"]
        row[f"{name}_train_peak_bytes"] = peaks[name]
        row[f"{name}_params"] = int(models[name].count_params())
    for kind, timing in (("train", train), ("infer", infer)):
        ratio = common.paired_ratio(timing["_blocks"]["pooling"], timing["_blocks"]["medivision"])
        row[f"{kind}_step_ratio"] = ratio
        row[f"head_share_of_{kind}_step"] = 1 - 1 / ratio
    outputs = models["medivision"].predict_on_batch(x)
    row["outputs_finite"] = bool(np.isfinite(np.asarray(outputs)).all())
    return row


def lstm_runs_as(lstm, batch_size):
    """`"cuDNN"` or `"Keras loop: <why>"`, from a `use_cudnn=True` probe
    of `lstm`'s shape in the current precision, trained one step."""
    import keras
    import numpy as np

    if lstm.unroll:
        return "Keras loop: unrolled (lstm_unroll=True)"
    steps, features = lstm.input.shape[1:]
    probe = keras.Sequential([
        keras.Input((steps, features), batch_size=batch_size),
        keras.layers.LSTM(lstm.units, return_sequences=True, use_cudnn=True),
    ])
    probe.compile(optimizer="sgd", loss="mse")
    zeros = np.zeros((batch_size, steps, features), "float32")
    try:
        probe.train_on_batch(zeros, np.zeros((batch_size, steps, lstm.units), "float32"))
        probe.predict_on_batch(zeros)
    except ValueError as error:  # Keras: use_cudnn=True but no cuDNN path here
        reason = "no cuDNN kernel for this layer on this backend and device"
        return f"Keras loop: {reason}" if "use_cudnn" in str(error) else f"Keras loop: {error}"
    return "cuDNN"


class DeviceMemory:
    """Peak bytes of the backend's device allocator (None where it has none)."""

    def __init__(self):
        import keras

        self.backend = keras.config.backend()
        self.method = None
        if self.backend == "torch":
            import torch

            if torch.cuda.is_available():
                self.method = "torch.cuda.max_memory_allocated (reset per model)"
        elif self.backend == "jax":
            import jax

            if jax.devices()[0].memory_stats():
                self.method = "jax memory_stats peak_bytes_in_use (high-water; baseline first)"
        elif self.backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                self.method = "tf.config.experimental.get_memory_info (reset per model)"

    def _in_use(self, reset=False):
        if self.backend == "torch":
            import torch

            if reset:
                torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()
        if self.backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats()
            return stats["bytes_in_use"], stats["peak_bytes_in_use"]
        import tensorflow as tf

        if reset:
            tf.config.experimental.reset_memory_stats("GPU:0")
        info = tf.config.experimental.get_memory_info("GPU:0")
        return info["current"], info["peak"]

    def start(self):
        """Bytes in use now (the peak is reset where the backend can)."""
        return None if self.method is None else self._in_use(reset=True)[0]

    def peak_since(self, start):
        """Peak bytes in use since `start()`, minus what was in use then."""
        return None if self.method is None else self._in_use()[1] - start


def _seed(keras, seed):
    """Python's, NumPy's and Keras' seeds (Keras draws its default seeds from
    Python's `random`). `keras.utils.set_random_seed` would also import
    TensorFlow wherever it is installed, to seed it; off TensorFlow it is not
    needed, and this benchmark checks that TensorFlow stays out."""
    import random

    import numpy as np

    if keras.config.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    if keras.config.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def device_info():
    """The device the backend computes on, and the library versions."""
    import keras

    backend = keras.config.backend()
    info = {"backend": backend, "keras": common.package_version("keras")}
    if backend == "torch":
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["device"] = f"cuda: {torch.cuda.get_device_name(0)}"
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        info["jax"] = jax.__version__
        if device.platform != "cpu":
            info["device"] = f"{device.platform}: {device.device_kind}"
    elif backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            info["device"] = f"gpu: {details.get('device_name', gpus[0].name)}"
    info.setdefault("device", f"cpu: {common.cpu_model()} ({common.usable_cores()} cores)")
    return info


def child(argv):
    """`--pair BACKBONE PRECISION OPTIONS_JSON`: one row, printed for the parent."""
    backbone, precision, options = argv[0], argv[1], json.loads(argv[2])
    row = measure_pair(backbone, precision, options)
    row["device"] = device_info()
    row["modules_loaded"] = sorted(m for m in HEAVY_MODULES if m in sys.modules)
    row["tensorflow_imported"] = "tensorflow" in sys.modules
    common.print_result_line(row)


# === The parent: every configuration within the time budget ===

def run(backend, quick, budget_s):
    """Runs every configuration in its own child; returns the results dict."""
    options = settings(quick)
    started = time.perf_counter()
    rows, skipped, longest = [], [], 0.0
    for precision in options["precisions"]:
        for backbone in options["backbones"]:
            elapsed = time.perf_counter() - started
            if budget_s is not None and elapsed + longest > budget_s:
                skipped.append({"backbone": backbone, "precision": precision,
                                "reason": f"time budget: {elapsed:.0f} s of {budget_s:.0f} s used"})
                continue
            timeout = None if budget_s is None else max(60.0, budget_s - elapsed)
            child_start = time.perf_counter()
            try:
                row = common.run_json_subprocess(
                    [os.path.abspath(__file__), "--pair", backbone, precision,
                     json.dumps(options)],
                    env={"KERAS_BACKEND": backend, "PYTHONPATH": _package_path()},
                    timeout=timeout,
                )
            except Exception as error:  # a failed or timed-out configuration is recorded
                skipped.append({"backbone": backbone, "precision": precision,
                                "reason": str(error)[-1500:]})
                continue
            row["seconds"] = time.perf_counter() - child_start
            longest = max(longest, row["seconds"])
            rows.append(row)
    device = rows[0]["device"] if rows else {"backend": backend}
    return {
        "backend": backend, "device": device, "quick": quick, "settings": options,
        "budget_s": budget_s, "rows": rows, "skipped": skipped,
        "elapsed_s": time.perf_counter() - started,
        "machine": {"cpu_model": common.cpu_model(), "cores": common.usable_cores(),
                    "python": sys.version.split()[0]},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _package_path():
    """PYTHONPATH for the children: the caller's, then this checkout (so the
    package runs from a copied tree without being installed)."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), common.REPO_ROOT) if p)


def _megabytes(value):
    return "n/a" if value is None else f"{value / 2**20:,.0f}"


def render_table(results):
    """The results as Markdown (no Keras or backend import)."""
    device = results["device"]
    lines = [
        f"`benchmarks/bench_gpu.py` on {device.get('device', 'unknown device')}, Keras "
        f"{device.get('keras')} on {results['backend']} "
        f"({results['date']}; {results['elapsed_s']:.0f} s"
        f"{', --quick: the figures mean nothing' if results['quick'] else ''}). Batch "
        f"{results['settings']['batch_size']}, {results['settings']['image_size']}², random "
        "weights and images; images/s are medians over alternating blocks, the head's share "
        "is 1 - t(pooling) / t(MediVision) per block pair.",
        "",
        "| backbone | precision | LSTM runs as | training img/s MediVision / pooling | head's "
        "share of a training step | inference img/s MediVision / pooling | head's share of "
        "inference | peak training memory MiB MediVision / pooling |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['backbone']} | {row['precision']} | {row['lstm_runs_as']} | "
            f"{row['medivision_train_images_per_s']:,.0f} / {row['pooling_train_images_per_s']:,.0f}"
            f" | {row['head_share_of_train_step']:.1%} | "
            f"{row['medivision_infer_images_per_s']:,.0f} / {row['pooling_infer_images_per_s']:,.0f}"
            f" | {row['head_share_of_infer_step']:.1%} | "
            f"{_megabytes(row['medivision_train_peak_bytes'])} / "
            f"{_megabytes(row['pooling_train_peak_bytes'])} |"
        )
    imported = [row for row in results["rows"] if row.get("tensorflow_imported")]
    if results["rows"] and results["backend"] != "tensorflow":
        lines.append("\nTensorFlow imported while measuring: " + (
            "no (" + results["backend"] + " alone)" if not imported else
            "yes, in " + ", ".join(f"{r['backbone']} {r['precision']}" for r in imported)))
    for entry in results["skipped"]:
        lines.append(f"\nNot measured: {entry['backbone']} {entry['precision']}: "
                     f"{entry['reason'].splitlines()[-1] if entry['reason'] else ''}")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--pair":
        return child(argv[1:])
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("jax", "torch", "tensorflow"),
                        help="Keras backend (default: KERAS_BACKEND, else jax, torch, "
                        "tensorflow, the first installed)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no configuration after this many seconds "
                        "(default: 450; none with --quick)")
    args = parser.parse_args(argv)
    budget = args.budget_s if args.budget_s is not None else (None if args.quick else 450.0)
    results = run(choose_backend(args.backend), args.quick, budget)
    print(render_table(results))
    common.write_results(results, args.json)
    return 0 if results["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
