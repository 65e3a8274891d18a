"""training.py: config checks, two-phase training, losses, NaN stop, strategies."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import medivision_tf
from medivision_tf import training
from medivision_tf.data import make_synthetic_lesions
from medivision_tf.evaluation import evaluate_model
from medivision_tf.training import TrainConfig, finished_run, train

SIZE = 48


def _config(**changes):
    values = dict(
        backbone="smallcnn", weights=None, image_size=SIZE, channels=1, batch_size=32,
        epochs=1, fine_tune_epochs=0, tensorboard=False, lstm_units=32, attention_units=16,
    )
    values.update(changes)
    return values


@pytest.fixture(scope="module")
def small_data():
    return {
        "train": make_synthetic_lesions(300, SIZE, 3, seed=20),
        "test": make_synthetic_lesions(90, SIZE, 3, seed=21),
    }


# === Config ===


def test_unknown_config_key_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) 'learnin_rate'"):
        TrainConfig.from_dict({"learnin_rate": 0.1})
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"epochs": 2, "colour": "red"}))
    with pytest.raises(ValueError, match="'colour'"):
        TrainConfig.from_json(path)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("epochs", "3", "Config key 'epochs' must be int"),
        ("learning_rate", "fast", "Config key 'learning_rate' must be float"),
        ("multi_label", 1, "Config key 'multi_label' must be bool"),
        ("fine_tune_layers", 2.5, "Config key 'fine_tune_layers' must be int or null"),
        ("batch_size", True, "Config key 'batch_size' must be int"),
    ],
)
def test_wrong_type_is_refused_naming_the_key(key, value, message):
    with pytest.raises(TypeError, match=message):
        TrainConfig.from_dict({key: value})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"strategy": "gpu"}, "Config key 'strategy': unknown value 'gpu'"),
        ({"loss": "hinge"}, "Config key 'loss'"),
        ({"label_smoothing": 1.5}, "label_smoothing=1.5"),
        ({"reduce_lr_patience": 2, "lr_schedule": "cosine"}, "reduce_lr_patience"),
        ({"backbone": "smallcnn", "weights": "imagenet"}, "Config key 'weights'"),
        ({"backbone": "resnet5"}, "Unknown backbone 'resnet5'"),
        ({"projection_units": 0}, "projection_units=0"),
    ],
)
def test_bad_values_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(changes)


def test_config_round_trips_through_json_and_ints_are_floats(tmp_path):
    config = TrainConfig.from_dict({"learning_rate": 1, "weights": "none"})
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.weights is None
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config.to_dict()))
    assert TrainConfig.from_json(path) == config
    assert training.load_config(str(path), epochs=7).epochs == 7


def test_rerun_with_another_config_is_refused(tmp_path, small_data):
    data = small_data["train"]
    args = dict(train_data=(data.images[:64], data.labels[:64]), class_names=data.class_names,
                run_dir=tmp_path, verbose=0)
    first = train(_config(steps_per_epoch=1), **args)
    with pytest.raises(ValueError, match="already holds a finished run"):
        train(_config(steps_per_epoch=1), **args)
    (tmp_path / "state.json").write_text("{}")  # pretend it was interrupted
    with pytest.raises(ValueError, match="keys epochs differ"):
        train(_config(steps_per_epoch=1, epochs=2), **args)
    # A run begun before a key existed: the missing key counts as its default.
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("ood_method", "ood_layer"):
        del saved[key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="keys ood_layer, ood_method differ"):
        train(_config(steps_per_epoch=1, ood_method="mahalanobis"), **args)
    assert train(_config(steps_per_epoch=1), **args).epochs == first.epochs  # not refused
    # A run begun under the earlier defaults recorded the score and layer they
    # stood for ("knn", "feature_map"): left at "auto", it resumes with them.
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({**saved, "ood_method": "knn", "ood_layer": "feature_map"}))
    (tmp_path / "state.json").write_text("{}")
    resumed = train(_config(steps_per_epoch=1), **args)
    assert resumed.epochs == first.epochs
    assert resumed.config.ood_method == "knn"  # what fit_trust fits once trained
    assert finished_run(tmp_path, TrainConfig(**_config(steps_per_epoch=1))) is not None
    (tmp_path / "state.json").write_text("{}")
    with pytest.raises(ValueError, match="keys ood_layer differ"):
        train(_config(steps_per_epoch=1, ood_layer="pool"), **args)
    with pytest.raises(ValueError, match="keys ood_layer, ood_method differ"):
        train(_config(steps_per_epoch=1, ood_method="combined"), **args)


def test_too_few_validation_images_for_the_default_ood_score_fit_knn(tmp_path, small_data):
    """Two validation images: the default's Mahalanobis part cannot be fitted
    out of fold, so training ends with the kNN score (and says so)."""
    from medivision_tf.trust import get_trust

    data = small_data["train"]
    with pytest.warns(UserWarning, match="2 validation images are too few"):
        result = train(_config(steps_per_epoch=1), train_data=(data.images[:32],
                                                               data.labels[:32]),
                       val_data=(data.images[40:42], data.labels[40:42]),
                       class_names=data.class_names, run_dir=tmp_path, verbose=0)
    assert get_trust(result.model)["ood"]["method"] == "knn"


def test_head_sizes_reach_the_model(tmp_path, small_data):
    data = small_data["train"]
    args = dict(train_data=(data.images[:64], data.labels[:64]), class_names=data.class_names,
                verbose=0)
    projected = train(_config(steps_per_epoch=1, sequence="rows", projection_units=16),
                      run_dir=tmp_path / "projected", **args)
    loaded = medivision_tf.load_model(projected.model_path)
    assert loaded.get_layer("projection").units == 16
    assert loaded.get_layer("lstm").units == 32 and loaded.get_layer("attention").units == 16
    literal = train(_config(steps_per_epoch=1, sequence="rows", projection_units=None),
                    run_dir=tmp_path / "literal", **args)
    assert "projection" not in {layer.name for layer in literal.model.layers}
    saved = json.loads((tmp_path / "literal" / "config.json").read_text())
    assert saved["projection_units"] is None


# === Two-phase training ===


def test_two_phase_training_improves_accuracy(tmp_path, small_data):
    train_data, test = small_data["train"], small_data["test"]

    def accuracy(model):
        return float(np.mean(model.predict(test.images, verbose=0).argmax(1) == test.labels))

    class AfterHead(keras.callbacks.Callback):
        """The held-out accuracy at the end of phase 1 (its last epoch, index 1)."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.accuracy = accuracy(self.model)

    after_head = AfterHead()
    config = _config(epochs=2, fine_tune_epochs=3, learning_rate=3e-3,
                     fine_tune_learning_rate=2e-3)
    both = train(config, train_data=(train_data.images, train_data.labels),
                 val_data=(test.images[:30], test.labels[:30]),
                 class_names=train_data.class_names, run_dir=tmp_path / "both",
                 callbacks=[after_head], verbose=0)
    before, after = after_head.accuracy, accuracy(both.model)
    print(f"held-out accuracy: phase 1 only {before:.3f}, after phase 2 {after:.3f}")
    assert after >= before + 0.15, (before, after)
    assert after >= 0.6
    assert both.epochs == 5 and list(both.history["epoch"]) == [0, 1, 2, 3, 4]
    saved = json.loads((tmp_path / "both" / "config.json").read_text())
    assert saved["fine_tune_epochs"] == 3 and saved["backbone"] == "smallcnn"
    loaded = medivision_tf.load_model(both.model_path)
    np.testing.assert_allclose(loaded.predict(test.images[:4], verbose=0),
                               both.model.predict(test.images[:4], verbose=0), rtol=1e-5)
    assert medivision_tf.get_class_names(loaded) == list(train_data.class_names)
    assert os.path.isfile(both.best_path)
    assert not [f for _, _, files in os.walk(tmp_path) for f in files if ".partial" in f]


