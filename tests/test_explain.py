"""Explanations: Grad-CAM family, native Grad-CAM, attention maps, overlays,
faithfulness metrics, the report and the `medivision explain` command."""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.scores import CategoricalScore

import medivision_tf
from medivision_tf import explain as mx

from dicom_files import write_dicom  # tests/dicom_files.py


@pytest.fixture(scope="module")
def few(lesion_data):
    """Eight held-out images with their labels and boxes."""
    test = lesion_data["test"]
    return test.images[:8], test.labels[:8], test.boxes[:8]


@pytest.mark.parametrize("method", mx.METHODS)
def test_maps_have_image_size_and_lie_in_unit_interval(trained_model, few, method):
    images = few[0][:4]
    maps = mx.explain(trained_model, images, method=method, scorecam_max_n=16)
    assert maps.shape == (4, 64, 64)
    assert maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    # Not constant: each map spans its range after the few training steps.
    assert np.all(maps.max(axis=(1, 2)) > 0.99)
    assert np.all(maps.std(axis=(1, 2)) > 0.02)


def test_native_gradcam_has_image_size_unit_range_and_is_not_constant(trained_model, few):
    maps = mx.gradcam_heatmaps(trained_model, few[0])
    assert isinstance(maps, tf.Tensor) and maps.dtype == tf.float32
    assert maps.shape == (8, 64, 64)
    maps = maps.numpy()
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert np.all(maps.std(axis=(1, 2)) > 0.02)


# The same maps computed in batches of another size, or traced instead of
# eager: on some CPUs (AMD EPYC here; not the Intel Xeons) oneDNN picks its
# float32 convolution kernels by batch size, the last bits differ, and the
# per-map min-max scaling magnifies them to ~5e-5.
BATCH_ROUNDING = 1e-4


def test_native_gradcam_agrees_with_tf_keras_vis(trained_model, few):
    images, labels, _ = few
    native = mx.gradcam_heatmaps(trained_model, images, class_index=labels).numpy()
    gradcam = Gradcam(trained_model, clone=False)
    options = dict(penultimate_layer="feature_map", seek_penultimate_conv_layer=False)
    score = CategoricalScore(list(labels))
    # tf-keras-vis' Grad-CAM at the feature map, upsampled here with
    # half-pixel centers (tf.image.resize), as the native one does.
    cams = gradcam(score, images.astype("float32"), expand_cam=False, **options)
    reference = tf.image.resize(np.asarray(cams)[..., None], (64, 64))[..., 0].numpy()
    correlations = mx.map_correlation(native, reference)
    assert correlations.min() > 0.999, correlations
    low = reference.min(axis=(1, 2), keepdims=True)
    scaled = (reference - low) / (reference.max(axis=(1, 2), keepdims=True) - low)
    np.testing.assert_allclose(native, scaled, atol=1e-4)
    # explain(method="gradcam") is the native one (one implementation).
    wrapped = mx.explain(trained_model, images, "gradcam", class_index=labels, batch_size=3)
    np.testing.assert_allclose(native, wrapped, atol=BATCH_ROUNDING)
    # tf-keras-vis' own expansion (scipy zoom, corners aligned) puts cells up
    # to half a cell off: the maps still agree, less tightly.
    expanded = gradcam(score, images.astype("float32"), **options)
    assert mx.map_correlation(native, expanded).mean() > 0.9


def test_native_gradcam_traces_in_a_tf_function_with_dynamic_batch(trained_model, few):
    images, labels, _ = few
    signature = [
        tf.TensorSpec([None, 64, 64, 1], tf.uint8),
        tf.TensorSpec([None], tf.int32),
    ]
    traced = tf.function(
        lambda x, c: mx.gradcam_heatmaps(trained_model, x, class_index=c),
        input_signature=signature,
    )
    eager = mx.gradcam_heatmaps(trained_model, images, class_index=labels).numpy()
    np.testing.assert_allclose(traced(images, labels).numpy(), eager, atol=BATCH_ROUNDING)
    np.testing.assert_allclose(
        traced(images[:3], labels[:3]).numpy(), eager[:3], atol=BATCH_ROUNDING
    )
    top = tf.function(lambda x: mx.gradcam_heatmaps(trained_model, x))
    predicted = trained_model.predict(images, verbose=0).argmax(axis=1)
    np.testing.assert_allclose(
        top(images).numpy(),
        mx.gradcam_heatmaps(trained_model, images, class_index=predicted).numpy(),
        atol=BATCH_ROUNDING,
    )


def test_chosen_class_changes_the_map(trained_model, few):
    image = few[0][:1]
    maps = [mx.gradcam_heatmaps(trained_model, image, class_index=c).numpy()[0] for c in range(3)]
    assert not np.allclose(maps[0], maps[1], atol=1e-3) or not np.allclose(
        maps[1], maps[2], atol=1e-3
    )


