"""DICOM in, DICOM results out: local files, or a study on a DICOMweb server.

`dicom_report(model, inputs, out_dir)` collects the DICOM files
(`inputs.collect_series`), classifies each series (`results.classify_series`:
the answer `medivision predict` gives), draws each sample's Grad-CAM overlay
and writes, per series, one Structured Report and one heatmap series of
Secondary Capture images (`writers`) under `out_dir`, with `report.json`
(findings, written objects, skipped files; no patient data).

`dicomweb_report(model, url, study_uid, out_dir, store=...)` lists the study
(QIDO-RS), skips non-image objects from their SOP class before fetching,
fetches the others (WADO-RS, size-capped, into a temporary folder), runs
`dicom_report` on them and, with `store=True`, sends each series' objects
back (STOW-RS). An object counts as stored only when the server both
answers STOW-RS with success and then lists it (QIDO-RS); what was stored and
what was not is recorded per object, and a failure stops storing and says
which objects are not stored.

Example:

```python
import medivision_tf
from medivision_tf.dicom_out.report import dicom_report, dicomweb_report

model = medivision_tf.load_model("runs/x/model.keras")
local = dicom_report(model, ["study/"], "results")
remote = dicomweb_report(model, "http://127.0.0.1:8042/dicom-web", "1.2.3", "results",
                         store=True)
[(o.kind, o.stored) for o in remote.written]
```
"""

import dataclasses
import json
import os
import tempfile

from medivision_tf.dicom_out.inputs import collect_series, sop_class_not_image
from medivision_tf.dicom_out.requirements import require_pacs


@dataclasses.dataclass
class WrittenObject:
    """One object written: `kind` ("SR" or "heatmap"), its file, UIDs, and
    whether it was stored (None: not asked; True; False with `reason`)."""

    kind: str
    path: str
    sop_instance_uid: str
    series_label: str
    dataset: object = dataclasses.field(repr=False, default=None)
    stored: object = None
    reason: str = ""


@dataclasses.dataclass
class ReportResult:
    """What `dicom_report` did: per-series results, objects, skipped inputs."""

    series: list
    written: list
    skipped: list
    labels: dict = dataclasses.field(default_factory=dict)
    store_error: str = ""

    @property
    def not_stored(self):
        return [o for o in self.written if o.stored is False]