def test_phase_one_freezes_backbone_and_phase_two_unfreezes_top_layers(tmp_path, small_data):
    data = small_data["train"]
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            conv = self.model.get_layer("smallcnn_conv1")
            top = self.model.get_layer("smallcnn_conv4")
            seen.append((epoch, conv.trainable, top.trainable,
                         float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))))

    # An explicit freeze (the default "auto" would train a from-scratch backbone).
    train(_config(epochs=1, fine_tune_epochs=1, fine_tune_layers=3, steps_per_epoch=1,
                  learning_rate=1e-3, fine_tune_learning_rate=1e-4, freeze_backbone=True),
          train_data=(data.images[:64], data.labels[:64]), class_names=data.class_names,
          run_dir=tmp_path, callbacks=[Record()], verbose=0)
    assert seen[0][:3] == (0, False, False) and seen[0][3] == pytest.approx(1e-3)
    assert seen[1][:3] == (1, False, True) and seen[1][3] == pytest.approx(1e-4)


def test_losses_optimizers_schedules_class_weights_and_early_stopping(tmp_path, small_data,
                                                                      monkeypatch):
    config = TrainConfig.from_dict(_config(loss="focal", focal_gamma=2.0, label_smoothing=0.1))
    loss = training.make_loss(config)
    assert isinstance(loss, keras.losses.CategoricalFocalCrossentropy)
    assert loss.gamma == 2.0 and loss.label_smoothing == 0.1
    multi = TrainConfig.from_dict(_config(multi_label=True))
    assert isinstance(training.make_loss(multi), keras.losses.BinaryCrossentropy)
    optimizer = training.make_optimizer(
        TrainConfig.from_dict(_config(optimizer="adamw", lr_schedule="cosine", weight_decay=1e-4)),
        1e-3, steps_per_epoch=10, epochs=2,
    )
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert isinstance(optimizer.learning_rate if not callable(optimizer._learning_rate) else
                      optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)

    # An imbalanced run with all of them: the balanced class weights reach `fit`,
    # and early stopping ends the run.
    fits = []
    fit = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        fits.append(kwargs)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    data, held_out = small_data["train"], small_data["test"]
    keep = np.flatnonzero((data.labels != 2) | (np.arange(len(data)) % 4 == 0))
    epochs = 8
    result = train(
        _config(loss="focal", label_smoothing=0.1, class_weight="balanced", optimizer="adamw",
                weight_decay=1e-4, lr_schedule="cosine", epochs=epochs,
                early_stopping_patience=1),
        train_data=(data.images[keep], data.labels[keep]), class_names=data.class_names,
        # Validation images from the test draw (train refuses leakage), each labelled as
        # the next class: the better the model learns, the worse its validation loss,
        # so early stopping (patience 1) must end the run well before its 8 epochs.
        val_data=(held_out.images[:48], (held_out.labels[:48] + 1) % 3),
        run_dir=tmp_path, verbose=0,
    )
    (kwargs,) = fits
    expected = medivision_tf.data.class_weights(data.labels[keep])
    assert expected[2] > 2 * expected[0]  # the rare class weighs more
    assert kwargs["class_weight"] == pytest.approx(expected)
    assert kwargs["epochs"] == epochs
    assert np.isfinite(result.history["loss"]).all()
    assert 2 <= len(result.history) < epochs  # stopped early, after one epoch without gain
    val_loss = result.history["val_loss"].to_numpy()
    assert val_loss[-1] >= val_loss[:-1].min()  # the last epoch did not improve


