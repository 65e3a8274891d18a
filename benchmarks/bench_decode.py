"""Real medical files: decode throughput against pydicom/nibabel, and duplicate search.

Three questions, each answered against a baseline in the same run:

1. **DICOM**: pydicom's own shipped test files (the uncompressed, single-frame
   ones of at least 32x32 that pydicom decodes here) replicated to `--dicoms`
   files, read through the package's tf.data pipeline (`make_dataset`: read,
   sniff, pydicom's modality + VOI LUT, 0-255, resize to 128x128, batches of
   32) against pydicom alone in a Python loop (`dcmread` + `pixel_array` +
   `apply_modality_lut` + `apply_voi_lut`, or `apply_color_lut` for PALETTE
   COLOR: the same pixel work, no resize).
   Aim: ours >= 0.8 of pydicom's images/s.
2. **NIfTI**: nibabel's shipped 3-D test volumes plus generated 64x64x48
   volumes, `--volumes` in all, every non-empty axial slice a sample; ours
   (`make_dataset` over the slice table: each volume decoded once, reoriented,
   percentile-normalised, sliced, resized) against nibabel alone (`load` +
   `as_closest_canonical` + `get_fdata` + one array per slice). Slices/s.
3. **Duplicate search** on the 60,000 Fashion-MNIST training images (Debian's
   `dataset-fashion-mnist`; skipped with a message where absent): hashing
   (`image_hashes`: BLAKE2 of the pixels + 256-bit `imagehash.phash`) and the
   near-pair search, banded (the default above ~6,300 images) against
   exhaustive (every pair, vectorised), with the pairs of both compared; and
   the threshold study of `medivision_tf.data.checks.duplicates` (recall of planted
   copies and pairs of distinct images as close, per threshold, on the 10,000
   test images).

Our dataset is built once (the build time is reported apart, as a training
run pays it once) and warmed by one pass; then full passes over it alternate
with the baseline's over `--rounds` rounds, and the median per-round ratio is
reported (a slow period on a shared machine hits
both). Absolute rates vary by up to 1.5x run to run.

```
python benchmarks/bench_decode.py                 # full settings
python benchmarks/bench_decode.py --quick         # tiny settings: code paths only
python benchmarks/bench_decode.py --json benchmarks/results/decode.json
```
"""

import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_SIZE = 128
BATCH = 32


# === DICOM ===


def dicom_files():
    """pydicom's shipped test files that pydicom decodes here: uncompressed,
    single frame, at least 32x32 (`(path, shape)` pairs)."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_files
    from pydicom.uid import UncompressedTransferSyntaxes

    chosen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(get_testdata_files("*.dcm")):
            try:
                ds = pydicom.dcmread(path)
                if ds.file_meta.TransferSyntaxUID not in UncompressedTransferSyntaxes:
                    continue
                if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
                    continue
                pixels = ds.pixel_array
            except Exception:
                continue
            if pixels.ndim == 2 and min(pixels.shape) >= 32:
                chosen.append((path, pixels.shape))
    return chosen


def replicate(paths, folder, count):
    """`count` files in two class folders, copies of `paths` in turn (each
    keeping its extension: `.dcm`, `.nii`, `.nii.gz`)."""
    written = []
    for index in range(count):
        source = paths[index % len(paths)]
        name = os.path.basename(source)
        suffix = ".nii.gz" if name.endswith(".nii.gz") else os.path.splitext(name)[1]
        target = os.path.join(folder, f"class_{index % 2}", f"file_{index:05d}{suffix}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    return written


def pydicom_alone(paths):
    """Images/s of pydicom's own pipeline in a Python loop."""
    import warnings

    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            ds = pydicom.dcmread(path)
            if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
                apply_color_lut(ds.pixel_array, ds)  # what its pixels mean: colors
            else:
                apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    return len(paths) / (time.perf_counter() - start)


