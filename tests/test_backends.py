"""The model core on TensorFlow, JAX and PyTorch (issue 32), one process per backend.

Keras fixes its backend when it is imported, so each backend runs
`tests/backend_worker.py` in its own process with `KERAS_BACKEND` set, the
three side by side: each trains a tiny model and saves a `.keras` file, then
runs the model core and the explanations and loads every backend's file
(waiting for the others' marks); the tests below compare what they wrote.

A backend whose package (`jax`, `torch`) is not installed is skipped with the
reason; CI installs both (`jax[cpu]` comes with the `test` extra, `.ci/run`
installs the PyTorch CPU build), and `MEDIVISION_STRICT_SKIPS=1` fails a CI
run that skips them (they are not in `allowed_skips.py`).
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fast_xla import fast_compile_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_worker.py")
BACKENDS = ("tensorflow", "jax", "torch")
OTHERS = ("jax", "torch")
# The workers together; a stuck worker fails the test, it does not hang CI.
WORKERS_TIMEOUT = 1500
# The three backends run at once; on 2 shared cores they have taken 10 minutes,
# so the module gets more than the suite's 900 s a test.
pytestmark = pytest.mark.timeout(WORKERS_TIMEOUT + 120)


def _missing(backend):
    """Why `backend` cannot run here, or None."""
    if importlib.util.find_spec(backend) is None:
        how = {"jax": 'pip install "jax[cpu]" (in the test extra)',
               "torch": "pip install torch==2.13.0 (the CPU build .ci/run installs)"}
        return f"{backend} is not installed: {how.get(backend, 'install it')}"
    return None


def _run_workers(backends, out_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    processes = {
        backend: subprocess.Popen(
            [sys.executable, WORKER, str(out_dir), ",".join(backends)],
            # JAX: XLA flags that compile about 3x faster on a CPU (tests/fast_xla.py).
            env=dict(fast_compile_env(env) if backend == "jax" else env, KERAS_BACKEND=backend),
            cwd=str(out_dir),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for backend in backends
    }
    failures = []
    try:
        for backend, process in processes.items():
            output, _ = process.communicate(timeout=WORKERS_TIMEOUT)
            if process.returncode != 0:
                failures.append(f"{backend} worker exited {process.returncode}:\n{output[-4000:]}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every available backend's check results: `{backend: (values, arrays)}`."""
    out_dir = tmp_path_factory.mktemp("backends")
    backends = [b for b in BACKENDS if _missing(b) is None]
    _run_workers(backends, out_dir)
    results = {}
    for backend in backends:
        with open(out_dir / f"{backend}.json") as handle:
            values = json.load(handle)
        arrays = dict(np.load(out_dir / f"{backend}_check.npz"))
        saved = dict(np.load(out_dir / f"{backend}_saved.npz"))
        results[backend] = (values, arrays, saved)
    return results


def _get(runs, backend):
    reason = _missing(backend)
    if reason:
        pytest.skip(reason)
    return runs[backend]


def _value(values, name):
    value = values[name]
    if isinstance(value, dict) and "error" in value:
        pytest.fail(f"{name} raised on this backend:\n{value['error']}")
    return value


@pytest.mark.parametrize("backend", OTHERS)
def test_import_and_build_do_not_import_tensorflow(runs, backend):
    values, _, _ = _get(runs, backend)
    assert values["keras_backend"] == backend
    assert values["tensorflow_imported_by_import_and_build"] == {
        "after_import": False, "after_build": False}
    # The worker's other steps ran with `import tensorflow` failing (as on a machine
    # without it): each test below that passes on this backend needed no TensorFlow.


