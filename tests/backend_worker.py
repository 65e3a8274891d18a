"""One Keras backend's side of `tests/test_backends.py`, run in its own process.

Keras fixes its backend when it is imported, so `test_backends.py` starts
this script once per backend, with `KERAS_BACKEND` set; the backends' workers
run side by side and meet through files in OUT_DIR:

```
KERAS_BACKEND=jax python tests/backend_worker.py OUT_DIR tensorflow,jax,torch
```

(the second argument: the backends whose workers run, whose files it loads)

- first (after checking that importing the package and building a model
  import no TensorFlow, see below) it trains a tiny smallcnn MediVision
  (32x32 gray, 3 classes) on synthetic blobs and writes
  `OUT_DIR/<backend>.keras` with its predictions on fixed images
  (`<backend>_saved.npz`), then `<backend>.saved` (or `<backend>.failed`
  with the error);
- then it checks everything the model core promises on this backend (see
  `check()`), each result under its own key in `OUT_DIR/<backend>.json`
  (arrays in `<backend>_check.npz`); a step that reads another backend's
  file waits for that backend's mark. The test process compares the
  backends' files. A failing step records its error instead of stopping
  the others.
  On JAX and PyTorch, after checking that importing the package and
  building a model import no TensorFlow, importing TensorFlow is made to
  fail as a missing module does: the other steps run as on a machine
  without it.

Not a test module (pytest collects `test_*.py` only); stdlib, NumPy and Keras.
"""

import json
import os
import sys
import time
import traceback

import numpy as np

BACKEND = os.environ["KERAS_BACKEND"]
BACKENDS = ("tensorflow", "jax", "torch")
SIZE, CLASSES = 32, 3
# One backbone per family of keras.applications (and the from-scratch network),
# at the family's smallest input: MediVision on each, the pooling baseline on
# the benchmarks' backbones. (TensorFlow's families: tests/test_model.py.)
FAMILIES = {
    "smallcnn": 32, "efficientnetb0": 32, "efficientnetv2b0": 32, "resnet50": 32,
    "resnet50v2": 32, "densenet121": 32, "mobilenetv2": 32, "mobilenetv3small": 32,
    "vgg16": 32, "inceptionv3": 75, "xception": 71, "convnexttiny": 32,
}
POOLING_FAMILIES = ("smallcnn", "efficientnetb0", "mobilenetv2", "resnet50")
# The families run on a batch (the others are built only): smallcnn, and those
# with preprocessing layers inside, which must run without TensorFlow; on
# PyTorch also EfficientNet and bench_gpu's ResNet50. (On JAX each network's
# first run compiles with XLA: 4 minutes for EfficientNetB0 on shared cores.)
RUN_FAMILIES = {"jax": ("smallcnn", "mobilenetv3small"),
                "torch": ("smallcnn", "efficientnetb0", "mobilenetv3small", "resnet50")}


def blobs(n, seed):
    """`n` 32x32 gray images: the class is the quadrant of a bright blob."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    images = rng.uniform(0, 60, (n, SIZE, SIZE, 1))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for image, label in zip(images, labels):
        cy, cx = [(8, 8), (8, 24), (24, 16)][label] + rng.integers(-3, 4, 2)
        image[..., 0] += 190 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
    return np.clip(images, 0, 255).astype("float32"), labels.astype("int32")


def probe_images():
    """Fixed images every backend predicts and explains."""
    images, _ = blobs(6, seed=99)
    return images


def build_tiny(**kwargs):
    import medivision_tf

    options = dict(backbone="smallcnn", input_shape=(SIZE, SIZE, 1), weights=None)
    options.update(kwargs)
    return medivision_tf.build_medivision(CLASSES, **options)


#: Most seconds a step waits for another backend's saved model (its worker
#: trains first; on 2 shared cores that took under a minute).
WAIT_SECONDS = 900


def saved_model_path(out_dir, backend):
    """`OUT_DIR/<backend>.keras` once that backend's worker has marked it saved."""
    start = time.monotonic()
    while not os.path.exists(os.path.join(out_dir, f"{backend}.saved")):
        failed = os.path.join(out_dir, f"{backend}.failed")
        if os.path.exists(failed):
            with open(failed) as handle:
                raise RuntimeError(f"the {backend} worker could not save its model:\n"
                                   + handle.read())
        if time.monotonic() - start > WAIT_SECONDS:
            raise TimeoutError(f"no {backend}.saved in {out_dir} after {WAIT_SECONDS} s")
        time.sleep(0.5)
    return os.path.join(out_dir, f"{backend}.keras")


def save(out_dir):
    """Trains and saves this backend's model; marks it `.saved` or `.failed`."""
    try:
        _train_and_save(out_dir)
    except BaseException:
        with open(os.path.join(out_dir, f"{BACKEND}.failed"), "w") as handle:
            handle.write(traceback.format_exc(limit=8))
        raise
    open(os.path.join(out_dir, f"{BACKEND}.saved"), "w").close()


