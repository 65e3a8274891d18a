"""The two-phase recipe's switch, checked on a tiny pretrained backbone (a
smallcnn trained a few steps, given as a weights file).

Phase 1 trains the head on a frozen backbone; at the switch the backbone
(BatchNorm excepted) unfreezes, a new optimizer starts (no state carried over)
and the learning rate rises linearly from 0 over `fine_tune_warmup` of phase
2's steps, then decays (cosine) to 0 by its end.
"""

import keras
import numpy as np
import pytest

import medivision_tf
from medivision_tf.training import TrainConfig, train
from medivision_tf.training.compile import make_optimizer


class _Recorder(keras.callbacks.Callback):
    """Per batch: the phase's optimizer, its step and rate; per epoch: weights."""

    def __init__(self):
        super().__init__()
        self.rates, self.steps, self.optimizers, self.snapshots = [], [], [], []

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        step = int(optimizer.iterations.numpy())
        self.rates.append(float(optimizer.learning_rate))  # the rate at this step
        self.steps.append(step)
        self.optimizers.append(id(optimizer))

    def on_epoch_end(self, epoch, logs=None):
        layers = medivision_tf.backbone_layers(self.model)
        self.snapshots.append({
            "trainable": {l.name: l.trainable for l in layers},
            "weights": {l.name: [np.array(w) for w in l.get_weights()]
                        for l in layers if l.weights},
        })


@pytest.fixture(scope="module")
def lesions():
    from medivision_tf.data import make_synthetic_lesions

    return make_synthetic_lesions(64, 32, 2, seed=3)


@pytest.fixture(scope="module")
def pretrained_file(tmp_path_factory, lesions):
    """A smallcnn trained a few steps: a backbone whose features carry signal."""
    keras.utils.set_random_seed(5)
    model = medivision_tf.build_medivision(2, backbone="smallcnn", weights=None,
                                           input_shape=(32, 32, 1))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(lesions.images, lesions.labels, epochs=2, batch_size=16, verbose=0)
    medivision_tf.calibrate_batchnorm(model, lesions.images)
    path = tmp_path_factory.mktemp("weights") / "pretrained.keras"
    model.save(path)
    return str(path)


def test_the_switch_unfreezes_all_but_batchnorm_with_a_new_warming_optimizer(
        pretrained_file, lesions, tmp_path):
    images, labels = lesions.images, lesions.labels
    recorder = _Recorder()
    config = TrainConfig(backbone="smallcnn", weights=pretrained_file, image_size=32,
                         channels=1, epochs=1, fine_tune_epochs=2, batch_size=16,
                         tensorboard=False, trust=False)
    assert config.resolved().freeze_backbone is True
    train(config, train_data=(images, labels), run_dir=tmp_path / "run", verbose=0,
          callbacks=[recorder])

    steps = 4  # 64 images / 16
    phase1, phase2 = recorder.snapshots[0], recorder.snapshots[1:]
    # Phase 1: nothing of the backbone trains.
    assert not any(phase1["trainable"].values())
    # Phase 2: every layer but BatchNorm trains; BatchNorm stays frozen.
    batchnorm = {l.name for l in medivision_tf.backbone_layers(recorder.model)
                 if isinstance(l, keras.layers.BatchNormalization)}
    for name, trainable in phase2[0]["trainable"].items():
        assert trainable == (name not in batchnorm), name
    # Phase 2 moved the convolutions but not BatchNorm's statistics
    # (frozen BatchNorm runs in inference mode: its moving mean never updates).
    first, last = phase1["weights"], phase2[-1]["weights"]
    assert not np.allclose(first["smallcnn_conv1"][0], last["smallcnn_conv1"][0])
    for name in batchnorm:
        for a, b in zip(first[name], last[name]):
            np.testing.assert_array_equal(a, b)
    # A new optimizer at the switch: its step count restarts at 0.
    assert len(set(recorder.optimizers[:steps])) == 1
    assert recorder.optimizers[steps] != recorder.optimizers[0]
    assert recorder.steps[steps:] == list(range(2 * steps))
    # Phase 1's constant rate; phase 2 warms up from 0 over 30% of its 8
    # steps (2 steps), peaks at fine_tune_learning_rate, then decays.
    peak = config.resolved().fine_tune_learning_rate
    assert peak == 3e-5  # pretrained weights: the lower peak
    import json

    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["fine_tune_learning_rate"] == peak
    assert recorder.rates[:steps] == pytest.approx([config.learning_rate] * steps)
    phase2_rates = recorder.rates[steps:]
    assert phase2_rates[0] == 0.0
    assert phase2_rates[1] == pytest.approx(peak / 2, rel=1e-5)
    assert phase2_rates[2] == pytest.approx(peak, rel=1e-5)
    assert all(a > b for a, b in zip(phase2_rates[2:], phase2_rates[3:]))

    # The same folder as if begun when the default peak was 1e-4: it is found
    # finished, and resumes, with 1e-4 (not refused for a changed key); an
    # explicit other rate is still refused.
    from medivision_tf.training.run_dir import finished_run

    run_dir = tmp_path / "run"
    recorded["fine_tune_learning_rate"] = 1e-4
    (run_dir / "config.json").write_text(json.dumps(recorded))
    assert finished_run(str(run_dir), config) == str(run_dir / "model.keras")
    args = dict(train_data=(images, labels), run_dir=run_dir, verbose=0)
    (run_dir / "state.json").write_text("{}")  # interrupted before its first epoch
    train(config, **args)  # resumed, not refused
    assert json.loads((run_dir / "config.json").read_text())["fine_tune_learning_rate"] == 1e-4
    (run_dir / "state.json").write_text("{}")
    with pytest.raises(ValueError, match="keys fine_tune_learning_rate differ"):
        train(config.replace(fine_tune_learning_rate=2e-4), **args)


