"""Does the input pipeline keep up with training? Images/s, in one run.

Writes `--images` RGB PNG files (`--source-size` px synthetic lesions) to a
temporary folder, then measures:

1. the pipeline alone (`make_dataset`: read + decode + resize to 224x224 +
   Keras augmentation, batches of `--batch-size`), in four settings: without
   prefetch, with prefetch (the default), with an in-memory cache (second
   epoch, read from the cache), and without augmentation;
2. a training step of the default model (`build_medivision`, EfficientNetB0,
   `weights=None`, 224x224x3, Adam, `train_on_batch` on one fixed batch);

and prints images/s for each and the ratio pipeline / training. Timings on a
shared CPU vary by up to 1.5x run to run: compare within one run.

```
python benchmarks/bench_pipeline.py            # 256 files, 6 training steps
python benchmarks/bench_pipeline.py --quick    # 96 files, 3 training steps
```
"""

import argparse
import os
import tempfile
import time

import numpy as np


def write_pngs(folder, count, size):
    from medivision_tf.data import make_synthetic_lesions

    lesions = make_synthetic_lesions(count, size, 3, grayscale=False, seed=0)
    lesions.to_directory(folder)


def pipeline_rate(table, batch_size, epochs=2, **options):
    """Images/s of the last of `epochs` full passes over the dataset."""
    from medivision_tf.data import make_dataset

    dataset = make_dataset(table, image_size=224, batch_size=batch_size, training=True,
                           seed=0, **options)
    rate = None
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for images, _ in dataset:
            seen += int(images.shape[0])
        rate = seen / (time.perf_counter() - start)
    return rate


def training_rate(batch_size, steps, num_classes=3):
    import keras

    import medivision_tf

    keras.utils.set_random_seed(0)
    model = medivision_tf.build_medivision(
        num_classes, backbone="efficientnetb0", weights=None, input_shape=(224, 224, 3)
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, 224, 224, 3)).astype("float32")
    labels = rng.integers(0, num_classes, batch_size).astype("int32")
    for _ in range(2):  # compile the step, warm the caches
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return steps * batch_size / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--source-size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.steps = 96, 3

    import tensorflow as tf

    from medivision_tf.data import from_directory

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, "
          f"{args.images} PNG files of {args.source_size}x{args.source_size} RGB -> 224x224, "
          f"batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as folder:
        write_pngs(folder, args.images, args.source_size)
        table = from_directory(folder)
        rates = {
            "pipeline, no prefetch": pipeline_rate(table, args.batch_size, prefetch=False),
            "pipeline, prefetch (default)": pipeline_rate(table, args.batch_size),
            "pipeline, prefetch + memory cache": pipeline_rate(table, args.batch_size, cache=True),
            "pipeline, prefetch, no augmentation": pipeline_rate(
                table, args.batch_size, augment=False
            ),
        }
    train = training_rate(args.batch_size, args.steps)
    width = max(len(k) for k in rates)
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate:8.1f} images/s")
    print(f"{'training step, efficientnetb0 224x224':<{width}}  {train:8.1f} images/s")
    default = rates["pipeline, prefetch (default)"]
    print(f"ratio pipeline (default) / training: {default / train:.1f}x "
          f"(goal: >= 4x); with memory cache: "
          f"{rates['pipeline, prefetch + memory cache'] / train:.1f}x")


if __name__ == "__main__":
    main()
