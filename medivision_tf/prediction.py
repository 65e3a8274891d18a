"""Prediction: class probabilities with test-time augmentation, and image files.

- `predict_probabilities(model, images, tta=...)`: probabilities averaged
  over test-time augmentations (`TTA_TRANSFORMS`), one pass over the data.
- `predict_files(model, paths, top_k=None)`: class, probability and top-k per
  image file; a NIfTI volume (or a multi-frame DICOM with the model's
  `frames="all"`) gives one row per slice and one volume-level row.
- `load_images`: `medivision_tf.data.io.read_files.load_images`, the one reader of
  image files (JPEG, PNG 8/16-bit, BMP, GIF, WebP, TIFF, DICOM; the format is
  sniffed from the bytes), so files are decoded and resized exactly as the
  training pipeline does (aspect ratio kept, black padding).

Progress: `verbose="auto"` (the default, like Keras' `predict`) shows a tqdm
bar on stderr when there are more than `PROGRESS_MIN_IMAGES` images;
`verbose=1`/`True` always shows it, `0`/`False` never.

Example:

```python
import medivision_tf
from medivision_tf.prediction import predict_files

model = medivision_tf.load_model("runs/x/model.keras")
table = predict_files(model, ["scan1.png", "scan2.dcm"], top_k=2)
table[["path", "class", "probability", "top_k"]]

# A volume: one row per selected slice, then its volume-level row.
volume = predict_files(model, ["brain.nii.gz"])
volume.loc[volume["slice"] == "volume", ["path", "class", "probability"]]
```
"""

from medivision_tf.backend import INSTEAD, require_tensorflow

# Before TensorFlow is imported: on JAX or PyTorch, one clear error (docs/backends.md).
require_tensorflow(
    "medivision_tf.prediction (image-file readers, test-time augmentation)",
    INSTEAD["prediction"],
)

import os

import numpy as np
import pandas as pd
import tensorflow as tf

# The one reader of image files; re-exported so `prediction.load_images` keeps working.
from medivision_tf.data.io.read_files import load_images
from medivision_tf.data.checks.scan import PROGRESS_MIN_IMAGES
from medivision_tf.data.sources.volumes import expand_paths
from medivision_tf.model import get_model_config

__all__ = [
    "PROGRESS_MIN_IMAGES",
    "TTA_TRANSFORMS",
    "VOLUME_ROW",
    "check_tta",
    "load_images",
    "predict_batches",
    "predict_files",
    "predict_probabilities",
    "progress_bar",
]

TTA_TRANSFORMS = ("identity", "flip_left_right", "flip_up_down", "rot180")


# === Progress ===


def progress_bar(total, verbose="auto", desc=None, unit="img"):
    """A tqdm progress bar on stderr, or a disabled one.

    Args:
        total: number of items, or None when unknown.
        verbose: `"auto"` shows the bar when `total` is unknown or more than
            `PROGRESS_MIN_IMAGES`; `1`/`True` always; `0`/`False` never.
        desc: the bar's label.
        unit: the items' unit.

    Returns:
        A `tqdm` object (disabled ones do nothing); call `update(n)` and
        `close()`.

    Example:

    ```python
    bar = progress_bar(100, desc="Predicting")
    bar.update(32)
    bar.close()
    ```
    """
    from tqdm.auto import tqdm

    if verbose not in ("auto", 0, 1, True, False):
        raise ValueError(
            f"`verbose` must be 'auto', 0, 1, True or False. Received: verbose={verbose!r}"
        )
    if verbose == "auto":
        show = total is None or total > PROGRESS_MIN_IMAGES
    else:
        show = bool(verbose)
    return tqdm(total=total, desc=desc, unit=unit, disable=not show, leave=False)


# === Test-time augmentation ===


def _transform(images, name):
    if name == "identity":
        return images
    if name == "flip_left_right":
        return tf.reverse(images, axis=[2])
    if name == "flip_up_down":
        return tf.reverse(images, axis=[1])
    return tf.reverse(images, axis=[1, 2])  # rot180


