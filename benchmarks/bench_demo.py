"""`medivision demo`'s results, and the faithfulness of every explanation method on its model.

One run of `medivision_tf.demo.run_demo()` with its defaults (what README command (a) runs:
1,200 synthetic 64x64 training images, 4 lesion classes, `smallcnn` from scratch, 12 epochs),
then, on the demo's 400 held-out images (`make_synthetic_lesions(400, 64, 4, seed=2)`, the
demo's test draw), `explain_report` with every method (Score-CAM on all channels), the true
class explained (the pointing game's protocol). Beside it, on the same images, tf-keras-vis'
`Gradcam` with its own upsampling (`expand_cam=True`: scipy `zoom`, corners aligned) against
the package's (bilinear, half-pixel centers), which docs/explanations.md discusses.

Last, the same held-out images cropped to 48x64 (the 8 top and bottom rows cut; boxes moved,
and cut where they reach the border): a model trained only on 64x64 squares sees them
letterboxed (`resize="pad"`: black bands), as new data; its accuracy and Grad-CAM pointing
game there (docs/explanations.md, "Out of distribution").

Writes the README's "What the demo shows" and docs/explanations.md's faithfulness figures
(`results/demo.json`, rendered by `python benchmarks/run_all.py --render-only`). Several
minutes of CPU: the demo trains as README (a) does.

```
python benchmarks/bench_demo.py --json benchmarks/results/demo.json
python benchmarks/bench_demo.py --quick      # tiny settings: code paths only
```
"""

import dataclasses
import os
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

QUICK = dict(num_train=96, num_val=32, num_test=32, epochs=1, num_explained=16)
LABELS = {"gradcam": "Grad-CAM (native batched; tf-keras-vis identical)",
          "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM (all channels)",
          "layercam": "LayerCAM", "attention": "attention maps (no gradient)"}


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _normalized(maps):
    maps = np.asarray(maps, dtype="float64")
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def tf_keras_vis_upsampling(model, images, labels, boxes, native):
    """tf-keras-vis Grad-CAM at the image size by its own zoom, against the native maps."""
    import tensorflow as tf
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    from medivision_tf.explain import energy_in_box, map_correlation, pointing_game
    from medivision_tf.explain._tf_keras_vis import _quiet

    visualizer = Gradcam(_quiet(model), clone=False)
    maps = []
    for start in range(0, len(images), 32):
        chunk = images[start:start + 32]
        cam = visualizer(CategoricalScore([int(i) for i in labels[start:start + 32]]),
                         tf.convert_to_tensor(chunk, tf.float32), penultimate_layer="feature_map",
                         seek_penultimate_conv_layer=False, expand_cam=True, normalize_cam=False)
        maps.append(np.asarray(cam).reshape(len(chunk), *images.shape[1:3]))
    zoomed = _normalized(np.concatenate(maps))
    correlation = np.asarray(map_correlation(zoomed, native))
    return {"pointing_game": float(np.mean(pointing_game(zoomed, boxes))),
            "energy_in_box": float(np.mean(energy_in_box(zoomed, boxes))),
            "correlation_with_native_min": float(correlation.min()),
            "correlation_with_native_max": float(correlation.max())}