def _train_and_save(out_dir):
    import keras

    keras.utils.set_random_seed(1)
    model = build_tiny()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    images, labels = blobs(96, seed=0)
    model.fit(images, labels, batch_size=32, epochs=4, verbose=0)
    model.save(os.path.join(out_dir, f"{BACKEND}.keras"))
    np.savez(
        os.path.join(out_dir, f"{BACKEND}_saved.npz"),
        predictions=model.predict(probe_images(), verbose=0),
    )


class Results:
    """Each check's values (JSON) and arrays (npz), or the error it raised."""

    def __init__(self):
        self.values, self.arrays, self.seconds = {}, {}, {}

    def run(self, name, function):
        start = time.perf_counter()
        try:
            value = function()
        except Exception:  # recorded for the test process, which fails with it
            value = {"error": traceback.format_exc(limit=8)}
        self.seconds[name] = round(time.perf_counter() - start, 2)
        arrays = value.pop("arrays", {}) if isinstance(value, dict) else {}
        self.arrays.update({f"{name}.{k}": np.asarray(v) for k, v in arrays.items()})
        self.values[name] = value


def check(out_dir):
    import keras

    import medivision_tf

    results = Results()
    results.values["tensorflow_imported_by_import_and_build"] = _no_tensorflow_so_far(
        build_tiny
    )
    if BACKEND != "tensorflow":
        # From here on as on a machine without TensorFlow (e.g. a GPU cluster with JAX or
        # PyTorch only): importing it fails as a missing module does. (Not
        # `sys.modules["tensorflow"] = None`: Keras takes a name in sys.modules for an
        # imported TensorFlow, and its preprocessing layers then fail where a machine
        # without TensorFlow runs them.)
        sys.meta_path.insert(0, _NoTensorFlow())
    # This backend's model first: the other workers wait for it.
    save(out_dir)
    if BACKEND != "tensorflow":
        results.run("families", _families)
    results.run("fit_numpy", _fit_numpy)
    results.run("fit_pydataset", _fit_pydataset)
    if BACKEND == "torch":
        results.run("fit_dataloader", _fit_dataloader)
    results.run("save_load_here", lambda: _save_load_here(out_dir))
    results.run("set_backbone_trainable", _set_backbone_trainable)
    results.run("calibrate_batchnorm", lambda: _calibrate_batchnorm(out_dir))
    results.run("attention_weights", lambda: _attention_weights(out_dir))
    results.run("explain", lambda: _explain(out_dir))
    results.run("trust", lambda: _trust(out_dir))
    for policy in ("mixed_bfloat16", "mixed_float16"):
        results.run(policy, lambda policy=policy: _mixed_precision(policy))
    if BACKEND != "tensorflow":
        results.run("refusals", _refusals)
    # Last: the other backends' files (their workers may still be training).
    for other in BACKENDS:
        results.run(f"load_{other}", lambda other=other: _load(out_dir, other))
    results.values["keras_backend"] = keras.config.backend()
    results.values["versions"] = _versions(medivision_tf)
    results.values["seconds"] = results.seconds
    with open(os.path.join(out_dir, f"{BACKEND}.json"), "w") as handle:
        json.dump(results.values, handle, indent=1)
    np.savez(os.path.join(out_dir, f"{BACKEND}_check.npz"), **results.arrays)


class _NoTensorFlow:
    """A meta-path finder for which TensorFlow is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _no_tensorflow_so_far(build):
    before = "tensorflow" in sys.modules
    build()
    return {"after_import": before, "after_build": "tensorflow" in sys.modules}


def _families():
    """Every family builds with both heads; `RUN_FAMILIES` also run on a batch.
    (Running all twelve cost 9 minutes on JAX: XLA compiles each network first.)"""
    import keras

    import medivision_tf

    rows = {}
    for backbone, size in FAMILIES.items():
        images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
        heads = [("medivision", medivision_tf.build_medivision)]
        if backbone in POOLING_FAMILIES:
            heads.append(("pooling", medivision_tf.build_pooling_baseline))
        for head, build in heads:
            start = time.perf_counter()
            model = build(CLASSES, backbone=backbone, input_shape=(size, size, 3), weights=None)
            row = {"output_shape": list(model.output.shape)}
            if backbone in RUN_FAMILIES.get(BACKEND, ()):
                if BACKEND == "jax":
                    probabilities = model.predict_on_batch(images)
                else:
                    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
                row.update(shape=list(np.shape(probabilities)),
                           sums=np.asarray(probabilities).sum(axis=1).tolist())
            row["seconds"] = round(time.perf_counter() - start, 2)
            rows[f"{backbone}/{head}"] = row
    return rows


def _fit_history(model, data, **kwargs):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(data, epochs=2, verbose=0, **kwargs)
    return {"loss": [float(v) for v in history.history["loss"]]}


def _fit_numpy():
    images, labels = blobs(64, seed=3)
    result = _fit_history(build_tiny(), images, y=labels, batch_size=16)
    return result


def _pydataset(images, labels, batch_size):
    """A `keras.utils.PyDataset` of `(images, labels)` batches."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return -(-len(images) // batch_size)

        def __getitem__(self, index):
            window = slice(index * batch_size, (index + 1) * batch_size)
            return images[window], labels[window]

    return Batches()