def ours(table):
    """`(seconds to build, runner)`: `make_dataset` (no shuffle, no
    augmentation, no cache) over a table, built once like a training run
    does; the runner returns samples/s of one full pass."""
    from medivision_tf.data import make_dataset

    start = time.perf_counter()
    dataset = make_dataset(table, image_size=IMAGE_SIZE, channels=1, batch_size=BATCH,
                           training=False, shuffle=False)
    build = time.perf_counter() - start

    def run():
        start, seen = time.perf_counter(), 0
        for images, _ in dataset:
            seen += int(images.shape[0])
        if seen != len(table):
            raise RuntimeError(f"make_dataset gave {seen} of {len(table)} images")
        return seen / (time.perf_counter() - start)

    run()  # the first pass traces the graph and warms the readers
    return build, run


def alternate(runners, rounds):
    """Median rate of each runner and median per-round ratio ours / baseline."""
    rates = {name: [] for name in runners}
    names = list(runners)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            rates[name].append(runners[name]())
    ratios = [a / b for a, b in zip(rates[names[0]], rates[names[1]])]
    return {"rates": {n: statistics.median(r) for n, r in rates.items()},
            "ratio": statistics.median(ratios), "ratios": ratios}


def dicom_benchmark(count, rounds):
    from medivision_tf.data import from_directory

    files = dicom_files()
    with tempfile.TemporaryDirectory() as work:
        paths = replicate([p for p, _ in files], work, count)
        build, run = ours(from_directory(work))
        result = alternate({"ours (make_dataset)": run,
                            "pydicom alone": lambda: pydicom_alone(paths)}, rounds)
        result["build_seconds"] = build
    result["files"] = [os.path.basename(p) for p, _ in files]
    result["count"] = count
    return result


# === NIfTI ===


def nifti_sources(folder, generated, seed=0):
    """nibabel's shipped 3-D test volumes, plus `generated` 64x64x48 ones."""
    import nibabel
    from nibabel.testing import data_path

    sources = []
    for name in ("anatomical.nii", "reoriented_anat_moved.nii"):
        sources.append(os.path.join(data_path, name))
    rng = np.random.default_rng(seed)
    for index in range(generated):
        volume = rng.normal(100, 30, (64, 64, 48)).astype("float32")
        path = os.path.join(folder, f"generated_{index}.nii.gz")
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path)
        sources.append(path)
    return sources


def nibabel_alone(paths):
    """Slices/s of nibabel alone: load, reorient, read, one array per slice."""
    import nibabel

    start, slices = time.perf_counter(), 0
    for path in paths:
        volume = nibabel.as_closest_canonical(nibabel.load(path))
        values = np.asarray(volume.get_fdata(dtype="float32"))
        for z in range(values.shape[2]):
            np.ascontiguousarray(values[:, :, z])
            slices += 1
    return slices / (time.perf_counter() - start)


def nifti_benchmark(count, rounds):
    from medivision_tf.data import from_directory

    with tempfile.TemporaryDirectory() as work:
        sources = nifti_sources(work, generated=2)
        data = os.path.join(work, "data")
        paths = replicate(sources, data, count)
        table = from_directory(data)
        build, run = ours(table)
        result = alternate({"ours (make_dataset)": run,
                            "nibabel alone": lambda: nibabel_alone(paths)}, rounds)
        result["build_seconds"] = build
        result["volumes"], result["slices"] = count, len(table)
    return result


# === Duplicates ===


def load_fashion(split="train", folder=FASHION_DIR):
    """Fashion-MNIST images (uint8 N x 28 x 28), or None when not installed."""
    name = {"train": "train", "test": "t10k"}[split]
    path = os.path.join(folder, f"{name}-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        return None
    with gzip.open(path) as handle:
        data = handle.read()
    count = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, np.uint8, offset=16).reshape(count, 28, 28)