@pytest.mark.parametrize("backend", OTHERS)
def test_every_backbone_family_builds_both_heads(runs, backend):
    values, _, _ = _get(runs, backend)
    families = _value(values, "families")
    assert {name.split("/")[1] for name in families} == {"medivision", "pooling"}
    assert len(families) == 16  # 12 families with MediVision's head, 4 with pooling too
    ran = 0
    for name, row in families.items():
        assert row["output_shape"] == [None, 3], name
        if "sums" in row:  # the families run on a batch
            ran += 1
            assert row["shape"] == [2, 3], name
            np.testing.assert_allclose(row["sums"], 1.0, rtol=1e-5, err_msg=name)
    assert ran == {"jax": 3, "torch": 7}[backend]  # tests/backend_worker.py RUN_FAMILIES


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_on_numpy_and_pydataset(runs, backend):
    values, _, _ = _get(runs, backend)
    for name in ("fit_numpy", "fit_pydataset") + (("fit_dataloader",) if backend == "torch" else ()):
        loss = _value(values, name)["loss"]
        assert len(loss) == 2 and np.isfinite(loss).all() and loss[1] < loss[0], (name, loss)
    if backend == "torch":
        assert _value(values, "fit_dataloader")["calibrated_layers"] == 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_file_round_trip_on_the_backend(runs, backend):
    values, _, _ = _get(runs, backend)
    round_trip = _value(values, "save_load_here")
    assert round_trip["max_difference"] < 1e-6
    assert round_trip["class_names"] == ["a", "b", "c"]
    assert round_trip["config_backbone"] == "smallcnn"


@pytest.mark.parametrize(("saved_on", "loaded_on"), [
    (saved_on, loaded_on) for saved_on in BACKENDS for loaded_on in BACKENDS
    if saved_on != loaded_on  # its own file: test_keras_file_round_trip_on_the_backend
])
def test_a_keras_file_loads_on_every_backend_with_the_same_predictions(runs, saved_on, loaded_on):
    _get(runs, saved_on)
    values, arrays, _ = _get(runs, loaded_on)
    _value(values, f"load_{saved_on}")
    expected = runs[saved_on][2]["predictions"]
    np.testing.assert_allclose(arrays[f"load_{saved_on}.predictions"], expected, atol=1e-5)
    assert expected.max() > 0.6  # a trained model: the predictions are not all alike


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_backbone_trainable_freezes_the_backbone_in_fit(runs, backend):
    values, _, _ = _get(runs, backend)
    result = _value(values, "set_backbone_trainable")
    assert result["trainable_after_freeze"] == 0
    assert result["backbone_layers_changed"] == []
    assert {"lstm", "attention", "predictions"} <= set(result["head_layers_changed"])
    # The top two backbone layers are a BatchNorm (kept frozen) and a ReLU; what trains
    # then is the ReLU (no weights) and the head: LSTM 3, attention 3, classifier 2.
    assert result["trainable_after_top_two"] == 1
    assert result["trainable_weights_after_top_two"] == 8


@pytest.mark.parametrize("backend", OTHERS)
def test_calibrate_batchnorm_and_attention_weights_equal_tensorflow(runs, backend):
    _get(runs, "tensorflow")
    values, arrays, _ = _get(runs, backend)
    reference = runs["tensorflow"][1]
    calibrated = _value(values, "calibrate_batchnorm")
    assert calibrated == {"layers": 4, "layers_pydataset": 4}
    for key in ("moving_means", "moving_means_pydataset"):
        name = f"calibrate_batchnorm.{key}"
        np.testing.assert_allclose(arrays[name], reference[name], rtol=1e-4, atol=1e-4)
    assert _value(values, "attention_weights")["grid"] == [4, 4]
    weights = arrays["attention_weights.weights"]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights, reference["attention_weights.weights"], atol=1e-5)


