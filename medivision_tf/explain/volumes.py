"""Explaining a volume: slice overlays, a montage and the per-slice scores.

A NIfTI volume (or a multi-frame DICOM for a model with `frames="all"`) is
cut into the slices its model was trained on (`data.sources.volumes.expand_paths`
with the model's saved `DecodeOptions`), its volume-level class is the one
`medivision_tf.prediction.predict_files` reports (mean of the slice
probabilities, calibrated ones with trust values), and the maps of the slices
that speak most for that class are drawn.

Example:

```python
import medivision_tf
from medivision_tf.explain import explain_volume

model = medivision_tf.load_model("runs/mri/model.keras")
result = explain_volume(model, "brain.nii.gz", "explanations", method="gradcam")
result["prediction"], result["most_responsible_slice"], result["summary"]
# explanations/brain_slice012_gradcam.png ...   one overlay per explained slice
# explanations/brain_volume_gradcam.png         the montage of those overlays
# explanations/brain_slices.csv                 every selected slice's scores
```
"""

import os

import cv2
import numpy as np
import pandas as pd

from medivision_tf.data.io.read_files import read_images
from medivision_tf.data.sources.volumes import expand_paths
from medivision_tf.explain import _cache, _inputs
from medivision_tf.explain.files import explain_images
from medivision_tf.explain.methods import METHODS
from medivision_tf.explain.overlays import save_montage
from medivision_tf.model import get_model_config

#: The `slice` value of the volume-level row of the per-slice CSV (as in
#: `medivision_tf.prediction.predict_files`).
VOLUME_ROW = "volume"
_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".dicom")


def volume_stem(path):
    """A volume's file name without its extension (`brain.nii.gz` -> `brain`)."""
    name = os.path.basename(os.fspath(path))
    for suffix in _VOLUME_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0] or name


def is_volume(model, path):
    """Whether `explain_volume` (and `predict_files`) treat a file as a
    volume for this model: it expands into slices with the model's decode
    options (a NIfTI file, or a multi-frame DICOM with `frames="all"`).

    Raises:
        ValueError: a `.nii` file that is not NIfTI, or a volume with no
            slice selected (see `data.sources.volumes.check_volume`).

    Example:

    ```python
    is_volume(model, "brain.nii.gz"), is_volume(model, "chest.png")   # (True, False)
    ```
    """
    decode = get_model_config(model).decode
    samples = expand_paths([path], decode.frames, decode.nifti_slices, decode.nifti_axis)
    return bool((samples["frame"] >= 0).any())


