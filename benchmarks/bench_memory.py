"""Peak memory of training, per backbone: MediVision vs the pooling baseline.

Each (backbone, model) pair trains a few steps in its own fresh Python
process, which then reports its own accounting:

- `resource.getrusage(RUSAGE_SELF).ru_maxrss`: the process's peak resident
  memory (high-water mark), read after importing TensorFlow, after building
  and compiling the model, and after the training steps. The training cost is
  the peak minus the post-import level (TensorFlow's own libraries).
- `tf.config.experimental.get_memory_info(device)`: the allocator's current
  and peak bytes, where TensorFlow keeps them (GPUs; on CPU it raises, and
  the result says so).

A fresh process per measurement is needed because a high-water mark never
goes down: a second model measured in the same process would inherit the
first one's peak.

```
python benchmarks/bench_memory.py            # mobilenetv2, efficientnetb0, resnet50 at 224x224
python benchmarks/bench_memory.py --quick    # smallcnn at 32x32, 1 step
```
"""

import os
import resource
import sys

import common

MODELS = ("medivision", "baseline")


def settings(quick):
    """Backbones and sizes of a full or `--quick` run."""
    if quick:
        return dict(backbones=["smallcnn"], size=32, batch_size=4, steps=1)
    return dict(
        backbones=["mobilenetv2", "efficientnetb0", "resnet50"], size=224,
        batch_size=16, steps=3,
    )


def peak_rss_mib():
    """This process's peak resident memory in MiB (ru_maxrss; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def allocator_memory():
    """TensorFlow's allocator statistics for the first device, where kept."""
    import tensorflow as tf

    device = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0]
    try:
        info = tf.config.experimental.get_memory_info(device.name)
    except (ValueError, tf.errors.OpError) as error:
        return {"device": device.name, "available": False, "reason": str(error)[:200]}
    return {
        "device": device.name,
        "available": True,
        "current_mib": info["current"] / 2**20,
        "peak_mib": info["peak"] / 2**20,
    }


def child(model_name, backbone, size, batch_size, steps, num_classes=4):
    """Runs in the fresh subprocess: build, train, report the memory levels."""
    import keras  # imports TensorFlow

    import medivision_tf

    after_import = peak_rss_mib()
    build = {
        "medivision": medivision_tf.build_medivision,
        "baseline": medivision_tf.build_pooling_baseline,
    }[model_name]
    keras.utils.set_random_seed(0)
    model = build(
        num_classes, backbone=backbone, input_shape=(size, size, 3), weights=None
    )
    common.compile_for_training(model)
    after_build = peak_rss_mib()
    images, labels = common.random_images(batch_size, size)
    step = common.train_step_runner(model, images, labels % num_classes)
    for _ in range(steps):
        step()
    peak = peak_rss_mib()
    common.print_result_line({
        "model": model_name,
        "backbone": backbone,
        "params": model.count_params(),
        "rss_after_import_mib": after_import,
        "rss_peak_after_build_mib": after_build,
        "rss_peak_training_mib": peak,
        "training_increase_mib": peak - after_import,
        "allocator": allocator_memory(),
    })


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "BACKBONE"),
                        help="internal: measure one model in this process")
    args = parser.parse_args(argv)
    config = settings(args.quick)
    if args.child:
        child(args.child[0], args.child[1], config["size"], config["batch_size"],
              config["steps"])
        return None
    script = os.path.abspath(__file__)
    extra = ["--quick"] if args.quick else []
    rows = []
    for backbone in config["backbones"]:
        measured = {
            name: common.run_json_subprocess([script, "--child", name, backbone, *extra])
            for name in MODELS
        }
        med, base = measured["medivision"], measured["baseline"]
        rows.append({
            "backbone": backbone,
            "input_size": config["size"],
            "batch_size": config["batch_size"],
            "medivision": med,
            "baseline": base,
            "peak_ratio": med["rss_peak_training_mib"] / base["rss_peak_training_mib"],
            "increase_ratio": med["training_increase_mib"] / base["training_increase_mib"],
            "allocator_peak_ratio": (
                med["allocator"]["peak_mib"] / base["allocator"]["peak_mib"]
                if med["allocator"].get("available") and base["allocator"].get("available")
                else None
            ),
        })
        print(
            f"{backbone}: peak {med['rss_peak_training_mib']:.0f} MiB vs "
            f"{base['rss_peak_training_mib']:.0f} MiB "
            f"(x{rows[-1]['peak_ratio']:.3f})",
            flush=True,
        )
    results = {
        "benchmark": "memory",
        "description": "peak memory of training (ru_maxrss, TF allocator), fresh process per model",
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
    """The results as a Markdown table."""
    rows = []
    for r in results["rows"]:
        med, base = r["medivision"], r["baseline"]
        rows.append([
            r["backbone"], f"{r['input_size']}²", r["batch_size"],
            med["rss_peak_training_mib"], base["rss_peak_training_mib"],
            f"{r['peak_ratio']:.3f}",
            med["training_increase_mib"], base["training_increase_mib"],
            f"{r['increase_ratio']:.3f}",
            _allocator_peak(med), _allocator_peak(base),
        ])
    table = common.format_table(
        ["backbone", "input", "batch", "MediVision peak MiB", "baseline peak MiB",
         "peak ratio", "MediVision over import MiB", "baseline over import MiB",
         "increase ratio", "MediVision TF-allocator peak MiB",
         "baseline TF-allocator peak MiB"],
        rows,
    )
    note = (
        "Peak RSS is the whole process (ru_maxrss); \"over import\" subtracts the "
        "level right after importing TensorFlow. The TF-allocator peak "
        "(tf.config.experimental.get_memory_info) counts only tensors TensorFlow's "
        "allocator hands out, not oneDNN/Eigen scratch space or graph state."
    )
    return f"{table}\n\n{note}"


def _allocator_peak(measurement):
    allocator = measurement["allocator"]
    return allocator["peak_mib"] if allocator.get("available") else "n/a"


if __name__ == "__main__":
    main()
