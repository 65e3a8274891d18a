"""Sharded TFRecords: writing (manifest, bad files, resume, gfile URLs), reading
with graph ops only, training on a shard folder, and two local workers each
reading a disjoint part (TF_CONFIG, two processes)."""

import hashlib
import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from medivision_tf.data import as_table, finish_image, from_csv, load_image, make_dataset
from medivision_tf.data import make_synthetic_lesions
from medivision_tf.data import shards
from medivision_tf.data.checks.source_splits import load_source
from medivision_tf.training import TrainConfig


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """48 synthetic 32x32 lesion PNGs in two class folders, plus a truncated
    PNG (decoding fails) and an empty file (refused before decoding)."""
    root = tmp_path_factory.mktemp("images")
    make_synthetic_lesions(48, 32, 2, seed=0).to_directory(str(root))
    good = sorted((root / "ring_lesion").glob("*.png"))[0].read_bytes()
    (root / "ring_lesion" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "solid_nodule" / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def shard_folder(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    manifest = shards.write_shards(image_folder, out, image_size=32, channels=1,
                                   examples_per_shard=10, verbose=False)
    return out, manifest


def _hashes(dataset):
    return sorted(hashlib.sha1(np.asarray(image).tobytes()).hexdigest()
                  for images, _ in dataset for image in images)


def test_write_shards_manifest_counts_checksums_and_bad_files(shard_folder):
    out, manifest = shard_folder
    assert manifest["num_written"] == 48 and manifest["class_names"] == [
        "ring_lesion", "solid_nodule"]
    assert manifest["counts"]["data"]["per_class"] == {"ring_lesion": 24, "solid_nodule": 24}
    # 49 rows pass the cheap checks (the truncated PNG fails only when decoded).
    counts = [s["count"] for s in manifest["shards"]]
    assert len(counts) == 5 and sum(counts) == 48 and max(counts) == 10
    assert manifest["decode"]["image_size"] == [32, 32] and manifest["decode"]["channels"] == 1
    reasons = dict(zip(manifest["bad_files"]["path"].map(os.path.basename),
                       manifest["bad_files"]["reason"]))
    assert reasons == {"truncated.png": "corrupt", "empty.png": "empty"}
    on_disk = json.loads((out / "shards.json").read_text())
    assert on_disk["num_bad_files"] == 2 and len(on_disk["shards"]) == 5
    assert (out / "bad_files.csv").read_text().count("\n") == 3
    assert shards.verify_shards(out) == []
    # Rows are dealt to shards shuffled: the first shard holds both classes.
    table = as_table(str(out))
    assert table[table["shard"] == manifest["shards"][0]["file"]]["label"].nunique() == 2


def test_shards_give_the_pixels_of_the_files(image_folder, shard_folder):
    out, _ = shard_folder
    files = as_table(str(image_folder))
    files = files[~files["path"].str.endswith(("truncated.png", "empty.png"))]
    options = dict(image_size=32, channels=1, batch_size=16, shuffle=False, augment=False)
    from_files = make_dataset(files, **options)
    from_shards = make_dataset(str(out), **options)
    images, labels = next(iter(from_shards))
    assert images.dtype == tf.float32 and images.shape == (16, 32, 32, 1)
    assert labels.dtype == tf.int32
    assert _hashes(from_shards) == _hashes(from_files)
    # Another size and channel count than stored: resized and converted on read.
    images, _ = next(iter(make_dataset(str(out), image_size=24, channels=3, batch_size=4)))
    assert images.shape == (4, 24, 24, 3)


def test_shard_reader_has_no_python_function_ops(shard_folder):
    out, _ = shard_folder
    table = shards.load_shards(out)
    finish = lambda image: finish_image(image, 24, 3, dtype=tf.uint8)  # noqa: E731
    string = tf.TensorSpec([], tf.string)
    record = (tf.TensorSpec([], tf.int64), string, tf.TensorSpec([], tf.int32))
    subset = table.iloc[::2]  # a subset of the rows: filtered by index
    for size, channels in (((32, 32), 1), ((24, 24), 3)):  # as stored, and resized
        parse, keep, decode_record = shards.record_functions(subset, finish, size, channels)
        assert shards.python_ops(parse, string) == []
        assert shards.python_ops(keep, *record) == []
        assert shards.python_ops(decode_record, *record) == []
    assert shards.record_functions(table, finish, (32, 32), 1)[1] is None  # all rows
    # The check sees through nested functions: the file decoder has one (TIFF/DICOM).
    assert shards.python_ops(lambda path: load_image(path), string)


def test_subsets_and_splits_read_only_their_rows(image_folder, tmp_path):
    out = tmp_path / "split-shards"
    shards.write_shards(image_folder, out, image_size=32, channels=1, examples_per_shard=7,
                        verbose=False)
    config = TrainConfig(source=str(out), image_size=32, channels=1, val_split=0.25,
                         test_split=0.25, seed=0)
    splits, names = load_source(config)
    assert sum(len(t) for t in splits.values()) == 48 and names == ["ring_lesion",
                                                                     "solid_nodule"]
    for part in splits.values():
        dataset = make_dataset(part, image_size=32, channels=1, batch_size=8, training=True)
        labels = np.concatenate([y.numpy() for _, y in dataset])
        assert len(labels) == len(part)
        assert np.bincount(labels, minlength=2).tolist() == np.bincount(
            part["label"], minlength=2).tolist()


def test_split_aware_shards_and_ram_filesystem(tmp_path):
    root = tmp_path / "presplit"
    for split, count, seed in (("train", 20, 1), ("val", 6, 2), ("test", 8, 3)):
        make_synthetic_lesions(count, 32, 2, seed=seed).to_directory(str(root / split))
    url = "ram://medivision/presplit"
    manifest = shards.write_shards(root, url, image_size=32, channels=3,
                                   examples_per_shard=8, verbose=False)
    assert {s["split"] for s in manifest["shards"]} == {"train", "val", "test"}
    assert [s["file"] for s in manifest["shards"]][:3] == [
        "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord"]
    assert {k: v["total"] for k, v in manifest["counts"].items()} == {
        "train": 20, "val": 6, "test": 8}
    splits, _ = load_source(TrainConfig(source=url, image_size=32))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [20, 6, 8]
    test = make_dataset(splits["test"], image_size=32, batch_size=8)
    assert sum(int(x.shape[0]) for x, _ in test) == 8
    assert shards.verify_shards(url) == []


def test_resume_keeps_finished_shards_and_refuses_other_options(image_folder, tmp_path):
    out = tmp_path / "resume"
    first = shards.write_shards(image_folder, out, image_size=32, channels=1,
                                examples_per_shard=16, verbose=False)
    names = [s["file"] for s in first["shards"]]
    kept = {n: os.stat(out / n).st_mtime_ns for n in names[1:]}
    os.remove(out / names[0])  # as if killed while writing the first shard
    again = shards.write_shards(image_folder, out, image_size=32, channels=1,
                                examples_per_shard=16, verbose=False)
    assert again["shards"] == first["shards"]  # same bytes: same checksums
    assert {n: os.stat(out / n).st_mtime_ns for n in names[1:]} == kept
    with pytest.raises(ValueError, match="another source or other options"):
        shards.write_shards(image_folder, out, image_size=28, channels=1, verbose=False)
    with pytest.raises(ValueError, match="examples_per_shard"):
        shards.write_shards(image_folder, tmp_path / "x", examples_per_shard=0)


def test_multi_label_csv_shards(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rows = ["path,labels"]
    for i in range(6):
        cv2.imwrite(str(images / f"{i}.png"), np.full((16, 16), i * 40, "uint8"))
        rows.append(f"images/{i}.png,{['a', 'b', 'a|b', 'a', 'b', 'a|b'][i]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    table = from_csv(str(tmp_path / "labels.csv"), label_column="labels", label_separator="|")
    out = tmp_path / "ml-shards"
    shards.write_shards(table, out, image_size=16, channels=1, verbose=False)
    dataset = make_dataset(str(out), image_size=16, channels=1, batch_size=6, shuffle=False)
    images_, labels = next(iter(dataset))
    assert labels.dtype == tf.float32 and labels.shape == (6, len(table.attrs["class_names"]))
    expected = np.zeros((6, labels.shape[1]), "float32")
    for row, ids in enumerate(table["labels"]):
        expected[row, list(ids)] = 1
    by_value = {int(v): l for v, l in zip(np.asarray(images_)[:, 0, 0, 0], np.asarray(labels))}
    assert all((by_value[i * 40] == expected[i]).all() for i in range(6))


def test_cli_shard_then_train_matches_training_on_the_files(tmp_path):
    """`medivision shard` then `medivision train <shards>`: the accuracy of
    `medivision train <files>` (same seed; the example order differs, so
    within noise), then `medivision evaluate` on the shards' test split."""
    from medivision_tf.cli import main

    root = tmp_path / "lesions"
    make_synthetic_lesions(120, 32, 2, seed=4).to_directory(str(root))
    out = tmp_path / "lesion-shards"
    assert main(["shard", str(root), "--out", str(out), "--image-size", "32",
                 "--channels", "1", "--examples-per-shard", "30", "--quiet"]) == 0
    flags = ["--quiet", "--backbone", "smallcnn", "--weights", "none", "--image-size", "32",
             "--channels", "1", "--epochs", "4", "--fine-tune-epochs", "0", "--tensorboard",
             "false", "--batch-size", "16", "--learning-rate", "0.003", "--augment", "false"]
    accuracy = {}
    for name, source in (("files", root), ("shards", out)):
        assert main(["train", str(source), "--out", str(tmp_path / name)] + flags) == 0
        metrics = json.loads((tmp_path / name / "evaluation" / "metrics.json").read_text())
        assert metrics["summary"]["num_samples"] == 18  # 15% held out
        accuracy[name] = metrics["summary"]["accuracy"]
    print(f"held-out accuracy: {accuracy}")
    # The shard table keeps the source's row order: the same seed, the same split.
    config = TrainConfig(source=str(root), image_size=32, channels=1)
    split_files = load_source(config)[0]
    split_shards = load_source(config.replace(source=str(out)))[0]
    for name in ("train", "val", "test"):
        assert list(split_shards[name]["path"]) == list(split_files[name]["path"])
    assert accuracy["files"] > 0.7 and abs(accuracy["files"] - accuracy["shards"]) <= 0.2
    assert main(["evaluate", str(tmp_path / "shards" / "model.keras"), str(out),
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())[
        "summary"]["num_samples"] == 120


WORKER = r'''
import json, sys
import numpy as np
many, one, run_dir, out = sys.argv[1:5]
from medivision_tf.training import choose_strategy, train_and_evaluate
strategy = choose_strategy("auto")
from medivision_tf.data import make_dataset
result = {"strategy": type(strategy).__name__}
for name, folder in (("many", many), ("one", one)):
    dataset = make_dataset(folder, image_size=32, channels=1, batch_size=8, training=True,
                           augment=False, seed=0)
    result[name + "_policy"] = dataset.options().experimental_distribute.auto_shard_policy.name
    distributed = strategy.experimental_distribute_dataset(dataset)
    epochs = []
    for _ in range(2):
        values = []
        for images, _ in distributed:
            for local in strategy.experimental_local_results(images):
                values += np.asarray(local)[:, 0, 0, 0].round().astype(int).tolist()
        epochs.append(values)
    result[name] = epochs
trained = train_and_evaluate(
    dict(source=many, backbone="smallcnn", weights=None, image_size=32, channels=1, epochs=1,
         fine_tune_epochs=0, batch_size=8, tensorboard=False, steps_per_epoch=2, seed=0),
    run_dir=run_dir, evaluate=False, verbose=0)
result["epochs"] = trained.epochs
result["weights"] = [w.tolist() for w in trained.model.get_weights()[-2:]]
json.dump(result, open(out, "w"))
'''


def test_two_workers_see_each_example_once_per_epoch(tmp_path, two_workers):
    root = tmp_path / "ids"
    for index in range(48):  # every image is one constant value: its id
        folder = root / ("even" if index % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index:02d}.png"), np.full((32, 32), index * 4, "uint8"))
    many, one = tmp_path / "many", tmp_path / "one"
    shards.write_shards(root, many, image_size=32, channels=1, examples_per_shard=6,
                        verbose=False)   # 8 files: sharded by file
    shards.write_shards(root, one, image_size=32, channels=1, examples_per_shard=64,
                        verbose=False)   # 1 file < 2 workers: sharded by data
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    two_workers(lambda index: [script, many, one, tmp_path / "run",
                               tmp_path / f"worker{index}.json"], timeout=400)
    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    everything = [i * 4 for i in range(48)]
    for name, policy in (("many", "FILE"), ("one", "DATA")):
        assert [r[name + "_policy"] for r in results] == [policy, policy]
        for epoch in range(2):
            first, second = results[0][name][epoch], results[1][name][epoch]
            assert first and second and not set(first) & set(second)
            assert sorted(first + second) == everything, (name, epoch)
    assert results[0]["epochs"] == results[1]["epochs"] == 1
    assert results[0]["weights"] == results[1]["weights"]
    assert (tmp_path / "run" / "model.keras").is_file()


def test_reproduce_finds_shard_folders(tmp_path):
    from medivision_tf import reproduce

    images = tmp_path / "kidney-images"
    for index, name in enumerate(["cyst", "normal", "stone", "tumor"] * 2):
        (images / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / name / f"{index}.png"), np.full((8, 8), index * 20, "uint8"))
    root = tmp_path / "data"
    shards.write_shards(images, root / "kidney_shards", image_size=8, verbose=False)  # by classes
    shards.write_shards(images, root / "kidney_ct", image_size=8, verbose=False)  # by name
    assert reproduce.find_prepared(root, "kidney_ct") == {"kidney_ct": str(root / "kidney_ct")}
    os.rename(root / "kidney_ct", tmp_path / "elsewhere")
    assert reproduce.find_prepared(root, "kidney_ct") == {
        "kidney_ct": str(root / "kidney_shards")}


def test_shards_of_coronal_nifti_slices_give_the_pixels_of_the_slices(tmp_path):
    # Slices are read along the table's `nifti_axis`, as `make_dataset` reads them.
    import shutil

    from nibabel.testing import data_path

    for index, name in enumerate(("anatomical.nii", "reoriented_anat_moved.nii")):
        (tmp_path / "mri" / f"c{index}").mkdir(parents=True)
        shutil.copyfile(os.path.join(data_path, name), tmp_path / "mri" / f"c{index}" / name)
    table = as_table(str(tmp_path / "mri"))
    from medivision_tf.data import reexpand_volumes

    table = reexpand_volumes(table, nifti_slices=3, nifti_axis="coronal")
    shards.write_shards(table, tmp_path / "shards", image_size=24, channels=1, verbose=False)
    options = dict(image_size=24, channels=1, batch_size=8, shuffle=False, augment=False)
    assert _hashes(make_dataset(str(tmp_path / "shards"), **options)) == _hashes(
        make_dataset(table, **options))
    slices = np.stack([finish_image(load_image(p, 1, nifti_axis="coronal"), 24, 1)
                       for p in table["path"]])
    assert _hashes([(slices, None)]) == _hashes(make_dataset(table, **options))