def _write(dataset, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return path


def _folder_name(index, series):
    number = series.series_number if series.series_number not in (None, "") else "x"
    modality = "".join(c for c in (series.modality or "XX") if c.isalnum()) or "XX"
    return f"{index:02d}_series{number}_{modality}"


def write_series(model, result, folder, info, class_codes=None, method="gradcam",
                 series_number=None):
    """The heatmap series and the SR of one classified series, written into
    `folder`; returns their `WrittenObject`s (heatmaps first, the SR last).

    Args:
        model: the model (for the overlays).
        result: a `results.SeriesResult`.
        folder: the output folder of this series.
        info: `results.model_info(model)`.
        class_codes: the class map (see `writers.class_code`).
        method: the explanation method drawn (default Grad-CAM).
        series_number: number of the new SR series (the heatmap series gets
            the next); default 9900 + the source's series number.
    """
    import highdicom

    from medivision_tf.dicom_out import results as results_module
    from medivision_tf.dicom_out import writers

    try:
        base = 9900 + int(result.series.series_number) * 2
    except (TypeError, ValueError):
        base = 9900
    number = series_number or base
    label = result.series.label
    written = []
    heatmap_uid = highdicom.UID()
    for k, (finding, rgb, note) in enumerate(results_module.overlays(model, result, method), 1):
        source = result.instances[finding["instance"]].header
        caption = (f"{method} heatmap of {finding['label']}: {finding['class']} "
                   f"p={finding['probability']:.4f}" + (f"; note: {note}" if note else ""))
        image = writers.heatmap_image(source, rgb, heatmap_uid, number + 1, k, info, caption)
        path = _write(image, os.path.join(folder, f"heatmap_{k:04d}.dcm"))
        written.append(WrittenObject("heatmap", path, str(image.SOPInstanceUID), label, image))
    sr = writers.structured_report(result, info, class_codes, series_number=number)
    path = _write(sr, os.path.join(folder, "report_sr.dcm"))
    written.append(WrittenObject("SR", path, str(sr.SOPInstanceUID), label, sr))
    return written


def dicom_report(model, inputs, out_dir, class_codes=None, method="gradcam", verbose="auto",
                 labels=None, echo=None):
    """DICOM files -> one SR and one heatmap series per series, under `out_dir`.

    Args:
        model: a single-label MediVision model (`medivision_tf.load_model`).
        inputs: DICOM files and folders (an instance, a series, a study).
        out_dir: output folder: `NN_series<S>_<modality>/report_sr.dcm` and
            `heatmap_NNNN.dcm` per series, and `report.json`.
        class_codes: `{class: [code value, scheme, meaning]}` or None.
        method: the explanation method drawn in the heatmaps.
        verbose: progress bar (see `prediction.progress_bar`).
        labels: `{path: name}` used instead of paths in messages and
            `report.json` (DICOMweb mode: no temporary paths).
        echo: called with each line to print (None: silent).

    Returns:
        A `ReportResult`.

    Raises:
        ValueError: the extra is missing, a named input is not DICOM, a
            multi-label model, or no usable image instance.
    """
    from medivision_tf.dicom_out import results as results_module
    from medivision_tf.dicom_out.writers import check_class_codes
    from medivision_tf.model import get_model_config
    from medivision_tf.prediction import progress_bar

    require_pacs("highdicom")
    config = get_model_config(model)
    if config.multi_label:
        raise ValueError("DICOM results are written for single-label models; this model is "
                         "multi-label.")
    check_class_codes(class_codes, list(config.class_names))
    labels = dict(labels or {})
    series_list, skipped = collect_series(inputs, config.decode)
    skipped = [(labels.get(path, path), reason) for path, reason in skipped]
    if not series_list:
        lines = "\n".join(f"  {name}: {reason}" for name, reason in skipped[:20])
        raise ValueError(f"No DICOM image instance can be used:\n{lines}")
    info = results_module.model_info(model)
    total = sum(len(s.instances) for s in series_list)
    bar = progress_bar(total, verbose, desc="DICOM report", unit="img")
    done, written = [], []
    try:
        for index, series in enumerate(series_list, 1):
            result = results_module.classify_series(model, series)
            folder = os.path.join(out_dir, _folder_name(index, series))
            written += write_series(model, result, folder, info, class_codes, method)
            done.append(result)
            bar.update(len(series.instances))
            if echo:
                _echo_series(echo, result, labels)
    finally:
        bar.close()
    report = ReportResult(done, written, skipped, labels)
    save_json(report, out_dir, info)
    return report


def _echo_series(echo, result, labels):
    from medivision_tf.dicom_out.results import finding_text

    count = len(result.instances)
    echo(f"{result.series.label}, {count} instance{'s' * (count != 1)}\tseries: "
         f"{finding_text(result.summary)}")
    for finding in result.findings:
        path = result.instances[finding["instance"]].path
        echo(f"  {finding['label']} ({labels.get(path, path)})\t{finding_text(finding)}")


def save_json(report, out_dir, info):
    """`out_dir/report.json`: model, findings per series, objects (stored or
    not, with the reason) and skipped inputs; UIDs of written objects only,
    no patient data."""
    def finding(f):
        out = {k: v for k, v in f.items() if k not in ("probabilities", "instance")}
        out["probabilities"] = [float(p) for p in f["probabilities"]]
        return out

    data = {
        "model": {k: v for k, v in info.items()},
        "research_use_only": True,
        "series": [{"series": r.series.label, "instances": len(r.instances),
                    "summary": finding(r.summary), "findings": [finding(f) for f in r.findings]}
                   for r in report.series],
        "objects": [{"kind": o.kind, "file": os.path.relpath(o.path, out_dir),
                     "sop_instance_uid": o.sop_instance_uid, "series": o.series_label,
                     "stored": o.stored, "reason": o.reason} for o in report.written],
        "skipped": [{"input": name, "reason": reason} for name, reason in report.skipped],
        "store_error": report.store_error,
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "report.json")
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2)
    return path