def test_any_spatial_layer_can_be_named(trained_model, few):
    images = few[0][:2]
    maps = mx.explain(trained_model, images, "gradcam", layer_name="smallcnn_relu3")
    native = mx.gradcam_heatmaps(trained_model, images, layer_name="smallcnn_relu3")
    assert maps.shape == native.shape == (2, 64, 64)
    assert mx.map_correlation(maps, native.numpy()).min() > 0.99
    assert "smallcnn_conv4" in mx.spatial_layer_names(trained_model)


def test_pointing_game_beats_chance_by_a_wide_margin(trained_model, lesion_data):
    test = lesion_data["test"]
    maps = mx.gradcam_heatmaps(trained_model, test.images, class_index=test.labels)
    hits = mx.pointing_game(maps.numpy(), test.boxes)
    chance = mx.box_area_share(test.boxes, (64, 64)).mean()
    assert chance < 0.1
    # The tiny fixture model (6 epochs) hits ~0.7, ten times chance (~0.07).
    assert hits.mean() >= max(0.5, 5 * chance), (hits.mean(), chance)
    energy = mx.energy_in_box(maps.numpy(), test.boxes).mean()
    assert energy > 2.5 * chance, (energy, chance)


def test_faithfulness_metrics_on_known_maps():
    maps = np.zeros((3, 10, 10), "float32")
    boxes = np.array([[2, 2, 5, 5], [2, 2, 5, 5], [0, 0, 10, 10]])
    maps[0, 3, 4] = 1.0                   # peak inside, all energy inside
    maps[1, 3, 3], maps[1, 8, 8] = 0.5, 1.0  # peak outside, a third inside
    maps[2] = 1.0                         # flat map, box is the whole image
    np.testing.assert_array_equal(mx.pointing_game(maps, boxes), [True, False, True])
    np.testing.assert_allclose(mx.energy_in_box(maps, boxes), [1.0, 1 / 3, 1.0])
    assert mx.pointing_game(maps[1:2], boxes[1:2], tolerance=4)[0]
    np.testing.assert_allclose(mx.box_area_share(boxes, (10, 10)), [0.09, 0.09, 1.0])
    assert mx.energy_in_box(np.zeros((1, 4, 4)), [[0, 0, 2, 2]])[0] == 0.0
    with pytest.raises(ValueError, match="boxes"):
        mx.pointing_game(maps, boxes[:2])


def test_attention_maps_follow_the_sequence_grid(trained_model, few):
    images = few[0][:3]
    maps = mx.attention_maps(trained_model, images)
    assert maps.shape == (3, 64, 64) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    weights = medivision_tf.attention_weights(trained_model, images)
    grid = weights.reshape(3, *medivision_tf.sequence_grid(trained_model))
    # The map's peak lies in the feature-map cell of the largest weight.
    cell = 64 // grid.shape[1]
    for m, g in zip(maps, grid):
        peak = np.unravel_index(m.argmax(), m.shape)
        assert np.unravel_index(g.argmax(), g.shape) == (peak[0] // cell, peak[1] // cell)


def test_overlays_and_grid_are_valid_pngs(trained_model, few, tmp_path):
    images, labels, boxes = few
    cams = mx.explain(trained_model, images[:3], "gradcam")
    rgb = mx.overlay(images[0], cams[0])
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    path = mx.save_png(tmp_path / "one.png", rgb)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], rgb)
    captions = mx.prediction_captions(
        trained_model.predict(images[:3], verbose=0),
        medivision_tf.get_class_names(trained_model),
        labels[:3],
    )
    grid = mx.save_explanation_grid(
        tmp_path / "grid.png",
        images[:3],
        {"gradcam": cams, "attention": mx.attention_maps(trained_model, images[:3])},
        captions=captions,
        boxes=boxes[:3],
        tile_size=96,
    )
    decoded = cv2.imread(str(grid))
    assert decoded is not None
    assert decoded.shape[1] == 3 * 96 and decoded.shape[0] > 3 * 96
    assert "p=" in captions[0] and "true:" in captions[0]


def test_explain_report_writes_grid_and_figures(trained_model, lesion_data, tmp_path):
    test = lesion_data["test"]
    report = mx.explain_report(
        trained_model, test.images[:24], test.labels[:24], test.boxes[:24], tmp_path,
        methods=("gradcam", "layercam", "attention"), num_overlays=4,
    )
    assert set(report["methods"]) == {"gradcam", "layercam", "attention"}
    for figures in report["methods"].values():
        assert 0 <= figures["pointing_game"] <= 1 and 0 <= figures["energy_in_box"] <= 1
    assert report["methods"]["gradcam"]["pointing_game"] > report["chance"]["pointing_game"]
    assert -1 <= report["attention_gradcam_correlation"] <= 1
    assert cv2.imread(report["grid_path"]) is not None
    assert json.loads(open(report["json_path"]).read())["num_images"] == 24