def _fit_pydataset():
    images, labels = blobs(64, seed=4)
    return _fit_history(build_tiny(), _pydataset(images, labels, 16))


def _fit_dataloader():
    import torch

    images, labels = blobs(64, seed=5)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)),
        batch_size=16,
        shuffle=True,
    )
    result = _fit_history(build_tiny(), loader)
    import medivision_tf

    model = build_tiny()
    result["calibrated_layers"] = medivision_tf.calibrate_batchnorm(model, loader)
    return result


def _save_load_here(out_dir):
    import keras

    import medivision_tf

    keras.utils.set_random_seed(2)
    model = build_tiny(class_names=["a", "b", "c"])
    path = os.path.join(out_dir, f"{BACKEND}_roundtrip.keras")
    model.save(path)
    loaded = medivision_tf.load_model(path)
    images = probe_images()
    return {
        "max_difference": float(np.abs(model.predict(images, verbose=0)
                                       - loaded.predict(images, verbose=0)).max()),
        "class_names": medivision_tf.get_class_names(loaded),
        "config_backbone": medivision_tf.get_model_config(loaded).backbone,
    }


def _load(out_dir, saved_on):
    import medivision_tf

    # compile=False: a file compiled on PyTorch names PyTorch's Adam class, which
    # Keras cannot import on another backend without TensorFlow (docs/backends.md).
    model = medivision_tf.load_model(saved_model_path(out_dir, saved_on),
                                     compile=False)
    return {"arrays": {"predictions": model.predict(probe_images(), verbose=0)}}


def _set_backbone_trainable():
    import keras

    import medivision_tf

    model = build_tiny()
    backbone = medivision_tf.backbone_layers(model)
    frozen_count = medivision_tf.set_backbone_trainable(model, False)
    weights = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}
    images, labels = blobs(32, seed=6)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
    changed = {
        layer.name
        for layer in model.layers
        if any(not np.array_equal(a, b) for a, b in zip(weights[layer.name], layer.get_weights()))
    }
    top_two = medivision_tf.set_backbone_trainable(model, 2)
    return {
        "trainable_after_freeze": frozen_count,
        "backbone_layers_changed": sorted(changed & {layer.name for layer in backbone}),
        "head_layers_changed": sorted(changed - {layer.name for layer in backbone}),
        "trainable_after_top_two": top_two,
        "trainable_weights_after_top_two": len(model.trainable_weights),
    }