def check_tta(tta):
    """The list of transform names a `tta` argument means.

    Args:
        tta: False/None (`["identity"]`), True (`["identity",
            "flip_left_right"]`), one name or a list of names from
            `TTA_TRANSFORMS`.

    Raises:
        ValueError: an unknown or empty list of transforms (the valid ones are
            listed).

    Example:

    ```python
    check_tta(True)   # ['identity', 'flip_left_right']
    ```
    """
    if tta is False or tta is None:
        return ["identity"]
    if tta is True:
        return ["identity", "flip_left_right"]
    names = [tta] if isinstance(tta, str) else list(tta)
    for name in names:
        if name not in TTA_TRANSFORMS:
            raise ValueError(
                f"Unknown TTA transform {name!r}. Choose from: {', '.join(TTA_TRANSFORMS)}."
            )
    if not names:
        raise ValueError(f"`tta` names no transform. Choose from: {', '.join(TTA_TRANSFORMS)}.")
    return names


def _batches(data, batch_size):
    """`(images, labels or None)` per batch: a dataset's elements, or slices
    of an image array (converted to float32 one batch at a time)."""
    if isinstance(data, tf.data.Dataset):
        for element in data:
            if isinstance(element, (tuple, list)):
                yield element[0], (element[1] if len(element) > 1 else None)
            else:
                yield element, None
    else:
        for start in range(0, len(data), batch_size):
            yield data[start:start + batch_size], None


def predict_batches(model, data, batch_size=32, tta=False, verbose="auto", total=None):
    """One pass over `data`: probabilities and the labels the data carries.

    Each batch is predicted under every transform (`model.predict_on_batch`)
    and the results averaged before the next batch is read, so files are
    decoded once whatever the number of transforms. `evaluate_model` uses it
    to keep a dataset's labels from the same pass.

    Args:
        model: a Keras classifier.
        data: array `(n, h, w, c)` of raw pixels, or a `tf.data.Dataset` of
            image batches or `(images, labels)` batches.
        batch_size: batch size for arrays.
        tta: see `check_tta`.
        verbose: progress bar over the images (see `progress_bar`).
        total: the number of images when `data` is a dataset and it is known
            (for the bar; default: unknown).

    Returns:
        `(probabilities, labels)`: `(n, num_classes)` float array and one
        entry per batch: its labels as a NumPy array, or None.

    Raises:
        ValueError: `data` is empty, or `tta` is invalid.

    Example:

    ```python
    probabilities, labels = predict_batches(model, dataset, tta=True)
    ```
    """
    names = check_tta(tta)
    if not isinstance(data, tf.data.Dataset):
        data = np.asarray(data)
        total = len(data)
    bar = progress_bar(total, verbose, desc="Predicting")
    probabilities, labels = [], []
    try:
        for images, y in _batches(data, batch_size):
            images = tf.cast(images, tf.float32)
            outputs = [np.asarray(model.predict_on_batch(_transform(images, n))) for n in names]
            probabilities.append(np.mean(outputs, axis=0) if len(outputs) > 1 else outputs[0])
            labels.append(None if y is None else np.asarray(y))
            bar.update(len(probabilities[-1]))
    finally:
        bar.close()
    if not probabilities:
        raise ValueError("No images to predict: the data is empty.")
    return np.concatenate(probabilities), labels


def predict_probabilities(model, images, batch_size=32, tta=False, verbose="auto"):
    """Class probabilities, averaged over test-time augmentations.

    The data is read once: each batch is predicted under every transform
    (`model.predict_on_batch`) and the results averaged before the next batch
    is read, so files are decoded once whatever the number of transforms.

    Args:
        model: a Keras classifier.
        images: array `(n, h, w, c)` of raw pixels (converted to float32 one
            batch at a time), or a `tf.data.Dataset` of image batches or
            `(images, labels)` batches.
        batch_size: batch size for arrays.
        tta: False (plain prediction), True (original + left-right flip) or a
            list of transforms from `TTA_TRANSFORMS`.
        verbose: `"auto"` (default: a tqdm bar on stderr above
            `PROGRESS_MIN_IMAGES` images), 1/True (always) or 0/False (never).

    Returns:
        `(n, num_classes)` probabilities (mean over the transforms).

    Example:

    ```python
    probs = predict_probabilities(model, images, tta=["identity", "flip_left_right", "flip_up_down"])
    ```
    """
    return predict_batches(model, images, batch_size, tta, verbose)[0]


# === Image files ===

#: The `slice` value of a volume-level row in `predict_files`' table.
VOLUME_ROW = "volume"