def explain_volume(
    model,
    path,
    out_dir,
    method="gradcam",
    name=None,
    class_index=None,
    layer_name=None,
    top_slices=9,
    batch_size=16,
    verbose="auto",
):
    """Explains one volume: overlays of its most telling slices, a montage,
    and a CSV of every selected slice's scores.

    The slices are those training used (the model's `nifti_slices`,
    `nifti_axis`, per-volume normalisation; DICOM frames with
    `frames="all"`). One forward pass gives each slice's probabilities
    (calibrated with the model's temperature when it has trust values, as in
    `predict_files`); the volume's class is the arg-max of their mean. Every
    slice map is drawn for one class (the volume's, or `class_index`), so the
    maps of a volume compare; the `top_slices` slices with the highest
    probability of that class are explained. Files written in `out_dir`:

    - `<name>_slice<NNN>_<method>.png`: each explained slice's overlay, `NNN`
      the slice index in the volume (zero-padded to 3 digits);
    - `<name>_grid_<k>.png`: image, map and attention map of the explained
      slices, `batch_size` per grid (as `explain_images` writes them);
    - `<name>_volume_<method>.png`: the montage of the overlays in slice
      order, each captioned with its slice index and probability of the
      class, the slice with the highest probability (the one most
      responsible for the volume's class) framed in green;
    - `<name>_slices.csv`: one row per selected slice (`slice`, `class`,
      `probability`, `prob_<class>` ..., `explained`, `overlay` file name or
      `""`), then the volume row (`slice` = `"volume"`, the mean
      probabilities, `overlay` = the montage).

    Args:
        model: a model from `medivision_tf.build_medivision`.
        path: a NIfTI file (`.nii`, `.nii.gz`), or a multi-frame DICOM when
            the model's `decode.frames` is `"all"`.
        out_dir: output folder (created if needed).
        method: one of `METHODS`.
        name: file name stem (default: the file name without `.nii.gz`, ...).
        class_index: None (the volume's class) or the class id to explain.
        layer_name: target layer (default `"feature_map"`).
        top_slices: how many slices to explain (the most confident for the
            class); 0 or None: every selected slice.
        batch_size: slices per grid and per pass.
        verbose: progress bar (see `explain_images`).

    Returns:
        dict: `name`, `path`, `prediction` (the volume's class), `probability`
        (its mean probability), with trust values the volume row's
        `prediction_set`, `ood_score` and `out_of_distribution` as
        `medivision predict` gives them, `explained_class`, `slices` (the selected
        slice indices), `most_responsible_slice`, `rows` (`explain_images`'
        rows of the explained slices, plus `slice`), `summary` (montage path),
        `csv` (path).

    Raises:
        ValueError: `path` is not a volume for this model (a 2-D image: use
            `explain_images`), is not a readable NIfTI, has no selected
            slice, or an argument is invalid (the valid values are named).

    Example:

    ```python
    result = explain_volume(model, "brain.nii.gz", "out", top_slices=4)
    result["summary"]         # 'out/brain_volume_gradcam.png'
    ```
    """
    if method not in METHODS:
        raise ValueError(
            f"Unknown explanation method {method!r}. Choose one of: {', '.join(METHODS)}."
        )
    if top_slices is not None and (
        isinstance(top_slices, bool) or not isinstance(top_slices, (int, np.integer))
        or top_slices < 0
    ):
        raise ValueError(
            "`top_slices` must be an integer >= 0 (0: every selected slice). "
            f"Received: top_slices={top_slices!r}"
        )
    _inputs.check_layer(model, layer_name)
    path = os.fspath(path)
    config = get_model_config(model)
    class_names = list(config.class_names)
    decode = config.decode
    samples = expand_paths([path], decode.frames, decode.nifti_slices, decode.nifti_axis)
    if not (samples["frame"] >= 0).all():
        raise ValueError(
            f"{path!r} is not a volume for this model (a NIfTI file, or a multi-frame "
            f"DICOM with frames='all'; the model has frames={decode.frames!r}): "
            "explain it with explain_images."
        )
    frames = samples["frame"].astype(int).tolist()
    images = read_images(list(samples["path"]), channels=config.channels,
                         **decode.image_kwargs())
    probabilities, trusted = _slice_probabilities(model, images, config, batch_size)
    mean = probabilities.mean(axis=0)  # the volume's probabilities, as predict_files
    target = int(mean.argmax()) if class_index is None else int(
        _inputs.check_class_index(class_index, 1, len(class_names))[0]
    )
    scores = probabilities[:, target]
    count = len(frames) if not top_slices else min(int(top_slices), len(frames))
    chosen = np.sort(np.argsort(-scores, kind="stable")[:count])
    name = name or volume_stem(path)
    rows = explain_images(
        model, [images[i] for i in chosen], out_dir, method=method,
        names=[f"{name}_slice{frames[i]:03d}" for i in chosen], class_index=target,
        layer_name=layer_name, batch_size=batch_size, verbose=verbose,
        grid_prefix=f"{name}_grid",
    )
    for row, i in zip(rows, chosen):
        row["slice"] = frames[i]
    best = int(np.argmax(scores[chosen]))
    summary = save_montage(
        os.path.join(out_dir, f"{name}_volume_{method}.png"),
        [cv2.cvtColor(cv2.imread(row["overlay"]), cv2.COLOR_BGR2RGB) for row in rows],
        captions=[f"slice {frames[i]} p={scores[i]:.2f}" for i in chosen],
        title=(f"{name}: {class_names[int(mean.argmax())]} p={mean.max():.2f} "
               f"({len(frames)} slices); {method} of {class_names[target]}"),
        highlight=best,
    )
    csv = _write_scores(os.path.join(out_dir, f"{name}_slices.csv"), frames, probabilities,
                        mean, class_names, {int(i): rows[j]["overlay"] for j, i in
                                            enumerate(chosen)}, summary)
    answer = {}
    if trusted is not None:  # the volume row of `medivision predict`
        from medivision_tf.prediction import trust_columns

        columns = trust_columns([(path, "volume", np.arange(len(frames)))], mean[None],
                                trusted, config)
        answer = {key: values[0] for key, values in columns.items()}
    return {
        **answer,
        "name": name,
        "path": path,
        "prediction": class_names[int(mean.argmax())],
        "probability": float(mean.max()),
        "explained_class": class_names[target],
        "slices": frames,
        "most_responsible_slice": frames[int(chosen[best])],
        "rows": rows,
        "summary": summary,
        "csv": csv,
    }


def _slice_probabilities(model, images, config, batch_size):
    """Each slice's probabilities in one traced forward pass, and the trust
    values `medivision predict` gives the slices (calibrated probabilities,
    OOD score and flag; None without trust values)."""
    inputs = _inputs.fit_to_model(np.stack([np.asarray(i, "float32") for i in images]), model)
    probabilities, _ = _cache.probe_outputs(model, inputs, batch_size)
    if config.trust and not config.multi_label:
        from medivision_tf.prediction import trust_values

        trusted = trust_values(model, np.asarray(inputs), probabilities, batch_size)
        return trusted["probabilities"], trusted
    return probabilities, None


def _write_scores(path, frames, probabilities, mean, class_names, overlays, summary):
    everything = np.concatenate([probabilities, mean[None]])
    table = pd.DataFrame({
        "slice": [str(f) for f in frames] + [VOLUME_ROW],
        "class": [class_names[i] for i in everything.argmax(axis=1)],
        "probability": everything.max(axis=1),
    })
    for i, name in enumerate(class_names):
        table[f"prob_{name}"] = everything[:, i]
    table["explained"] = [i in overlays for i in range(len(frames))] + [True]
    table["overlay"] = [os.path.basename(overlays.get(i, "")) for i in range(len(frames))] + [
        os.path.basename(summary)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table.to_csv(path, index=False)
    return path
