"""Per-image cost of native batched Grad-CAM vs a forward pass vs tf-keras-vis.

Trains nothing: a smallcnn MediVision at 64x64 (weights random, which does
not change the cost) or the model given with `--model`. On a batch of 32 it
times, per image: one forward pass (`model(x)` in a `tf.function`), the native
`gradcam_heatmaps` (one `tf.function`, whole batch), tf-keras-vis' Gradcam on
the whole batch, and tf-keras-vis' Gradcam called image by image. Prints the
ratios to the forward pass (the figures to compare; absolute times vary run
to run by up to 1.5x on this machine).

    python benchmarks/bench_gradcam.py [--model runs/demo-.../model.keras]
"""

import argparse
import time

import numpy as np
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.scores import CategoricalScore

import medivision_tf
from medivision_tf.explain import gradcam_heatmaps


def best_time(function, repeats):
    function()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help=".keras model (default: fresh smallcnn 64x64)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    if args.model:
        model = medivision_tf.load_model(args.model, compile=False)
    else:
        model = medivision_tf.build_medivision(
            4, backbone="smallcnn", input_shape=(64, 64, 1), weights=None
        )
    shape = model.inputs[0].shape[1:]
    images = np.random.default_rng(0).uniform(0, 255, (args.batch_size, *shape))
    images = images.astype("float32")
    classes = model.predict(images, verbose=0).argmax(axis=1)
    gradcam = Gradcam(model, clone=False)
    options = dict(penultimate_layer="feature_map", seek_penultimate_conv_layer=False)

    def tf_keras_vis_loop():
        for image, c in zip(images, classes):
            gradcam(CategoricalScore([int(c)]), image[None], **options)

    # The forward pass in a tf.function too, so both sides run as graphs.
    forward_graph = tf.function(lambda x: model(x, training=False))
    n = args.batch_size
    timings = {
        "forward pass (batch, tf.function)": best_time(
            lambda: forward_graph(images).numpy(), args.repeats
        ),
        "native Grad-CAM (batch, tf.function)": best_time(
            lambda: gradcam_heatmaps(model, images).numpy(), args.repeats
        ),
        "tf-keras-vis Grad-CAM (batch)": best_time(
            lambda: gradcam(CategoricalScore(list(classes)), images, **options), args.repeats
        ),
        "tf-keras-vis Grad-CAM (loop, 1 image/call)": best_time(
            tf_keras_vis_loop, max(1, args.repeats // 2)
        ),
    }
    forward = timings["forward pass (batch, tf.function)"] / n
    native = timings["native Grad-CAM (batch, tf.function)"] / n
    print(f"model: {model.name}, input {tuple(shape)}, batch {n}")
    print(f"{'':44s} {'ms/image':>9s} {'x forward':>10s} {'x native':>9s}")
    for name, seconds in timings.items():
        per_image = seconds / n
        print(
            f"{name:44s} {1000 * per_image:9.3f} {per_image / forward:10.2f}"
            f" {per_image / native:9.2f}"
        )


if __name__ == "__main__":
    main()
