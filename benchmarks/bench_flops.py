"""Arithmetic intensity: FLOPs per image and the achieved share of the CPU's peak.

1. FLOPs per image, from TensorFlow's profiler
   (`tf.compat.v1.profiler.profile` with `float_operation()`) on the frozen
   graph of the model's forward pass at batch 1, and of one training step's
   forward + backward pass (loss and gradients). The profiler does not look
   inside `while` loops, so the LSTM is counted on a clone of the model with
   `LSTM(unroll=True)` (same weights shapes, same arithmetic). The profiler
   counts a multiply-add as 2 FLOPs and skips ops without registered
   statistics (e.g. depthwise-convolution gradients), so the training count is
   a lower bound; `3 x forward` is printed next to it.
2. The CPU's reachable float32 rate: a large square `tf.linalg.matmul`
   (2 n^3 FLOPs), timed in this run, before and after the models (the higher
   of the two is the reference).
3. Achieved FLOP/s: training images/s (`train_on_batch`) x training FLOPs per
   image, and inference images/s (`predict_on_batch`) x forward FLOPs per
   image, for MediVision and the pooling baseline (timed interleaved), as a
   fraction of the matmul rate.

```
python benchmarks/bench_flops.py            # mobilenetv2 at 224x224
python benchmarks/bench_flops.py --quick    # smallcnn at 32x32, 2 steps
```
"""

import statistics
import time

import common


def settings(quick):
    """Model, step counts and matmul size of a full or `--quick` run."""
    if quick:
        return dict(
            backbones=["smallcnn"], size=32, batch_size=4, inference_batch_size=8,
            warmup=1, rounds=1, steps=2, matmul_n=512, matmul_repeats=3,
        )
    return dict(
        backbones=["mobilenetv2"], size=224, batch_size=16, inference_batch_size=32,
        warmup=2, rounds=5, steps=1, matmul_n=2048, matmul_repeats=10,
    )


def matmul_flops_per_s(n, repeats, dtype="float32"):
    """Median FLOP/s of an n x n by n x n matrix product (2 n^3 FLOPs)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=dtype)
    b = tf.random.normal((n, n), dtype=dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    product().numpy()  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        product().numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def unrolled(model):
    """A clone of `model` whose recurrent layers are unrolled (no while loop)."""
    import keras

    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.RNN) or "unroll" in config:
            config["unroll"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone_layer)


def profiled_flops(function, *specs, freeze=True):
    """Total float operations in the graph of `function(*specs)`.

    With `freeze`, variables become constants first (the graph of a served
    model); a training step, which assigns to variables (BatchNorm moving
    statistics, the optimizer), is profiled as traced instead.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    concrete = tf.function(function).get_concrete_function(*specs)
    if freeze:
        frozen = convert_variables_to_constants_v2(concrete)
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
    else:
        graph = concrete.graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph, run_meta=None, cmd="op", options=options)
    return int(profile.total_float_ops)


def flops_per_image(model, size):
    """Forward and training (forward + backward) FLOPs for one image."""
    import keras
    import tensorflow as tf

    flat = unrolled(model)
    image = tf.TensorSpec((1, size, size, 3), tf.float32)
    label = tf.TensorSpec((1,), tf.int32)
    forward = profiled_flops(lambda x: flat(x, training=False), image)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, flat(x, training=True))
        return tape.gradient(loss, flat.trainable_variables)

    try:
        training = profiled_flops(gradients, image, label, freeze=False)
    except Exception as error:  # noqa: BLE001 - report, fall back to 3x forward
        print(f"Training-graph profile failed ({error}); using 3 x forward.")
        training = None
    return forward, training


