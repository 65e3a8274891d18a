"""Perceptual-hash figures behind docs/data.md's threshold, beside `bench_decode.py`'s study.

`bench_decode.py` measures the default 256-bit hash (recall of planted copies, pairs of
distinct images, per threshold) and the search times. This script adds what docs/data.md
says besides, each from the package's own hashing (`medivision_tf.data.checks`), in
about a minute of CPU:

1. **The 64-bit `phash`** (`hash_size=8`) on the same protocol as `bench_decode.py`'s study:
   the same 400 Fashion-MNIST test images (seeded choice) x the same 10 transforms, and the
   pairs among the 10,000 distinct test images as close, per threshold (bits of 64).
2. **Pairs on small real and synthetic sets at the default threshold** (24 of 256 bits):
   scikit-learn's 1,797 digits (8x8, scaled to 0-255), the 180 digit PNGs of
   `.ci/cli_chain.sh` (digits 0, 1 and 7, 60 each, upscaled to 32x32 as it writes them) and
   the demo's 1,800 synthetic images (`medivision demo`'s train, validation and test draws).
3. **Tiny, low-detail images**: the share of JPEG-50 copies of the 1,797 digits upscaled to
   32x32 (as the CLI chain writes them) that stay within the threshold.
4. **Fashion-MNIST's official split**: test images within the threshold of a training image
   (exact or near), the pairs `medivision train` refuses on (`--allow-duplicates`).

Fashion-MNIST comes from Debian's `dataset-fashion-mnist`; without it parts 1 and 4 are
skipped with a message.

```
python benchmarks/bench_hashes.py --json benchmarks/results/hashes.json
python benchmarks/bench_hashes.py --quick      # 1,000 test images, 40 planted: code paths only
```
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_decode  # noqa: E402
import common  # noqa: E402

SMALL_THRESHOLDS = (2, 4, 6, 8)  # bits of 64


def digit_images(upscale=None):
    """scikit-learn's digits as uint8 0-255 (8x8, or cubic-upscaled as .ci/cli_chain.sh does)."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255 / 16)).astype(np.uint8)
    if upscale:
        images = np.stack([cv2.resize(i, (upscale, upscale), interpolation=cv2.INTER_CUBIC)
                           for i in images])
    return images, digits.target


def pair_counts(images, name):
    """Exact and near pairs (default threshold and hash) among `images`, as `find_duplicates` finds them."""
    from medivision_tf.data import find_duplicates, from_numpy
    from medivision_tf.data.checks.near_pairs import NEAR_THRESHOLD

    pairs = find_duplicates(from_numpy(images, np.zeros(len(images), int)), verbose=False)
    return {"set": name, "images": int(len(images)), "threshold": NEAR_THRESHOLD,
            "exact_pairs": int((pairs["kind"] == "exact").sum()),
            "near_pairs": int((pairs["kind"] == "near").sum())}


def small_sets():
    from medivision_tf.data import make_synthetic_lesions
    from medivision_tf.demo import DemoConfig

    digits, target = digit_images()
    chain, chain_target = digit_images(upscale=32)
    chain = np.concatenate([chain[chain_target == label][:60] for label in (0, 1, 7)])
    demo = DemoConfig()
    synthetic = np.concatenate([
        make_synthetic_lesions(count, demo.image_size, demo.num_classes, seed=demo.seed + offset).images
        for offset, count in enumerate((demo.num_train, demo.num_val, demo.num_test))])
    return [pair_counts(digits, "scikit-learn digits (8x8)"),
            pair_counts(chain, "the digit PNGs of .ci/cli_chain.sh (32x32)"),
            pair_counts(synthetic[..., 0], "the demo's synthetic lesion images (64x64)")]