def _calibrate_batchnorm(out_dir):
    import keras

    import medivision_tf

    model = medivision_tf.load_model(saved_model_path(out_dir, "tensorflow"))
    images, labels = blobs(48, seed=7)
    count = medivision_tf.calibrate_batchnorm(model, images, batch_size=16)
    means = [np.array(layer.moving_mean) for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    again = medivision_tf.load_model(saved_model_path(out_dir, "tensorflow"))
    from_pydataset = medivision_tf.calibrate_batchnorm(again, _pydataset(images, labels, 16))
    means_pydataset = [np.array(layer.moving_mean) for layer in again.layers
                       if isinstance(layer, keras.layers.BatchNormalization)]
    return {
        "layers": count,
        "layers_pydataset": from_pydataset,
        "arrays": {"moving_means": np.concatenate(means),
                   "moving_means_pydataset": np.concatenate(means_pydataset)},
    }


def _attention_weights(out_dir):
    import medivision_tf

    model = medivision_tf.load_model(saved_model_path(out_dir, "tensorflow"))
    weights = medivision_tf.attention_weights(model, probe_images())
    return {"grid": list(medivision_tf.sequence_grid(model)), "arrays": {"weights": weights}}


def _explain(out_dir):
    """Grad-CAM, Grad-CAM++ and attention maps on the TensorFlow-saved model."""
    import keras

    import medivision_tf
    from medivision_tf import explain as mx

    model = medivision_tf.load_model(saved_model_path(out_dir, "tensorflow"))
    images = probe_images()
    rgb_other_size = np.repeat(images[:3, :, 4:28], 3, axis=-1)  # 32x24 RGB: letterboxed
    arrays = {}
    for method in ("gradcam", "gradcam++", "attention"):
        arrays[method] = mx.explain(model, images, method=method)
        arrays[f"{method}_other_size"] = mx.explain(model, rgb_other_size, method=method)
    arrays["gradcam_class_2"] = mx.explain(model, images, method="gradcam", class_index=2)
    arrays["gradcam++_per_image"] = mx.explain(
        model, images, method="gradcam++", class_index=[0, 1, 2, 0, 1, 2]
    )
    heatmaps = mx.gradcam_heatmaps(model, images)
    arrays["gradcam_heatmaps"] = keras.ops.convert_to_numpy(heatmaps)
    return {"heatmaps_type": f"{type(heatmaps).__module__}.{type(heatmaps).__name__}",
            "arrays": arrays}


def _trust(out_dir):
    """fit_trust and predict_with_trust on the TensorFlow-saved model: every
    stored OOD score and conformal method, on images it knows and on noise."""
    import medivision_tf
    from medivision_tf import trust

    model = medivision_tf.load_model(saved_model_path(out_dir, "tensorflow"))
    val_images, val_labels = blobs(90, seed=11)
    noise = np.random.default_rng(5).uniform(0, 255, (4, SIZE, SIZE, 1)).astype("float32")
    images = np.concatenate([probe_images(), noise])
    values, arrays = {}, {}
    for ood_method, conformal_method in (("knn", "lac"), ("relative_mahalanobis", "aps"),
                                         ("combined", "lac")):
        name = f"{ood_method}_{conformal_method}"
        trust.fit_trust(model, val_images, val_labels, ood_method=ood_method,
                        conformal_method=conformal_method, batch_size=32)
        fitted = trust.get_trust(model)
        values[name] = {"temperature": float(fitted["temperature"]),
                        "conformal_threshold": float(fitted["conformal"]["threshold"]),
                        "ood_threshold": float(fitted["ood"]["threshold"])}
        out = trust.predict_with_trust(model, images)
        for key, value in out.items():
            arrays[f"{name}.{key}"] = np.asarray(value)
    values["arrays"] = arrays
    return values


def _mixed_precision(policy):
    import keras

    import medivision_tf
    from medivision_tf import explain as mx

    keras.mixed_precision.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(3)
        model = build_tiny()
        images, labels = blobs(32, seed=8)
        fitted = _fit_history(model, images, y=labels, batch_size=16)
        probabilities = model.predict(images[:4], verbose=0)
        maps = mx.explain(model, images[:4], method="gradcam")
        return {
            "loss": fitted["loss"],
            "lstm_compute_dtype": model.get_layer("lstm").compute_dtype,
            "output_dtype": str(probabilities.dtype),
            "sums": probabilities.sum(axis=1).tolist(),
            "map_range": [float(maps.min()), float(maps.max())],
            "map_finite": bool(np.isfinite(maps).all()),
        }
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def _refusals():
    """What runs on TensorFlow only: each call's error type and message."""
    import medivision_tf
    from medivision_tf import explain as mx

    model = build_tiny()
    images = probe_images()
    calls = {
        "make_dataset": lambda: __import__("medivision_tf.data").data.make_dataset,
        "export_saved_model": lambda: medivision_tf.export_saved_model(model, "unused"),
        "export_tflite": lambda: medivision_tf.export_tflite(model, "unused.tflite"),
        "serving": lambda: __import__("medivision_tf.serving"),
        "train": lambda: medivision_tf.train,
        "choose_strategy": lambda: __import__(
            "medivision_tf.training.distribute", fromlist=["x"]),
        "predict_files": lambda: medivision_tf.predict_files(model, ["x.png"]),
        "evaluate_model": lambda: medivision_tf.evaluate_model,
        "scorecam": lambda: mx.explain(model, images, method="scorecam"),
        "layercam": lambda: mx.explain(model, images, method="layercam"),
        "explain_images": lambda: mx.explain_images,
    }
    answers = {}
    for name, call in calls.items():
        try:
            value = call()
        except Exception as error:  # what the user would see
            answers[name] = {"type": type(error).__name__, "message": str(error)}
        else:
            answers[name] = {"type": None, "message": repr(value)[:200]}
    answers["cli_train"] = _cli("train", "data/")
    return answers


def _cli(*argv):
    """`medivision ARGV` in this process: its exit code and stderr."""
    import contextlib
    import io

    from medivision_tf.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(list(argv))
    return {"exit_code": code, "stderr": stderr.getvalue().strip()}


def _versions(medivision_tf):
    import importlib.metadata

    versions = {"medivision_tf": medivision_tf.__version__}
    for name in ("keras", "jax", "torch", "tensorflow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


if __name__ == "__main__":
    out = sys.argv[1]
    if len(sys.argv) > 2:
        BACKENDS = tuple(sys.argv[2].split(","))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    check(out)