def predict_files(model, paths, top_k=None, batch_size=32, tta=False, threshold=0.5,
                  verbose="auto"):
    """Predicts every image file and returns one row per image (volumes:
    one row per slice plus one volume-level row).

    Files are read by `load_images` (the training pipeline's decoding and
    resize) at the model's input size and channels (`get_model_config`).

    **Volumes.** A NIfTI file (`.nii`, `.nii.gz`) and, when the model's
    `decode.frames` is `"all"`, a multi-frame DICOM file are expanded into
    the slices (frames) training used: `data.sources.volumes.expand_paths` with the
    model's saved `DecodeOptions` (same `nifti_slices` selection,
    `nifti_axis` and per-volume percentile normalisation). Each selected
    slice gives a row, followed by one volume-level row; all of them carry
    the file in `path`, and a `slice` column (strings, so a CSV reader can
    parse it) holds the slice index (`"12"`) on slice rows, `"volume"`
    (`VOLUME_ROW`) on the volume row and `""` on 2-D images. The column is
    added only when some file is a volume: a call on 2-D images alone
    returns exactly the columns below. The volume row aggregates its slices:
    probabilities (calibrated ones with trust values) are averaged, and the
    class, `top_k`, `present` and the prediction set (the stored conformal
    threshold applied to the averaged calibrated probabilities) are read
    from the average; `ood_score` is the median of the slices' scores and
    `out_of_distribution` is set when more than half of the slices are
    flagged. The set's coverage guarantee holds for slices (the unit it was
    fitted on), not for volumes. Of a volume, a slice named by the path
    (`"x.nii.gz#frame=12"`) is predicted as a 2-D image.

    Args:
        model: a MediVision `keras.Model`.
        paths: image or volume file paths.
        top_k: how many classes to list per image (1..num_classes); None
            (default): 3, or every class when there are fewer.
        batch_size: images per forward pass.
        tta: test-time augmentation (see `predict_probabilities`).
        threshold: multi-label models: classes with probability >= threshold
            are listed in `present`.
        verbose: progress bar (see `predict_probabilities`).

    Returns:
        DataFrame with `path`, `slice` (only with volumes, see above),
        `class`, `probability` (top class), `top_k` (`"name:prob; ..."`),
        `present` (multi-label only), for models with trust values
        (`medivision_tf.trust`) `prediction_set` (`"a|b"`), `ood_score` and
        `out_of_distribution`, and one `prob_<class>` column per class. With
        trust values the probabilities are the calibrated ones.

    Raises:
        ValueError: no paths, `top_k` out of range, undecodable files, a
            `.nii` file that is not NIfTI, or a volume with no slice
            selected (all-zero with `nifti_slices="nonempty"`).
        FileNotFoundError: some paths are not files.

    Example:

    ```python
    predict_files(model, ["a.png"], top_k=2).loc[0, "top_k"]   # 'tumor:0.910; normal:0.090'
    table = predict_files(model, ["a.png", "brain.nii.gz"])
    table[table["slice"] == "volume"]          # one row per volume
    table[table["slice"].str.isdigit()]        # the slice rows
    # read back from CSV: pd.read_csv("preds.csv", dtype={"slice": str}, keep_default_na=False)
    ```
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("No image files given.")
    config = get_model_config(model)
    class_names = list(config.class_names)
    if top_k is None:
        top_k = min(3, len(class_names))
    if not isinstance(top_k, int) or not 1 <= top_k <= len(class_names):
        raise ValueError(
            f"`top_k` must be an integer from 1 to {len(class_names)} (the number of "
            f"classes). Received: top_k={top_k!r}"
        )
    decode = config.decode
    samples = expand_paths(paths, decode.frames, decode.nifti_slices, decode.nifti_axis)
    images = load_images(list(samples["path"]), config.image_size, config.channels,
                         **decode.image_kwargs())
    probabilities = predict_probabilities(model, images, batch_size, tta, verbose)
    trusted = None
    if config.trust and not config.multi_label:
        trusted = trust_values(model, images, probabilities, batch_size)
        probabilities = trusted["probabilities"]
    rows = _table_rows(samples)
    # A volume's probabilities are the mean of its slices': every selected
    # slice votes with its whole distribution, the result is still a
    # distribution (and calibrated slices average to calibrated-looking
    # values), one noisy slice cannot decide alone as with the max, and it
    # does not turn overconfident with the slice count as the product of
    # slice probabilities (which treats neighbouring slices as independent
    # evidence) would. A 2-D image's "mean" is its own row, unchanged.
    row_probabilities = np.stack([probabilities[indices].mean(axis=0) for _, _, indices in rows])
    order = np.argsort(-row_probabilities, axis=1)
    frame = pd.DataFrame({"path": [path for path, _, _ in rows]})
    if any(label for _, label, _ in rows):
        frame["slice"] = [label for _, label, _ in rows]
    frame["class"] = [class_names[i] for i in order[:, 0]]
    frame["probability"] = row_probabilities[np.arange(len(rows)), order[:, 0]]
    frame["top_k"] = [
        "; ".join(f"{class_names[i]}:{p[i]:.3f}" for i in row[:top_k])
        for row, p in zip(order, row_probabilities)
    ]
    if config.multi_label:
        frame["present"] = [
            "|".join(class_names[i] for i in np.flatnonzero(p >= threshold))
            for p in row_probabilities
        ]
    if trusted is not None:
        for key, values in trust_columns(rows, row_probabilities, trusted, config).items():
            frame[key] = values
    for i, name in enumerate(class_names):
        frame[f"prob_{name}"] = row_probabilities[:, i]
    return frame


def _table_rows(samples):
    """`(path, slice label, sample indices)` per output row, in input order:
    a 2-D image's one sample (label `""`), or a volume's slices (label the
    index) followed by its volume row (`VOLUME_ROW`, all its samples)."""
    rows = []
    for _, group in samples.groupby("input", sort=True):
        indices = group.index.to_numpy()
        path = group["source_path"].iloc[0]
        if group["frame"].iloc[0] < 0:
            rows.append((path, "", indices))
            continue
        rows += [(path, str(int(f)), np.array([i])) for i, f in zip(indices, group["frame"])]
        rows.append((path, VOLUME_ROW, indices))
    return rows


def trust_values(model, images, probabilities, batch_size=32):
    """Calibrated probabilities, OOD score and flag per sample (`medivision_tf.trust`).

    The one place where `predict_files`, `medivision explain` and the DICOM
    results turn a model's outputs into the answer a user sees, so one model
    and one image give one answer everywhere. The probabilities
    (TTA-averaged when asked) are calibrated with the stored temperature; the
    OOD score reads the untransformed images' features.

    Args:
        model: a single-label MediVision model with trust values.
        images: `(n, H, W, C)` raw 0-255 images at the model's input size.
        probabilities: `(n, classes)` the model's (uncalibrated) outputs for them.
        batch_size: images per forward pass.

    Returns:
        dict of NumPy arrays: `probabilities` (calibrated), `ood_score`,
        `out_of_distribution` (bool).

    Example:

    ```python
    trusted = trust_values(model, images, model.predict(images))
    ```
    """
    from medivision_tf.trust import apply, predict_with_trust

    config = get_model_config(model)
    out = predict_with_trust(model, images, batch_size)
    return {
        "probabilities": np.asarray(apply.calibrate(probabilities, config.trust["temperature"])),
        "ood_score": np.asarray(out["ood_score"]),
        "out_of_distribution": np.asarray(out["out_of_distribution"], bool),
    }


def trust_columns(rows, row_probabilities, trusted, config):
    """`prediction_set`, `ood_score`, `out_of_distribution` per output row.

    Args:
        rows: `(path, label, sample indices)` per output row (one sample for a
            2-D image, a volume's slices for its volume row).
        row_probabilities: `(rows, classes)` each row's calibrated
            probabilities (a volume's: the mean of its slices').
        trusted: `trust_values(...)` of the samples.
        config: the model's `ModelConfig`.

    The set is built from the row's (averaged) calibrated probabilities with
    the stored conformal threshold; a volume's score is the median of its
    slices' scores and its flag is set when more than half of its slices are
    flagged (for one sample: the sample's own values).
    """
    from medivision_tf.trust import apply

    conformal = config.trust["conformal"]
    sets = np.asarray(apply.prediction_sets(row_probabilities, conformal["threshold"],
                                            apply.stored_conformal_method(config.trust)))
    names = list(config.class_names)
    return {
        "prediction_set": ["|".join(names[i] for i in np.flatnonzero(row)) for row in sets],
        # float32 as the model gives it (a 2-D image's value unchanged)
        "ood_score": np.asarray([np.median(trusted["ood_score"][i]) for _, _, i in rows],
                                trusted["ood_score"].dtype),
        "out_of_distribution": np.asarray(
            [trusted["out_of_distribution"][i].mean() > 0.5 for _, _, i in rows], bool),
    }
