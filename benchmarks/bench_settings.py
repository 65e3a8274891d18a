"""Speed settings: what XLA, oneDNN and mixed precision each bring to MediVision.

Variants of the same MediVision model (same backbone, same weights):

| variant              | how                                                        |
|----------------------|------------------------------------------------------------|
| `float32`            | the reference: oneDNN on (TF's default), no XLA, float32   |
| `xla`                | `model.compile(..., jit_compile=True)`                     |
| `mixed_bfloat16`     | `keras.mixed_precision.set_global_policy("mixed_bfloat16")` before building |
| `mixed_bfloat16+xla` | both                                                       |
| `onednn_off`         | `TF_ENABLE_ONEDNN_OPTS=0`: read once at TensorFlow import, so measured in a fresh subprocess against a fresh `onednn_on` subprocess |

The in-process variants are timed in alternating blocks (training steps, then
inference batches) and compared by per-block ratios. Before any training step,
each variant's predictions are compared with the float32 reference (largest
absolute probability difference and top-1 agreement; BatchNorm statistics are
estimated on random images first so that the random-weight model's outputs
differ from image to image), so a setting only
counts as "fastest correct" if its outputs agree.

bfloat16 only pays off where the CPU computes in it (AVX512_BF16 or AMX);
the machine's flags are recorded next to the figures.

```
python benchmarks/bench_settings.py            # mobilenetv2 at 224x224
python benchmarks/bench_settings.py --quick    # smallcnn at 32x32, 2 steps
```
"""

import os

import numpy as np

import common

VARIANTS = {
    "float32": dict(policy="float32", jit_compile=False),
    "xla": dict(policy="float32", jit_compile=True),
    "mixed_bfloat16": dict(policy="mixed_bfloat16", jit_compile=False),
    "mixed_bfloat16+xla": dict(policy="mixed_bfloat16", jit_compile=True),
}


def settings(quick):
    """Model and step counts of a full or `--quick` run."""
    if quick:
        return dict(
            backbone="smallcnn", size=32, batch_size=4, inference_batch_size=8,
            warmup=1, rounds=1, steps=2,
        )
    return dict(
        backbone="mobilenetv2", size=224, batch_size=16, inference_batch_size=32,
        warmup=2, rounds=6, steps=1,
    )


def build_variants(names, backbone, size, num_classes=4):
    """One compiled MediVision per variant, all with the same weights."""
    import keras

    import medivision_tf

    keras.utils.set_random_seed(0)
    options = dict(backbone=backbone, input_shape=(size, size, 3), weights=None)
    reference = medivision_tf.build_medivision(num_classes, **options)
    # Random weights with fresh BatchNorm statistics (mean 0, variance 1) can
    # give the same output for every image in inference mode, which would make
    # the agreement check below vacuous: estimate the statistics first.
    probe, _ = common.random_images(32, options["input_shape"][0], seed=2)
    medivision_tf.calibrate_batchnorm(reference, probe)
    weights = reference.get_weights()
    models = {}
    for name in names:
        variant = VARIANTS[name]
        keras.mixed_precision.set_global_policy(variant["policy"])
        try:
            model = medivision_tf.build_medivision(num_classes, **options)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        model.set_weights(weights)
        models[name] = common.compile_for_training(
            model, jit_compile=variant["jit_compile"]
        )
    return models


def measure(names, backbone, size, batch_size, inference_batch_size, warmup,
            rounds, steps, num_classes=4):
    """Agreement with float32 and training/inference images/s per variant."""
    models = build_variants(names, backbone, size, num_classes)
    images, labels = common.random_images(batch_size, size)
    labels = labels % num_classes
    probe, _ = common.random_images(inference_batch_size, size, seed=1)

    outputs = {n: np.asarray(m.predict_on_batch(probe), "float32") for n, m in models.items()}
    reference = outputs[names[0]]
    agreement = {
        n: {
            "max_abs_prob_diff_vs_float32": float(np.max(np.abs(o - reference))),
            "top1_agreement_vs_float32": float(
                np.mean(o.argmax(-1) == reference.argmax(-1))
            ),
        }
        for n, o in outputs.items()
    }
    training = common.compare_throughput(
        {n: common.train_step_runner(m, images, labels) for n, m in models.items()},
        batch_size, warmup=warmup, rounds=rounds, steps=steps,
    )
    inference = common.compare_throughput(
        {n: common.inference_step_runner(m, probe) for n, m in models.items()},
        inference_batch_size, warmup=warmup, rounds=rounds, steps=steps,
    )
    rows = {}
    for n in names:
        rows[n] = {
            "train_images_per_s": training[n]["images_per_s"],
            "inference_images_per_s": inference[n]["images_per_s"],
            "train_speedup": 1.0 / common.paired_ratio(
                training["_blocks"][names[0]], training["_blocks"][n]
            ),
            "inference_speedup": 1.0 / common.paired_ratio(
                inference["_blocks"][names[0]], inference["_blocks"][n]
            ),
            **agreement[n],
        }
    return rows


