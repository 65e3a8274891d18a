"""`export_saved_model`: a MediVision model written as a new SavedModel version in TF Serving's layout.

Example:

```python
from medivision_tf.export import export_for_serving, export_saved_model

path = export_saved_model(model, "saved_models/lesions")            # .../1
result = export_for_serving(model, "lesions")                       # .../2
print(result.serve_command)
```
"""

import os
import re
import shlex
import shutil
import uuid
from typing import NamedTuple

from medivision_tf.export.layout import (
    check_version,
    model_name_of,
    next_version,
    write_metadata,
)
from medivision_tf.export.signatures import build_archive, check_model
from medivision_tf.export.warmup import write_warmup_requests


def export_saved_model(model, export_dir, version=None, *, overwrite=False, verbose=False):
    """Exports a MediVision model as a SavedModel in TF Serving's layout.

    The SavedModel is written to `export_dir/VERSION/` (first to a hidden
    temporary folder, then renamed, so a TF Serving instance watching
    `export_dir` never loads a half-written version).

    Args:
        model: a model from `medivision_tf.build_medivision` (one image input
            `(H, W, C)` of raw 0-255 pixels, a `"class_labels"` output layer
            and a `"feature_map"` layer for Grad-CAM).
        export_dir: the model's base folder, e.g. `"saved_models/lesions"`;
            its last part is the model name TF Serving serves it under.
        version: a positive integer; `None` takes the next one (1 + the
            largest existing version, 1 for a new folder).
        overwrite: replace `export_dir/version` if it exists (otherwise an
            existing version is an error).
        verbose: print the endpoints (Keras' `ExportArchive` listing).

    Returns:
        The path of the written version folder, e.g. `"saved_models/lesions/2"`.

    Raises:
        ValueError: `version` is not a positive integer, or the model lacks
            an image input / the layers named above.
        FileExistsError: the version folder exists and `overwrite` is False.

    Example:

    ```python
    path = export_saved_model(model, "saved_models/lesions")            # .../1
    path = export_saved_model(model, "saved_models/lesions")            # .../2
    path = export_saved_model(model, "saved_models/lesions", version=10)
    ```
    """
    export_dir = os.fspath(export_dir)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ValueError(
            f"`export_dir` must be a folder (TF Serving's model base path). "
            f"Received the file: {export_dir!r}"
        )
    input_shape, class_names = check_model(model)
    if version is None:
        version = next_version(export_dir)
    version = check_version(version)
    target = os.path.join(export_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists: {target!r}. Pass another "
            "`version`, version=None for the next one, or overwrite=True."
        )

    archive = build_archive(model, input_shape, class_names)
    os.makedirs(export_dir, exist_ok=True)
    staging = os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    try:
        archive.write_out(staging, verbose=verbose)
        write_metadata(staging, model, input_shape, class_names, version)
        write_warmup_requests(staging, model_name_of(staging), input_shape)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return target


class ServingExport(NamedTuple):
    """What `export_for_serving` wrote and how to serve it."""

    path: str
    version: int
    model_name: str
    serve_command: str


def export_for_serving(model, name="medivision", export_root="saved_models", port=8501):
    """Exports `model` to `export_root/name/NEXT_VERSION` and says how to serve it.

    Meant for the end of a training run (e.g. `medivision demo`): print
    `result.serve_command` for the user.

    Args:
        model: a model from `build_medivision`.
        name: the model name (folder under `export_root`, URL path part).
        export_root: parent of the model folders.
        port: port shown in the serving command.

    Returns:
        A `ServingExport(path, version, model_name, serve_command)`.

    Example:

    ```python
    result = export_for_serving(model, "lesions")
    print(f"SavedModel: {result.path}\\nServe it: {result.serve_command}")
    ```
    """
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ValueError(
            "`name` must be a model name of letters, digits, '_', '.', '-' "
            f"(it becomes a URL path part). Received: name={name!r}"
        )
    base = os.path.join(os.fspath(export_root), name)
    path = export_saved_model(model, base)
    command = f"medivision serve {shlex.quote(base)} --port {int(port)}"
    return ServingExport(path, int(os.path.basename(path)), name, command)