def test_the_phase2_peak_is_lower_for_pretrained_weights_and_matches_the_benchmark():
    """`fine_tune_learning_rate=None` resolves to 3e-5 with pretrained weights
    and 1e-4 from scratch; an explicit rate is kept. The recipe benchmark's
    table marks the variant the defaults are."""
    import os
    import sys

    assert TrainConfig().fine_tune_learning_rate is None
    assert TrainConfig(weights="imagenet").resolved().fine_tune_learning_rate == 3e-5
    assert TrainConfig(weights="w.keras").resolved().fine_tune_learning_rate == 3e-5
    assert TrainConfig(weights=None).resolved().fine_tune_learning_rate == 1e-4
    assert TrainConfig(weights="imagenet", fine_tune_learning_rate=2e-4).resolved(
        ).fine_tune_learning_rate == 2e-4
    with pytest.raises(ValueError, match="fine_tune_learning_rate=0"):
        TrainConfig(fine_tune_learning_rate=0.0)
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "benchmarks")
    sys.path.insert(0, bench)
    import bench_transfer_recipe

    warmup, peak = bench_transfer_recipe.DEFAULT_VARIANT.split("_")
    config = TrainConfig(weights="imagenet").resolved()
    assert float(peak.replace("e", "e-")) == config.fine_tune_learning_rate
    assert int(warmup[1:]) / 10 == config.fine_tune_warmup
    assert config.fine_tune_lr_schedule == "cosine"


def test_phase2_schedules_and_their_fallback():
    config = TrainConfig(fine_tune_warmup=0.5, fine_tune_lr_schedule="constant")
    optimizer = make_optimizer(config, 1e-4, steps_per_epoch=10, epochs=2, phase=2)
    rates = []
    for step in (0, 5, 10, 19):
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    assert rates == pytest.approx([0, 5e-5, 1e-4, 1e-4])
    # Unknown length (a tf.data dataset without steps_per_epoch): constant.
    optimizer = make_optimizer(TrainConfig(), 1e-4, steps_per_epoch=None, epochs=2, phase=2)
    assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    # Phase 1 keeps its own schedule (constant by default).
    assert float(make_optimizer(TrainConfig(), 1e-3, 10, 2, phase=1).learning_rate) == (
        pytest.approx(1e-3))
    with pytest.raises(ValueError, match="fine_tune_warmup"):
        TrainConfig(fine_tune_warmup=1.0)
    with pytest.raises(ValueError, match="fine_tune_lr_schedule='exponential'"):
        TrainConfig(fine_tune_lr_schedule="exponential")
