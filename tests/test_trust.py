"""medivision_tf.trust: temperature, conformal sets, OOD score; stored, exported, served."""

import inspect
import json
import os

import keras
import numpy as np
import pytest

import medivision_tf
from medivision_tf.trust import (
    aps_scores,
    conformal_threshold,
    fit_temperature,
    fit_trust,
    get_trust,
    predict_with_trust,
)

SIZE = 32


@pytest.fixture(scope="module")
def data():
    from medivision_tf.data import make_synthetic_lesions

    train = make_synthetic_lesions(150, SIZE, 3, seed=20)
    val = make_synthetic_lesions(90, SIZE, 3, seed=21)
    test = make_synthetic_lesions(60, SIZE, 3, seed=22)
    return train, val, test


@pytest.fixture(scope="module")
def trusted(data):
    """A tiny MediVision, trained a few steps, with trust values fitted on `val`."""
    train, val, _ = data
    keras.utils.set_random_seed(0)
    model = medivision_tf.build_medivision(
        3, backbone="smallcnn", weights=None, input_shape=(SIZE, SIZE, 1), lstm_units=8,
        attention_units=4, class_names=train.class_names,
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy")
    model.fit(train.images, train.labels, batch_size=32, epochs=3, verbose=0)
    medivision_tf.calibrate_batchnorm(model, train.images)
    return fit_trust(model, val.images, val.labels, alpha=0.2)


def test_temperature_recovers_a_known_temperature(rng):
    logits = rng.normal(size=(4000, 4)) * 3
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in true_p])
    overconfident = np.exp(logits * 2.0)
    overconfident /= overconfident.sum(1, keepdims=True)
    assert fit_temperature(overconfident, labels) == pytest.approx(2.0, rel=0.1)


def test_conformal_threshold_and_errors():
    assert conformal_threshold(np.arange(1, 100) / 100, alpha=0.1) == pytest.approx(0.90)
    assert conformal_threshold([0.5, 0.6], alpha=0.1) == float("inf")
    with pytest.raises(ValueError, match="alpha=1.5"):
        conformal_threshold([0.5], alpha=1.5)
    np.testing.assert_allclose(aps_scores([[0.6, 0.3, 0.1]]), [[0.0, 0.6, 0.9]])


def test_sets_match_crepes(rng):
    crepes = pytest.importorskip("crepes")
    from medivision_tf.trust import apply

    cal = rng.dirichlet(np.ones(5) * 0.5, size=300).astype("float32")
    cal_labels = np.array([rng.choice(5, p=p / p.sum()) for p in cal.astype("float64")])
    new = rng.dirichlet(np.ones(5) * 0.5, size=200).astype("float32")
    cal_scores = np.asarray(apply.aps_scores(cal))[np.arange(300), cal_labels]
    threshold = conformal_threshold(cal_scores, alpha=0.1)
    ours = np.asarray(apply.prediction_sets(new, threshold, "aps"))
    reference = crepes.ConformalClassifier().fit(cal_scores)
    theirs = reference.predict_set(np.asarray(apply.aps_scores(new)), confidence=0.9,
                                   smoothing=False).astype(bool)
    assert theirs[np.arange(200), new.argmax(1)].all()  # the top class scores 0
    np.testing.assert_array_equal(ours, theirs)