def duplicate_search(images, exhaustive=True):
    """Seconds to hash and to search `images`; pairs found by each search."""
    from medivision_tf.data import from_numpy
    from medivision_tf.data.checks.hashes import image_hashes
    from medivision_tf.data.checks.near_pairs import NEAR_THRESHOLD, near_pairs

    table = from_numpy(images, np.zeros(len(images), int))
    start = time.perf_counter()
    hashes = image_hashes(table, verbose=False)
    hash_seconds = time.perf_counter() - start
    start = time.perf_counter()
    banded = near_pairs(hashes["phash"], NEAR_THRESHOLD, "bands")
    band_seconds = time.perf_counter() - start
    result = {"images": len(images), "hash_seconds": hash_seconds,
              "hash_per_image_ms": 1000 * hash_seconds / len(images),
              "band_seconds": band_seconds, "band_pairs": int(len(banded[0])),
              "exact_groups": int(hashes["pixel_hash"].nunique())}
    if exhaustive:
        start = time.perf_counter()
        full = near_pairs(hashes["phash"], NEAR_THRESHOLD, "exhaustive")
        result["exhaustive_seconds"] = time.perf_counter() - start
        result["exhaustive_pairs"] = int(len(full[0]))
        found = set(zip(banded[0].tolist(), banded[1].tolist()))
        result["band_found_of_exhaustive"] = sum(
            (a, b) in found for a, b in zip(full[0].tolist(), full[1].tolist()))
    return result


def _jpeg(image, quality):
    import cv2

    _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)


def transforms():
    import cv2

    def resize(a, factor, how):
        return cv2.resize(a, (round(a.shape[1] * factor), round(a.shape[0] * factor)),
                          interpolation=how)

    return {
        "2x enlarged": lambda a: resize(a, 2, cv2.INTER_CUBIC),
        "3.5x enlarged": lambda a: resize(a, 3.5, cv2.INTER_LINEAR),
        "0.75x reduced": lambda a: resize(a, 0.75, cv2.INTER_AREA),
        "JPEG 50": lambda a: _jpeg(a, 50),
        "JPEG 75": lambda a: _jpeg(a, 75),
        "JPEG 90 (PNG to JPEG)": lambda a: _jpeg(a, 90),
        "+15 brightness": lambda a: np.clip(a.astype(int) + 15, 0, 255).astype(np.uint8),
        "x1.1 brightness": lambda a: np.clip(a * 1.1, 0, 255).astype(np.uint8),
        "x0.9 brightness": lambda a: np.clip(a * 0.9, 0, 255).astype(np.uint8),
        "2x enlarged + JPEG 70": lambda a: _jpeg(resize(a, 2, cv2.INTER_CUBIC), 70),
    }


def threshold_study(images, planted, thresholds=(16, 20, 24, 28, 32), hash_size=16):
    """Recall of planted copies and pairs of distinct images, per threshold
    (of `hash_size`² bits; `bench_hashes.py` runs it for the 64-bit hash)."""
    import pandas as pd

    from medivision_tf.data.checks.hashes import image_hashes
    from medivision_tf.data.checks.near_pairs import _bits, _popcount, near_pairs

    def phashes(arrays):  # arrays of any sizes: a table with an `image` column
        return list(image_hashes(pd.DataFrame({"image": list(arrays)}), hash_size=hash_size,
                                 verbose=False)["phash"])

    originals = phashes(list(images))
    pairs = near_pairs(originals, max(thresholds), "exhaustive")
    rng = np.random.default_rng(1)
    chosen = rng.choice(len(images), planted, replace=False)
    _, words = _bits(originals)
    recall = {}
    worst = {}
    for name, transform in transforms().items():
        copies = phashes([transform(images[i]) for i in chosen])
        _, copy_words = _bits(copies)
        distance = _popcount(words[chosen] ^ copy_words).sum(axis=1)
        for t in thresholds:
            recall.setdefault(t, []).append(float((distance <= t).mean()))
            worst.setdefault(t, []).append((float((distance <= t).mean()), name))
    rows = []
    for t in thresholds:
        low = min(worst[t])
        rows.append({"threshold": t, "recall": statistics.mean(recall[t]),
                     "worst": low[0], "worst_transform": low[1],
                     "distinct_pairs": int((pairs[2] <= t).sum())})
    return {"images": len(images), "pairs": len(images) * (len(images) - 1) // 2,
            "planted_per_transform": planted, "transforms": list(transforms()), "rows": rows,
            "hash_bits": hash_size * hash_size}


