"""Whether each workaround in `medivision_tf.compat` is still needed.

Each test runs the upstream code path *without* the workaround and expects
the known failure. When upstream fixes the bug the test fails, saying which
workaround to remove.
"""

import json
import os
import subprocess
import sys

import pytest

WORKER = r'''
import json, sys
import numpy as np
import keras
import tensorflow as tf

out = sys.argv[1]
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
y = np.eye(2, dtype="float32")[np.arange(32) % 2]
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
try:
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)  # no compat patch
    json.dump({"error": None}, open(out, "w"))
except Exception as error:  # the upstream bug
    json.dump({"error": f"{type(error).__name__}: {error}"[:2000]}, open(out, "w"))
'''

KNOWN_ERRORS = ("Invalid reduction dimension", "Attempt to convert a value (PerReplica")


def test_multi_worker_fit_still_needs_the_compat_patch(tmp_path, free_ports):
    """tensorflow/tensorflow#72388: Keras 3's fit under MultiWorkerMirroredStrategy.

    Two local worker processes run a plain `fit` without
    `medivision_tf.compat.patch_for_multi_worker`. If they succeed, upstream
    is fixed: delete the patch (and its call in training/loop.py) and this test.
    """
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / f"worker{index}.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        ))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    errors = [json.loads((tmp_path / f"worker{i}.json").read_text())["error"] for i in range(2)]
    if all(error is None for error in errors):
        pytest.fail("Upstream fixed tensorflow/tensorflow#72388: remove "
                    "medivision_tf.compat.patch_for_multi_worker and this test.")
    assert all(error and any(known in error for known in KNOWN_ERRORS) for error in errors), errors
