"""Exact and near duplicates, leakage refusal and split.csv, on real images.

Planted copies (resized, recompressed, re-encoded, brightened) of real
photographs (Fashion-MNIST from Debian's `dataset-fashion-mnist`) and of
pydicom's shipped DICOM files; NIfTI volumes from nibabel's test data.
"""

import gzip
import json
import os
import shutil
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from medivision_tf.cli import main
from medivision_tf.data import check_leakage, find_duplicates, from_directory, from_numpy
from medivision_tf.data import image_hashes, split_table
from medivision_tf.data.checks.near_pairs import NEAR_THRESHOLD, band_width, near_pairs

FASHION = "/usr/share/datasets/fashion-mnist"
CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker"}
PER_CLASS = 40  # 30 in train/, 10 in test/

needs_fashion = pytest.mark.skipif(
    not os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install "
    "dataset-fashion-mnist)",
)


def _idx(name):
    with gzip.open(os.path.join(FASHION, name)) as handle:
        data = handle.read()
    count = int.from_bytes(data[4:8], "big")
    if data[3] == 3:
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, 28, 28)
    return np.frombuffer(data, np.uint8, offset=8)


def _jpeg(image, quality):
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)


def _resize(image, factor, interpolation):
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=interpolation)


# (file suffix, transform): what a copy in a public data set looks like.
PLANTS = (
    ("up2.png", lambda a: _resize(a, 2, cv2.INTER_CUBIC)),
    ("up3.png", lambda a: _resize(a, 3, cv2.INTER_LINEAR)),
    ("down.png", lambda a: _resize(a, 0.75, cv2.INTER_AREA)),
    ("q75.jpg", lambda a: _jpeg(a, 75)),         # recompressed
    ("q90.jpg", lambda a: _jpeg(a, 90)),         # PNG re-encoded as JPEG
    ("bright.png", lambda a: np.clip(a.astype(int) + 12, 0, 255).astype(np.uint8)),
    ("gain.png", lambda a: np.clip(a * 1.1, 0, 255).astype(np.uint8)),
    ("up2q80.jpg", lambda a: _jpeg(_resize(a, 2, cv2.INTER_CUBIC), 80)),
    ("lossless.bmp", lambda a: a),               # exact: same pixels, other format
)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """train/ and test/ class folders of real photographs, with copies of some
    training images planted in test/ (leakage) and in train/ (within a split)."""
    if not os.path.exists(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("dataset-fashion-mnist is not installed")
    images, labels = _idx("t10k-images-idx3-ubyte.gz"), _idx("t10k-labels-idx1-ubyte.gz")
    root = tmp_path_factory.mktemp("fashion") / "data"
    planted, originals = [], []
    for label, name in CLASSES.items():
        for split in ("train", "test"):
            os.makedirs(root / split / name)
        for k, index in enumerate(np.flatnonzero(labels == label)[:PER_CLASS]):
            split = "train" if k < 30 else "test"
            path = str(root / split / name / f"{index:05d}.png")
            cv2.imwrite(path, images[index])
            originals.append(path)
            if k < len(PLANTS) + 1 and split == "train":
                suffix, transform = PLANTS[k % len(PLANTS)]
                where = "train" if k == len(PLANTS) else "test"
                copy = str(root / where / name / f"copy_{index:05d}_{suffix}")
                cv2.imwrite(copy, transform(images[index]))
                planted.append((path, copy))
    byte_copy = str(root / "test" / "sneaker" / "copy_bytes.png")
    shutil.copyfile(originals[0], byte_copy)
    planted.append((originals[0], byte_copy))
    return {"root": str(root), "planted": planted, "originals": originals}


def _pair_set(frame):
    return {frozenset(p) for p in zip(frame["path_a"], frame["path_b"])}


def test_scan_duplicates_finds_planted_copies_in_real_photographs(fashion, tmp_path, capsys):
    out = tmp_path / "pairs.csv"
    assert main(["scan", fashion["root"], "--duplicates", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Duplicates:" in printed and "between train and val/test" in printed
    pairs = pd.read_csv(out)
    assert list(pairs.columns) == ["path_a", "path_b", "kind", "distance", "split_a", "split_b"]
    found = _pair_set(pairs)
    planted = {frozenset(p) for p in fashion["planted"]}
    recall = len(found & planted) / len(planted)
    source = {copy: original for original, copy in fashion["planted"]}
    false_pairs = {p for p in found if len({source.get(x, x) for x in p}) == 2}  # distinct
    print(f"planted copies found: {len(found & planted)}/{len(planted)} (recall {recall:.3f}); "
          f"pairs of distinct images: {len(false_pairs)} of "
          f"{len(fashion['originals']) * (len(fashion['originals']) - 1) // 2}")
    assert recall >= 0.9, sorted(map(sorted, planted - found))
    assert len(false_pairs) <= 1, false_pairs
    by_pair = {frozenset((a, b)): (k, d, sa, sb) for a, b, k, d, sa, sb in pairs.itertuples(
        index=False)}
    lossless = next(p for p in fashion["planted"] if p[1].endswith("lossless.bmp"))
    assert by_pair[frozenset(lossless)][:2] == ("exact", 0)
    byte_copy = next(p for p in fashion["planted"] if p[1].endswith("copy_bytes.png"))
    assert by_pair[frozenset(byte_copy)][:2] == ("exact", 0)
    near = pairs[pairs["kind"] == "near"]
    assert len(near) and near["distance"].between(0, NEAR_THRESHOLD).all()
    within = next(p for p in fashion["planted"] if "/train/" in p[1])
    assert by_pair[frozenset(within)][2:] == ("train", "train")  # within a split, too
    across = {frozenset(p) for p in fashion["planted"] if "/test/" in p[1]}
    assert all(set(by_pair[p][2:]) == {"train", "test"} for p in across & found)
    # A stricter threshold finds fewer pairs (and never a new one).
    strict = tmp_path / "strict.csv"
    assert main(["scan", fashion["root"], "--duplicates", str(strict), "--near-threshold", "4",
                 "--quiet"]) == 0
    assert _pair_set(pd.read_csv(strict)) < found
    # The way on the error names: a CSV whose `group` joins each pair found
    # splits without leakage (regression: from_csv dropped the column).
    from medivision_tf.data.checks.source_splits import load_source
    from medivision_tf.training import TrainConfig

    table = from_directory(fashion["root"])
    group = {p: p for p in table["path"]}

    def leader(path):
        while group[path] != path:
            path = group[path]
        return path

    for a, b in zip(pairs["path_a"], pairs["path_b"]):
        group[leader(a)] = leader(b)
    csv = os.path.join(os.path.dirname(fashion["root"]), "grouped.csv")  # beside data/
    pd.DataFrame({"path": table["path"].map(lambda p: os.path.relpath(p, os.path.dirname(csv))),
                  "label": table["class_name"],
                  "group": [leader(p) for p in table["path"]]}).to_csv(csv, index=False)
    splits, _ = load_source(TrainConfig(source=str(csv), val_split=0.2, test_split=0.2))
    side = {os.path.realpath(p): name for name, part in splits.items() for p in part["path"]}
    side.update({p: side[os.path.realpath(p)] for p in table["path"]})
    assert sum(len(part) for part in splits.values()) == len(table)
    assert all(side[a] == side[b] for a, b in zip(pairs["path_a"], pairs["path_b"]))


def test_train_refuses_leaking_copies_and_allow_duplicates_trains(fashion, tmp_path, capsys):
    flags = ["--image-size", "32", "--backbone", "smallcnn", "--weights", "none", "--epochs",
             "1", "--fine-tune-epochs", "0", "--batch-size", "16", "--steps-per-epoch", "2",
             "--lstm-units", "8", "--attention-units", "8", "--quiet"]
    refused = tmp_path / "refused"
    assert main(["train", fashion["root"], "--out", str(refused), *flags]) == 2
    error = capsys.readouterr().err
    assert "Leakage:" in error and "--allow-duplicates" in error
    count = int(error.split("Leakage: ")[1].split(" ")[0])
    # The same split, allowed: which planted pairs straddle train and val/test.
    from medivision_tf.data.checks.source_splits import load_source
    from medivision_tf.training import TrainConfig

    splits, _ = load_source(TrainConfig(source=fashion["root"], allow_duplicates=True))
    side = {p: name == "train" for name, part in splits.items() for p in part["path"]}
    leaking = sum(side[a] != side[b] for a, b in fashion["planted"])
    assert leaking >= 15 and count >= 0.9 * leaking, error[:400]
    assert error.count(" ~ train ") == 5 and "more pairs" in error  # a few pairs named
    assert "copy_" in error and not refused.exists()  # refused before the run folder
    run = tmp_path / "allowed"
    assert main(["train", fashion["root"], "--out", str(run), *flags, "--allow-duplicates"]) == 0
    # The allowed leakage is recorded where results are read (regression: only
    # config.json said allow_duplicates), and said even with --quiet.
    assert "Leakage allowed (allow_duplicates)" in capsys.readouterr().err
    inputs = json.load(open(run / "inputs.json"))["duplicates"]
    assert inputs["checked"] and inputs["allowed"] and inputs["pairs_file"] == "leaking_pairs.csv"
    assert sum(inputs["held_out_images"].values()) == count
    pairs = pd.read_csv(run / "leaking_pairs.csv")
    assert len(pairs) == inputs["leaking_pairs"] >= count
    assert ((pairs["split_a"] == "train") != (pairs["split_b"] == "train")).all()
    leak = json.load(open(run / "evaluation" / "metrics.json"))["summary"]["leakage"]
    assert leak["allowed"] and leak["images_duplicating_training"] == inputs["held_out_images"]["test"]
    with_test = ((pairs["split_a"] == "test") | (pairs["split_b"] == "test")).sum()
    assert leak["leaking_pairs"] == with_test and leak["run_leaking_pairs"] == len(pairs)
    split = pd.read_csv(run / "split.csv")
    assert list(split.columns) == ["path", "label", "group", "split"]
    table = from_directory(fashion["root"])
    assert sorted(split["path"]) == sorted(table["path"])  # every image, once
    assert set(split["split"]) == {"train", "val", "test"}
    assert (split.loc[split["path"].str.contains("/test/"), "split"] == "test").all()
    assert set(split["label"]) == set(CLASSES.values())
    assert split.set_index("path")["label"].to_dict() == dict(
        zip(table["path"], table["class_name"]))
    assert not [n for n in os.listdir(run) if n.startswith(".partial-")]
    # The run's split.csv re-scores its own test split.
    scored = tmp_path / "rescored"
    assert main(["evaluate", str(run / "model.keras"), str(run / "split.csv"), "--split", "test",
                 "--out", str(scored), "--quiet"]) == 0
    metrics = json.load(open(scored / "metrics.json"))
    assert metrics["summary"]["num_scored"] == (split["split"] == "test").sum()
    # A split the file does not have is named, with the ones it has.
    assert main(["evaluate", str(run / "model.keras"), str(run / "split.csv"), "--split", "tset",
                 "--out", str(tmp_path / "typo"), "--quiet"]) == 2
    assert "--split 'tset'" in capsys.readouterr().err


def _volume(rng, pattern, shape=(20, 20, 6)):
    """A textured volume (smoothed noise: every subject differs) with the class
    pattern (a blob or stripes) at a random place, angle and size."""
    texture = cv2.GaussianBlur(rng.normal(0, 1, shape).astype("float32"), (0, 0), 2)
    volume = 60 + 400 * texture
    y, x = np.mgrid[: shape[0], : shape[1]].astype("float32")
    if pattern == "blob":
        cy, cx, radius = rng.uniform(5, 15), rng.uniform(5, 15), rng.uniform(3, 6)
        mark = ((y - cy) ** 2 + (x - cx) ** 2) < radius ** 2
    else:
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 6)
        mark = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) > 0
    for z in range(shape[2]):
        volume[..., z] += 150 * mark * (z + 1) / shape[2]
    return np.clip(volume, 0, None)


def test_nifti_volumes_train_with_volume_level_split_csv(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    from nibabel.testing import data_path

    root = tmp_path / "mri"
    rng = np.random.default_rng(0)
    for name, shipped in (("blob", "anatomical.nii"), ("stripes", "reoriented_anat_moved.nii")):
        os.makedirs(root / name)
        shutil.copyfile(os.path.join(data_path, shipped), root / name / shipped)
        for i in range(5):
            image = nibabel.Nifti1Image(_volume(rng, name), np.eye(4))
            nibabel.save(image, root / name / f"subject_{i}.nii.gz")
    run = tmp_path / "run"
    assert main(["train", str(root), "--out", str(run), "--image-size", "32", "--backbone",
                 "smallcnn", "--weights", "none", "--epochs", "1", "--fine-tune-epochs", "0",
                 "--batch-size", "16", "--steps-per-epoch", "2", "--lstm-units", "8",
                 "--attention-units", "8", "--val-split", "0.2", "--test-split", "0.2",
                 "--channels", "1", "--quiet"]) == 0
    split = pd.read_csv(run / "split.csv")
    assert split["path"].str.contains(r"\.nii(?:\.gz)?#frame=\d+$").all()  # slices named
    files = split["path"].str.replace(r"#frame=\d+$", "", regex=True)
    assert (split["group"] == files).all()  # the volume is the group
    assert split.groupby("group")["split"].nunique().max() == 1  # no volume on two sides
    assert set(split["split"]) == {"train", "val", "test"}
    anatomical = split[split["group"].str.endswith("anatomical.nii")]
    assert len(anatomical) > 10  # a real volume gives many slices, all in one split


def test_find_duplicates_reads_dicom_through_the_package_decoder(tmp_path):
    from pydicom.data import get_testdata_file

    from medivision_tf.data import read_images

    paths = {}
    # MR_small_bigendian.dcm: MR_small's pixels in another transfer syntax.
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm"):
        paths[name] = str(tmp_path / name)
        shutil.copyfile(get_testdata_file(name), paths[name])
    ct = read_images([paths["CT_small.dcm"]], channels=3)[0].round().astype(np.uint8)
    exact = str(tmp_path / "ct_as_png.png")
    cv2.imwrite(exact, ct[..., ::-1])  # the windowed pixels, saved losslessly
    near = str(tmp_path / "ct_small_copy.jpg")
    cv2.imwrite(near, cv2.resize(ct, (96, 96), interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, 85])
    pairs = find_duplicates([*paths.values(), exact, near], verbose=False)
    found = {frozenset((a, b)): (k, d) for a, b, k, d in pairs.itertuples(index=False)}
    assert found[frozenset((paths["CT_small.dcm"], exact))] == ("exact", 0)
    kind, distance = found[frozenset((paths["CT_small.dcm"], near))]
    assert kind == "near" and distance <= NEAR_THRESHOLD
    assert found[frozenset((paths["MR_small.dcm"], paths["MR_small_bigendian.dcm"]))] == (
        "exact", 0)  # the same scan re-encoded is found
    assert frozenset((paths["CT_small.dcm"], paths["MR_small.dcm"])) not in found
    assert len(pairs) == 4  # ct~png, ct~jpg, png~jpg, mr~mr: no pair of distinct scans


def test_image_hashes_are_imagehash_phash_and_name_undecodable_files(tmp_path):
    import imagehash
    from PIL import Image

    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 255, (40, 48), dtype=np.uint8), (5, 5), 2)
    good = str(tmp_path / "a.png")
    cv2.imwrite(good, image)
    bad = str(tmp_path / "b.png")
    with open(bad, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n not really")
    hashes = image_hashes([good, bad], verbose=False)
    assert list(hashes.columns) == ["path", "pixel_hash", "phash", "blank", "error"]
    assert hashes["phash"][0] == str(imagehash.phash(Image.fromarray(image).convert("RGB"), 16))
    assert len(hashes["phash"][0]) == 64 and pd.isna(hashes["error"][0])
    assert pd.isna(hashes["phash"][1]) and hashes["error"][1]
    pairs = find_duplicates([good, bad, good.replace("a.png", "a.png")], verbose=False)
    assert pairs.attrs["unhashed"] == 1 and pairs.empty  # one file listed twice: no pair
    blanks = [str(tmp_path / f"blank_{v}.png") for v in (0, 0, 90)]
    for path, value in zip(blanks, (0, 0, 90)):
        cv2.imwrite(path, np.full((20, 20), value, np.uint8))
    assert image_hashes(blanks, verbose=False)["blank"].all()
    assert find_duplicates([good, *blanks], verbose=False).empty  # blank images: never paired
    with pytest.raises(ValueError, match=r"hash_size.*Received: hash_size=10"):
        image_hashes([good], hash_size=10)
    with pytest.raises(ValueError, match=r"Unknown search 'fast'"):
        find_duplicates([good], search="fast")
    with pytest.raises(TypeError, match=r"Received: int"):
        find_duplicates(3)


@needs_fashion
def test_band_search_matches_the_exhaustive_search_on_real_images():
    images = _idx("t10k-images-idx3-ubyte.gz")[:1500].copy()
    rng = np.random.default_rng(2)
    for target, source in enumerate(rng.choice(1500, 60, replace=False)):  # planted copies
        images[target] = np.clip(images[source].astype(int) + 8, 0, 255)
    table = from_numpy(images, np.zeros(len(images), int))
    hashes = image_hashes(table, verbose=False)
    exhaustive = near_pairs(hashes["phash"], NEAR_THRESHOLD, "exhaustive")
    bands = near_pairs(hashes["phash"], NEAR_THRESHOLD, "bands")
    assert len(exhaustive[0]) >= 50
    for a, b in zip(exhaustive, bands):
        np.testing.assert_array_equal(a, b)
    assert band_width(24) == 16 and band_width(32) == 14 and band_width(100) is None
    with pytest.raises(ValueError, match=r"threshold.*\[0, 256\).*Received: threshold=300"):
        near_pairs(hashes["phash"], 300)
    pairs = find_duplicates(table, hashes=hashes, search="bands")
    assert len(pairs) == len(find_duplicates(table, hashes=hashes, search="exhaustive"))


def test_check_leakage_counts_only_pairs_across_train_and_held_out():
    rng = np.random.default_rng(3)
    images = np.stack([cv2.GaussianBlur(rng.integers(0, 255, (32, 32), dtype=np.uint8),
                                        (7, 7), 3) for _ in range(40)])
    labels = np.arange(40) % 2
    table = from_numpy(images, labels)
    train, val, test = split_table(table, val=0.2, test=0.2, seed=0)
    assert check_leakage(train, val, test).empty
    leaky = from_numpy(np.concatenate([images, images[:1]]), np.r_[labels, labels[:1]])
    leaky_train = leaky.iloc[:-1].assign(split="train")
    leaky_test = leaky.iloc[-1:].assign(split="test").reset_index(drop=True)
    with pytest.raises(ValueError, match=r"(?s)Leakage: 1 held-out image\(s\) \(1 test\)"
                       r".*1 exact.*'array\[40\]' ~ train 'array\[0\]'.*allow-duplicates"):
        check_leakage(leaky_train.reset_index(drop=True), None, leaky_test)
    # The same copy inside one split is no leakage.
    assert check_leakage(leaky.assign(split="train"), val.iloc[:0], None).empty


def test_train_api_refuses_leaking_arrays_unless_allowed(tmp_path):
    from medivision_tf.training import TrainConfig
    from medivision_tf.data.pipeline.training_inputs import training_inputs

    rng = np.random.default_rng(4)
    images = np.stack([cv2.GaussianBlur(rng.integers(0, 255, (32, 32), dtype=np.uint8),
                                        (7, 7), 3) for _ in range(24)])
    labels = np.arange(24) % 2
    config = TrainConfig(image_size=32, backbone="smallcnn", weights=None)
    copies = np.clip(images[:4].astype(int) + 10, 0, 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"train_data/val_data: Leakage: 4 held-out image\(s\) \(4 val\)"):
        training_inputs(config, global_batch=8, train_data=(images, labels),
                        val_data=(copies, labels[:4]))
    allowed = TrainConfig(image_size=32, backbone="smallcnn", weights=None,
                          allow_duplicates=True)
    inputs = training_inputs(allowed, global_batch=8, train_data=(images, labels),
                             val_data=(copies, labels[:4]))
    inputs.write_report(str(tmp_path), say=None)
    split = pd.read_csv(tmp_path / "split.csv")
    assert split["split"].value_counts().to_dict() == {"train": 24, "val": 4}
    assert split["path"].iloc[0] == "array[0]" and (split["group"] == split["path"]).all()
    assert set(split["label"]) == {"class_0", "class_1"}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
