"""Does the input pipeline keep up with training? Images/s, in one run.

Writes `--images` RGB PNG files (`--source-size` px synthetic lesions) to a
temporary folder, then measures:

1. the pipeline alone (`make_dataset`: read + decode + resize to 224x224 +
   the default augmentation (per-example stateless draws, one compiled warp
   per batch), batches of `--batch-size`), in four settings: without
   prefetch, with prefetch (the default), with an in-memory cache (second
   epoch, read from the cache), and without augmentation;
   then, in interleaved rounds, reading shards written at 224x224 from those
   files (`medivision shard`) vs the PNG files vs as many DICOM files
   (16-bit, `--source-size` px), all without augmentation;
2. a training step of the default model (`build_medivision`, EfficientNetB0,
   `weights=None`, 224x224x3, Adam, `train_on_batch` on one fixed batch);

and prints images/s for each and the ratio pipeline / training;
3. side by side on the same files (`pipeline_comparison`): `make_dataset` with
   and without augmentation against a plain tf.data pipeline (`read_file` ->
   `decode_png` -> `resize`, parallel map, prefetch), the variants alternated
   over rounds, wall-clock images/s and images per CPU-second (the CPU
   figure is steadier on a shared machine); with `--peers`, AUCMEDI's
   `DataGenerator` (default `ImageAugmentation`, and without) on the same
   files, run in its own virtual environment (`python -m venv` + `pip install
   aucmedi`, kept in `--peers-venv`; never one of our dependencies). When it
   cannot be installed the benchmark prints why and skips it;
4. the same three of ours again as repeated streams (`stream_comparison`),
   as `medivision train` reads them: one pass of warm-up, then five passes'
   worth of batches from the same iterator. A fresh pass (8 batches; 3 with
   `--quick`) also measures the start of an iterator (empty buffers, one
   stage at work), which training pays once, not once per epoch. (AUCMEDI's generator is
   indexed batch by batch in a loop: nothing to warm.)

Timings on a shared CPU vary by up to 1.5x run to run: compare within one
run.

```
python benchmarks/bench_pipeline.py            # 256 files, 6 training steps
python benchmarks/bench_pipeline.py --quick    # 96 files, 3 training steps
python benchmarks/bench_pipeline.py --peers    # + AUCMEDI's DataGenerator
```
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
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


# --- Side by side: our pipeline, plain tf.data, peers ---------------------
def _epoch_rate(dataset, epochs=2):
    """(wall images/s, images per CPU-second) of the last of `epochs` passes."""
    wall = cpu = None
    for _ in range(epochs):
        start, start_cpu, seen = time.perf_counter(), time.process_time(), 0
        for images, _ in dataset:
            seen += int(images.shape[0])
        wall = seen / (time.perf_counter() - start)
        cpu = seen / max(time.process_time() - start_cpu, 1e-9)
    return wall, cpu


def plain_tfdata(table, batch_size, image_size=224):
    """The plain tf.data baseline: read_file -> decode_png -> resize."""
    import tensorflow as tf

    def load(path, label):
        image = tf.io.decode_png(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (image_size, image_size)), label

    dataset = tf.data.Dataset.from_tensor_slices(
        (table["path"].to_numpy(str), table["label"].to_numpy("int32"))
    )
    dataset = dataset.shuffle(len(table), seed=0).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def pipeline_comparison(table, batch_size, rounds=3):
    """Median images/s of ours (augmented, unaugmented) and plain tf.data.

    The three are built afresh and measured in turn, the order reversed
    every other round, so that load on a shared machine hits them alike.
    Returns `{name: {"wall": images/s, "cpu": images per CPU-second}}`.
    """
    from medivision_tf.data import make_dataset

    builders = {
        "ours, augmented": lambda: make_dataset(
            table, image_size=224, batch_size=batch_size, training=True, seed=0, augment=True
        ),
        "ours, no augmentation": lambda: make_dataset(
            table, image_size=224, batch_size=batch_size, training=True, seed=0, augment=False
        ),
        "plain tf.data (decode_png + resize)": lambda: plain_tfdata(table, batch_size),
    }
    samples = {name: [] for name in builders}
    names = list(builders)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            samples[name].append(_epoch_rate(builders[name]()))
    return {
        name: {"wall": statistics.median(w for w, _ in runs),
               "cpu": statistics.median(c for _, c in runs)}
        for name, runs in samples.items()
    }


def _stream_rate(dataset, warm_batches, batches):
    """(wall images/s, images per CPU-second) of a repeated stream after
    `warm_batches`: how `medivision train` consumes the pipeline (its data
    repeats, so no pass starts a new iterator with empty buffers)."""
    iterator = iter(dataset)
    for _ in range(warm_batches):
        next(iterator)
    start, start_cpu, seen = time.perf_counter(), time.process_time(), 0
    for _ in range(batches):
        seen += int(next(iterator)[0].shape[0])
    return seen / (time.perf_counter() - start), seen / max(time.process_time() - start_cpu, 1e-9)


def stream_comparison(table, batch_size, rounds=3):
    """`pipeline_comparison` on repeated streams (`_stream_rate`): one pass
    of warm-up, then five passes' worth of batches."""
    import tensorflow as tf

    from medivision_tf.data import make_dataset

    def plain_stream():
        def load(path, label):
            image = tf.io.decode_png(tf.io.read_file(path), channels=3)
            return tf.image.resize(image, (224, 224)), label

        dataset = tf.data.Dataset.from_tensor_slices(
            (table["path"].to_numpy(str), table["label"].to_numpy("int32")))
        dataset = dataset.shuffle(len(table), seed=0).repeat().map(
            load, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    builders = {
        "ours, augmented": lambda: make_dataset(
            table, image_size=224, batch_size=batch_size, training=True, seed=0, augment=True,
            repeat=True),
        "ours, no augmentation": lambda: make_dataset(
            table, image_size=224, batch_size=batch_size, training=True, seed=0, augment=False,
            repeat=True),
        "plain tf.data (decode_png + resize)": plain_stream,
    }
    per_pass = max(1, len(table) // batch_size)
    samples = {name: [] for name in builders}
    names = list(builders)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            samples[name].append(_stream_rate(builders[name](), per_pass, 5 * per_pass))
    return {
        name: {"wall": statistics.median(w for w, _ in runs),
               "cpu": statistics.median(c for _, c in runs)}
        for name, runs in samples.items()
    }


_AUCMEDI_SCRIPT = r"""
import json, os, sys, time
import numpy as np
from aucmedi import DataGenerator
from aucmedi.data_processing.augmentation import ImageAugmentation
folder, batch_size, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
samples, labels = [], []
for index, name in enumerate(classes):
    for file in sorted(os.listdir(os.path.join(folder, name))):
        if file.endswith(".png"):
            samples.append(name + "/" + file[:-4])
            labels.append(index)
onehot = np.eye(len(classes), dtype="float32")[labels]
def rate(augment):
    generator = DataGenerator(samples, folder, labels=onehot, image_format="png",
                              batch_size=batch_size, resize=(224, 224),
                              data_aug=ImageAugmentation() if augment else None,
                              shuffle=True, workers=os.cpu_count(), seed=0)
    wall = cpu = None
    for _ in range(2):
        start, start_cpu, seen = time.perf_counter(), time.process_time(), 0
        for step in range(len(generator)):
            seen += len(generator[step][0])
        wall = seen / (time.perf_counter() - start)
        cpu = seen / max(time.process_time() - start_cpu, 1e-9)
    return wall, cpu
out = {"aucmedi, augmented (default ImageAugmentation)": [],
       "aucmedi, no augmentation": []}
for round_ in range(rounds):
    for name in (list(out) if round_ % 2 == 0 else list(out)[::-1]):
        out[name].append(rate("no augmentation" not in name))
import importlib.metadata, statistics
print(json.dumps({"version": importlib.metadata.version("aucmedi"), "rates": {
    k: {"wall": statistics.median(w for w, _ in v), "cpu": statistics.median(c for _, c in v)}
    for k, v in out.items()}}))
"""


def aucmedi_python(venv_dir):
    """The Python of a virtual environment with aucmedi, made on first use.

    Returns `(python path, None)`, or `(None, reason)` when aucmedi cannot be
    installed (no network, no wheel for this Python, a conflict).
    """
    python = os.path.join(venv_dir, "bin", "python")
    check = [python, "-c", "import aucmedi"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        return python, None
    print(f"Creating a virtual environment for AUCMEDI in {venv_dir} "
          "(python -m venv + pip install aucmedi; minutes)...", flush=True)
    steps = [[sys.executable, "-m", "venv", venv_dir],
             [python, "-m", "pip", "install", "-q", "aucmedi"]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"{' '.join(step[:4])} failed: {error}"
        if done.returncode != 0:
            return None, f"{' '.join(step[:4])} failed: {done.stderr.strip()[-500:]}"
    if subprocess.run(check, capture_output=True).returncode != 0:
        return None, "aucmedi installed but does not import"
    return python, None


def aucmedi_comparison(folder, batch_size, venv_dir, rounds=3):
    """AUCMEDI DataGenerator rates on `folder`, or `(None, reason)` to skip."""
    python, reason = aucmedi_python(venv_dir)
    if python is None:
        return None, reason
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [python, "-c", _AUCMEDI_SCRIPT, folder, str(batch_size), str(rounds)],
        capture_output=True, text=True, env=env, timeout=3600,
    )
    if done.returncode != 0:
        return None, f"the AUCMEDI run failed: {done.stderr.strip()[-800:]}"
    return json.loads(done.stdout.strip().splitlines()[-1]), None


def print_comparison(rates, peers=None, skip=None, title="fresh passes"):
    """Prints the side-by-side table and the issue's ratios."""
    rows = dict(rates)
    if peers:
        rows.update(peers["rates"])
    width = max(len(k) for k in rows)
    print(f"\nSide by side, {title} (median of alternated rounds; images/s wall, "
          "images per CPU-s):")
    for name, rate in rows.items():
        print(f"{name:<{width}}  {rate['wall']:8.1f} images/s  {rate['cpu']:8.1f} images/CPU-s")
    augmented, plain = rates["ours, augmented"], rates["ours, no augmentation"]
    baseline = rates["plain tf.data (decode_png + resize)"]
    def ratio(name, value, goal):
        verdict = "met" if value >= goal else "NOT met"
        return f"{name} {value:.2f} (goal >= {goal:g}: {verdict})"

    for kind in ("wall", "cpu"):
        parts = [ratio("augmented / unaugmented", augmented[kind] / plain[kind], 0.6),
                 ratio("unaugmented / plain tf.data", plain[kind] / baseline[kind], 0.9)]
        if peers:
            peer = peers["rates"]["aucmedi, augmented (default ImageAugmentation)"]
            parts.append(ratio("augmented / AUCMEDI augmented", augmented[kind] / peer[kind], 2))
        print(f"ratios ({kind}): " + "; ".join(parts))
    if peers:
        print(f"(AUCMEDI {peers['version']}, DataGenerator with workers={os.cpu_count()})")
    if skip:
        print(f"AUCMEDI skipped: {skip}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256,
                        help="PNG files written and read (default: 256)")
    parser.add_argument("--source-size", type=int, default=320,
                        help="side of the written images in pixels (default: 320)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    parser.add_argument("--steps", type=int, default=6,
                        help="timed training steps of the default model (default: 6)")
    parser.add_argument("--quick", action="store_true",
                        help="96 files, 3 steps, 1 round: checks the code paths, "
                             "not the speed")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternated rounds of the side-by-side comparison")
    parser.add_argument("--peers", action="store_true",
                        help="also measure AUCMEDI's DataGenerator (own venv)")
    parser.add_argument("--peers-venv", default=os.path.join(
        os.path.expanduser("~"), ".cache", "medivision_tf", "bench-aucmedi-venv"),
        help="virtual environment for AUCMEDI, created when missing "
             "(default: ~/.cache/medivision_tf/bench-aucmedi-venv)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.steps, args.rounds = 96, 3, 1

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
        side_by_side = pipeline_comparison(table, args.batch_size, args.rounds)
        streams = stream_comparison(table, args.batch_size, args.rounds)
        peers = skip = None
        if args.peers:
            peers, skip = aucmedi_comparison(folder, args.batch_size, args.peers_venv,
                                             args.rounds)
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
    print_comparison(side_by_side, peers, skip)
    print_comparison(streams, peers, skip, title="repeated streams as `train` reads them")


if __name__ == "__main__":
    main()
