"""Does the input pipeline keep up with training? Images/s, in one run.

Writes `--images` RGB PNG files (`--source-size` px synthetic lesions) to a
temporary folder, then measures:

1. the pipeline alone (`make_dataset`: read + decode + resize to 224x224 +
   Keras augmentation, batches of `--batch-size`), in four settings: without
   prefetch, with prefetch (the default), with an in-memory cache (second
   epoch, read from the cache), and without augmentation;
   then, in interleaved rounds, reading shards written at 224x224 from those
   files (`medivision shard`) vs the PNG files vs as many DICOM files
   (16-bit, `--source-size` px), all without augmentation;
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


# === Shards vs files (medivision shard; a section of its own) ===


def write_dicoms(folder, count, size):
    """`count` 16-bit grayscale DICOM files (`size`x`size`) in two class folders."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from medivision_tf.data import make_synthetic_lesions

    lesions = make_synthetic_lesions(count, size, 2, grayscale=True, seed=1)
    for index, (image, label) in enumerate(zip(lesions.images, lesions.labels)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
        ds.Modality, ds.Rows, ds.Columns = "OT", size, size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.PixelData = (image[..., 0].astype("uint16") * 16).astype("<u2").tobytes()
        class_folder = os.path.join(folder, lesions.class_names[label])
        os.makedirs(class_folder, exist_ok=True)
        ds.save_as(os.path.join(class_folder, f"image_{index:05d}.dcm"), enforce_file_format=True)


def shard_comparison(png_folder, count, size, batch_size, rounds=2):
    """Images/s (224x224, no augmentation) reading shards (written at 224) vs
    the PNG files they were made from vs DICOM files; rounds interleave the
    three and each keeps its best round. Returns `{name: images/s}`."""
    from medivision_tf.data import from_directory
    from medivision_tf.data.shards import write_shards

    with tempfile.TemporaryDirectory() as work:
        shard_dir, dicom_dir = os.path.join(work, "shards"), os.path.join(work, "dicom")
        start = time.perf_counter()
        write_shards(png_folder, shard_dir, image_size=224, channels=3,
                     examples_per_shard=max(1, count // 8), verbose=False)
        write_seconds = time.perf_counter() - start
        write_dicoms(dicom_dir, count, size)
        sources = {"PNG files": from_directory(png_folder), "shards (224, PNG in TFRecord)":
                   shard_dir, "DICOM files": from_directory(dicom_dir)}
        best = {name: 0.0 for name in sources}
        for _ in range(rounds):
            for name, source in sources.items():
                rate = pipeline_rate(source, batch_size, augment=False)
                best[name] = max(best[name], rate)
    print(f"shards written in {write_seconds:.1f} s ({count / write_seconds:.0f} images/s, "
          "decoded once)")
    return {f"read {name}, no augmentation": rate for name, rate in best.items()}


def print_shard_ratios(rates, train):
    shards = rates["read shards (224, PNG in TFRecord), no augmentation"]
    png = rates["read PNG files, no augmentation"]
    dicom = rates["read DICOM files, no augmentation"]
    print(f"ratio shards / PNG files: {shards / png:.1f}x (goal: >= 3x); shards / DICOM "
          f"files: {shards / dicom:.1f}x; shards / training: {shards / train:.1f}x")


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
        rates.update(shard_comparison(folder, args.images, args.source_size, args.batch_size))
    train = training_rate(args.batch_size, args.steps)
    width = max(len(k) for k in rates)
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate:8.1f} images/s")
    print(f"{'training step, efficientnetb0 224x224':<{width}}  {train:8.1f} images/s")
    default = rates["pipeline, prefetch (default)"]
    print(f"ratio pipeline (default) / training: {default / train:.1f}x "
          f"(goal: >= 4x); with memory cache: "
          f"{rates['pipeline, prefetch + memory cache'] / train:.1f}x")
    print_shard_ratios(rates, train)


if __name__ == "__main__":
    main()