def digit_jpeg_recall():
    """Share of JPEG-50 copies of the upscaled digits within the default threshold."""
    import pandas as pd

    from medivision_tf.data.checks.hashes import image_hashes
    from medivision_tf.data.checks.near_pairs import NEAR_THRESHOLD, _bits, _popcount

    images, _ = digit_images(upscale=32)
    copies = [bench_decode._jpeg(image, 50) for image in images]

    def hashes(arrays):
        return list(image_hashes(pd.DataFrame({"image": list(arrays)}), verbose=False)["phash"])

    _, a = _bits(hashes(images))
    _, b = _bits(hashes(copies))
    distance = _popcount(a ^ b).sum(axis=1)
    return {"images": len(images), "size": 32, "transform": "JPEG 50",
            "threshold": NEAR_THRESHOLD, "recall": float((distance <= NEAR_THRESHOLD).mean()),
            "median_distance": float(np.median(distance))}


def official_split_pairs(train, test):
    """Test images within the default threshold of a training image (Fashion-MNIST)."""
    from medivision_tf.data import find_duplicates, from_numpy

    images = np.concatenate([train, test])
    table = from_numpy(images, np.zeros(len(images), int))
    table["split"] = ["train"] * len(train) + ["test"] * len(test)
    pairs = find_duplicates(table, verbose=False)
    across = pairs[pairs["split_a"] != pairs["split_b"]]
    test_paths = set(table["path"][len(train):])
    held_out = {p for pair in zip(across["path_a"], across["path_b"]) for p in pair
                if p in test_paths}
    return {"train_images": int(len(train)), "test_images": int(len(test)),
            "pairs": int(len(across)), "exact": int((across["kind"] == "exact").sum()),
            "near": int((across["kind"] == "near").sum()), "test_images_in_pairs": len(held_out)}


def render_table(results):
    lines = []
    study = results.get("hash64")
    if study:
        lines += [f"64-bit `phash` (`hash_size=8`): {study['planted_per_transform']} images x "
                  f"{len(study['transforms'])} transforms planted; distinct pairs among "
                  f"{study['pairs']:,} pairs of {study['images']:,} images.", "",
                  "| threshold (bits of 64) | copies found | worst transform | pairs of distinct "
                  "images as close |", "|---:|---:|---|---:|"]
        lines += [f"| {r['threshold']} | {r['recall']:.1%} | {r['worst_transform']} "
                  f"{r['worst']:.0%} | {r['distinct_pairs']:,} |" for r in study["rows"]]
        lines.append("")
    lines += ["| images | exact pairs | near pairs (≤ 24 of 256 bits) |", "|---|---:|---:|"]
    lines += [f"| {s['set']}: {s['images']:,} | {s['exact_pairs']} | {s['near_pairs']} |"
              for s in results["small_sets"]]
    jpeg = results["digit_jpeg"]
    lines += ["", f"JPEG-50 copies of the {jpeg['images']:,} digits upscaled to "
              f"{jpeg['size']}x{jpeg['size']}: {jpeg['recall']:.0%} within {jpeg['threshold']} "
              f"bits (median distance {jpeg['median_distance']:.0f})."]
    split = results.get("official_split")
    if split:
        lines.append(
            f"Fashion-MNIST's official split: {split['pairs']} test/train pairs within 24 bits "
            f"({split['exact']} exact, {split['near']} near), {split['test_images_in_pairs']} "
            f"of the {split['test_images']:,} test images.")
    if "skipped" in results:
        lines += ["", results["skipped"]]
    return "\n".join(lines)


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    results = {"machine": common.machine_info(), "quick": args.quick,
               "small_sets": small_sets(), "digit_jpeg": digit_jpeg_recall()}
    test = bench_decode.load_fashion("test")
    if test is None:
        results["skipped"] = ("Fashion-MNIST parts skipped: it is not installed "
                              "(`sudo apt-get install dataset-fashion-mnist`).")
    else:
        train = bench_decode.load_fashion("train")
        if args.quick:
            test, train = test[:1000], train[:3000]
        results["hash64"] = bench_decode.threshold_study(
            test, planted=40 if args.quick else 400, thresholds=SMALL_THRESHOLDS, hash_size=8)
        results["official_split"] = official_split_pairs(train, test)
    print(render_table(results))
    common.write_results(results, args.json)
    return results


if __name__ == "__main__":
    main()
