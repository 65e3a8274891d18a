"""build_medivision(): architecture, arguments, weights, freezing, save/load."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

import medivision_tf
from medivision_tf import backbones
from medivision_tf.layers import BackbonePreprocessing, SequenceAttention


def _images(n=2, size=64, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype(
        "float32"
    )


@pytest.mark.parametrize(
    "backbone, channels",
    [
        ("smallcnn", 1),
        ("efficientnetb0", 3),
        ("resnet50", 1),
        ("densenet121", 3),
        ("mobilenetv3small", 3),
        ("convnexttiny", 3),
    ],
)
def test_builds_hybrid_architecture(backbone, channels):
    model = medivision_tf.build_medivision(
        4, backbone=backbone, input_shape=(64, 64, channels), weights=None
    )
    probs = model.predict(_images(channels=channels), verbose=0)
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    lstm = model.get_layer("lstm")
    attention = model.get_layer("attention")
    skip = model.get_layer("attention_skip")
    assert isinstance(lstm, keras.layers.LSTM) and lstm.return_sequences
    assert isinstance(attention, SequenceAttention)
    assert isinstance(skip, keras.layers.Add)
    merged = {id(t) for t in skip.input}
    assert id(attention.output[0]) in merged and id(lstm.output) in merged
    # The backbone is flat: its last feature map is a layer of the model.
    feature_map = model.get_layer("feature_map")
    assert len(feature_map.output.shape) == 4
    last_backbone_layer = medivision_tf.backbone_layers(model)[-1]
    assert model.get_layer(last_backbone_layer.name).output is feature_map.input


def test_spatial_and_rows_sequences():
    spatial = medivision_tf.build_medivision(
        2, backbone="smallcnn", input_shape=(64, 64, 1), weights=None
    )
    rows = medivision_tf.build_medivision(
        2, backbone="smallcnn", input_shape=(64, 64, 1), weights=None, sequence="rows"
    )
    # smallcnn: 64x64 -> 8x8x128 feature map.
    assert spatial.get_layer("to_sequence").output.shape[1:] == (64, 128)
    assert rows.get_layer("to_sequence").output.shape[1:] == (8, 8 * 128)
    assert isinstance(rows.get_layer("to_sequence"), keras.layers.TimeDistributed)
    assert medivision_tf.sequence_grid(spatial) == (8, 8)
    assert medivision_tf.sequence_grid(rows) == (8, 1)


def test_attention_weights_sum_to_one():
    model = medivision_tf.build_medivision(
        3, backbone="smallcnn", input_shape=(48, 48, 3), weights=None
    )
    weights = medivision_tf.attention_weights(model, _images(5, 48))
    rows, cols = medivision_tf.sequence_grid(model)
    assert weights.shape == (5, rows * cols)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)


def test_attention_layer_serializes_and_reweights():
    layer = SequenceAttention(units=8)
    sequence = np.random.default_rng(1).normal(size=(2, 5, 4)).astype("float32")
    weighted, weights = layer(sequence)
    clone = SequenceAttention.from_config(layer.get_config())
    assert clone.units == 8
    # Averaging the re-weighted sequence gives the attention context vector.
    context = np.einsum("bt,btd->bd", np.asarray(weights), sequence)
    np.testing.assert_allclose(np.asarray(weighted).mean(axis=1), context, rtol=1e-4, atol=1e-6)


def test_multi_label_uses_independent_sigmoids():
    model = medivision_tf.build_medivision(
        1, backbone="smallcnn", input_shape=(32, 32, 3), weights=None, multi_label=True
    )
    assert model.get_layer("predictions").activation is keras.activations.sigmoid
    assert medivision_tf.is_multi_label(model)
    probs = model.predict(_images(3, 32), verbose=0)
    assert probs.shape == (3, 1) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 0, "multi_label": True}, "num_classes"),
        ({"input_shape": (64, 64, 2)}, "2 channels"),
        ({"input_shape": (64, 64, 4)}, "4 channels"),
        ({"input_shape": (64, 64)}, "input_shape"),
        ({"input_shape": (20, 64, 3)}, "at least 28x28"),
        ({"sequence": "columns"}, "Unknown sequence mode 'columns'"),
        ({"backbone": "resnet5"}, "Unknown backbone 'resnet5'. Choose one of: "),
        ({"dropout": 1.5}, "dropout=1.5"),
        ({"lstm_units": 0}, "lstm_units=0"),
        ({"attention_units": -2}, "attention_units=-2"),
        ({"projection_units": 0}, "projection_units=0"),
        ({"projection_units": 2.5}, "projection_units=2.5"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"weights": 3}, "weights=3"),
        ({"weights": "imagenet"}, "has no ImageNet weights"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    arguments = {
        "num_classes": 3,
        "backbone": "smallcnn",
        "input_shape": (64, 64, 3),
        "weights": None,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        medivision_tf.build_medivision(arguments.pop("num_classes"), **arguments)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError) as error:
        medivision_tf.build_medivision(2, backbone="resnet5", weights=None)
    for name in ("efficientnetb0", "resnet50", "densenet121", "smallcnn", "xception"):
        assert name in str(error.value)


def test_input_smaller_than_backbone_is_refused_and_the_minimum_is_accepted():
    with pytest.raises(ValueError, match=r"'xception' needs inputs of at least 71x71"):
        medivision_tf.build_medivision(
            2, backbone="xception", input_shape=(64, 64, 3), weights=None
        )
    with pytest.raises(ValueError, match=r"'smallcnn' needs inputs of at least 28x28"):
        medivision_tf.build_medivision(
            2, backbone="smallcnn", input_shape=(27, 40, 1), weights=None
        )
    smallest = medivision_tf.build_medivision(
        2, backbone="smallcnn", input_shape=(28, 28, 1), weights=None
    )
    assert smallest.input_shape == (None, 28, 28, 1)
    assert smallest.predict(np.zeros((1, 28, 28, 1)), verbose=0).shape == (1, 2)


def test_missing_weights_file():
    with pytest.raises(FileNotFoundError, match="no/such/file.h5"):
        medivision_tf.build_medivision(
            2, backbone="mobilenetv2", input_shape=(64, 64, 3), weights="no/such/file.h5"
        )


def test_registry_covers_required_families():
    names = set(medivision_tf.available_backbones())
    required = (
        [f"efficientnetb{i}" for i in range(8)]
        + ["efficientnetv2b0", "efficientnetv2s", "resnet50", "resnet101", "resnet152"]
        + ["resnet50v2", "resnet101v2", "resnet152v2", "densenet121", "densenet169"]
        + ["densenet201", "mobilenetv2", "mobilenetv3small", "mobilenetv3large"]
        + ["vgg16", "vgg19", "inceptionv3", "xception", "convnexttiny", "smallcnn"]
    )
    assert set(required) <= names
    for name in names:
        spec = backbones.get_backbone(name)
        assert callable(backbones.constructor(spec))


@pytest.mark.parametrize("name", sorted(set(s.preprocessing for s in backbones.BACKBONES.values()) - {"unit"}))
def test_preprocessing_layer_matches_keras_preprocess_input(name):
    pixels = _images(2, 8)
    expected = getattr(keras.applications, name).preprocess_input(pixels.copy())
    actual = BackbonePreprocessing(name)(tf.constant(pixels))
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=1e-4)


def test_imagenet_download_failure_says_how_to_pass_a_local_file(monkeypatch, tmp_path):
    calls = []

    def offline(*args, **kwargs):
        calls.append(args[0] if args else kwargs)
        raise urllib.error.URLError("network is unreachable (faked)")

    # Only the network call is faked: Keras' real download path runs.
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ConnectionError) as error:
        medivision_tf.build_medivision(
            2, backbone="mobilenetv2", input_shape=(96, 96, 3), weights="imagenet"
        )
    assert calls, "the download was never attempted"
    message = str(error.value)
    assert "mobilenetv2" in message and "weights='/path/to/" in message
    assert "network is unreachable (faked)" in message


def test_local_weights_file_is_loaded(tmp_path):
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(64, 64, 3)
    )
    path = str(tmp_path / "mobilenetv2_notop.weights.h5")
    source.save_weights(path)
    model = medivision_tf.build_medivision(
        2, backbone="mobilenetv2", input_shape=(64, 64, 3), weights=path
    )
    loaded = [layer for layer in medivision_tf.backbone_layers(model) if layer.weights]
    reference = [layer for layer in source.layers if layer.weights]
    assert len(loaded) == len(reference)
    for ours, theirs in zip(loaded, reference):
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_freeze_and_unfreeze_backbone():
    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", input_shape=(32, 32, 3), weights=None
    )
    layers = medivision_tf.backbone_layers(model)
    assert [l.name for l in layers][0] == "smallcnn_conv1"
    assert layers[-1].name == "smallcnn_top_activation"
    head_weights = len(model.get_layer("lstm").trainable_weights)

    assert medivision_tf.set_backbone_trainable(model, False) == 0
    assert not any(layer.trainable_weights for layer in layers)
    assert len(model.get_layer("lstm").trainable_weights) == head_weights

    medivision_tf.set_backbone_trainable(model, 4)
    trainable = [l.name for l in layers if l.trainable]
    # The top 4 layers: pool3, conv4, norm4 (BatchNorm, kept frozen), top_activation.
    assert trainable == ["smallcnn_pool3", "smallcnn_conv4", "smallcnn_top_activation"]

    medivision_tf.set_backbone_trainable(model, True, keep_batchnorm_frozen=False)
    assert all(layer.trainable for layer in layers)
    with pytest.raises(ValueError, match="trainable=-1"):
        medivision_tf.set_backbone_trainable(model, -1)


def test_small_cnn_blocks_and_smallvgg():
    from medivision_tf.backbones import small_cnn

    def convs(model):
        return [layer.name for layer in model.layers if "_conv" in layer.name]

    one = small_cnn(input_shape=(32, 32, 1))
    assert convs(one) == [f"smallcnn_conv{i}" for i in range(1, 5)]
    assert one.output.shape == (None, 4, 4, 128)
    two = small_cnn(input_shape=(32, 32, 1), convs_per_block=2, filters=(8, 16))
    assert convs(two) == ["smallcnn_conv1", "smallcnn_conv1b", "smallcnn_conv2", "smallcnn_conv2b"]
    assert two.layers[-1].name == "smallcnn_top_activation" and two.output.shape[-1] == 16
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="convs_per_block"):
            small_cnn(input_shape=(32, 32, 1), convs_per_block=bad)
    # `smallvgg`: the registry's two-convolution network, a backbone like any other.
    assert "smallvgg" in medivision_tf.available_backbones()
    model = medivision_tf.build_medivision(2, backbone="smallvgg", input_shape=(28, 28, 1),
                                           weights=None)
    layers = medivision_tf.backbone_layers(model)
    assert [l.name for l in layers if "_conv" in l.name] == [
        f"smallvgg_conv{i}{s}" for i in range(1, 5) for s in ("", "b")]
    assert layers[-1].name == "smallvgg_top_activation"
    assert model.predict(_images(2, 28, 1), verbose=0).shape == (2, 2)


def test_frozen_backbone_does_not_change_in_training():
    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", input_shape=(32, 32, 1), weights=None
    )
    medivision_tf.set_backbone_trainable(model, False)
    before = model.get_layer("smallcnn_conv1").get_weights()[0].copy()
    head_before = model.get_layer("predictions").get_weights()[0].copy()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(_images(8, 32, 1), np.array([0, 1] * 4), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.get_layer("smallcnn_conv1").get_weights()[0], before)
    assert not np.array_equal(model.get_layer("predictions").get_weights()[0], head_before)


def test_keras_round_trip_same_process_and_fresh_process(tmp_path):
    model = medivision_tf.build_medivision(
        3,
        backbone="smallcnn",
        input_shape=(48, 48, 1),
        weights=None,
        class_names=["normal", "benign", "malignant"],
        sequence="rows",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images = _images(4, 48, 1)
    expected = model.predict(images, verbose=0)
    path = str(tmp_path / "medivision.keras")
    model.save(path)

    loaded = medivision_tf.load_model(path)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    assert medivision_tf.get_class_names(loaded) == ["normal", "benign", "malignant"]

    np.save(tmp_path / "images.npy", images)
    script = (
        "import json, sys, numpy as np, keras, medivision_tf\n"
        f"model = keras.saving.load_model({path!r}, safe_mode=True)\n"
        f"probs = model.predict(np.load({str(tmp_path / 'images.npy')!r}), verbose=0)\n"
        f"np.save({str(tmp_path / 'fresh.npy')!r}, probs)\n"
        "print(json.dumps(medivision_tf.get_class_names(model)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "normal",
        "benign",
        "malignant",
    ]
    np.testing.assert_array_equal(np.load(tmp_path / "fresh.npy"), expected)


def test_load_model_missing_file():
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        medivision_tf.load_model("missing.keras")


def test_gradients_reach_the_feature_map_by_name(trained_model, lesion_data):
    # What Grad-CAM needs: d(class score)/d(feature map) through the head.
    feature_map = trained_model.get_layer("feature_map")
    probe = keras.Model(trained_model.inputs, [feature_map.output, trained_model.output])
    images = tf.constant(lesion_data["test"].images[:4], tf.float32)
    with tf.GradientTape() as tape:
        maps, probs = probe(images)
        score = tf.reduce_sum(probs[:, 0])
    grads = tape.gradient(score, maps)
    assert grads is not None and float(tf.reduce_max(tf.abs(grads))) > 0


def test_short_training_learns(trained_model, lesion_data):
    test = lesion_data["test"]
    accuracy = np.mean(trained_model.predict(test.images, verbose=0).argmax(1) == test.labels)
    assert accuracy >= 0.75, f"held-out accuracy {accuracy:.2f} (chance is 0.33)"


def test_calibrate_batchnorm_matches_inference_to_training_statistics(lesion_data):
    keras.utils.set_random_seed(1)
    train = lesion_data["train"]
    model = medivision_tf.build_medivision(
        3, backbone="smallcnn", input_shape=(64, 64, 1), weights=None
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(train.images[:128], train.labels[:128], epochs=1, verbose=0)
    assert medivision_tf.calibrate_batchnorm(model, train.images, batch_size=64) == 4
    norm = model.get_layer("smallcnn_norm1")
    conv = keras.Model(model.inputs, model.get_layer("smallcnn_conv1").output)
    activations = np.asarray(conv.predict(train.images, verbose=0))
    np.testing.assert_allclose(norm.moving_mean, activations.mean(axis=(0, 1, 2)), rtol=0.05, atol=1e-3)
    assert norm.momentum == 0.9  # restored


def test_pooling_baseline_shares_the_backbone_but_not_the_head():
    baseline = medivision_tf.build_pooling_baseline(
        3, backbone="smallcnn", input_shape=(48, 48, 1), weights=None, class_names="abc"
    )
    names = {layer.name for layer in baseline.layers}
    assert {"feature_map", "smallcnn_conv4", "predictions", "class_labels"} <= names
    assert not names & {"lstm", "attention", "attention_skip"}
    probs = baseline.predict(_images(2, 48, 1), verbose=0)
    assert probs.shape == (2, 3)
    assert medivision_tf.get_class_names(baseline) == ["a", "b", "c"]


def test_numpy_integer_sizes_are_accepted():
    model = medivision_tf.build_medivision(
        np.int64(2), backbone="smallcnn", input_shape=(32, 32, 1), weights=None,
        lstm_units=np.int32(8), attention_units=np.int64(4),
    )
    assert model.get_layer("attention").units == 4
    assert model.get_layer("attention").get_config()["units"] == 4
    with pytest.raises(ValueError, match="num_classes=True"):
        medivision_tf.build_medivision(True, backbone="smallcnn", weights=None)


def test_unrolled_lstm_computes_the_same_function(tmp_path):
    options = dict(backbone="smallcnn", input_shape=(32, 32, 1), weights=None)
    rolled = medivision_tf.build_medivision(3, **options)
    unrolled = medivision_tf.build_medivision(3, lstm_unroll=True, **options)
    assert unrolled.get_layer("lstm").unroll and not rolled.get_layer("lstm").unroll
    unrolled.set_weights(rolled.get_weights())
    images = _images(3, 32, 1)
    np.testing.assert_allclose(
        unrolled.predict(images, verbose=0), rolled.predict(images, verbose=0), atol=1e-5
    )
    path = str(tmp_path / "unrolled.keras")
    unrolled.save(path)
    assert medivision_tf.load_model(path).get_layer("lstm").unroll


@pytest.mark.parametrize("backbone", ["mobilenetv2", "efficientnetb0"])
def test_projection_narrows_wide_features_before_the_lstm(backbone):
    options = dict(backbone=backbone, input_shape=(64, 64, 3), weights=None)
    projected = medivision_tf.build_medivision(3, **options)
    projection = projected.get_layer("projection")
    assert projection.input is projected.get_layer("to_sequence").output
    assert projected.get_layer("lstm").input is projection.output
    assert projection.output.shape[-1] == 128 and not projection.use_bias
    literal = medivision_tf.build_medivision(3, projection_units=None, **options)
    assert "projection" not in {layer.name for layer in literal.layers}
    assert literal.get_layer("lstm").input is literal.get_layer("to_sequence").output
    # 1280 channels: projection (1280x128) + LSTM on 128 has fewer weights
    # than the LSTM on 1280 channels alone.
    assert projected.count_params() < literal.count_params() - 400_000


def test_projection_is_skipped_when_it_would_not_narrow():
    options = dict(backbone="smallcnn", input_shape=(32, 32, 1), weights=None)
    # smallcnn: 32x32 -> 4x4x128; spatial elements have 128 features.
    spatial = medivision_tf.build_medivision(2, projection_units=128, **options)
    assert "projection" not in {layer.name for layer in spatial.layers}
    rows = medivision_tf.build_medivision(2, projection_units=128, sequence="rows", **options)
    assert rows.get_layer("projection").input.shape[-1] == 4 * 128


def test_projection_is_a_factorization_of_the_lstm_input_weights():
    options = dict(
        backbone="smallcnn", input_shape=(32, 32, 1), weights=None, sequence="rows",
        lstm_units=8, attention_units=4,
    )
    projected = medivision_tf.build_medivision(3, projection_units=16, **options)
    literal = medivision_tf.build_medivision(3, projection_units=None, **options)
    # Copy every weight; the literal LSTM's input kernel becomes P @ K.
    for layer in literal.layers:
        source = projected.get_layer(layer.name)
        if layer.name == "lstm":
            kernel, recurrent, bias = source.get_weights()
            factor = projected.get_layer("projection").get_weights()[0]
            layer.set_weights([factor @ kernel, recurrent, bias])
        elif layer.weights:
            layer.set_weights(source.get_weights())
    images = _images(4, 32, 1)
    np.testing.assert_allclose(
        literal.predict(images, verbose=0), projected.predict(images, verbose=0),
        rtol=1e-4, atol=1e-5,
    )


DATA = os.path.join(os.path.dirname(__file__), "data")


def test_a_keras_file_saved_by_release_0_1_0_still_loads():
    # Written by the 0.1.0 code (before ModelConfig was stored in the model):
    # smallcnn, 32x32x1, sequence="rows", classes a/b/c.
    model = medivision_tf.load_model(os.path.join(DATA, "release_0_1_0.keras"), compile=False)
    saved = np.load(os.path.join(DATA, "release_0_1_0_outputs.npz"))
    np.testing.assert_allclose(model.predict(saved["images"], verbose=0),
                               saved["probabilities"], rtol=1e-5, atol=1e-6)
    config = medivision_tf.get_model_config(model)
    assert config.sequence == "rows" and config.class_names == ("a", "b", "c")
    assert config.input_shape == (32, 32, 1) and config.lstm_units == 8
    assert config.projection_units == 16 and config.attention_units == 4
    assert medivision_tf.sequence_grid(model)[1] == 1


def test_model_config_travels_with_the_model(tmp_path):
    model = medivision_tf.build_medivision(
        3, backbone="smallcnn", weights=None, input_shape=(32, 32, 1), lstm_units=8,
        attention_units=4, sequence="rows", class_names=["x", "y", "z"],
    )
    config = medivision_tf.get_model_config(model)
    assert config.to_dict()["input_shape"] == [32, 32, 1]
    assert (config.backbone, config.sequence, config.class_names) == ("smallcnn", "rows",
                                                                      ("x", "y", "z"))
    model.save(tmp_path / "m.keras")
    loaded = medivision_tf.get_model_config(medivision_tf.load_model(tmp_path / "m.keras"))
    assert loaded == config
    with pytest.raises(TypeError, match="not a path.*m.keras.*load_model"):
        medivision_tf.get_model_config(str(tmp_path / "m.keras"))
    # The stored arguments rebuild the same architecture.
    rebuilt = medivision_tf.model.build_from_config(config)
    assert rebuilt.count_params() == model.count_params()
    baseline = medivision_tf.build_pooling_baseline(2, backbone="smallcnn", weights=None,
                                                    input_shape=(32, 32, 3))
    assert medivision_tf.get_model_config(baseline).head == "pooling"
    assert medivision_tf.model.build_from_config(
        medivision_tf.get_model_config(baseline)).count_params() == baseline.count_params()
    with pytest.raises(ValueError, match="Unknown model config key.*'colour'"):
        medivision_tf.ModelConfig.from_dict({"num_classes": 2, "colour": "red"})
