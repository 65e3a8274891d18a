"""Real tf.distribute runs on this machine, each in fresh processes.

MirroredStrategy over two logical CPU devices, and MultiWorkerMirroredStrategy
with two worker processes on 127.0.0.1 (TF_CONFIG). Both train a few steps
through `medivision_tf.training.train` and must end with the same weights on
every replica / worker.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

WORKER = r'''
import json, sys
import numpy as np
mode, run_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "mirrored":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from medivision_tf.training import choose_strategy, train
from medivision_tf.data import make_synthetic_lesions

strategy = choose_strategy("auto" if mode == "multi_worker" else mode)
data = make_synthetic_lesions(64, 32, 2, seed=0)
result = train(
    dict(backbone="smallcnn", weights=None, image_size=32, channels=1, epochs=1,
         fine_tune_epochs=1, batch_size=8, tensorboard=False, steps_per_epoch=3,
         lstm_units=16, attention_units=8),
    train_data=(data.images, data.labels), class_names=data.class_names,
    run_dir=run_dir, strategy=strategy, verbose=0)
replica_diffs = []
for variable in result.model.weights:
    values = getattr(getattr(variable, "value", variable), "values", None)
    if values is not None and len(values) > 1:
        first = np.asarray(values[0])
        replica_diffs.append(max(float(np.abs(np.asarray(v) - first).max()) for v in values))
json.dump({
    "strategy": type(strategy).__name__,
    "replicas": strategy.num_replicas_in_sync,
    "epochs": result.epochs,
    "loss": result.history["loss"].tolist(),
    "weights": [w.tolist() for w in result.model.get_weights()[-6:]],
    "replica_diffs": replica_diffs,
}, open(out, "w"))
'''


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(script), "mirrored", str(tmp_path / "run"), str(out)],
        capture_output=True, text=True, timeout=240, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["strategy"] == "MirroredStrategy" and result["replicas"] == 2
    assert result["epochs"] == 2 and np.isfinite(result["loss"]).all()
    # Every variable is mirrored on both devices and the copies are equal.
    assert len(result["replica_diffs"]) > 10 and max(result["replica_diffs"]) == 0.0


def test_multi_worker_mirrored_strategy_two_processes(tmp_path, two_workers):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    two_workers(lambda index: [script, "multi_worker", tmp_path / "run",
                               tmp_path / f"worker{index}.json"])
    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    for result in results:
        assert result["strategy"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy
        assert result["replicas"] == 2 and result["epochs"] == 2
    # Both workers trained the same model: identical weights and (global) losses.
    assert results[0]["weights"] == results[1]["weights"]
    assert results[0]["loss"] == results[1]["loss"]
    # The chief writes the run folder; the other worker writes beside it.
    assert (tmp_path / "run" / "model.keras").is_file()
    assert (tmp_path / "run" / ".workers" / "worker-1" / "model.keras").is_file()