@pytest.mark.parametrize("backend", OTHERS)
def test_gradcam_and_gradcam_plus_plus_equal_the_tensorflow_maps(runs, backend):
    _get(runs, "tensorflow")
    values, arrays, _ = _get(runs, backend)
    _value(values, "explain")
    reference = runs["tensorflow"][1]
    keys = sorted(k for k in reference if k.startswith("explain."))
    assert len(keys) == 9
    for key in keys:
        assert arrays[key].shape == reference[key].shape, key
        # TensorFlow's own maps are not empty (a trained model): the comparison means something.
        assert reference[key].max() == 1.0 and reference[key].std() > 0.05, key
        np.testing.assert_allclose(arrays[key], reference[key], atol=1e-4, err_msg=key)
    # gradcam_heatmaps returns the backend's tensor, as it returns a tf.Tensor on TensorFlow.
    assert values["explain"]["heatmaps_type"].startswith({"jax": "jax", "torch": "torch."}[backend])


@pytest.mark.parametrize("backend", OTHERS)
def test_trust_fits_and_outputs_equal_tensorflow(runs, backend):
    """Temperature, prediction sets and the OOD score are keras.ops math: fitted
    and applied on JAX or PyTorch, they equal TensorFlow's on the same model."""
    reference_values, reference, _ = _get(runs, "tensorflow")
    values, arrays, _ = _get(runs, backend)
    fits, reference_fits = _value(values, "trust"), _value(reference_values, "trust")
    assert set(fits) == {"knn_lac", "relative_mahalanobis_aps", "combined_lac"}
    for name, fit in fits.items():
        for key, value in fit.items():
            assert value == pytest.approx(reference_fits[name][key], rel=1e-3, abs=1e-4), (
                name, key)
        for key in ("probabilities", "uncalibrated_probabilities", "ood_score"):
            # The relative Mahalanobis score of noise is about 3e4: float32 rounding.
            np.testing.assert_allclose(arrays[f"trust.{name}.{key}"],
                                       reference[f"trust.{name}.{key}"], rtol=1e-4,
                                       atol=1e-4, err_msg=f"{name}.{key}")
        # Sets and flags equal, except where a value is within rounding of its threshold.
        sure = np.abs(reference[f"trust.{name}.ood_score"] - reference_fits[name][
            "ood_threshold"]) > 1e-3
        np.testing.assert_array_equal(arrays[f"trust.{name}.out_of_distribution"][sure],
                                      reference[f"trust.{name}.out_of_distribution"][sure])
        assert sure.sum() >= 8, name
        np.testing.assert_array_equal(arrays[f"trust.{name}.prediction_set"],
                                      reference[f"trust.{name}.prediction_set"], err_msg=name)
    # The noise images are flagged on every backend (the score means something here).
    assert arrays["trust.knn_lac.out_of_distribution"][-4:].all()
    assert arrays["trust.combined_lac.out_of_distribution"][-4:].all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_builds_fits_predicts_and_explains(runs, backend, policy):
    values, _, _ = _get(runs, backend)
    result = _value(values, policy)
    assert result["lstm_compute_dtype"] == policy.split("_")[1]
    assert result["output_dtype"] == "float32"
    assert np.isfinite(result["loss"]).all()
    np.testing.assert_allclose(result["sums"], 1.0, rtol=1e-3)
    assert result["map_finite"] and result["map_range"] == [0.0, 1.0]


@pytest.mark.parametrize("backend", OTHERS)
def test_tensorflow_only_parts_refuse_with_one_clear_error(runs, backend):
    values, _, _ = _get(runs, backend)
    refusals = _value(values, "refusals")
    cli = refusals.pop("cli_train")
    assert cli["exit_code"] == 2
    assert cli["stderr"].startswith("medivision train: error: medivision train runs on the "
                                    f"TensorFlow backend only; Keras runs on '{backend}'")
    assert len(refusals) == 11
    for name, answer in refusals.items():
        assert answer["type"] == "BackendError", (name, answer)
        message = answer["message"]
        assert "runs on the TensorFlow backend only" in message, name
        assert f"Keras runs on '{backend}' (KERAS_BACKEND={backend})" in message, name
        assert "KERAS_BACKEND=tensorflow" in message and "docs/backends.md" in message, name
