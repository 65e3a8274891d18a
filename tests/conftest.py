"""Shared fixtures: small synthetic data and a tiny trained MediVision.

Tests use `weights=None`, small inputs and few steps (nothing is downloaded).
An untrained network gives constant predictions and empty Grad-CAM maps, so
tests about predictions or maps use `trained_model`, trained a few epochs.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

import medivision_tf
from medivision_tf.data import make_synthetic_lesions

# README (a) installs pandas 3 (copy-on-write: `to_numpy()` hands out read-only
# views), while the test extras pull kserve, which pins pandas<3. Under pandas 2
# turn copy-on-write on, so this suite runs the tables the way base users get them.
if int(pd.__version__.split(".")[0]) < 3:
    pd.set_option("mode.copy_on_write", True)

# Every skip printed with its reason; in CI only the allow-listed ones pass (skip_policy.py).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from skip_policy import (  # noqa: E402,F401  (hooks: pytest finds them by name here)
    pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish, pytest_terminal_summary,
)
from model_cache import cached_model  # noqa: E402  (tests/model_cache.py)

# The longest test modules first (seconds in a full run on 2 cores, 2026-12-07):
# xdist hands out whole modules (--dist loadfile) in collection order, and a long
# module handed out last runs alone while the other workers idle. Longest first
# keeps the workers' ends close. The rest keep their alphabetical order.
LONGEST_MODULES = (
    "test_training.py",      # 131 s
    "test_backends.py",      # 101 s (three backend processes)
    "test_notebooks.py",     # 75 s
    "test_resume.py",        # 68 s
    "test_hostile_inputs.py",  # 54 s
    "test_benchmarks.py",    # 53 s
    "test_model.py",         # 42 s
    "test_shards.py",        # 41 s
    "test_reproduce.py",     # 37 s
    "test_medical_bombs.py",  # 36 s
    "test_dicom_pacs.py",    # 30 s
    "test_trust.py",         # 28 s
)


def pytest_collection_modifyitems(config, items):
    """Runs the longest modules first (see `LONGEST_MODULES`); stable within a module."""

    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)


IMAGE_SIZE = 64
NUM_CLASSES = 3


@pytest.fixture(scope="session")
def lesion_data():
    """Train and test splits of 64x64 grayscale synthetic lesions, 3 classes."""
    return {
        "train": make_synthetic_lesions(360, IMAGE_SIZE, NUM_CLASSES, seed=10),
        "test": make_synthetic_lesions(96, IMAGE_SIZE, NUM_CLASSES, seed=11),
    }


@pytest.fixture(scope="session")
def trained_model(lesion_data, pytestconfig):
    """A smallcnn MediVision trained for a few epochs on `lesion_data`.

    Trained once and kept on disk by a content key (`model_cache.py`): both
    xdist workers, and later runs, load the same file.
    """
    train = lesion_data["train"]
    settings = dict(num_classes=NUM_CLASSES, backbone="smallcnn", image_size=IMAGE_SIZE,
                    channels=1, seed=0, learning_rate=2e-3, batch_size=32, epochs=6,
                    class_names=list(train.class_names))

    def fit():
        keras.utils.set_random_seed(settings["seed"])
        model = medivision_tf.build_medivision(
            NUM_CLASSES,
            backbone="smallcnn",
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
            weights=None,
            class_names=train.class_names,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(settings["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(train.images, train.labels, batch_size=settings["batch_size"],
                  epochs=settings["epochs"], verbose=0)
        medivision_tf.calibrate_batchnorm(model, train.images)
        return model

    return cached_model(pytestconfig, "trained_model", fit, settings,
                        data=(train.images, train.labels))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def free_ports():
    """`free_ports(n)`: n TCP ports on 127.0.0.1 that are free right now."""

    def find(count):
        sockets = [socket.socket() for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in sockets]
        for s in sockets:
            s.close()
        return ports

    return find


@pytest.fixture
def two_workers(free_ports):
    """`two_workers(argv_of, timeout=300)`: two local MultiWorkerMirroredStrategy workers.

    Starts `python *argv_of(index)` for index 0 and 1 with a TF_CONFIG naming
    both on 127.0.0.1, waits for them and asserts both exited 0 (the message
    holds the end of both workers' stderr).
    """

    def run(argv_of, timeout=300):
        cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
        procs = []
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            env["TF_CONFIG"] = json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}})
            procs.append(subprocess.Popen(
                [sys.executable, *map(str, argv_of(index))],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            ))
        try:
            outputs = [p.communicate(timeout=timeout) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        # One worker's failure often shows as the other's lost heartbeat: show both.
        failed = [f"worker {i} exited {p.returncode}:\n{err[-3000:]}"
                  for i, (p, (_, err)) in enumerate(zip(procs, outputs)) if p.returncode != 0]
        assert not failed, "\n\n".join(
            f"worker {i} exited {p.returncode}:\n{err[-3000:]}"
            for i, (p, (_, err)) in enumerate(zip(procs, outputs)))

    return run
