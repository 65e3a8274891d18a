"""Progress bars of `medivision predict|evaluate|explain|scan`, `--quiet`, help defaults.

The commands run in-process (`medivision_tf.cli.main`) on a folder of 12
PNGs with a tiny 2-class model trained a couple of steps (so it is not
constant); tqdm writes its bars to stderr, which `capsys` captures.
"""

import re

import cv2
import keras
import numpy as np
import pytest

import medivision_tf
from medivision_tf import cli
from medivision_tf.prediction import predict_probabilities

CLASSES = ("a", "b")
PER_CLASS = 6  # 12 images: above the 8 at which "auto" shows a bar


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """`root/a/*.png`, `root/b/*.png` (dark vs bright) and a trained tiny model."""
    root = tmp_path_factory.mktemp("progress")
    rng = np.random.default_rng(0)
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        (root / "data" / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            image = rng.integers(0, 100, (32, 32, 1)) + 120 * label
            image = image.astype("uint8")
            cv2.imwrite(str(root / "data" / name / f"{name}{i}.png"), image)
            images.append(image)
            labels.append(label)
    keras.utils.set_random_seed(0)
    model = medivision_tf.build_medivision(
        2, backbone="smallcnn", weights=None, input_shape=(32, 32, 1),
        lstm_units=8, attention_units=4, class_names=CLASSES,
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.stack(images), np.array(labels), batch_size=6, epochs=1, verbose=0)
    model.save(root / "model.keras")
    paths = sorted(str(p) for p in (root / "data").glob("*/*.png"))
    return root, str(root / "model.keras"), paths


def _run(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return out, err


def test_predict_bar_and_quiet(folder, capsys):
    _, model, paths = folder
    # No --top-k on a 2-class model: the default is min(3, 2) = 2.
    out, err = _run(capsys, ["predict", model, *paths])
    assert "Predicting" in err
    lines = [l for l in out.splitlines() if l.endswith(".png") or "\ttop-" in l]
    assert len(lines) == len(paths) and all("\ttop-2: " in l for l in lines)
    out, err = _run(capsys, ["predict", model, *paths, "--quiet"])
    assert "Predicting" not in err and len(out.splitlines()) == len(paths)
    _, err = _run(capsys, ["predict", model, *paths[:3]])  # few files: no bar
    assert "Predicting" not in err


def test_evaluate_bar_and_quiet(folder, capsys):
    root, model, _ = folder
    command = ["evaluate", model, str(root / "data"), "--out", str(root / "eval")]
    _, err = _run(capsys, command)
    assert "Predicting" in err
    assert (root / "eval" / "metrics.json").is_file()
    _, err = _run(capsys, command + ["--quiet"])
    assert "Predicting" not in err


def test_explain_bar_and_quiet(folder, capsys):
    root, model, paths = folder
    command = ["explain", model, *paths, "--out", str(root / "cams"), "--batch-size", "8"]
    out, err = _run(capsys, command)
    assert "Explaining (gradcam)" in err
    assert sum(l.startswith(str(root)) for l in out.splitlines()) == len(paths)
    _, err = _run(capsys, command + ["--quiet"])
    assert "Explaining" not in err


def test_scan_bar_and_quiet(folder, capsys):
    root, _, _ = folder
    out, err = _run(capsys, ["scan", str(root / "data")])
    assert "Scanning images" in err and f"{len(CLASSES) * PER_CLASS} usable" in out
    _, err = _run(capsys, ["scan", str(root / "data"), "--quiet"])
    assert "Scanning images" not in err


def test_python_api_verbose(folder, capsys):
    _, model, _ = folder
    model = medivision_tf.load_model(model, compile=False)
    images = np.zeros((12, 32, 32, 1), "float32")
    predict_probabilities(model, images[:8])  # "auto": 8 images, no bar
    assert "Predicting" not in capsys.readouterr().err
    predict_probabilities(model, images)  # "auto": 12 images, a bar
    assert "Predicting" in capsys.readouterr().err
    predict_probabilities(model, images, verbose=0)
    assert "Predicting" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="verbose='loud'"):
        predict_probabilities(model, images, verbose="loud")


@pytest.mark.parametrize("command", ["predict", "evaluate", "explain", "scan"])
def test_every_option_help_shows_its_default(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    options = capsys.readouterr().out.split("options:")[1]
    blocks = re.split(r"\n  (?=-)", options)  # one block per option
    for block in blocks[1:]:
        if not block.startswith("-h,"):
            assert "default" in " ".join(block.split()), block
