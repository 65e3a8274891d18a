"""Whether each workaround in `medivision_tf.compat` is still needed.

Each test runs the upstream code path *without* the workaround and expects
the known failure. When upstream fixes the bug the test fails, saying which
workaround to remove.
"""

import json

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


def test_multi_worker_fit_still_needs_the_compat_patch(tmp_path, two_workers):
    """tensorflow/tensorflow#72388: Keras 3's fit under MultiWorkerMirroredStrategy.

    Two local worker processes run a plain `fit` without
    `medivision_tf.compat.patch_for_multi_worker`. If they succeed, upstream
    is fixed: delete the patch (and its call in training/loop.py) and this test.
    """
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    two_workers(lambda index: [script, tmp_path / f"worker{index}.json"])
    errors = [json.loads((tmp_path / f"worker{i}.json").read_text())["error"] for i in range(2)]
    if all(error is None for error in errors):
        pytest.fail("Upstream fixed tensorflow/tensorflow#72388: remove "
                    "medivision_tf.compat.patch_for_multi_worker and this test.")
    assert all(error and any(known in error for known in KNOWN_ERRORS) for error in errors), errors
