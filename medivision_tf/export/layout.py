"""TF Serving's folder layout: integer version folders and the metadata files beside the graph.

```
saved_models/NAME/            the model base path (NAME: the served model name)
  VERSION/                    1, 2, ...: one SavedModel each
    saved_model.pb, variables/
    assets.extra/medivision.json, labels.txt, tf_serving_warmup_requests
```

Example:

```python
from medivision_tf.export import existing_versions, latest_version_path, read_export_metadata

existing_versions("saved_models/lesions")                  # [1, 2]
latest_version_path("saved_models/lesions")                # "saved_models/lesions/2"
read_export_metadata("saved_models/lesions")["class_names"]
```
"""

import json
import os
import re

from medivision_tf.model import get_model_config

SIGNATURES = ("serving_default", "predict_images", "explain")
METADATA_DIR = "assets.extra"
METADATA_FILE = "medivision.json"
LABELS_FILE = "labels.txt"
# TF Serving replays this file's PredictionLog records before it reports a
# version AVAILABLE (SavedModel warm-up), so the first client request does not
# pay the one-off graph costs.
WARMUP_FILE = "tf_serving_warmup_requests"
VERSION_DIR = re.compile(r"^[0-9]+$")


def check_version(version):
    """`version` as a positive int (an int, or a string of digits); else ValueError."""
    if isinstance(version, bool) or not isinstance(version, int):
        try:
            if isinstance(version, str) and VERSION_DIR.match(version):
                version = int(version)
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                "`version` must be a positive integer (TF Serving version "
                f"folder) or None for the next one. Received: version={version!r}"
            ) from None
    if version < 1:
        raise ValueError(
            f"`version` must be a positive integer. Received: version={version!r}"
        )
    return version


def existing_versions(export_dir):
    """The integer versions present under `export_dir`, ascending.

    Only folders named by digits and holding a `saved_model.pb` count, as in
    TF Serving.

    Example:

    ```python
    existing_versions("saved_models/lesions")   # [1, 2]
    ```
    """
    export_dir = os.fspath(export_dir)
    if not os.path.isdir(export_dir):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(export_dir)
        if VERSION_DIR.match(entry)
        and os.path.isfile(os.path.join(export_dir, entry, "saved_model.pb"))
    )


def next_version(export_dir):
    """1 + the largest version under `export_dir` (1 when there is none)."""
    versions = existing_versions(export_dir)
    # Also skip digit folders without a saved_model.pb (e.g. a copy in
    # progress): never write into them.
    taken = [
        int(entry)
        for entry in (os.listdir(export_dir) if os.path.isdir(export_dir) else [])
        if VERSION_DIR.match(entry)
    ]
    return max(versions + taken, default=0) + 1


def latest_version_path(path):
    """The newest version folder of a TF Serving model base path.

    Args:
        path: `export_dir` holding integer version folders, or one version
            folder itself (returned as is).

    Returns:
        The path of the version folder with the largest number.

    Raises:
        FileNotFoundError: `path` holds no SavedModel version.

    Example:

    ```python
    latest_version_path("saved_models/lesions")   # "saved_models/lesions/2"
    ```
    """
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = existing_versions(path)
    if not versions:
        raise FileNotFoundError(
            f"No SavedModel version under {path!r}: expected folders named by "
            "integers (1, 2, ...) holding saved_model.pb, as written by "
            "`medivision export` / export_saved_model."
        )
    return os.path.join(path, str(versions[-1]))


def read_export_metadata(path):
    """Reads an export's class names, input shape and signatures (plain JSON).

    Needs neither Keras nor TensorFlow: it reads
    `VERSION/assets.extra/medivision.json`.

    Args:
        path: a model base path (its newest version is read) or a version
            folder.

    Returns:
        A dict with `class_names`, `input_shape` (`[H, W, C]`),
        `multi_label`, `signatures`, `version`, `model_name`, `model_config`
        (`medivision_tf.get_model_config(model).to_dict()`; rebuild it with
        `ModelConfig.from_dict`) and `warmup_file`.

    Example:

    ```python
    read_export_metadata("saved_models/lesions")["input_shape"]   # [64, 64, 1]
    ```
    """
    version_dir = latest_version_path(path)
    metadata_path = os.path.join(version_dir, METADATA_DIR, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(
            f"{metadata_path!r} not found: {version_dir!r} was not written by "
            "medivision_tf.export.export_saved_model."
        )
    with open(metadata_path) as f:
        return json.load(f)


def model_name_of(version_dir):
    """The served model name of a version folder: its parent folder's name."""
    return os.path.basename(os.path.dirname(os.path.abspath(version_dir)))


def write_metadata(version_dir, model, input_shape, class_names, version):
    """Writes `assets.extra/medivision.json` and `assets.extra/labels.txt` of a version folder.

    Args:
        version_dir: the SavedModel version folder.
        model: the exported MediVision model (its `ModelConfig` is stored).
        input_shape: the model's `(H, W, C)`.
        class_names: the class names, in output order.
        version: the version number.

    Example:

    ```python
    write_metadata("saved_models/lesions/1", model, (64, 64, 1), ["a", "b"], 1)
    read_export_metadata("saved_models/lesions/1")["model_name"]     # 'lesions'
    ```
    """
    folder = os.path.join(version_dir, METADATA_DIR)
    os.makedirs(folder, exist_ok=True)
    config = get_model_config(model)
    metadata = {
        "model_name": model_name_of(version_dir),
        "version": version,
        "class_names": list(class_names),
        "input_shape": list(input_shape),
        "input_range": [0, 255],
        "multi_label": bool(config.multi_label),
        "signatures": list(SIGNATURES),
        "keras_model_name": model.name,
        # build_medivision's arguments: later stages read them, never infer.
        "model_config": config.to_dict(),
        "warmup_file": f"{METADATA_DIR}/{WARMUP_FILE}",
    }
    with open(os.path.join(folder, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    with open(os.path.join(folder, LABELS_FILE), "w") as f:
        f.write("".join(f"{name}\n" for name in class_names))
