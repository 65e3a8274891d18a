"""export_saved_model: TF Serving layout, signatures, parity with Keras, CLI."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import medivision_tf
from medivision_tf.export import (
    existing_versions,
    export_for_serving,
    export_saved_model,
    latest_version_path,
    read_export_metadata,
)

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def export_path(trained_model, tmp_path_factory):
    return export_saved_model(trained_model, tmp_path_factory.mktemp("exp") / "lesions")


@pytest.fixture(scope="module")
def loaded(export_path):
    return tf.saved_model.load(export_path)


@pytest.fixture(scope="module")
def test_images(lesion_data):
    return lesion_data["test"].images[:6].astype("float32")


def test_writes_tf_serving_layout(export_path, trained_model):
    base = os.path.dirname(export_path)
    assert os.path.basename(export_path) == "1"
    assert sorted(os.listdir(export_path)) == sorted(
        ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"]
    )
    assert [e for e in os.listdir(base) if e.startswith(".")] == []  # no staging left
    assert existing_versions(base) == [1]
    assert latest_version_path(base) == export_path
    metadata = read_export_metadata(base)
    assert metadata["class_names"] == medivision_tf.get_class_names(trained_model)
    assert metadata["input_shape"] == [64, 64, 1]
    assert metadata["signatures"] == ["serving_default", "predict_images", "explain"]
    with open(os.path.join(export_path, "assets.extra", "labels.txt")) as f:
        assert f.read().split() == metadata["class_names"]
    config = medivision_tf.get_model_config(trained_model)
    assert metadata["model_config"] == config.to_dict()
    assert type(config).from_dict(metadata["model_config"]) == config
    assert metadata["warmup_file"] == "assets.extra/tf_serving_warmup_requests"


def test_writes_tf_serving_warmup_requests(export_path, loaded):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    path = os.path.join(export_path, "assets.extra", "tf_serving_warmup_requests")
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(path)
    ]
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 3
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request for log in logs}
    assert set(requests) == {"serving_default", "predict_images", "explain"}
    for name, request in requests.items():
        assert request.model_spec.name == "lesions"
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        # Each record is a valid call of its signature.
        outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert outputs["probabilities"].shape == (1, 3)
    image = tf.make_ndarray(requests["serving_default"].inputs["image"])
    assert image.shape == (1, 64, 64, 1) and image.dtype == np.float32 and not image.any()
    (png,) = tf.make_ndarray(requests["predict_images"].inputs["image_bytes"])
    assert png.startswith(b"\x89PNG")


def test_versions_next_explicit_and_existing(trained_model, tmp_path):
    base = tmp_path / "lesions"
    os.makedirs(base / "1")
    os.makedirs(base / "3")  # digit folders are never written into
    assert export_saved_model(trained_model, base) == os.path.join(base, "4")
    assert existing_versions(base) == [4]  # only folders holding a SavedModel
    assert export_saved_model(trained_model, base, version=2) == os.path.join(base, "2")
    with pytest.raises(FileExistsError, match="Version 2 already exists"):
        export_saved_model(trained_model, base, version=2)
    assert latest_version_path(base) == os.path.join(base, "4")


@pytest.mark.parametrize("version", [0, -3, "v1", 1.5, True])
def test_rejects_bad_versions(trained_model, tmp_path, version):
    with pytest.raises(ValueError, match=re.escape(f"version={version!r}")):
        export_saved_model(trained_model, tmp_path / "m", version=version)


def test_rejects_models_without_medivision_layers(tmp_path):
    plain = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"lacks the layers \['class_labels', 'feature_map'\]"):
        export_saved_model(plain, tmp_path / "m")
    with pytest.raises(TypeError, match="Received: str"):
        export_saved_model("model.keras", tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="No SavedModel version"):
        latest_version_path(tmp_path)


def test_saved_model_cli_shows_the_signatures(export_path):
    result = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--dir", export_path, "--all"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    blocks = {
        m.group(1): m.group(2)
        for m in re.finditer(
            r"signature_def\['(\w+)'\]:\n(.*?)Method name is: (?:\S*)", result.stdout, re.S
        )
    }
    assert {"serving_default", "predict_images", "explain"} <= set(blocks)

    def tensor(block, kind, name):
        m = re.search(
            rf"{kind}\['{name}'\] tensor_info:\n\s+dtype: (\w+)\n\s+shape: (\([^)]*\))", block
        )
        assert m, f"{kind}['{name}'] missing in:\n{block}"
        return m.group(1), m.group(2)

    serving = blocks["serving_default"]
    assert tensor(serving, "inputs", "image") == ("DT_FLOAT", "(-1, 64, 64, 1)")
    assert tensor(serving, "outputs", "probabilities") == ("DT_FLOAT", "(-1, 3)")
    images = blocks["predict_images"]
    assert tensor(images, "inputs", "image_bytes") == ("DT_STRING", "(-1)")
    assert tensor(images, "outputs", "class_index") == ("DT_INT64", "(-1)")
    assert tensor(images, "outputs", "class_name") == ("DT_STRING", "(-1)")
    assert tensor(images, "outputs", "probabilities") == ("DT_FLOAT", "(-1, 3)")
    explain = blocks["explain"]
    assert tensor(explain, "inputs", "image") == ("DT_FLOAT", "(-1, 64, 64, 1)")
    assert tensor(explain, "outputs", "heatmap") == ("DT_FLOAT", "(-1, 64, 64)")
    assert result.stdout.count("Method name is: tensorflow/serving/predict") >= 3


def test_serving_default_matches_keras(loaded, trained_model, test_images):
    expected = trained_model.predict(test_images, verbose=0)
    for batch in (test_images[:1], test_images):  # any batch size
        out = loaded.signatures["serving_default"](image=tf.constant(batch))
        np.testing.assert_allclose(out["probabilities"].numpy(), expected[: len(batch)], atol=1e-5)
    # The predictions are not all one class (a constant model would pass trivially).
    assert len(set(expected.argmax(axis=1))) > 1


def test_predict_images_decodes_and_resizes_in_graph(loaded, trained_model, test_images):
    names = medivision_tf.get_class_names(trained_model)
    png = [tf.io.encode_png(image.astype("uint8")).numpy() for image in test_images]
    out = loaded.signatures["predict_images"](image_bytes=tf.constant(png))
    expected = trained_model.predict(test_images, verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(out["class_index"].numpy(), expected.argmax(axis=1))
    assert [n.decode() for n in out["class_name"].numpy()] == [
        names[i] for i in expected.argmax(axis=1)
    ]

    # Another size, RGB, JPEG: converted to 64x64 gray inside the graph,
    # letterboxed (aspect kept) like the training pipeline's default.
    big = tf.image.resize(test_images[:2], (96, 80)).numpy().round()
    rgb = [tf.io.encode_png(np.repeat(i, 3, -1).astype("uint8")).numpy() for i in big]
    out = loaded.signatures["predict_images"](image_bytes=tf.constant(rgb))
    reference = trained_model.predict(tf.image.resize_with_pad(big, 64, 64), verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), reference, atol=2e-2)
    jpeg = [tf.io.encode_jpeg(i.astype("uint8"), quality=95).numpy() for i in test_images[:2]]
    out = loaded.signatures["predict_images"](image_bytes=tf.constant(jpeg))
    assert out["probabilities"].shape == (2, 3)
    # Short bytes: the decoder's reason, every time (no header read past the end
    # racing it to the client).
    for _ in range(10):
        for data in (b"not an image", b"hello"):
            with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
                loaded.signatures["predict_images"](image_bytes=tf.constant([data]))


def test_predict_images_sees_what_the_training_pipeline_sees(loaded, trained_model, test_images, tmp_path):
    import cv2

    from medivision_tf.data import load_images

    gray = test_images[:, :, :, 0].astype("uint8")
    big_rgb = np.repeat(cv2.resize(gray[1], (80, 96))[..., None], 3, -1)
    big_rgb[..., 0] = np.clip(big_rgb[..., 0].astype(int) + 40, 0, 255)  # not gray
    files = {
        "a.png": gray[0],
        "b.png": big_rgb[..., ::-1],           # RGB, another size: letterboxed
        "c.jpg": gray[2],
        "d.bmp": gray[3][:40],                 # non-square
        "e.png": gray[4].astype("uint16") * 257,  # 16-bit
        "f.png": np.dstack([gray[5], gray[5], gray[5], np.full_like(gray[5], 200)]),  # alpha
    }
    paths = []
    for name, image in files.items():
        paths.append(str(tmp_path / name))
        cv2.imwrite(paths[-1], image)
    encoded = [open(path, "rb").read() for path in paths]
    out = loaded.signatures["predict_images"](image_bytes=tf.constant(encoded))
    # The pipeline's decoding (data.load_images: load_image + finish_image).
    expected = trained_model.predict(load_images(paths, 64, channels=1), verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)


def test_explain_gives_batched_gradcam(loaded, trained_model, test_images):
    from medivision_tf.explain import gradcam_heatmaps

    out = loaded.signatures["explain"](image=tf.constant(test_images))
    probabilities = trained_model.predict(test_images, verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), probabilities, atol=1e-5)
    np.testing.assert_array_equal(out["class_index"].numpy(), probabilities.argmax(axis=1))
    heatmap = out["heatmap"].numpy()
    assert heatmap.shape == (6, 64, 64)
    assert heatmap.min() >= 0 and heatmap.max() <= 1 and heatmap.max() > 0.5
    eager = gradcam_heatmaps(trained_model, test_images, class_index=probabilities.argmax(axis=1))
    np.testing.assert_allclose(heatmap, eager.numpy(), atol=1e-4)
    # The explain signature without a class: each image's top class, as here.
    np.testing.assert_allclose(
        heatmap, gradcam_heatmaps(trained_model, test_images).numpy(), atol=1e-4
    )


def _count_ops(signature, op):
    graph = signature.graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return sum(node.op == op for node in nodes)


def test_explain_runs_the_model_once(loaded):
    # The probabilities come from Grad-CAM's own forward pass: the explain
    # graph holds the backbone's convolutions once, as serving_default does
    # (the gradient stops at the feature map, so no backward convolutions).
    forward = _count_ops(loaded.signatures["serving_default"], "Conv2D")
    assert forward > 0
    assert _count_ops(loaded.signatures["explain"], "Conv2D") == forward


def test_export_is_usable_without_keras(export_path, trained_model, test_images, tmp_path):
    np.save(tmp_path / "x.npy", test_images[:2])
    script = f"""
