"""A series classified as `medivision predict` classifies it, and its Grad-CAM overlays.

`classify_series(model, series)` calls `prediction.predict_files` on the
series' files: the one place that turns the model's outputs into the answer a
user sees (calibrated probability, conformal prediction set, OOD score and
flag), so the DICOM results say exactly what `medivision predict` prints for
the same files. Volume-aware as `predict_files` is: a multi-frame instance of
a model trained with `frames="all"` gives one finding per frame and one for
the instance (the mean of its frames, `predict_files`' volume row).

The series' own finding is the mean of its samples' probabilities, with the
set, OOD score (median) and flag (more than half flagged) built by
`prediction.trust_columns`, the rule of `predict_files`' volume rows.

`overlays` reads each sample at its own size (`read_images`, the model's
decode options) and draws its Grad-CAM heatmap with `explain_images`.

Example:

```python
import medivision_tf
from medivision_tf.dicom_out.inputs import collect_series
from medivision_tf.dicom_out.results import classify_series

model = medivision_tf.load_model("runs/x/model.keras")
series, _ = collect_series(["study/"])
result = classify_series(model, series[0])
result.summary["class"], [f["class"] for f in result.findings]
```
"""

import dataclasses
import hashlib
import json
import tempfile

import numpy as np

from medivision_tf.data.io.frame_paths import frame_index, with_frame


@dataclasses.dataclass
class SeriesResult:
    """A series' findings: one per sample, and the series' own."""

    series: object
    findings: list
    summary: dict
    table: object  # predict_files' table, as `medivision predict` gets it

    @property
    def instances(self):
        return self.series.instances


def model_info(model):
    """`name`, `version`, `config_sha256`, `class_names` of a model (for the SR).

    The hash is SHA-256 of the model's saved configuration (`ModelConfig`, as
    canonical JSON): two models with the same architecture, classes, decode
    options and trust values share it.
    """
    import medivision_tf
    from medivision_tf.model import get_model_config

    config = get_model_config(model)
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return {"name": config.name, "version": medivision_tf.__version__,
            "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "class_names": list(config.class_names)}


def _finding(row, names, instance, frame, label):
    finding = {"instance": instance, "frame": frame, "label": label, "class": row["class"],
               "probability": float(row["probability"]),
               "probabilities": np.array([row[f"prob_{n}"] for n in names], "float64")}
    if "prediction_set" in row:
        members = [m for m in str(row["prediction_set"]).split("|") if m]
        finding.update(prediction_set=members, ood_score=float(row["ood_score"]),
                       out_of_distribution=bool(row["out_of_distribution"]))
    return finding


def classify_series(model, series, batch_size=32, tta=False):
    """Classifies every instance of a series with `predict_files`.

    Args:
        model: a single- or multi-label MediVision model.
        series: an `inputs.Series`.
        batch_size, tta: as in `predict_files`.

    Returns:
        A `SeriesResult`: `findings` (one dict per sample with `instance`
        (index), `frame` (0-based frame of a multi-frame instance, else
        None), `label`, `class`, `probability`, `probabilities` and, with
        trust values, `prediction_set`, `ood_score`, `out_of_distribution`),
        `summary` (the series' finding) and `table` (predict_files' table).
    """
    from medivision_tf.model import get_model_config
    from medivision_tf.prediction import VOLUME_ROW, predict_files

    config = get_model_config(model)
    names = list(config.class_names)
    paths = [instance.path for instance in series.instances]
    table = predict_files(model, paths, batch_size=batch_size, tta=tta, verbose=False)
    findings, sample_rows = [], []
    pieces = table["slice"] if "slice" in table else [""] * len(table)
    position = {path: i for i, path in enumerate(paths)}
    for row, piece in zip(table.to_dict("records"), pieces):
        index = position[row["path"]]
        instance = series.instances[index]
        number = index + 1
        if piece == VOLUME_ROW:
            findings.append(_finding(row, names, index, None, f"instance {number}"))
            continue
        if piece:
            frame = int(piece)
            sample_rows.append(row)
        else:
            frame = (frame_index(instance.frames, config.decode.image_kwargs()["frames"])
                     if instance.frames > 1 else None)
            sample_rows.append(row)
        label = f"instance {number}" + (f" frame {frame + 1}" if frame is not None else "")
        findings.append(_finding(row, names, index, frame, label))
    return SeriesResult(series, findings, _summary(sample_rows, names, config), table)


def _summary(rows, names, config):
    """The series' finding: mean probabilities of its samples, the set, OOD
    score and flag by `trust_columns` (the rule of a volume row)."""
    probabilities = np.array([[row[f"prob_{n}"] for n in names] for row in rows], "float64")
    mean = probabilities.mean(axis=0)
    best = int(mean.argmax())
    summary = {"instance": None, "frame": None, "label": "series", "class": names[best],
               "probability": float(mean[best]), "probabilities": mean}
    if rows and "prediction_set" in rows[0]:
        from medivision_tf.prediction import trust_columns

        trusted = {"ood_score": np.array([row["ood_score"] for row in rows], "float32"),
                   "out_of_distribution": np.array([row["out_of_distribution"] for row in rows])}
        columns = trust_columns([(None, "", np.arange(len(rows)))], mean[None], trusted, config)
        summary.update(
            prediction_set=[m for m in columns["prediction_set"][0].split("|") if m],
            ood_score=float(columns["ood_score"][0]),
            out_of_distribution=bool(columns["out_of_distribution"][0]))
    return summary


def overlays(model, result, method="gradcam", batch_size=16):
    """The Grad-CAM overlay of every sample finding (not the instance rows of
    multi-frame volumes), as `medivision explain` draws it.

    Returns:
        `[(finding, rgb uint8 (H, W, 3), map note)]` in finding order.
    """
    import cv2

    from medivision_tf.data.io.read_files import read_images
    from medivision_tf.explain import explain_images
    from medivision_tf.model import get_model_config

    config = get_model_config(model)
    decode = config.decode
    samples = [f for f in result.findings
               if not (f["frame"] is None and result.instances[f["instance"]].frames > 1
                       and decode.frames == "all")]
    paths = []
    for finding in samples:
        path = result.instances[finding["instance"]].path
        is_volume_frame = finding["frame"] is not None and decode.frames == "all"
        paths.append(with_frame(path, finding["frame"]) if is_volume_frame else path)
    if not paths:
        return []
    images = read_images(paths, channels=config.channels, **decode.image_kwargs())
    with tempfile.TemporaryDirectory() as folder:
        rows = explain_images(model, images, folder, method=method,
                              names=[f"sample_{i:05d}" for i in range(len(paths))],
                              batch_size=batch_size, verbose=False)
        drawn = []
        for finding, row in zip(samples, rows):
            bgr = cv2.imread(row["overlay"], cv2.IMREAD_COLOR)
            drawn.append((finding, np.ascontiguousarray(bgr[..., ::-1]), row["map_note"]))
    return drawn


def finding_text(finding):
    """One line of a finding as `medivision predict` prints it (class,
    probability, set, OOD score and flag)."""
    text = f"{finding['class']}\t{finding['probability']:.4f}"
    if finding.get("prediction_set") is not None:
        flag = "  OUT-OF-DISTRIBUTION" if finding["out_of_distribution"] else ""
        text += (f"\tset: {{{', '.join(finding['prediction_set'])}}}"
                 f"\tood {finding['ood_score']:.2f}{flag}")
    return text