def dicomweb_report(model, url, study_uid, out_dir, store=False, class_codes=None,
                    method="gradcam", verbose="auto", echo=None, **client_options):
    """A study on a DICOMweb server -> results in `out_dir`, stored back with `store`.

    Args:
        model, out_dir, class_codes, method, verbose, echo: as in `dicom_report`.
        url: the DICOMweb root (`http://host:8042/dicom-web`).
        study_uid: the Study Instance UID.
        store: send each series' heatmaps and SR back (STOW-RS).
        client_options: `timeout`, `max_response_bytes`, `verify`,
            `netrc_file` of `dicomweb.DicomWebStudy`.

    Returns:
        A `ReportResult`; `written[i].stored` is True/False (with `reason`)
        when `store`, and `store_error` says why storing stopped.

    Raises:
        DicomWebError: (a ValueError) listing or fetching failed (nothing is
            written then); storing failures are recorded, not raised.
    """
    from medivision_tf.dicom_out.dicomweb import DicomWebError, DicomWebStudy
    from medivision_tf.prediction import progress_bar

    require_pacs("highdicom", "dicomweb-client")
    study = DicomWebStudy(url, study_uid, **client_options)
    listed = [(s, study.instances(s["uid"])) for s in study.series()]
    skipped, labels = [], {}
    with tempfile.TemporaryDirectory(prefix="medivision-wado-") as folder:
        bar = progress_bar(sum(len(i) for _, i in listed), verbose, desc="Fetching (WADO-RS)",
                           unit="inst")
        try:
            for k, (series, instances) in enumerate(listed, 1):
                name = f"series {series['number'] or '?'} ({series['modality'] or '?'})"
                for j, instance in enumerate(instances, 1):
                    label = f"{name} instance {instance['number'] or j}"
                    why = sop_class_not_image(instance["sop_class"])
                    if why:
                        skipped.append((label, why))
                    else:
                        path = os.path.join(folder, f"{k:03d}_{j:05d}.dcm")
                        study.fetch(series["uid"], instance["uid"], path)
                        labels[path] = label
                    bar.update(1)
        finally:
            bar.close()
        if not labels:
            lines = "\n".join(f"  {n}: {r}" for n, r in skipped[:20])
            raise DicomWebError(f"Study {study_uid} holds no image instance to classify:\n{lines}")
        report = dicom_report(model, [folder], out_dir, class_codes, method, verbose, labels, echo)
    report.skipped = skipped + report.skipped
    if store:
        _store(study, report)
    from medivision_tf.dicom_out.results import model_info

    save_json(report, out_dir, model_info(model))
    return report


def _store(study, report):
    """STOW-RS per series (heatmaps and SR together); on a failure the rest
    is marked not stored with the reason, and storing stops."""
    from medivision_tf.dicom_out.dicomweb import DicomWebError

    by_series = {}
    for obj in report.written:
        by_series.setdefault(obj.series_label, []).append(obj)
    for label, objects in by_series.items():
        if report.store_error:
            for obj in objects:
                obj.stored, obj.reason = False, "not sent: storing stopped at an earlier error"
            continue
        try:
            outcome = study.store([o.dataset for o in objects])
        except DicomWebError as error:
            report.store_error = str(error)
            for obj in objects:
                obj.stored, obj.reason = False, f"not stored: {error}"
            continue
        try:  # confirmed only when the server lists it (QIDO-RS)
            listed = set()
            for uid in {str(o.dataset.SeriesInstanceUID) for o in objects}:
                listed |= study.listed(uid)
        except DicomWebError as error:
            report.store_error = f"the stored objects could not be confirmed: {error}"
            listed = None
        for obj in objects:
            reason = outcome.get(obj.sop_instance_uid)
            if reason is None and listed is None:
                reason = "not confirmed: the server could not be asked whether it holds it"
            elif reason is None and obj.sop_instance_uid not in listed:
                reason = ("the server answered STOW-RS with success but does not list it "
                          "(QIDO-RS): dropped, e.g. by a server-side filter")
            obj.stored, obj.reason = reason is None, reason or ""