def letterboxed(model, images, labels, boxes, crop=8):
    """Accuracy and Grad-CAM pointing game on the images with `crop` rows cut at top and bottom."""
    from medivision_tf.data.io.finish import finish_image
    from medivision_tf.explain import explain, pointing_game

    cropped = images[:, crop:images.shape[1] - crop]
    moved = boxes.copy()
    moved[:, 0] = np.clip(boxes[:, 0] - crop, 0, cropped.shape[1])
    moved[:, 2] = np.clip(boxes[:, 2] - crop, 0, cropped.shape[1])
    visible = moved[:, 2] > moved[:, 0]
    side = model.input_shape[1]
    inputs = finish_image(cropped.astype("float32"), side, channels=model.input_shape[-1],
                          resize="pad").numpy()
    accuracy = float(np.mean(model.predict(inputs, verbose=0).argmax(-1) == labels))
    maps = explain(model, cropped, method="gradcam", class_index=labels)
    hits = pointing_game(maps[visible], moved[visible])
    return {"size": list(cropped.shape[1:3]), "accuracy": accuracy,
            "pointing_game": float(np.mean(hits)), "images_with_box": int(visible.sum())}


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)

    import medivision_tf
    from medivision_tf.data import make_synthetic_lesions
    from medivision_tf.demo import DemoConfig, run_demo
    from medivision_tf.explain import explain, explain_report

    overrides = QUICK if args.quick else {}
    config = DemoConfig(**overrides)
    results = {"machine": common.machine_info(), "quick": args.quick,
               "settings": dataclasses.asdict(config)}
    with tempfile.TemporaryDirectory() as work:
        start, cpu = time.perf_counter(), _cpu_seconds()
        demo = run_demo(out_dir=os.path.join(work, "runs"),
                        export_root=os.path.join(work, "saved_models"), verbose=0, **overrides)
        results["demo"] = {
            "test_accuracy": demo["test_accuracy"], "num_test": demo["num_test"],
            "pointing_game": demo["pointing_game"],
            "pointing_game_chance": demo["pointing_game_chance"],
            "num_explained": min(config.num_explained, demo["num_test"]),
            "wall_s": time.perf_counter() - start, "cpu_s": _cpu_seconds() - cpu,
        }
        model = medivision_tf.load_model(demo["model_path"], compile=False)
        test = make_synthetic_lesions(config.num_test, config.image_size, config.num_classes,
                                      seed=config.seed + 2)
        start = time.perf_counter()
        report = explain_report(model, test.images, test.labels, test.boxes,
                                os.path.join(work, "explain"), num_overlays=0)
        results["faithfulness"] = {
            "methods": report["methods"], "chance": report["chance"],
            "attention_gradcam_correlation": report["attention_gradcam_correlation"],
            "accuracy": report["accuracy"], "num_images": report["num_images"],
            "target": report["target"], "wall_s": time.perf_counter() - start,
        }
        native = explain(model, test.images, method="gradcam", class_index=test.labels)
        results["tf_keras_vis_zoom"] = tf_keras_vis_upsampling(
            model, test.images.astype("float32"), test.labels, test.boxes, native)
        results["letterboxed"] = letterboxed(model, test.images, test.labels, test.boxes)
    print(render_table(results))
    common.write_results(results, args.json)
    return results


def render_demo(results):
    """README: what the demo printed, and where it ran."""
    demo, machine = results["demo"], results["machine"]
    settings = results["settings"]
    return (
        f"`medivision demo` ({settings['num_train']:,} synthetic {settings['image_size']}x"
        f"{settings['image_size']} training images, {settings['num_classes']} lesion classes, "
        f"`{settings['backbone']}` from scratch, {settings['epochs']} epochs; "
        f"`benchmarks/bench_demo.py`, `results/demo.json`, {machine['date'][:10]}) reached, "
        f"on {demo['num_test']} held-out "
        f"images: accuracy **{demo['test_accuracy']:.3f}**; Grad-CAM pointing game "
        f"**{demo['pointing_game']:.3f}** on {demo['num_explained']} images (chance "
        f"{demo['pointing_game_chance']:.3f}).")


def render_faithfulness(results):
    """The faithfulness table (pointing game, energy in box) of every method."""
    faith = results["faithfulness"]
    lines = [f"On the demo model's {faith['num_images']} held-out images (held-out accuracy "
             f"{faith['accuracy']:.3f}; the true class explained):", "",
             "| method | pointing game | energy in lesion box |", "| --- | --- | --- |"]
    for method, scores in faith["methods"].items():
        lines.append(f"| {LABELS.get(method, method)} | {scores['pointing_game']:.3f} | "
                     f"{scores['energy_in_box']:.3f} |")
    chance = faith["chance"]
    lines.append(f"| chance | {chance['pointing_game']:.3f} | {chance['energy_in_box']:.3f} |")
    if faith.get("attention_gradcam_correlation") is not None:
        lines += ["", f"Attention and Grad-CAM maps correlate at "
                  f"{faith['attention_gradcam_correlation']:.2f} per image on average."]
    return "\n".join(lines)


def render_table(results):
    lines = [render_demo(results), "", render_faithfulness(results)]
    zoom = results.get("tf_keras_vis_zoom")
    if zoom:
        lines += ["", f"tf-keras-vis Grad-CAM upsampled by its own zoom (`expand_cam=True`): "
                  f"pointing game {zoom['pointing_game']:.3f}, energy in box "
                  f"{zoom['energy_in_box']:.3f}; per-image correlation with the native map "
                  f"{zoom['correlation_with_native_min']:.2f}-"
                  f"{zoom['correlation_with_native_max']:.2f}."]
    box = results.get("letterboxed")
    if box:
        lines += ["", f"Cropped to {box['size'][0]}x{box['size'][1]} (letterboxed for the "
                  f"model): accuracy {box['accuracy']:.3f}, Grad-CAM pointing game "
                  f"{box['pointing_game']:.3f} ({box['images_with_box']} images with their box "
                  "in view)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