def test_images_of_another_size_are_resized_not_rejected(trained_model, few):
    images, labels = few[0][:2], few[1][:2]
    bigger = np.stack([cv2.resize(im, (128, 128)) for im in images])  # (2, 128, 128)
    rgb = np.repeat(bigger[..., None], 3, axis=-1)
    native = mx.gradcam_heatmaps(trained_model, rgb, class_index=labels).numpy()
    assert native.shape == (2, 128, 128)
    wrapped = mx.explain(trained_model, rgb, "gradcam++")
    assert wrapped.shape == (2, 128, 128)
    # The map of a 2x larger image is the 2x larger map of what the model saw:
    # the image resized as the data pipeline does (tf.image.resize_with_pad).
    seen = tf.image.resize_with_pad(rgb.astype("float32"), 64, 64)
    seen = tf.image.rgb_to_grayscale(seen)
    small = mx.gradcam_heatmaps(trained_model, seen, class_index=labels).numpy()
    upscaled = np.stack([cv2.resize(m, (128, 128)) for m in small])
    assert mx.map_correlation(native, upscaled).min() > 0.99
    # Non-square: letterboxed like the data pipeline, map at the input size.
    assert mx.explain(trained_model, images[:, :48], "attention").shape == (2, 48, 64)
    assert mx.gradcam_heatmaps(trained_model, images[:, :, :40]).shape == (2, 64, 40)


def test_bad_inputs_raise_value_errors_naming_the_valid_values(trained_model, few):
    images = few[0][:2]
    with pytest.raises(ValueError, match=r"'gradcam\+\+\+'.*gradcam, gradcam\+\+, scorecam"):
        mx.explain(trained_model, images, method="gradcam+++")
    with pytest.raises(ValueError, match="'nope'.*Choose one of: feature_map"):
        mx.explain(trained_model, images, layer_name="nope")
    with pytest.raises(ValueError, match="'nope'.*feature_map"):
        mx.gradcam_heatmaps(trained_model, images, layer_name="nope")
    with pytest.raises(ValueError, match="'lstm'.*no 4-D"):
        mx.gradcam_heatmaps(trained_model, images, layer_name="lstm")
    with pytest.raises(ValueError, match="Class index 3 is out of range.*3 classes"):
        mx.gradcam_heatmaps(trained_model, images, class_index=3)
    with pytest.raises(ValueError, match="Class index -1 is out of range"):
        mx.explain(trained_model, images, class_index=[0, -1])
    with pytest.raises(ValueError, match="3 entries for 2 images"):
        mx.explain(trained_model, images, class_index=[0, 1, 2])
    with pytest.raises(ValueError, match="images"):
        mx.explain(trained_model, np.zeros((2, 64, 64, 2)))
    with pytest.raises(ValueError, match="Unknown target"):
        mx.explain_report(trained_model, images, [0, 0], [[0, 0, 9, 9]] * 2, "x", target="box")


def test_explain_command_runs(trained_model, lesion_data, tmp_path, capsys):
    from medivision_tf.cli import main

    model_path = tmp_path / "model.keras"
    trained_model.save(model_path)
    test = lesion_data["test"]
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"scan{i}.png"))
        cv2.imwrite(paths[-1], test.images[i])
    paths.append(str(tmp_path / "big.jpg"))
    cv2.imwrite(paths[-1], cv2.resize(test.images[3], (100, 80)))
    paths.append(str(tmp_path / "ct.dcm"))  # read by the data layer, as predict does
    write_dicom(paths[-1], test.images[4][:48, :, 0].astype("uint16") * 10, slope=4.0, window=None)
    out = tmp_path / "out"
    command = ["explain", str(model_path), *paths,
               "--method", "gradcam++", "--out", str(out), "--batch-size", "2"]
    capsys.readouterr()
    assert main(command) == 0, capsys.readouterr().err[-3000:]
    stdout = capsys.readouterr().out
    names = medivision_tf.get_class_names(trained_model)
    lines = [l for l in stdout.splitlines() if l.startswith(str(tmp_path))]
    assert len(lines) == 5 and all(l.split("\t")[1] in names for l in lines)
    assert sorted(os.listdir(out)) == sorted(
        ["grid_000.png", "grid_001.png", "grid_002.png"]
        + [f"{s}_gradcam++.png" for s in ("scan0", "scan1", "scan2", "big", "ct")]
    )
    assert cv2.imread(str(out / "big_gradcam++.png")).shape == (80, 100, 3)
    assert cv2.imread(str(out / "ct_gradcam++.png")).shape == (48, 64, 3)

    assert main(command[:2] + [paths[0], "--class", "no_such_class", "--out", str(out)]) == 2
    assert "Unknown class 'no_such_class'" in capsys.readouterr().err