def test_lac_sets_match_crepes_and_may_be_empty(rng, trusted, data):
    crepes = pytest.importorskip("crepes")
    from medivision_tf.trust import apply

    cal = rng.dirichlet(np.ones(4) * 0.3, size=400).astype("float32")
    cal_labels = cal.argmax(1)  # an accurate model: coverage would exceed 1 - alpha
    cal_labels[:30] = (cal_labels[:30] + 1) % 4
    new = rng.dirichlet(np.ones(4) * 0.3, size=200).astype("float32")
    cal_scores = 1 - cal[np.arange(400), cal_labels]
    threshold = conformal_threshold(cal_scores, alpha=0.1)
    ours = np.asarray(apply.prediction_sets(new, threshold, "lac"))
    theirs = crepes.ConformalClassifier().fit(cal_scores).predict_set(
        1 - new, confidence=0.9, smoothing=False).astype(bool)
    np.testing.assert_array_equal(ours, theirs)
    assert (ours.sum(1) == 0).any()  # LAC sets can be empty, APS sets never
    with pytest.raises(ValueError, match="Unknown conformal method 'raps'"):
        apply.conformal_scores(new, "raps")
    # fit_trust stores the method (LAC by default); predict_with_trust applies it.
    conformal = get_trust(trusted)["conformal"]
    assert conformal["method"] == apply.DEFAULT_CONFORMAL_METHOD == "lac"
    val, test = data[1], data[2]
    out = predict_with_trust(trusted, test.images)
    expected = (1 - out["probabilities"]) <= conformal["threshold"]
    np.testing.assert_array_equal(out["prediction_set"], expected)
    twin = keras.models.clone_model(trusted)
    twin.set_weights(trusted.get_weights())
    fit_trust(twin, val.images, val.labels, alpha=0.2, conformal_method="aps")
    aps = get_trust(twin)["conformal"]
    assert aps["method"] == "aps"
    out = predict_with_trust(twin, test.images)
    expected = np.asarray(apply.aps_scores(out["probabilities"])) <= aps["threshold"]
    np.testing.assert_array_equal(out["prediction_set"], expected)
    assert out["prediction_set"][np.arange(len(test.images)), out["probabilities"].argmax(1)].all()
    # A fit stored before the method was recorded is an APS fit.
    assert apply.stored_conformal_method({"conformal": {"threshold": 0.5}}) == "aps"
    with pytest.raises(ValueError, match="Unknown `conformal_method` 'raps'.*aps, lac"):
        fit_trust(twin, val.images, val.labels, conformal_method="raps")


def test_fit_trust_stores_json_ready_values_that_survive_saving(trusted, data, tmp_path):
    trust = get_trust(trusted)
    assert json.loads(json.dumps(trust)) == trust
    assert 0.05 <= trust["temperature"] <= 20 and trust["conformal"]["alpha"] == 0.2
    path = tmp_path / "m.keras"
    trusted.save(path)
    loaded = medivision_tf.load_model(path, compile=False)
    assert get_trust(loaded) == trust
    images = data[2].images[:8]
    a, b = predict_with_trust(trusted, images), predict_with_trust(loaded, images)
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(a["prediction_set"], b["prediction_set"])


def test_predict_with_trust_outputs(trusted, data):
    _, val, test = data
    out = predict_with_trust(trusted, test.images)
    n = len(test.images)
    assert out["probabilities"].shape == (n, 3) and out["prediction_set"].dtype == bool
    np.testing.assert_allclose(out["probabilities"].sum(1), 1, atol=1e-5)
    # calibration keeps the top class; a (LAC) set holds the classes with p >= 1 - threshold
    np.testing.assert_array_equal(out["probabilities"].argmax(1),
                                  out["uncalibrated_probabilities"].argmax(1))
    threshold = get_trust(trusted)["conformal"]["threshold"]
    np.testing.assert_array_equal(out["prediction_set"], out["probabilities"] >= 1 - threshold)
    # OOD: far-off images (uniform noise, inverted) score above the in-distribution ones
    noise = np.random.default_rng(1).uniform(0, 255, (20, SIZE, SIZE, 1)).astype("float32")
    far = predict_with_trust(trusted, noise)
    assert np.median(far["ood_score"]) > np.median(out["ood_score"])
    accepted = 1 - predict_with_trust(trusted, val.images)["out_of_distribution"].mean()
    assert accepted >= 0.9  # threshold accepts 95% of validation images (out-of-fold)