# === Output ===


def render_table(results):
    lines = ["| data | ours (make_dataset) | baseline alone | ours / baseline (aim ≥ 0.8) |",
             "|---|---:|---:|---:|"]
    dicom, nifti = results["dicom"], results["nifti"]
    lines.append(
        f"| DICOM: {dicom['count']} copies of {len(dicom['files'])} pydicom test files, "
        f"images/s | {dicom['rates']['ours (make_dataset)']:.0f} | "
        f"{dicom['rates']['pydicom alone']:.0f} (pydicom) | {dicom['ratio']:.2f} |")
    lines.append(
        f"| NIfTI: {nifti['volumes']} volumes, {nifti['slices']} slices, slices/s | "
        f"{nifti['rates']['ours (make_dataset)']:.0f} | "
        f"{nifti['rates']['nibabel alone']:.0f} (nibabel) | {nifti['ratio']:.2f} |")
    search = results.get("duplicates")
    lines.append("")
    if search is None:
        lines.append(results.get("duplicates_skipped", "duplicate search: skipped"))
        return "\n".join(lines)
    lines += ["| duplicate search | images | seconds | pairs within 24 bits |",
              "|---|---:|---:|---:|",
              f"| hashing (pixel BLAKE2 + 256-bit phash) | {search['images']} | "
              f"{search['hash_seconds']:.1f} ({search['hash_per_image_ms']:.2f} ms/image) | |",
              f"| band search (default) | {search['images']} | {search['band_seconds']:.1f} | "
              f"{search['band_pairs']} |"]
    if "exhaustive_seconds" in search:
        lines.append(
            f"| exhaustive search (every pair) | {search['images']} | "
            f"{search['exhaustive_seconds']:.1f} | {search['exhaustive_pairs']} (bands found "
            f"{search['band_found_of_exhaustive']}) |")
    study = results.get("thresholds")
    if study:
        lines += ["", f"Threshold study: {study['planted_per_transform']} images x "
                  f"{len(study['transforms'])} transforms planted; distinct pairs among "
                  f"{study['pairs']:,} pairs of {study['images']} images.", "",
                  "| threshold (bits of 256) | copies found | worst transform | "
                  "pairs of distinct images as close |", "|---:|---:|---|---:|"]
        for row in study["rows"]:
            lines.append(f"| {row['threshold']} | {row['recall']:.1%} | {row['worst_transform']} "
                         f"{row['worst']:.0%} | {row['distinct_pairs']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--dicoms", type=int, default=None, help="DICOM files (default: 300)")
    parser.add_argument("--volumes", type=int, default=None, help="NIfTI volumes (default: 24)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default: 5)")
    parser.add_argument("--no-exhaustive", action="store_true",
                        help="skip the exhaustive 60,000-image search (default: run it)")
    args = parser.parse_args(argv)
    quick = args.quick
    dicoms = args.dicoms or (40 if quick else 300)
    volumes = args.volumes or (4 if quick else 24)
    rounds = args.rounds or (1 if quick else 5)
    results = {"machine": common.machine_info(),
               "settings": {"dicoms": dicoms, "volumes": volumes, "rounds": rounds,
                            "image_size": IMAGE_SIZE, "batch_size": BATCH, "quick": quick}}
    results["dicom"] = dicom_benchmark(dicoms, rounds)
    results["nifti"] = nifti_benchmark(volumes, rounds)
    train = load_fashion("train")
    if train is None:
        results["duplicates_skipped"] = (
            "Duplicate search skipped: Fashion-MNIST is not installed (`sudo apt-get install "
            "dataset-fashion-mnist`).")
    else:
        images = train[:3000] if quick else train
        results["duplicates"] = duplicate_search(images, exhaustive=not args.no_exhaustive)
        test = load_fashion("test")
        results["thresholds"] = threshold_study(test[:1000] if quick else test,
                                                planted=40 if quick else 400)
    print(render_table(results))
    common.write_results(results, args.json)
    return results


if __name__ == "__main__":
    main()