import json, sys
sys.modules["keras"] = None          # importing Keras would fail
import numpy as np, tensorflow as tf
with open({os.path.join(export_path, "assets.extra", "medivision.json")!r}) as f:
    meta = json.load(f)
loaded = tf.saved_model.load({export_path!r})
out = loaded.signatures["serving_default"](image=tf.constant(np.load({str(tmp_path / "x.npy")!r})))
print(json.dumps({{
    "json_names": meta["class_names"],
    "variable_names": [n.decode() for n in loaded.class_names[0].numpy()],
    "input_shape": loaded.input_shape[0].numpy().tolist(),
    "probabilities": out["probabilities"].numpy().tolist(),
}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    names = medivision_tf.get_class_names(trained_model)
    assert report["json_names"] == names == report["variable_names"]
    assert report["input_shape"] == [64, 64, 1]
    np.testing.assert_allclose(
        report["probabilities"], trained_model.predict(test_images[:2], verbose=0), atol=1e-5
    )


def test_export_for_serving_returns_path_and_command(trained_model, tmp_path):
    result = export_for_serving(trained_model, "lesions", export_root=tmp_path)
    assert result.path == os.path.join(tmp_path, "lesions", "1") and result.version == 1
    assert result.serve_command == f"medivision serve {tmp_path / 'lesions'} --port 8501"
    with pytest.raises(ValueError, match="Received: name='my model'"):
        export_for_serving(trained_model, "my model", export_root=tmp_path)


def test_cli_export(trained_model, tmp_path, capsys):
    from medivision_tf.cli import main

    model_path = tmp_path / "model.keras"
    trained_model.save(model_path)
    capsys.readouterr()
    code = main(["export", str(model_path), str(tmp_path / "out" / "lesions"), "--version", "3"])
    assert code == 0, capsys.readouterr().err[-2000:]
    assert os.path.isfile(tmp_path / "out" / "lesions" / "3" / "saved_model.pb")
    assert f"Serve it: medivision serve {tmp_path / 'out' / 'lesions'}" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "nope.keras"), "x"]) == 2
    assert "nope.keras" in capsys.readouterr().err


# float16 weights keep ~3 significant digits: an image near a decision
# boundary moves by about 1% of probability (0.012 seen on AMD EPYC).
@pytest.mark.parametrize("quantization, atol", [("float16", 2e-2), ("dynamic", 3e-2)])
def test_tflite_matches_keras(trained_model, test_images, tmp_path, quantization, atol):
    from medivision_tf.export import export_tflite

    path = export_tflite(trained_model, tmp_path / "lesions.tflite", quantization=quantization)
    float32_size = 4 * trained_model.count_params()
    assert os.path.getsize(path) < 0.6 * float32_size  # the weights really are smaller
    with open(tmp_path / "lesions.labels.txt") as f:
        assert f.read().split() == medivision_tf.get_class_names(trained_model)
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for image in test_images:
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0])
    expected = trained_model.predict(test_images, verbose=0)
    np.testing.assert_allclose(outputs, expected, atol=atol)
    np.testing.assert_array_equal(np.argmax(outputs, axis=1), expected.argmax(axis=1))


def test_tflite_rejects_unknown_quantization(trained_model, tmp_path):
    from medivision_tf.export import export_tflite

    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        export_tflite(trained_model, tmp_path / "m.tflite", quantization="int4")