def test_knn_score_matches_numpy_and_its_threshold_is_leave_one_out(rng, trusted, data):
    from medivision_tf.trust import feature_model, knn_scores, ood_scores

    val = data[1]
    twin = keras.models.clone_model(trusted)
    twin.set_weights(trusted.get_weights())
    # A single layer asked for with the default method: kNN (as before "combined").
    trusted = fit_trust(twin, val.images, val.labels, alpha=0.2, ood_layer="feature_map")
    ood = get_trust(trusted)["ood"]
    assert ood["method"] == "knn" and ood["layer"] == "feature_map"
    assert ood["k"] == 5 and ood["num_bank"] == len(val.images)
    # The bank is the validation images' mean feature-map vectors, normalized.
    features = np.asarray(feature_model(trusted)(val.images)[0])
    bank = features / np.linalg.norm(features, axis=1, keepdims=True)
    from medivision_tf.trust.apply import decode_array

    np.testing.assert_allclose(decode_array(ood["bank"]), bank, atol=1e-6)
    # Score: 1 - the 5th highest cosine similarity to the bank.
    new = rng.normal(size=(7, features.shape[1])).astype("float32") + features.mean(0)
    cosine = (new / np.linalg.norm(new, axis=1, keepdims=True)) @ bank.T
    expected = 1 - np.sort(cosine, axis=1)[:, -5]
    np.testing.assert_allclose(ood_scores(new, ood), expected, atol=1e-5)
    # The threshold: 95% of leave-one-out scores (no image is its own neighbour).
    self_cosine = bank @ bank.T
    np.fill_diagonal(self_cosine, -2)
    loo = 1 - np.sort(self_cosine, axis=1)[:, -5]
    assert ood["threshold"] == pytest.approx(np.quantile(loo, 0.95, method="higher"), abs=1e-5)
    np.testing.assert_allclose(knn_scores(features, bank, 5, exclude_self=True), loo, atol=1e-5)


def test_too_few_images_for_the_default_fit_knn_and_a_named_gaussian_is_refused(trusted,
                                                                                data):
    """Two validation images: the Mahalanobis part of the default cannot be
    fitted out of fold, so "auto" falls back to kNN (which needs 2) and says so."""
    val = data[1]
    twin = keras.models.clone_model(trusted)
    twin.set_weights(trusted.get_weights())
    with pytest.warns(UserWarning, match="2 validation images are too few.*fitting 'knn'"):
        fit_trust(twin, val.images[:2], val.labels[:2])
    assert (get_trust(twin)["ood"]["method"], get_trust(twin)["ood"]["layer"]) == (
        "knn", "feature_map")
    for method in ("combined", "mahalanobis"):
        with pytest.raises(ValueError, match=f"ood_method='{method}'.*at least 3 validation "
                                             "images; received 2"):
            fit_trust(twin, val.images[:2], val.labels[:2], ood_method=method)
    fit_trust(twin, val.images[:3], val.labels[:3])  # three are enough
    assert get_trust(twin)["ood"]["method"] == "combined"


def test_knn_bank_is_capped_and_sampled(rng, monkeypatch):
    from medivision_tf.trust import core

    monkeypatch.setattr(core, "MAX_BANK_ROWS", 50)
    features = rng.normal(size=(120, 16)).astype("float32")
    labels = np.arange(120) % 3
    ood, held_out = core._fit_knn(features, labels, 3, seed=0)
    assert ood["num_bank"] == 50 and ood["bank"]["shape"] == [50, 16]
    assert held_out.shape == (120,) and np.isfinite(held_out).all()  # every image scored
    # A wide feature map keeps fewer rows (MAX_BANK_VALUES floats in all).
    monkeypatch.setattr(core, "MAX_BANK_VALUES", 16 * 20)
    assert core._fit_knn(features, labels, 3, 0)[0]["num_bank"] == 20
    # Two images: the nearest other one is the only neighbour.
    tiny, _ = core._fit_knn(features[:2], labels[:2], 3, 0)
    assert tiny["k"] == 1 and tiny["num_bank"] == 2