def child(config):
    """In a fresh process: measure the float32 variant alone (oneDNN runs)."""
    rows = measure(
        ["float32"], config["backbone"], config["size"], config["batch_size"],
        config["inference_batch_size"], config["warmup"], config["rounds"],
        config["steps"],
    )
    result = rows["float32"]
    result["onednn"] = common.onednn_enabled()
    common.print_result_line(result)


def onednn_comparison(quick):
    """float32 with oneDNN on vs off, each in a fresh subprocess."""
    script = os.path.abspath(__file__)
    extra = ["--quick"] if quick else []
    runs = {}
    for name, flag in (("onednn_on", "1"), ("onednn_off", "0")):
        runs[name] = common.run_json_subprocess(
            [script, "--child", *extra], env={"TF_ENABLE_ONEDNN_OPTS": flag}
        )
    on, off = runs["onednn_on"], runs["onednn_off"]
    return {
        **runs,
        "train_speedup_onednn": on["train_images_per_s"] / off["train_images_per_s"],
        "inference_speedup_onednn": (
            on["inference_images_per_s"] / off["inference_images_per_s"]
        ),
    }


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse_hidden())
    args = parser.parse_args(argv)
    config = settings(args.quick)
    if args.child:
        child(config)
        return None
    machine = common.machine_info()
    rows = measure(
        list(VARIANTS), config["backbone"], config["size"], config["batch_size"],
        config["inference_batch_size"], config["warmup"], config["rounds"],
        config["steps"],
    )
    onednn = onednn_comparison(args.quick)
    results = {
        "benchmark": "settings",
        "description": "gain of XLA, oneDNN and mixed bfloat16 on MediVision",
        "quick": args.quick,
        "settings": config,
        "machine": machine,
        "variants": rows,
        "onednn": onednn,
        "fastest_training": max(rows, key=lambda n: rows[n]["train_speedup"]),
        "fastest_inference": max(rows, key=lambda n: rows[n]["inference_speedup"]),
    }
    print(render_table(results))
    common.write_results(results, args.json)
    return results


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def render_table(results):
    """The results as a Markdown table."""
    config = results["settings"]
    rows = [
        [n, r["train_images_per_s"], f"{r['train_speedup']:.2f}x",
         r["inference_images_per_s"], f"{r['inference_speedup']:.2f}x",
         f"{r['max_abs_prob_diff_vs_float32']:.1e}",
         f"{r['top1_agreement_vs_float32']:.0%}"]
        for n, r in results["variants"].items()
    ]
    onednn = results["onednn"]
    for name in ("onednn_on", "onednn_off"):
        r = onednn[name]
        rows.append([
            f"float32, {name.replace('_', ' ')} (own process)",
            r["train_images_per_s"], "", r["inference_images_per_s"], "", "", "",
        ])
    table = common.format_table(
        ["variant", "train img/s", "train speed-up", "inference img/s",
         "inference speed-up", "max |Δp| vs float32", "top-1 agreement"],
        rows,
    )
    return (
        f"MediVision, {config['backbone']} at {config['size']}², training batch "
        f"{config['batch_size']}, inference batch {config['inference_batch_size']}.\n\n"
        f"{table}\n\noneDNN on vs off: training {onednn['train_speedup_onednn']:.2f}x, "
        f"inference {onednn['inference_speedup_onednn']:.2f}x. Fastest: training "
        f"`{results['fastest_training']}`, inference `{results['fastest_inference']}`."
    )


if __name__ == "__main__":
    main()
