"""medivision_tf.evaluation and prediction.py: metrics vs scikit-learn, ECE, plots, TTA, predict."""

import json

import cv2
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from medivision_tf.evaluation import (
    compute_metrics,
    evaluate_model,
    expected_calibration_error,
    plot_history,
    predict_probabilities,
)
from medivision_tf.prediction import predict_files

# 10 images, 3 classes; hand-made so that every class has errors both ways.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PROBS = np.array([
    [0.70, 0.20, 0.10],
    [0.50, 0.40, 0.10],
    [0.30, 0.60, 0.10],  # 0 -> 1
    [0.40, 0.15, 0.45],  # 0 -> 2
    [0.10, 0.80, 0.10],
    [0.20, 0.55, 0.25],
    [0.65, 0.25, 0.10],  # 1 -> 0
    [0.05, 0.15, 0.80],
    [0.10, 0.35, 0.55],
    [0.20, 0.50, 0.30],  # 2 -> 1
])


def test_metrics_agree_with_scikit_learn():
    report = compute_metrics(LABELS, PROBS, ["a", "b", "c"])
    predicted = PROBS.argmax(1)
    s = report.summary
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(LABELS, predicted)) == 0.6
    assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(LABELS, predicted))
    for average in ("macro", "weighted"):
        assert s[f"precision_{average}"] == pytest.approx(
            skm.precision_score(LABELS, predicted, average=average))
        assert s[f"recall_{average}"] == pytest.approx(
            skm.recall_score(LABELS, predicted, average=average))
        assert s[f"f1_{average}"] == pytest.approx(skm.f1_score(LABELS, predicted, average=average))
        assert s[f"roc_auc_{average}"] == pytest.approx(
            skm.roc_auc_score(LABELS, PROBS, multi_class="ovr", average=average))
    np.testing.assert_array_equal(report.confusion_matrix.values,
                                  skm.confusion_matrix(LABELS, predicted))
    np.testing.assert_allclose(report.per_class["f1"], skm.f1_score(LABELS, predicted, average=None))
    # Specificity by hand: a: 1 of 6 negatives predicted a (image 6); b: 2 of 7
    # (images 2, 9); c: 1 of 7 (image 3).
    assert report.per_class["specificity"].tolist() == pytest.approx([5 / 6, 5 / 7, 6 / 7])
    assert report.per_class["sensitivity"].tolist() == pytest.approx([2 / 4, 2 / 3, 2 / 3])
    assert report.per_class["support"].tolist() == [4, 3, 3]
    assert s["specificity_weighted"] == pytest.approx((4 * 5 / 6 + 3 * 5 / 7 + 3 * 6 / 7) / 10)


def test_expected_calibration_error_hand_computed():
    # Top-class confidences: 0.9 (right), 0.7 (wrong), 0.75 (right), 0.65 (right).
    probs = [[0.9, 0.1], [0.7, 0.3], [0.25, 0.75], [0.35, 0.65]]
    labels = [0, 1, 1, 1]
    ece, bins = expected_calibration_error(labels, probs, n_bins=5)
    # Bins of width 0.2. (0.8, 1]: {0.9 right}: gap |1 - 0.9| = 0.1.
    # (0.6, 0.8]: {0.7 wrong, 0.75 right, 0.65 right}: accuracy 2/3, confidence 0.7.
    expected = (1 / 4) * 0.1 + (3 / 4) * abs(2 / 3 - 0.7)
    assert ece == pytest.approx(expected)
    assert bins["count"].tolist() == [0, 0, 0, 3, 1]
    perfect, _ = expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]])
    assert perfect == 0.0


def test_multi_label_metrics_agree_with_scikit_learn():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    probs = np.array([[.9, .2, .6], [.3, .7, .4], [.6, .4, .2], [.2, .1, .8], [.4, .3, .1]])
    report = compute_metrics(truth, probs, multi_label=True)
    predicted = (probs >= 0.5).astype(int)
    assert report.summary["subset_accuracy"] == skm.accuracy_score(truth, predicted) == 0.6
    assert report.summary["f1_macro"] == pytest.approx(skm.f1_score(truth, predicted, average="macro"))
    assert report.summary["hamming_loss"] == pytest.approx(skm.hamming_loss(truth, predicted))
    assert report.summary["roc_auc_macro"] == pytest.approx(
        skm.roc_auc_score(truth, probs, average="macro"))
    assert report.confusion_matrix.columns.tolist() == ["tn", "fp", "fn", "tp"]