def test_relative_mahalanobis_score_matches_numpy_and_old_models_keep_theirs(rng, trusted,
                                                                               data):
    from medivision_tf.trust import fit_background, fit_mahalanobis, ood_scores
    from medivision_tf.trust.apply import encode_array

    val = data[1]
    twin = keras.models.clone_model(trusted)
    twin.set_weights(trusted.get_weights())
    relative_fit = fit_trust(twin, val.images, val.labels, ood_method="relative_mahalanobis")
    assert get_trust(relative_fit)["ood"]["method"] == "relative_mahalanobis"
    flagged = predict_with_trust(relative_fit, val.images)["out_of_distribution"].mean()
    assert flagged <= 0.1  # out-of-fold threshold at 95%
    with pytest.raises(ValueError, match="Unknown `ood_method` 'energy'.*knn.*mahalanobis"):
        fit_trust(trusted, val.images, val.labels, ood_method="energy")
    features = rng.normal(size=(200, 6)) * np.array([5.0, 1, 1, 1, 1, 0.2])
    labels = np.arange(200) % 3
    features[:, 1] += 3.0 * labels  # the classes differ along one direction only
    w, centers = fit_mahalanobis(features, labels, 3)
    # A class absent from the fit has no center (not the overall mean, which
    # would sit between the classes and call an in-between image familiar).
    assert fit_mahalanobis(features[labels < 2], labels[labels < 2], 3)[1].shape == (2, 6)
    w0, center0 = fit_background(features)
    new = rng.normal(size=(7, 6))
    nearest = (((new @ w)[:, None, :] - centers[None]) ** 2).sum(-1).min(1)
    expected = nearest - ((new @ w0 - center0) ** 2).sum(-1)
    relative = {"method": "relative_mahalanobis", "whitening": encode_array(w),
                "centers": encode_array(centers), "background_whitening": encode_array(w0),
                "background_center": encode_array(center0)}
    np.testing.assert_allclose(ood_scores(new, relative), expected, rtol=1e-4, atol=1e-3)
    # Models fitted before keep the plain (square-root) Mahalanobis distance.
    plain = {"method": "mahalanobis", "whitening": encode_array(w),
             "centers": encode_array(centers)}
    np.testing.assert_allclose(ood_scores(new, plain), np.sqrt(nearest), rtol=1e-4)
    with pytest.raises(ValueError, match="Unknown OOD method 'energy'.*relative_mahalanobis"):
        ood_scores(new, {"method": "energy"})
    with pytest.raises(ValueError, match=r"features.*\(1, 6\)"):
        fit_background(features[:1])
    # A model fitted before the kNN default names the head's `pool` layer:
    # it is scored on that layer's features, as it was fitted.
    from medivision_tf.trust import feature_model, store_trust

    pool = np.asarray(feature_model(twin, "pool")(val.images)[0])
    w, centers = fit_mahalanobis(pool, val.labels, 3)
    legacy = {**get_trust(relative_fit), "ood": {
        "method": "mahalanobis", "whitening": encode_array(w), "centers": encode_array(centers),
        "layer": "pool", "accept_rate": 0.95, "threshold": 1.0}}
    store_trust(twin, legacy)
    np.testing.assert_allclose(predict_with_trust(twin, val.images[:5])["ood_score"],
                               ood_scores(pool[:5], legacy["ood"]), rtol=1e-4)


def test_fit_trust_refuses_bad_input(data):
    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(SIZE, SIZE, 1), lstm_units=8,
        attention_units=4, multi_label=True)
    with pytest.raises(ValueError, match="multi-label"):
        fit_trust(model, data[1].images[:4], np.zeros((4, 2)))
    plain = medivision_tf.build_medivision(
        3, backbone="smallcnn", weights=None, input_shape=(SIZE, SIZE, 1), lstm_units=8,
        attention_units=4)
    with pytest.raises(ValueError, match="alpha=0"):
        fit_trust(plain, data[1].images[:4], [0, 1, 2, 0], alpha=0)
    with pytest.raises(ValueError, match="no trust values"):
        predict_with_trust(plain, data[1].images[:2])


