"""Training throughput: MediVision's LSTM-attention head vs a plain pooling head.

For each backbone and input size, builds `build_medivision` and
`build_pooling_baseline` on the same backbone (random weights, the speed does
not depend on them), compiles both the same way (Adam, sparse categorical
cross-entropy, no XLA) and times `train_on_batch` on a fixed batch of random
uint8 images, the two models in alternating blocks after a warm-up. The
overhead is the median over blocks of MediVision's step time divided by the
baseline's, minus one: what the head adds to a training step (aim: <= 5%).

MediVision is timed twice: as built by default (the sequence is projected to
`projection_units=128` before the LSTM) and in the paper's literal form
(`projection_units=None`: the LSTM reads the backbone's raw channels).

```
python benchmarks/bench_head.py            # mobilenetv2, efficientnetb0 at 128 and 224
python benchmarks/bench_head.py --quick    # smallcnn at 32x32 (projected to 64), 2 steps
```
"""

import statistics

import common


def settings(quick):
    """Backbones, sizes and step counts of a full or `--quick` run."""
    if quick:
        # The from-scratch smallcnn (128 channels, narrowed to 64 so that the
        # projected and the literal head differ as on the real backbones):
        # the same code path as a full run, without tracing three MobileNetV2
        # training steps (about 50 s of the suite's quick run).
        return dict(
            backbones=["smallcnn"], sizes=[32], batch_size=4,
            warmup=1, rounds=1, steps=2, projection_units=64,
        )
    return dict(
        backbones=["mobilenetv2", "efficientnetb0"], sizes=[128, 224],
        batch_size=16, warmup=2, rounds=12, steps=2, projection_units=128,
    )


def measure(backbone, size, batch_size, warmup, rounds, steps, num_classes=4,
            projection_units=128):
    """Trains both models on one configuration; returns one result row."""
    import keras

    import medivision_tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    options = dict(backbone=backbone, input_shape=(size, size, 3), weights=None)
    models = {
        "medivision": medivision_tf.build_medivision(
            num_classes, projection_units=projection_units, **options),
        # The paper's literal head: the LSTM reads all backbone channels.
        "medivision_literal": medivision_tf.build_medivision(
            num_classes, projection_units=None, **options
        ),
        "baseline": medivision_tf.build_pooling_baseline(num_classes, **options),
    }
    images, labels = common.random_images(batch_size, size)
    labels = labels % num_classes
    runners = {
        name: common.train_step_runner(common.compile_for_training(model), images, labels)
        for name, model in models.items()
    }
    timing = common.compare_throughput(
        runners, batch_size, warmup=warmup, rounds=rounds, steps=steps
    )
    blocks = timing["_blocks"]
    ratio = common.paired_ratio(blocks["baseline"], blocks["medivision"])
    block_ratios = sorted(m / b for b, m in zip(blocks["baseline"], blocks["medivision"]))
    literal_ratio = common.paired_ratio(blocks["baseline"], blocks["medivision_literal"])
    return {
        "backbone": backbone,
        "input_size": size,
        "batch_size": batch_size,
        "medivision_images_per_s": timing["medivision"]["images_per_s"],
        "baseline_images_per_s": timing["baseline"]["images_per_s"],
        "step_time_ratio": ratio,
        "overhead_percent": (ratio - 1) * 100,
        "literal_images_per_s": timing["medivision_literal"]["images_per_s"],
        "literal_overhead_percent": (literal_ratio - 1) * 100,
        "block_ratio_min": block_ratios[0],
        "block_ratio_max": block_ratios[-1],
        "medivision_params": models["medivision"].count_params(),
        "literal_params": models["medivision_literal"].count_params(),
        "baseline_params": models["baseline"].count_params(),
        "block_seconds": blocks,
    }


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = settings(args.quick)
    rows = []
    for backbone in config["backbones"]:
        for size in config["sizes"]:
            row = measure(
                backbone, size, config["batch_size"], config["warmup"],
                config["rounds"], config["steps"],
                projection_units=config["projection_units"],
            )
            rows.append(row)
            print(
                f"{backbone} {size}x{size}: MediVision "
                f"{row['medivision_images_per_s']:.1f} img/s, baseline "
                f"{row['baseline_images_per_s']:.1f} img/s, overhead "
                f"{row['overhead_percent']:+.1f}% (without the projection "
                f"{row['literal_overhead_percent']:+.1f}%)",
                flush=True,
            )
    overheads = [r["overhead_percent"] for r in rows]
    literal = [r["literal_overhead_percent"] for r in rows]
    results = {
        "benchmark": "head",
        "description": "training throughput, MediVision vs pooling head, same backbone",
        "quick": args.quick,
        "settings": config,
        "machine": common.machine_info(),
        "rows": rows,
        "median_overhead_percent": statistics.median(overheads),
        "max_overhead_percent": max(overheads),
        "median_literal_overhead_percent": statistics.median(literal),
        "max_literal_overhead_percent": max(literal),
        "target_overhead_percent": 5.0,
    }
    print()
    print(render_table(results))
    common.write_results(results, args.json)
    return results


def render_table(results):
    """The results as a Markdown table."""
    table = common.format_table(
        ["backbone", "input", "batch", "MediVision img/s", "baseline img/s",
         "step-time ratio", "per-block range", "head overhead", "extra params",
         "no-projection img/s", "no-projection overhead", "no-projection extra params"],
        [
            [r["backbone"], f"{r['input_size']}²", r["batch_size"],
             r["medivision_images_per_s"], r["baseline_images_per_s"],
             f"{r['step_time_ratio']:.3f}",
             f"{r['block_ratio_min']:.2f}-{r['block_ratio_max']:.2f}",
             f"{r['overhead_percent']:+.1f}%",
             f"{r['medivision_params'] - r['baseline_params']:,}",
             r["literal_images_per_s"], f"{r['literal_overhead_percent']:+.1f}%",
             f"{r['literal_params'] - r['baseline_params']:,}"]
            for r in results["rows"]
        ],
    )
    return (
        f"{table}\n\nStep-time ratio: median over {results['settings']['rounds']} "
        "alternating blocks of MediVision's step time / the baseline's (per-block range "
        f"beside it: the noise of this run).\nMedian head overhead {results['median_overhead_percent']:+.1f}% "
        f"(max {results['max_overhead_percent']:+.1f}%, target <= "
        f"{results['target_overhead_percent']:.0f}%)."
        + "\nWithout the projection (`build_medivision(..., projection_units=None)`, the "
        f"paper's literal head): median {results['median_literal_overhead_percent']:+.1f}% "
        f"(max {results['max_literal_overhead_percent']:+.1f}%)."
    )


if __name__ == "__main__":
    main()