def test_multi_label_training(tmp_path, small_data):
    data = small_data["train"]
    hot = np.eye(3, dtype="float32")[data.labels]
    hot[::3, 0] = 1.0  # some images have two findings
    result = train(_config(multi_label=True, steps_per_epoch=3),
                   train_data=(data.images[:96], hot[:96]), class_names=data.class_names,
                   run_dir=tmp_path, verbose=0)
    assert medivision_tf.is_multi_label(result.model)
    assert "auc" in result.history.columns
    probs = result.model.predict(data.images[:4], verbose=0)
    assert probs.shape == (4, 3) and not np.allclose(probs.sum(1), 1.0)


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path, small_data):
    data = small_data["train"]

    class PoisonWeights(keras.callbacks.Callback):
        """From the second epoch on, the classifier weights are NaN."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                layer = self.model.get_layer("predictions")
                layer.set_weights([np.full_like(w, np.nan) for w in layer.get_weights()])

    with pytest.raises(FloatingPointError) as error:
        train(_config(epochs=3, steps_per_epoch=2),
              train_data=(data.images[:64], data.labels[:64]), class_names=data.class_names,
              val_data=(data.images[64:96], data.labels[64:96]), run_dir=tmp_path,
              callbacks=[PoisonWeights()], verbose=0)
    message = str(error.value)
    assert "loss became nan at epoch 2, batch 1" in message
    best = tmp_path / "checkpoints" / "best.keras"
    assert f"last good checkpoint is kept: {best}" in message
    model = medivision_tf.load_model(str(best))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # The backup holds the last good epoch too, never the NaN one.
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epochs_done"] == 1 and state["backup"] == "epoch00001.weights.h5"
    assert (tmp_path / "backup" / state["backup"]).is_file()
    assert not (tmp_path / "model.keras").exists()


def test_mixed_precision_keeps_float32_outputs(tmp_path, small_data):
    data = small_data["train"]
    result = train(_config(mixed_precision="mixed_bfloat16", steps_per_epoch=1),
                   train_data=(data.images[:32], data.labels[:32]), class_names=data.class_names,
                   run_dir=tmp_path, verbose=0)
    model = result.model
    assert model.get_layer("lstm").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    assert model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # restored


def test_choose_strategy(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert training.choose_strategy("auto") is tf.distribute.get_strategy()
    assert training.choose_precision("auto", tf.distribute.get_strategy()) == "float32"
    assert training.choose_precision("mixed_float16", None) == "mixed_float16"
    with pytest.raises(ValueError, match="Unknown strategy 'gpus'"):
        training.choose_strategy("gpus")
    with pytest.raises(ValueError, match="strategy='multi_worker' needs TF_CONFIG"):
        training.choose_strategy("multi_worker")
    one_worker = {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(one_worker))
    assert training.distribute._tf_config_cluster() is None  # a single task is no cluster


def test_dataset_whose_classes_do_not_match_the_model_is_refused(trained_model, lesion_data):
    test = lesion_data["test"]
    names = list(test.class_names)
    with pytest.raises(ValueError, match="do not match the model's classes"):
        evaluate_model(trained_model, test.images, test.labels, names[::-1])
    with pytest.raises(ValueError, match="do not match"):
        medivision_tf.model.check_class_names(names, names[:2])


# === Data paths (review regressions) ===


@pytest.fixture(scope="module")
def lesion_folder(tmp_path_factory):
    """36 PNGs of 32x32 lesions in three class folders (no split of its own)."""
    root = tmp_path_factory.mktemp("folder")
    make_synthetic_lesions(36, 32, 3, seed=40).to_directory(root)
    return root


def test_train_from_source_folder_with_cosine_schedule(tmp_path, lesion_folder, monkeypatch):
    # Regression: make_dataset skips bad files (unknown cardinality) and the
    # batched dataset was rebatched, so a schedule found no steps per epoch.
    from medivision_tf.data.checks import source_splits as pipeline  # where train reads its source

    reads = []
    as_table = pipeline.as_table
    monkeypatch.setattr(pipeline, "as_table", lambda source, **kwargs: (
        isinstance(source, str) and reads.append(source)) or as_table(source, **kwargs))
    result = training.train_and_evaluate(
        _config(source=lesion_folder, image_size=32, batch_size=8, lr_schedule="cosine",
                val_split=0.2, test_split=0.2),
        run_dir=tmp_path / "run", verbose=0)
    assert len(reads) == 1  # read and split once for training and evaluation
    assert (result.num_train, result.num_val, result.num_test) == (22, 7, 7)
    schedule = result.model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.decay_steps == 3  # ceil(22 / 8) steps x 1 epoch
    assert result.report.summary["num_samples"] == 7
    assert (tmp_path / "run" / "evaluation" / "metrics.json").is_file()
    assert (tmp_path / "run" / "training_curves.png").is_file()
    # finished_run: the model of this config, None elsewhere, other configs refused.
    config = result.config
    assert training.finished_run(tmp_path / "run", config) == str(tmp_path / "run" / "model.keras")
    assert training.finished_run(tmp_path / "nothing", config) is None
    with pytest.raises(ValueError, match="keys epochs differ"):
        training.finished_run(tmp_path / "run", config.replace(epochs=2))
    again = training.train_and_evaluate(config, run_dir=tmp_path / "run", reuse=True, verbose=0)
    assert again.reused and again.train_seconds is None
    assert again.report.summary["accuracy"] == pytest.approx(result.report.summary["accuracy"])
    # The command line's path: a folder begun under the earlier OOD default
    # (knn) is reused with it when the request leaves ood_method at "auto"...
    path = tmp_path / "run" / "config.json"
    recorded = json.loads(path.read_text())
    assert recorded["ood_method"] == "combined"
    path.write_text(json.dumps({**recorded, "ood_method": "knn", "ood_layer": "auto"}))
    requested = _config(source=lesion_folder, image_size=32, batch_size=8, lr_schedule="cosine",
                        val_split=0.2, test_split=0.2)
    old = training.train_and_evaluate(requested, run_dir=tmp_path / "run", reuse=True, verbose=0)
    assert old.reused and old.config.ood_method == "knn"
    # ... and another layer is refused, with both values named.
    with pytest.raises(ValueError, match="keys ood_layer differ: ood_layer 'feature_map' in "
                                         "the folder, 'pool' now"):
        training.train_and_evaluate({**requested, "ood_layer": "pool"},
                                    run_dir=tmp_path / "run", reuse=True, verbose=0)
    path.write_text(json.dumps(recorded))  # a run of the new default: its layer changed
    with pytest.raises(ValueError, match="keys ood_layer, ood_method differ: ood_layer "
                                         "'feature_map\\+pool' in the folder, 'pool' now; "
                                         "ood_method 'combined' in the folder, 'knn' now"):
        training.train_and_evaluate({**requested, "ood_layer": "pool"},
                                    run_dir=tmp_path / "run", reuse=True, verbose=0)


def test_arrays_go_through_the_data_pipeline(tmp_path, small_data, monkeypatch):
    # Regression: arrays skipped make_dataset (augment/cache ignored, no
    # resize, a float32 copy of the whole set).
    from medivision_tf.data.pipeline import training_inputs as pipeline  # where train builds its datasets

    calls = []
    make_dataset = pipeline.make_dataset

    def spy(table, **kwargs):
        calls.append((table["image"].iloc[0].dtype, kwargs))
        return make_dataset(table, **kwargs)

    monkeypatch.setattr(pipeline, "make_dataset", spy)
    monkeypatch.setattr(pipeline, "label_array", lambda *a: pytest.fail("read the images"))
    data = small_data["train"]  # 48x48 images, trained at 32x32: resized by the pipeline
    result = train(_config(image_size=32, augment=True, cache=True, class_weight="balanced",
                           steps_per_epoch=2),
                   train_data=(data.images[:64].astype("float32"), data.labels[:64]),
                   val_data=(data.images[64:80], data.labels[64:80]),
                   class_names=data.class_names, run_dir=tmp_path, verbose=0)
    assert result.model.input_shape[1:] == (32, 32, 1)
    (train_dtype, train_kwargs), (_, val_kwargs) = calls
    assert train_dtype == np.uint8 and train_kwargs["image_size"] == 32
    assert train_kwargs["augment"] and train_kwargs["cache"] and train_kwargs["training"]
    assert not val_kwargs["augment"] and not val_kwargs["training"]
    assert (result.num_train, result.num_val) == (64, 16)
    with pytest.raises(ValueError, match="multi-hot labels but the config has multi_label=False"):
        train(_config(), train_data=(data.images[:8], np.eye(3)[data.labels[:8]]),
              run_dir=tmp_path / "bad", verbose=0)


def _split_source(monkeypatch, splits):
    from medivision_tf.data import from_numpy

    labels = np.arange(len(splits)) % 3
    # Distinct images: identical ones across splits would be refused as leakage.
    images = np.random.default_rng(0).integers(0, 256, (len(splits), 8, 8), dtype="uint8")
    table = from_numpy(images, labels, class_names=["a", "b", "c"])
    table["split"] = splits
    monkeypatch.setattr("medivision_tf.data.checks.source_splits.as_table", lambda source, **kw: table)
    return TrainConfig.from_dict(_config(source="fake", val_split=0.25))


@pytest.mark.parametrize("bad, message", [
    ("", "2 of 24 rows have a blank split value"),
    (np.nan, "2 of 24 rows have a blank split value"),
    ("holdout", r"Unknown split names \['holdout'\]"),
])
def test_load_source_refuses_blank_or_unknown_split_values(monkeypatch, bad, message):
    splits = ["train"] * 16 + ["test"] * 6 + [bad] * 2
    config = _split_source(monkeypatch, splits)
    with pytest.raises(ValueError, match=message):
        training.load_source(config)


def test_load_source_carves_val_from_a_train_test_source(monkeypatch):
    config = _split_source(monkeypatch, ["train"] * 24 + ["test"] * 6)
    splits, names = training.load_source(config)
    assert names == ["a", "b", "c"]
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (18, 6, 6)
    assert set(splits["val"]["split"]) == {"val"} and set(splits["test"]["split"]) == {"test"}
    assert sorted(splits["val"]["label"]) == [0, 0, 1, 1, 2, 2]  # stratified


def test_balanced_class_weight_refuses_a_class_without_images(tmp_path, small_data):
    # Regression: training's own "balanced" weights gave an absent class 1.0
    # where medivision_tf.data.class_weights refuses it; train now uses the
    # latter for arrays, tables and tf.data datasets alike.
    data = small_data["train"]
    keep = data.labels[:64] != 2
    images, labels = data.images[:64][keep], data.labels[:64][keep]
    config = _config(class_weight="balanced", steps_per_epoch=1)
    with pytest.raises(ValueError, match=r"Classes with no samples.*'2'"):
        train(config, train_data=(images, labels), class_names=["0", "1", "2"],
              run_dir=tmp_path / "arrays", verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    with pytest.raises(ValueError, match=r"Classes with no samples.*'2'"):
        train(config, train_data=dataset, class_names=["0", "1", "2"],
              run_dir=tmp_path / "dataset", verbose=0)


def test_source_may_be_a_path_object(tmp_path):
    config = TrainConfig(source=tmp_path / "data", weights=tmp_path / "w.h5", backbone="smallcnn")
    assert config.source == str(tmp_path / "data") and config.weights == str(tmp_path / "w.h5")
    json.dumps(config.to_dict())


def test_freeze_backbone_auto_trains_a_random_backbone_and_records_the_choice(
        tmp_path, small_data, capsys):
    data = small_data["train"]
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.get_layer("smallcnn_conv1").trainable)

    result = train(_config(steps_per_epoch=1), train_data=(data.images[:64], data.labels[:64]),
                   class_names=data.class_names, run_dir=tmp_path / "auto",
                   callbacks=[Record()], verbose=0)
    assert seen == [True]  # weights=None: "auto" trains the backbone
    assert result.config.freeze_backbone is False
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert saved["freeze_backbone"] is False  # the resolved value is recorded
    assert "randomly initialised backbone" not in capsys.readouterr().err

    # Pretrained weights (a weights file here) resolve "auto" to a frozen backbone.
    assert training.TrainConfig(weights="backbone.h5").resolved().freeze_backbone is True
    # An explicit freeze of a random backbone warns.
    train(_config(steps_per_epoch=1, freeze_backbone=True),
          train_data=(data.images[:64], data.labels[:64]), class_names=data.class_names,
          run_dir=tmp_path / "frozen", verbose=0)
    assert "randomly initialised backbone" in capsys.readouterr().err
    with pytest.raises(ValueError, match="freeze_backbone.*Received: freeze_backbone='maybe'"):
        training.TrainConfig(freeze_backbone="maybe")


def test_training_without_tensorboard_installed_prints_a_notice_and_goes_on(
        tmp_path, small_data, monkeypatch, capsys):
    from medivision_tf.training import callbacks

    monkeypatch.setattr(callbacks, "tensorboard_available", lambda: False)
    monkeypatch.setattr(callbacks, "_NOTICES", set())
    data = small_data["train"]
    result = train(_config(steps_per_epoch=1, tensorboard=True),
                   train_data=(data.images[:64], data.labels[:64]),
                   class_names=data.class_names, run_dir=tmp_path, verbose=0)
    assert result.epochs == 1 and os.path.isfile(result.model_path)
    err = capsys.readouterr().err
    assert err.count("TensorBoard logs are off") == 1 and "pip install tensorboard" in err
    assert not (tmp_path / "logs").exists()


def test_batchnorm_is_recalibrated_before_each_validation_from_scratch(small_data):
    from medivision_tf.training import callbacks as mv_callbacks
    from medivision_tf.training.run_dir import RunState

    config = training.TrainConfig(**_config()).resolved()
    assert config.calibrate_before_validation is True and config.batchnorm_momentum == 0.9
    pretrained = training.TrainConfig(weights="backbone.h5").resolved()
    assert pretrained.calibrate_before_validation is False
    assert pretrained.batchnorm_momentum is None

    data = small_data["train"]
    dataset = tf.data.Dataset.from_tensor_slices(
        (data.images[:64].astype("float32"), data.labels[:64])).batch(16)
    model = medivision_tf.build_medivision(3, backbone="smallcnn", weights=None,
                                           input_shape=(SIZE, SIZE, 1), lstm_units=8,
                                           attention_units=4)
    state = RunState.__new__(RunState)
    state.values, state.path = {}, os.devnull
    made = mv_callbacks.make_callbacks(config, "unused", state, 1, True, train_dataset=dataset)
    calibrate = [c for c in made if isinstance(c, mv_callbacks.CalibrateBeforeValidation)]
    assert len(calibrate) == 1 and calibrate[0].batches == 10
    # At most one epoch's batches, as the final calibration.
    short = mv_callbacks.make_callbacks(config, "unused", state, 1, True, train_dataset=dataset,
                                        steps_per_epoch=2)
    assert [c.batches for c in short if isinstance(c, mv_callbacks.CalibrateBeforeValidation)
            ] == [2]
    assert not any(isinstance(c, mv_callbacks.CalibrateBeforeValidation) for c in
                   mv_callbacks.make_callbacks(pretrained, "unused", state, 1, True,
                                               train_dataset=dataset))
    norm = model.get_layer("smallcnn_norm1")
    before = np.array(norm.moving_mean)
    calibrate[0].set_model(model)
    calibrate[0].on_test_begin()
    after = np.array(norm.moving_mean)
    assert not np.allclose(before, after)  # the batch statistics of the training images
    assert np.all(np.isfinite(after))


def test_augmentation_on_the_model_trains_a_wrapper_and_saves_the_plain_model(
        tmp_path, small_data):
    from medivision_tf.data.pipeline.augment import Augmentation

    data = small_data["train"]
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append([type(layer).__name__ for layer in self.model.layers])

    result = train(_config(steps_per_epoch=2, augment=True, augment_on="model"),
                   train_data=(data.images[:64], data.labels[:64]),
                   val_data=(data.images[64:80], data.labels[64:80]),
                   class_names=data.class_names, run_dir=tmp_path, callbacks=[Record()],
                   verbose=0)
    assert seen and "Augmentation" in seen[0]  # fit ran the augmentation layers
    for path in (result.model_path, result.best_path):
        saved = medivision_tf.load_model(path, compile=False)
        assert not any(isinstance(layer, Augmentation) for layer in saved.layers)
        assert saved.name == "medivision"
    with pytest.raises(ValueError, match="augment_on"):
        training.TrainConfig(augment_on="gpu")


def test_augment_on_auto_is_recorded_and_kept_on_resume(tmp_path, small_data, monkeypatch,
                                                        capsys):
    """"auto" is settled once per run: config.json records where augmentation
    ran, and a run resumed on a machine that would choose otherwise goes on
    as it started (same draws); `augment_on` without `augment` warns."""
    from medivision_tf.training import loop

    data = small_data["train"]
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append("Augmentation" in [type(layer).__name__ for layer in self.model.layers])

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # killed after the first epoch

    def run(callbacks):
        return train(_config(epochs=2, steps_per_epoch=2, augment=True),
                     train_data=(data.images[:64], data.labels[:64]),
                     val_data=(data.images[64:80], data.labels[64:80]),
                     class_names=data.class_names, run_dir=tmp_path,
                     callbacks=[Record(), *callbacks], verbose=0)

    monkeypatch.setattr(loop, "resolve_augment_on",  # a GPU machine
                        lambda value: "model" if value == "auto" else value)
    with pytest.raises(KeyboardInterrupt):
        run([Stop()])
    recorded = json.load(open(tmp_path / "config.json"))["augment_on"]
    assert recorded == "model" and seen == [True]
    monkeypatch.setattr(loop, "resolve_augment_on",  # a CPU one
                        lambda value: "pipeline" if value == "auto" else value)
    result = run([])
    assert len(seen) > 1 and all(seen)  # resumed, still augmenting in the model
    assert result.config.augment_on == "model"
    assert finished_run(tmp_path, training.TrainConfig(**_config(epochs=2, steps_per_epoch=2,
                                                                 augment=True)))
    capsys.readouterr()
    train(_config(augment_on="model"), train_data=(data.images[:32], data.labels[:32]),
          class_names=data.class_names, run_dir=tmp_path / "plain", verbose=0)
    assert "augment_on='model' has no effect without augment=True" in capsys.readouterr().err


def test_random_layers_are_reseeded_from_the_epoch():
    """Dropout's SeedGenerator state is left out of saved weights: keyed by
    (seed, epoch), a resumed run draws the masks of the epoch it resumes."""
    from medivision_tf.training.callbacks import reseed_random_layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5),
                              keras.layers.Dropout(0.5)])
    x = np.ones((4, 64), "float32")

    def masks(epoch, seed=0):
        assert reseed_random_layers(model, seed, epoch) == 2
        return [model(x, training=True).numpy() for _ in range(2)]

    first = masks(3)
    masks(0)
    again = masks(3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])  # draws still advance within an epoch
    assert not np.array_equal(first[0], masks(4)[0])
    assert not np.array_equal(first[0], masks(3, seed=1)[0])
    # The same architecture built again in this process (Keras names its
    # layers dropout_2, dropout_3 now) draws the same masks: what a notebook
    # that resumes a run after training another one relies on.
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5),
                              keras.layers.Dropout(0.5)])
    for a, b in zip(first, masks(3)):
        np.testing.assert_array_equal(a, b)