def test_evaluate_reports_coverage_and_both_eces(trusted, data, tmp_path):
    from medivision_tf.evaluation import evaluate_model

    test = data[2]
    report = evaluate_model(trusted, test.images, test.labels, out_dir=tmp_path / "ev",
                            verbose=False)
    summary = json.loads((tmp_path / "ev" / "metrics.json").read_text())["summary"]
    for key in ("coverage", "mean_set_size", "ece_before_calibration", "ece_after_calibration"):
        assert key in summary
    out = predict_with_trust(trusted, test.images)
    assert summary["coverage"] == pytest.approx(
        out["prediction_set"][np.arange(len(test.labels)), test.labels].mean())
    assert summary["mean_set_size"] == pytest.approx(out["prediction_set"].sum(1).mean())
    assert summary["empty_set_rate"] == pytest.approx((out["prediction_set"].sum(1) == 0).mean())
    assert summary["conformal_method"] == "lac"
    assert report.summary["ece"] == summary["ece_before_calibration"]
    assert os.path.getsize(tmp_path / "ev" / "reliability_diagram.png") > 0


def test_predict_files_and_cli_columns(trusted, data, tmp_path):
    from PIL import Image

    from medivision_tf.prediction import predict_files

    paths = []
    for i, image in enumerate(data[2].images[:3]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image[..., 0].astype("uint8")).save(paths[-1])
    table = predict_files(trusted, paths, top_k=2)
    for column in ("prediction_set", "ood_score", "out_of_distribution"):
        assert column in table
    out = predict_with_trust(trusted, data[2].images[:3])
    np.testing.assert_allclose(table["ood_score"], out["ood_score"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table["probability"], out["probabilities"].max(1), atol=1e-5)


def test_explain_gives_the_answer_predict_gives(trusted, data, tmp_path, capsys):
    """One model, one image: one calibrated probability, set and OOD flag in
    `medivision predict` and `medivision explain` (and its grid captions)."""
    from PIL import Image

    from medivision_tf.cli import main
    from medivision_tf.explain import explain_images
    from medivision_tf.prediction import predict_files

    paths = []
    images = list(data[2].images[:3]) + [np.full((50, 40, 1), 255.0, "float32")]  # + an odd one
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image[..., 0].astype("uint8")).save(paths[-1])
    table = predict_files(trusted, paths)
    model_path = str(tmp_path / "trusted.keras")
    trusted.save(model_path)
    rows = explain_images(trusted, [np.asarray(Image.open(p))[..., None].astype("float32")
                                    for p in paths], tmp_path / "maps")
    for row, expected in zip(rows, table.to_dict("records")):
        assert row["prediction"] == expected["class"]
        assert row["probability"] == pytest.approx(expected["probability"], abs=1e-5)
        assert row["prediction_set"] == expected["prediction_set"]
        assert row["ood_score"] == pytest.approx(expected["ood_score"], rel=1e-5, abs=1e-5)
        assert row["out_of_distribution"] == expected["out_of_distribution"]
    assert main(["predict", model_path, *paths, "--quiet"]) == 0
    predicted = capsys.readouterr().out.strip().splitlines()
    assert main(["explain", model_path, *paths, "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    explained = [line for line in capsys.readouterr().out.splitlines()
                 if line.startswith(str(tmp_path))]
    for p_line, e_line in zip(predicted, explained):
        p_fields, e_fields = p_line.split("\t"), e_line.split("\t")
        assert e_fields[1] == p_fields[1]                          # class
        assert float(e_fields[2].removeprefix("p=")) == pytest.approx(float(p_fields[2]),
                                                                       abs=1e-4)
        assert e_fields[3] == p_fields[4]                          # set: {...}
        assert e_fields[4] == p_fields[5]                          # ood 0.12  [OUT-OF-...]
    # Without --quiet both say once (on stderr) what the ood number means.
    ood = get_trust(trusted)["ood"]
    for command in (["predict", model_path, paths[0]],
                    ["explain", model_path, paths[0], "--out", str(tmp_path / "cli2")]):
        assert main(command) == 0
        legend = [line for line in capsys.readouterr().err.splitlines()
                  if line.startswith("Probabilities are calibrated")]
        assert len(legend) == 1, command
        assert ood["method"] == "combined"  # the default: both layers named, and the unit
        assert ("ood is the combined score (kNN on layer 'feature_map', Mahalanobis on layer "
                "'pool', whichever is higher, in standard deviations") in legend[0]
        assert f"OUT-OF-DISTRIBUTION above {ood['threshold']:.4g}" in legend[0]
    # A single score says what its number measures.
    from medivision_tf.cli._text import trust_legend

    knn = trust_legend({**get_trust(trusted), "ood": {"method": "knn", "layer": "pool",
                                                      "threshold": 0.3}})
    assert ("ood is the knn score on layer 'pool' (cosine distance to the 5th nearest "
            "validation image, 0 to 2), OUT-OF-DISTRIBUTION above 0.3") in knn


def test_mahalanobis_fit_scores_the_nearest_class_mean_with_an_out_of_fold_threshold(
        trusted, data):
    """`ood_method="mahalanobis"`: the stored score is the distance to the nearest
    class mean; its threshold, from out-of-fold scores, flags about 5% of new
    in-distribution images (not the ~0% an in-sample threshold would)."""
    from medivision_tf.trust import feature_model, fit_mahalanobis, ood_scores

    _, val, test = data
    twin = keras.models.clone_model(trusted)
    twin.set_weights(trusted.get_weights())
    fit_trust(twin, val.images, val.labels, ood_method="mahalanobis", ood_layer="pool")
    ood = get_trust(twin)["ood"]
    # The head's pooled features: where bench_unseen.py measured this score.
    assert ood["method"] == "mahalanobis" and ood["layer"] == "pool"
    with pytest.raises(ValueError, match="Unknown `ood_layer` 'lstm'.*feature_map, pool"):
        fit_trust(twin, val.images, val.labels, ood_layer="lstm")
    features = np.asarray(feature_model(twin, ood["layer"])(test.images)[0])
    w, centers = fit_mahalanobis(np.asarray(feature_model(twin, ood["layer"])(val.images)[0]),
                                 val.labels, 3)
    nearest = np.sqrt((((features @ w)[:, None, :] - centers[None]) ** 2).sum(-1).min(1))
    out = predict_with_trust(twin, test.images)
    np.testing.assert_allclose(out["ood_score"], nearest, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(out["ood_score"], ood_scores(features, ood), rtol=1e-4)
    in_sample = np.quantile(ood_scores(
        np.asarray(feature_model(twin, ood["layer"])(val.images)[0]), ood), 0.95)
    assert ood["threshold"] > in_sample  # held-out distances are larger
    assert out["out_of_distribution"].mean() <= 0.15


def test_combined_score_is_the_larger_standardized_component(trusted, data):
    """`ood_method="combined"`: kNN on the feature map and Mahalanobis on
    `pool`, each standardized by its held-out validation scores; the score is
    the larger of the two, and its threshold flags about 5% of new
    in-distribution images."""
    from medivision_tf.trust import feature_model, knn_scores
    from medivision_tf.trust.apply import decode_array, mahalanobis_scores

    _, val, test = data
    twin = keras.models.clone_model(trusted)
    twin.set_weights(trusted.get_weights())
    fit_trust(twin, val.images, val.labels, ood_method="combined")
    ood = get_trust(twin)["ood"]
    assert ood["layer"] == "feature_map+pool"
    knn, gaussian = ood["components"]
    assert (knn["method"], gaussian["method"]) == ("knn", "mahalanobis")
    # Each component reads its own layer: the feature map (averaged), then pool.
    feature_map = np.asarray(feature_model(twin, "feature_map")(test.images)[0])
    pooled = np.asarray(feature_model(twin, "pool")(test.images)[0])
    assert knn["columns"] == [0, feature_map.shape[1]]
    assert gaussian["columns"] == [feature_map.shape[1], feature_map.shape[1] + pooled.shape[1]]
    by_hand = np.maximum(
        (np.asarray(knn_scores(feature_map, decode_array(knn["bank"]), knn["k"]))
         - knn["center"]) / knn["scale"],
        (np.asarray(mahalanobis_scores(pooled, decode_array(gaussian["whitening"]),
                                       decode_array(gaussian["centers"])))
         - gaussian["center"]) / gaussian["scale"])
    out = predict_with_trust(twin, test.images)
    np.testing.assert_allclose(out["ood_score"], by_hand, rtol=1e-3, atol=1e-3)
    assert 0 < knn["scale"] and 0 < gaussian["scale"]
    assert out["out_of_distribution"].mean() <= 0.15
    np.testing.assert_array_equal(out["out_of_distribution"], out["ood_score"] > ood["threshold"])
    # The other scores can read the two layers together too.
    fit_trust(twin, val.images, val.labels, ood_method="knn", ood_layer="feature_map+pool")
    assert get_trust(twin)["ood"]["layer"] == "feature_map+pool"
    assert predict_with_trust(twin, test.images[:2])["ood_score"].shape == (2,)
    with pytest.raises(ValueError, match="'combined' reads the layers.*Received: ood_layer='pool'"):
        fit_trust(twin, val.images, val.labels, ood_method="combined", ood_layer="pool")


@pytest.mark.parametrize("ood_method", ["knn", "mahalanobis", "combined"])
def test_export_and_server_agree_with_predict_with_trust(trusted, data, tmp_path, ood_method):
    """The same PNG through predict_with_trust, the SavedModel and medivision serve."""
    import tensorflow as tf

    from medivision_tf.export import export_saved_model

    image = data[2].images[:2].astype("uint8")
    pngs = [_png(im) for im in image]
    if ood_method != "combined":  # the `trusted` fixture's, fit_trust's default
        twin = keras.models.clone_model(trusted)
        twin.set_weights(trusted.get_weights())
        trusted = fit_trust(twin, data[1].images, data[1].labels, alpha=0.2,
                            ood_method=ood_method,
                            ood_layer="pool" if ood_method == "mahalanobis" else "auto")
    # One image the flag catches: the exported graph must flag it too.
    image = np.concatenate([image, np.full_like(image[:1], 255)])
    pngs.append(_png(image[-1]))
    expected = predict_with_trust(trusted, image.astype("float32"))
    assert expected["out_of_distribution"][-1]
    assert get_trust(trusted)["ood"]["method"] == ood_method
    path = export_saved_model(trusted, tmp_path / "trusted")
    out = tf.saved_model.load(path).signatures["predict_images"](image_bytes=tf.constant(pngs))
    np.testing.assert_allclose(out["calibrated_probabilities"], expected["probabilities"], atol=1e-5)
    np.testing.assert_allclose(out["ood_score"], expected["ood_score"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["prediction_set"], expected["prediction_set"])
    np.testing.assert_array_equal(out["out_of_distribution"], expected["out_of_distribution"])

    pytest.importorskip("kserve")
    import asyncio
    import base64

    from medivision_tf.serving.server import SavedModelPredictor

    predictor = SavedModelPredictor("trusted", tmp_path / "trusted")
    predictor.load()
    body = {"signature_name": "predict_images",
            "instances": [{"b64": base64.b64encode(p).decode()} for p in pngs]}
    answer = asyncio.run(predictor.predict(body))
    rows = answer["predictions"]
    assert len(rows) == 3 and {"probabilities", "class_name", "prediction_set"} <= set(rows[0])
    np.testing.assert_allclose([r["calibrated_probabilities"] for r in rows],
                               expected["probabilities"], atol=1e-5)
    np.testing.assert_allclose([r["ood_score"] for r in rows], expected["ood_score"],
                               rtol=1e-5, atol=1e-5)
    assert [r["prediction_set"] for r in rows] == expected["prediction_set"].tolist()
    assert [r["out_of_distribution"] for r in rows] == expected["out_of_distribution"].tolist()


def _png(image):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0]).save(buffer, format="PNG")
    return buffer.getvalue()


def test_train_fits_and_saves_trust_with_validation_data(tmp_path, data):
    from medivision_tf.training import train

    train_split, val, _ = data
    config = dict(backbone="smallcnn", weights=None, image_size=SIZE, channels=1, batch_size=32,
                  epochs=1, fine_tune_epochs=0, tensorboard=False, lstm_units=8,
                  attention_units=4, steps_per_epoch=2, conformal_alpha=0.2)
    args = dict(train_data=(train_split.images, train_split.labels),
                class_names=train_split.class_names, verbose=0)
    result = train(config, val_data=(val.images, val.labels), run_dir=tmp_path / "t", **args)
    trust = get_trust(medivision_tf.load_model(result.model_path, compile=False))
    assert trust is not None and trust["conformal"]["alpha"] == 0.2
    assert trust["conformal"]["num_calibration"] == len(val.images)
    assert trust["conformal"]["method"] == "lac"
    assert (trust["ood"]["method"], trust["ood"]["layer"]) == ("combined", "feature_map+pool")
    # Both choices in one run: the conformal score and the OOD score.
    aps = train({**config, "conformal_method": "aps", "ood_method": "mahalanobis",
                 "ood_layer": "pool"},
                val_data=(val.images, val.labels), run_dir=tmp_path / "aps", **args)
    assert get_trust(aps.model)["conformal"]["method"] == "aps"
    saved = get_trust(medivision_tf.load_model(aps.model_path, compile=False))
    assert saved["ood"]["method"] == "mahalanobis" and saved["ood"]["layer"] == "pool"
    assert saved["conformal"]["method"] == "aps"
    off = train({**config, "trust": False}, val_data=(val.images, val.labels),
                run_dir=tmp_path / "off", **args)
    assert get_trust(off.model) is None
    with pytest.raises(ValueError, match="conformal_alpha=1.5"):
        train({**config, "conformal_alpha": 1.5}, run_dir=tmp_path / "bad", **args)
    with pytest.raises(ValueError, match="ood_method.*'energy'"):
        train({**config, "ood_method": "energy"}, run_dir=tmp_path / "bad", **args)
    # Refused before any training: combined reads its own two layers.
    with pytest.raises(ValueError, match="'combined' reads 'feature_map\\+pool'.*'pool'"):
        train({**config, "ood_method": "combined", "ood_layer": "pool"},
              run_dir=tmp_path / "bad", **args)


def test_config_choices_and_default_follow_the_trust_module():
    """`TrainConfig` (which imports no TensorFlow, for a fast command line)
    lists the conformal methods itself: they must be the trust module's."""
    from medivision_tf.training import TrainConfig
    from medivision_tf.training.config import CHOICES
    from medivision_tf.trust import apply

    assert CHOICES["conformal_method"] == apply.CONFORMAL_METHODS
    from medivision_tf.trust.core import OOD_FITS, OOD_LAYERS

    assert CHOICES["ood_method"] == ("auto",) + tuple(OOD_FITS)
    assert CHOICES["ood_layer"] == OOD_LAYERS and TrainConfig().ood_layer == OOD_LAYERS[0]
    assert set(OOD_FITS) <= set(apply.OOD_METHODS)
    # The same default in TrainConfig and fit_trust, resolved by the same rule.
    defaults = inspect.signature(fit_trust).parameters
    assert TrainConfig().ood_method == defaults["ood_method"].default == "auto"
    assert TrainConfig().ood_layer == defaults["ood_layer"].default == "auto"
    assert TrainConfig().resolved().ood_method == "combined"
    assert TrainConfig(ood_layer="pool").resolved().ood_method == "knn"
    assert TrainConfig(ood_layer="feature_map+pool").resolved().ood_method == "combined"
    from medivision_tf.trust.core import resolve_ood_layer

    for method in OOD_FITS:
        resolved = resolve_ood_layer(method, "auto")
        assert resolved == ("feature_map+pool" if method == "combined" else "feature_map")
    assert TrainConfig().conformal_method == apply.DEFAULT_CONFORMAL_METHOD