def measure(backbone, size, batch_size, inference_batch_size, warmup, rounds,
            steps, num_classes=4):
    """FLOPs per image and achieved FLOP/s of MediVision and the baseline."""
    import keras

    import medivision_tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    options = dict(backbone=backbone, input_shape=(size, size, 3), weights=None)
    models = {
        "medivision": medivision_tf.build_medivision(num_classes, **options),
        "baseline": medivision_tf.build_pooling_baseline(num_classes, **options),
    }
    counts = {name: flops_per_image(model, size) for name, model in models.items()}
    images, labels = common.random_images(batch_size, size)
    probe, _ = common.random_images(inference_batch_size, size, seed=1)
    for model in models.values():
        common.compile_for_training(model)
    training = common.compare_throughput(
        {n: common.train_step_runner(m, images, labels % num_classes) for n, m in models.items()},
        batch_size, warmup=warmup, rounds=rounds, steps=steps,
    )
    inference = common.compare_throughput(
        {n: common.inference_step_runner(m, probe) for n, m in models.items()},
        inference_batch_size, warmup=warmup, rounds=rounds, steps=steps,
    )
    rows = {}
    for name in models:
        forward, train_profiled = counts[name]
        train_flops = train_profiled or 3 * forward
        rows[name] = {
            "forward_flops_per_image": forward,
            "training_flops_per_image_profiled": train_profiled,
            "training_flops_per_image_3x_forward": 3 * forward,
            "train_images_per_s": training[name]["images_per_s"],
            "inference_images_per_s": inference[name]["images_per_s"],
            "train_flops_per_s": training[name]["images_per_s"] * train_flops,
            "inference_flops_per_s": inference[name]["images_per_s"] * forward,
        }
    return rows


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = settings(args.quick)
    peak_before = matmul_flops_per_s(config["matmul_n"], config["matmul_repeats"])
    measured = {
        backbone: measure(
            backbone, config["size"], config["batch_size"],
            config["inference_batch_size"], config["warmup"], config["rounds"],
            config["steps"],
        )
        for backbone in config["backbones"]
    }
    peak_after = matmul_flops_per_s(config["matmul_n"], config["matmul_repeats"])
    peak = max(peak_before, peak_after)
    rows = []
    for backbone, models in measured.items():
        for name, r in models.items():
            rows.append({
                "backbone": backbone, "model": name, "input_size": config["size"], **r,
                "train_fraction_of_matmul_peak": r["train_flops_per_s"] / peak,
                "inference_fraction_of_matmul_peak": r["inference_flops_per_s"] / peak,
            })
        med, base = models["medivision"], models["baseline"]
        print(
            f"{backbone}: forward GFLOPs/image MediVision "
            f"{med['forward_flops_per_image'] / 1e9:.3f} vs baseline "
            f"{base['forward_flops_per_image'] / 1e9:.3f}",
            flush=True,
        )
    results = {
        "benchmark": "flops",
        "description": "FLOPs per image (TF profiler) and achieved share of matmul FLOP/s",
        "quick": args.quick,
        "settings": config,
        "machine": common.machine_info(),
        "matmul_float32_flops_per_s": {"before": peak_before, "after": peak_after, "peak": peak},
        "rows": rows,
    }
    print()
    print(render_table(results))
    common.write_results(results, args.json)
    return results


def render_table(results):
    """The results as a Markdown table."""
    matmul = results["matmul_float32_flops_per_s"]
    rows = [
        [r["model"], r["backbone"], f"{r['input_size']}²",
         f"{r['forward_flops_per_image'] / 1e9:.3f}",
         _giga(r["training_flops_per_image_profiled"]),
         f"{r['training_flops_per_image_3x_forward'] / 1e9:.3f}",
         f"{r['train_flops_per_s'] / 1e9:.1f}",
         f"{r['train_fraction_of_matmul_peak']:.1%}",
         f"{r['inference_flops_per_s'] / 1e9:.1f}",
         f"{r['inference_fraction_of_matmul_peak']:.1%}"]
        for r in results["rows"]
    ]
    table = common.format_table(
        ["model", "backbone", "input", "forward GFLOP/image",
         "training GFLOP/image (profiled)", "3 x forward", "training GFLOP/s", "of matmul peak",
         "inference GFLOP/s", "of matmul peak"],
        rows,
    )
    return (
        f"float32 matmul ({results['settings']['matmul_n']}²): "
        f"{matmul['before'] / 1e9:.1f} GFLOP/s before the models, "
        f"{matmul['after'] / 1e9:.1f} after; reference {matmul['peak'] / 1e9:.1f}.\n\n{table}"
    )


def _giga(flops):
    return "n/a" if flops is None else f"{flops / 1e9:.3f}"


if __name__ == "__main__":
    main()