def _png_ok(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not a blank canvas


def test_report_files_and_plots_are_valid(tmp_path):
    history = tmp_path / "history.csv"
    pd.DataFrame({"epoch": [0, 1, 2], "accuracy": [0.4, 0.6, 0.7], "loss": [1.1, 0.9, 0.7],
                  "val_accuracy": [0.35, 0.5, 0.6], "val_loss": [1.2, 1.0, 0.9]}).to_csv(history, index=False)
    report = compute_metrics(LABELS, PROBS, ["a", "b", "c"])
    paths = report.save(tmp_path / "eval", history_csv=str(history))
    for name in ("confusion_matrix.png", "roc_curves.png", "reliability_diagram.png",
                 "training_curves.png"):
        _png_ok(paths[name])
    saved = json.loads(open(paths["metrics.json"]).read())
    assert saved["summary"]["accuracy"] == 0.6 and saved["class_names"] == ["a", "b", "c"]
    assert saved["confusion_matrix"] == skm.confusion_matrix(LABELS, PROBS.argmax(1)).tolist()
    per_class = pd.read_csv(paths["metrics_per_class.csv"])
    assert per_class["class"].tolist() == ["a", "b", "c"]
    predictions = pd.read_csv(paths["predictions.csv"])
    assert predictions["correct"].sum() == 6
    _png_ok(plot_history(str(history), str(tmp_path / "curves.png")))
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        plot_history(str(tmp_path / "nothing.csv"), str(tmp_path / "x.png"))


def test_evaluate_model_with_tta(trained_model, lesion_data, tmp_path):
    test = lesion_data["test"]
    plain = evaluate_model(trained_model, test.images, test.labels, test.class_names,
                           out_dir=str(tmp_path / "plain"))
    assert plain.summary["accuracy"] >= 0.6
    expected = trained_model.predict(test.images, verbose=0)
    np.testing.assert_allclose(plain.probabilities, expected, rtol=1e-5, atol=1e-6)
    flipped = trained_model.predict(test.images[:, :, ::-1], verbose=0)
    tta = predict_probabilities(trained_model, test.images, tta=True)
    np.testing.assert_allclose(tta, (expected + flipped) / 2, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown TTA transform 'spin'"):
        predict_probabilities(trained_model, test.images[:2], tta=["spin"])
    for name in ("metrics.json", "confusion_matrix.png", "roc_curves.png", "reliability_diagram.png"):
        assert (tmp_path / "plain" / name).is_file()


def test_predict_files_top_k(trained_model, lesion_data, tmp_path):
    test = lesion_data["test"]
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"scan{i}.png"))
        cv2.imwrite(paths[-1], test.images[i])
    table = predict_files(trained_model, paths, top_k=2)
    expected = trained_model.predict(test.images[:4], verbose=0)
    np.testing.assert_allclose(table["probability"], expected.max(1), rtol=1e-5)
    assert table["class"].tolist() == [test.class_names[i] for i in expected.argmax(1)]
    assert all(len(t.split("; ")) == 2 for t in table["top_k"])
    with pytest.raises(ValueError, match="top_k=9"):
        predict_files(trained_model, paths, top_k=9)
    default = predict_files(trained_model, paths[:1])["top_k"][0]
    assert len(default.split("; ")) == min(3, len(test.class_names))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        predict_files(trained_model, [str(tmp_path / "missing.png")])


