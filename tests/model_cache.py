"""Small trained test models, trained once and kept on disk by a content key.

`cached_model(config, name, train, settings=..., data=...)` returns the model
that `train()` builds, loaded from `<cache>/<name>-<key>.keras`. The key hashes
what decides the weights: `settings` (a JSON-able dict: sizes, epochs, seeds),
the bytes of the training arrays in `data`, the versions of Python, NumPy,
TensorFlow and Keras, and the source of the package files that build, train
and store the model (`SOURCES`, plus any given). Change any of them and the
model is trained again; otherwise both xdist workers and every later run
load the same file.

Two workers that need the same model race safely: the first takes an
exclusive `flock` on `<name>.lock`, trains, writes `<name>-<key>.keras` under a
temporary name and renames it into place (a reader never sees half a file);
the other waits on the lock, then loads the finished file. Either way the
caller gets the model loaded from the file, so every worker tests the same
kind of object. Older files of the same name are removed.

The cache lives in pytest's cache folder (`.pytest_cache/d/medivision_models`,
ignored by git; `pytest --cache-clear` empties it), or under the system's
temporary folder when the cache plugin is off (`-p no:cacheprovider`).
`MEDIVISION_TEST_MODEL_CACHE=0` trains every model afresh (nothing read or kept).
"""

import fcntl
import hashlib
import json
import os
import platform
import tempfile

# The package files that decide a trained model's weights and how it is saved.
SOURCES = (
    "backbones.py", "layers.py", "model.py", "model_access.py", "config.py", "finetune.py",
)
CACHE_VARIABLE = "MEDIVISION_TEST_MODEL_CACHE"
_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "medivision_tf")


def cache_dir(config):
    """The folder of cached models (made if missing)."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return str(cache.mkdir("medivision_models"))
    path = os.path.join(tempfile.gettempdir(), f"medivision-test-models-{os.getuid()}")
    os.makedirs(path, exist_ok=True)
    return path


def content_key(settings, data=(), sources=()):
    """A hex digest of everything that decides the trained weights."""
    import keras
    import numpy as np
    import tensorflow as tf

    digest = hashlib.sha256()
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "tensorflow": tf.__version__, "keras": keras.__version__}
    digest.update(json.dumps({"settings": settings, "versions": versions},
                             sort_keys=True, default=str).encode())
    for array in data:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    for relative in (*SOURCES, *sources):
        with open(os.path.join(_PACKAGE, relative), "rb") as f:
            digest.update(relative.encode() + b"\0" + f.read())
    return digest.hexdigest()[:20]


def cached_model(config, name, train, settings, data=(), sources=(), compile=True):
    """The model `train()` returns, trained once per content key and loaded from disk.

    Args:
        config: pytest's config (for its cache folder).
        name: a file-name-safe name of this model.
        train: a function of no arguments returning the trained `keras.Model`.
        settings: JSON-able dict of every setting `train` uses.
        data: the arrays `train` learns from (hashed by content).
        sources: more package files (relative to `medivision_tf/`) that decide the model.
        compile: passed to `load_model`.
    """
    import medivision_tf

    if os.environ.get(CACHE_VARIABLE, "1") == "0":
        folder = tempfile.mkdtemp(prefix=f"{name}-")
        path = os.path.join(folder, f"{name}.keras")
        train().save(path)
        return medivision_tf.load_model(path, compile=compile)

    folder = cache_dir(config)
    path = os.path.join(folder, f"{name}-{content_key(settings, data, sources)}.keras")
    with open(os.path.join(folder, f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits here while one trains
        try:
            if not os.path.isfile(path):
                partial = os.path.join(folder, f".partial-{os.getpid()}-{os.path.basename(path)}")
                try:
                    train().save(partial)
                    os.replace(partial, path)  # atomic: the file is whole or absent
                finally:
                    if os.path.exists(partial):
                        os.remove(partial)
                for old in os.listdir(folder):
                    if (old.startswith(f"{name}-") and old.endswith(".keras")
                            and old != os.path.basename(path)):
                        os.remove(os.path.join(folder, old))
            return medivision_tf.load_model(path, compile=compile)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