def test_read_image_decodes_like_the_data_layer(few, tmp_path):
    image = few[0][0].astype("float64")  # (64, 64, 1)
    # Spanning 0-255, so the DICOM's own min..max window shows it unchanged.
    image = np.round(255 * (image - image.min()) / np.ptp(image)).astype("uint8")
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "a16.png"), image.astype("uint16") * 257)
    cv2.imwrite(str(tmp_path / "a.tif"), image.astype("uint16") * 257)
    cv2.imwrite(str(tmp_path / "rgb.jpg"), np.repeat(image, 3, -1), [cv2.IMWRITE_JPEG_QUALITY, 100])
    write_dicom(str(tmp_path / "a.dcm"), image[..., 0].astype("uint16") * 10, slope=4.0, window=None)
    for name in ("a.png", "a16.png", "a.tif", "a.dcm"):
        read = mx.read_image(tmp_path / name, channels=1)
        assert read.shape == (64, 64, 1) and read.dtype == np.float32, name
        np.testing.assert_allclose(read, image, atol=1, err_msg=name)
    rgb = mx.read_image(str(tmp_path / "a.dcm"))  # default: RGB
    assert rgb.shape == (64, 64, 3) and np.allclose(rgb[..., 0], rgb[..., 2])
    assert mx.read_image(tmp_path / "rgb.jpg", channels=1).shape == (64, 64, 1)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        mx.read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="Could not decode image .*bad.png"):
        mx.read_image(tmp_path / "bad.png")


def test_explain_images_writes_overlays_and_grids_from_one_probe(trained_model, few, tmp_path):
    from medivision_tf.explain import _cache

    images = [few[0][0], few[0][1][:48], few[0][2]]  # mixed sizes
    rows = mx.explain_images(
        trained_model, images, tmp_path, method="gradcam", names=["a", "b", "c"], batch_size=2
    )
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert [os.path.basename(r["grid"]) for r in rows] == ["grid_000.png"] * 2 + ["grid_001.png"]
    probabilities = trained_model.predict(np.stack([images[0], images[2]]), verbose=0)
    names = medivision_tf.get_class_names(trained_model)
    for row, probs in zip([rows[0], rows[2]], probabilities):
        assert row["prediction"] == names[probs.argmax()]
        assert abs(row["probability"] - probs.max()) < 1e-5
    # Each overlay is the explain() map of that image at its own size.
    for image, row in zip(images, rows):
        written = cv2.imread(row["overlay"])[..., ::-1]
        expected = mx.overlay(image, mx.explain(trained_model, image[None], "gradcam")[0])
        assert written.shape == (*image.shape[:2], 3)
        assert np.abs(written.astype(int) - expected).max() <= 1
    # One traced probe (probabilities + attention) per model, reused for any
    # batch size and by attention_maps; all in the one per-model cache.
    probe = _cache._CACHE[trained_model][("probe",)]
    traces = probe.experimental_get_tracing_count()
    mx.attention_maps(trained_model, few[0][:5])
    mx.explain_images(trained_model, images[:1], tmp_path / "again", method="attention")
    assert _cache._CACHE[trained_model][("probe",)] is probe
    assert probe.experimental_get_tracing_count() == traces == 1
    assert {("probe",), ("gradcam", "feature_map")} <= set(_cache._CACHE[trained_model])
    with pytest.raises(ValueError, match="2 names for 3 images"):
        mx.explain_images(trained_model, images, tmp_path, names=["a", "b"])


def test_an_empty_map_is_never_shown_without_saying_so(trained_model, lesion_data, tmp_path,
                                                      monkeypatch, capsys):
    from medivision_tf.cli import main
    from medivision_tf.explain import files

    images = lesion_data["test"].images[:16]
    assert mx.map_note(trained_model, np.zeros((64, 64)), "gradcam").startswith(
        "empty map: gradcam gave every position of the 8x8 feature map the same value")
    assert mx.map_note(trained_model, np.eye(64), "gradcam") == ""
    # Every blank map of every class has its note, every other map none.
    for class_index in range(3):
        rows = mx.explain_images(trained_model, list(images), tmp_path / str(class_index),
                                 class_index=class_index)
        maps = mx.explain(trained_model, images, class_index=class_index)
        for row, heatmap in zip(rows, maps):
            assert bool(row["map_note"]) == bool(heatmap.max() < files.BLANK_MAP_MAX)
    # The command line prints the note under the image's line.
    path = tmp_path / "model.keras"
    trained_model.save(path)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), images[0].astype("uint8"))
    monkeypatch.setattr(files, "explain", lambda model, batch, **_: np.zeros(batch.shape[:3]))
    assert main(["explain", str(path), str(image), "--out", str(tmp_path / "cli"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "\n  note: empty map: gradcam gave every position of the 8x8 feature map" in out