def test_evaluate_dataset_reads_each_image_once_with_tta(trained_model, lesion_data):
    # Regression: a dataset was materialized as float32 and predicted once per
    # TTA transform; now each batch is read once and predicted per transform.
    import tensorflow as tf

    test = lesion_data["test"]
    images, labels = test.images[:40], test.labels[:40]
    reads = []

    def generate():
        for image, label in zip(images, labels):
            reads.append(1)
            yield image, label

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec(images.shape[1:], tf.uint8),
                                    tf.TensorSpec((), tf.int64))).batch(16)
    names = ["identity", "flip_left_right", "rot180"]
    report = evaluate_model(trained_model, dataset, tta=names, batch_size=16)
    assert len(reads) == len(images)
    expected = np.mean([trained_model.predict(x, verbose=0) for x in
                        (images, images[:, :, ::-1], images[:, ::-1, ::-1])], axis=0)
    np.testing.assert_allclose(report.probabilities, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(report.labels, labels)
    assert report.summary["tta"] == names
    arrays = evaluate_model(trained_model, images, labels, tta=names, batch_size=16)
    np.testing.assert_allclose(arrays.probabilities, report.probabilities, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown TTA transform 'spin'. Choose from: identity"):
        evaluate_model(trained_model, images, labels, tta=["identity", "spin"])


def test_load_images_matches_the_pipeline(lesion_data, tmp_path):
    from medivision_tf.data import from_directory, make_dataset
    from medivision_tf.prediction import load_images

    test = lesion_data["test"]
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / "lesion" / f"scan{i}.png"))
        (tmp_path / "lesion").mkdir(exist_ok=True)
        cv2.imwrite(paths[-1], test.images[i][:, 8:])  # 64x56: padded to 48x48
    images = load_images(paths, (48, 48), channels=1)
    assert images.shape == (3, 48, 48, 1) and images.dtype == np.float32
    table = from_directory(tmp_path).sort_values("path")
    batch = next(iter(make_dataset(table, image_size=48, channels=1, batch_size=3)))[0]
    np.testing.assert_array_equal(images, batch.numpy())
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_images([str(tmp_path / "missing.png")], (48, 48))


@pytest.fixture(scope="module")
def scored_folder(tmp_path_factory):
    """`root/data/{a,b}/[sub/]*.png` (dark vs bright) and a tiny 2-class model file."""
    import keras

    import medivision_tf

    root = tmp_path_factory.mktemp("scored")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("a", "b")):
        for i in range(4):
            folder = root / "data" / name / ("sub" if i == 3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            image = (rng.integers(0, 100, (32, 40)) + 120 * label).astype("uint8")
            cv2.imwrite(str(folder / f"{name}{i}.png"), image)
    keras.utils.set_random_seed(0)
    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(32, 32, 1), lstm_units=8,
        attention_units=4, class_names=("a", "b"))
    model.save(root / "model.keras")
    return root, model


def _expected_probabilities(model, root, relative_paths):
    from medivision_tf.data import load_images

    images = load_images([str(root / "data" / p) for p in relative_paths], 32, channels=1)
    return model.predict(images, verbose=0)


def test_evaluate_command_writes_each_images_path_first(scored_folder, capsys):
    """Regression (issue 31, item 5): nobody could tell which row of
    `medivision evaluate`'s predictions.csv was which image."""
    from medivision_tf import cli

    root, model = scored_folder
    out = root / "eval"
    assert cli.main(["evaluate", str(root / "model.keras"), str(root / "data"),
                     "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    predictions = pd.read_csv(out / "predictions.csv")
    assert predictions.columns[0] == "path"
    relative = sorted(str(p.relative_to(root / "data")) for p in (root / "data").rglob("*.png"))
    assert sorted(predictions["path"]) == relative  # relative to the source root
    assert "sub/a3.png" in [p.split("/", 1)[1] for p in predictions["path"]]
    # Each row is its image's: its folder's class, the probabilities of its pixels.
    assert (predictions["path"].str.split("/").str[0] == predictions["label_name"]).all()
    np.testing.assert_allclose(predictions[["prob_a", "prob_b"]].to_numpy(),
                               _expected_probabilities(model, root, predictions["path"]),
                               rtol=1e-5, atol=1e-6)


def test_evaluate_paths_follow_the_rows_a_changed_file_leaves(scored_folder, tmp_path):
    # A file that decoded at the scan and no longer does is skipped by the
    # pipeline: the paths of the other rows stay with their own predictions.
    import shutil

    from medivision_tf.data import from_directory
    from medivision_tf.data.checks.input_report import scan_inputs

    root, model = scored_folder
    shutil.copytree(root / "data", tmp_path / "data")
    table = scan_inputs(from_directory(tmp_path / "data"))  # scanned: not scanned again
    (tmp_path / "data" / "a" / "a1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    report = evaluate_model(model, table, out_dir=str(tmp_path / "eval"), verbose=0)
    assert report.summary["num_skipped"] == 1
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(predictions) == 7 and "a/a1.png" not in set(predictions["path"])
    np.testing.assert_allclose(predictions[["prob_a", "prob_b"]].to_numpy(),
                               _expected_probabilities(model, tmp_path, predictions["path"]),
                               rtol=1e-5, atol=1e-6)
    arrays = evaluate_model(model, np.zeros((2, 32, 32, 1)), [0, 1], verbose=0)
    assert "path" not in arrays.predictions_frame()  # arrays: no path to name
