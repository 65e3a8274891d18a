"""DICOM objects of a series' results: a Structured Report and a heatmap series (highdicom).

`structured_report(series, model_info)` writes one Comprehensive 3D SR per
series, a TID 1500 Measurement Report (highdicom's `MeasurementReport`):

- its evidence and every measurement group reference the source instances
  (`SourceImageForMeasurementGroup`: SOP Class/Instance UID, and the frame of
  a multi-frame instance); patient and study attributes are the source's;
- one measurement group (TID 1501) per classified sample (an instance, or
  a frame of a multi-frame instance read frame by frame), and one for the
  series, tracking identifiers `instance N [frame F]` and `series`:
  - `Finding` (DCM 121071) = the predicted class, coded by the class map
    where it gives a code (e.g. SNOMED CT), else a MediVision code
    (`99MEDIVISION`) whose meaning is the class name;
  - `Probability of the predicted class` (NUM, no units): the calibrated
    probability for models with trust values;
  - with trust values: one `Prediction set member` per class of the
    conformal prediction set, `Out-of-distribution` (SCT Yes / No) and
    `Out-of-distribution score` (NUM);
  - the algorithm (TID 4019): the model's name, the package version, and
    parameters `config_sha256=...` (the model's saved configuration) and
    `research use only`.

`heatmap_image(source, overlay, ...)` writes one Secondary Capture image (RGB,
Burned In Annotation YES) of a Grad-CAM overlay, in the source's study and a
new series. Requires `highdicom` (the `[pacs]` extra).

Example:

```python
from medivision_tf.dicom_out.writers import class_code

class_code("pneumonia", 1, {"pneumonia": ["233604007", "SCT", "Pneumonia"]}).value  # '233604007'
class_code("normal", 0, None).meaning                                               # 'normal'
```
"""

import contextlib
import datetime
import warnings

import numpy as np

#: The private coding scheme of MediVision's own codes.
SCHEME = "99MEDIVISION"
#: SeriesDescription of the results (and how a later run skips them).
SR_DESCRIPTION = "MediVision AI result (research use only)"
HEATMAP_DESCRIPTION = "MediVision Grad-CAM heatmap (research use only)"
MANUFACTURER = "MediVision"


def _hd():
    from medivision_tf.dicom_out.requirements import require_pacs

    require_pacs("highdicom")
    import highdicom

    return highdicom


@contextlib.contextmanager
def _quiet():
    """highdicom's and pydicom's warnings quote attribute values (patient
    names among them): kept out of logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _code(value, meaning):
    return _hd().sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


def class_code(name, index, class_codes=None):
    """The coded concept of a class: the class map's `[value, scheme, meaning]`
    where it gives one, else `CLASS-<index>` in `99MEDIVISION` whose meaning is
    the class name (the text shown by viewers).

    Args:
        name: the class name.
        index: its output index.
        class_codes: None, or `{class name: [code value, scheme designator,
            code meaning]}`.

    Returns:
        A `highdicom.sr.CodedConcept`.
    """
    hd = _hd()
    if class_codes and name in class_codes:
        value, scheme, meaning = class_codes[name]
        return hd.sr.CodedConcept(value=str(value), scheme_designator=str(scheme),
                                  meaning=str(meaning))
    return hd.sr.CodedConcept(value=f"CLASS-{index}", scheme_designator=SCHEME,
                              meaning=str(name)[:64])


def check_class_codes(class_codes, class_names):
    """Validates a class map: `{class name: [value, scheme, meaning]}`, names
    among the model's classes; returns it (None stays None).

    Raises:
        ValueError: an unknown class or an entry that is not three strings.
    """
    if class_codes is None:
        return None
    if not isinstance(class_codes, dict):
        raise ValueError(f"The class code map must be a JSON object. Received: "
                         f"{type(class_codes).__name__}")
    for name, code in class_codes.items():
        if name not in class_names:
            raise ValueError(f"Class code map: unknown class {name!r}. The model's classes: "
                             f"{', '.join(class_names)}.")
        if (not isinstance(code, (list, tuple)) or len(code) != 3
                or not all(isinstance(part, str) and part for part in code)):
            raise ValueError(f"Class code map: {name!r} must map to [code value, coding scheme, "
                             f"code meaning], e.g. ['233604007', 'SCT', 'Pneumonia']. "
                             f"Received: {code!r}")
    return class_codes


def _group(finding, label, sources, algorithm, class_names, class_codes):
    """One TID 1501 measurement group of a finding."""
    hd = _hd()
    from pydicom.sr.codedict import codes

    index = class_names.index(finding["class"])
    evaluations = [hd.sr.QualitativeEvaluation(
        name=codes.DCM.Finding, value=class_code(finding["class"], index, class_codes))]
    measurements = [hd.sr.Measurement(
        name=_code("MV-PROB", "Probability of the predicted class"),
        value=float(finding["probability"]), unit=codes.UCUM.NoUnits)]
    if finding.get("prediction_set") is not None:
        for member in finding["prediction_set"]:
            evaluations.append(hd.sr.QualitativeEvaluation(
                name=_code("MV-SET", "Prediction set member"),
                value=class_code(member, class_names.index(member), class_codes)))
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=_code("MV-OOD", "Out-of-distribution"),
            value=codes.SCT.Yes if finding["out_of_distribution"] else codes.SCT.No))
        measurements.append(hd.sr.Measurement(
            name=_code("MV-OODS", "Out-of-distribution score"),
            value=float(finding["ood_score"]), unit=codes.UCUM.NoUnits))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=label),
        algorithm_id=algorithm, measurements=measurements,
        qualitative_evaluations=evaluations, source_images=sources)


def structured_report(series, model_info, class_codes=None, series_number=9901,
                      instance_number=1):
    """The TID 1500 Comprehensive 3D SR of one series' results.

    Args:
        series: a `results.SeriesResult` (its source headers and findings).
        model_info: dict with `name`, `version`, `config_sha256` and
            `class_names`.
        class_codes: the class map (see `class_code`), or None.
        series_number, instance_number: of the new SR.

    Returns:
        A `highdicom.sr.Comprehensive3DSR` (a pydicom Dataset).
    """
    hd = _hd()
    from pydicom.sr.codedict import codes

    names = list(model_info["class_names"])
    algorithm = hd.sr.AlgorithmIdentification(
        name=str(model_info["name"])[:64], version=str(model_info["version"])[:64],
        parameters=[f"config_sha256={model_info['config_sha256']}", "research use only"])
    groups = []
    for finding in series.findings:
        header = series.instances[finding["instance"]].header
        frames = [finding["frame"] + 1] if finding.get("frame") is not None else None
        sources = [hd.sr.SourceImageForMeasurementGroup.from_source_image(
            header, referenced_frame_numbers=frames)]
        groups.append(_group(finding, finding["label"], sources, algorithm, names, class_codes))
    all_sources = [hd.sr.SourceImageForMeasurementGroup.from_source_image(i.header)
                   for i in series.instances]
    groups.append(_group(series.summary, "series", all_sources, algorithm, names, class_codes))
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="MediVision", manufacturer_name=MANUFACTURER,
            model_name=str(model_info["name"])[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport)
    evidence = [i.header for i in series.instances]
    with _quiet():
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence, content=report, series_instance_uid=hd.UID(),
            series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=instance_number, manufacturer=MANUFACTURER,
            is_complete=True, is_final=False, is_verified=False, record_evidence=True)
    sr.SeriesDescription = SR_DESCRIPTION
    _stamp(sr, model_info)
    _coding_scheme(sr)
    return sr


def _stamp(dataset, model_info):
    """Software and time of creation on a written object."""
    now = datetime.datetime.now()
    dataset.SoftwareVersions = f"medivision-tf {model_info['version']}"[:64]
    dataset.ManufacturerModelName = str(model_info["name"])[:64]
    dataset.InstanceCreationDate = now.strftime("%Y%m%d")
    dataset.InstanceCreationTime = now.strftime("%H%M%S")


def _coding_scheme(dataset):
    """The Coding Scheme Identification of the private `99MEDIVISION` scheme."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "MediVision model outputs"
    item.CodingSchemeResponsibleOrganization = "medivision-tf"
    dataset.CodingSchemeIdentificationSequence = [item]


def _orientation(source):
    """The Patient Orientation of the source's rows and columns: its own
    (two values), else from Image Orientation (Patient) (e.g. `("L", "P")`
    for an axial slice), else None (unknown)."""
    value = source.get("PatientOrientation")
    if value is not None and not isinstance(value, str) and len(value) == 2 and all(value):
        return tuple(str(v) for v in value)
    cosines = source.get("ImageOrientationPatient")
    try:
        cosines = [float(v) for v in cosines]
    except (TypeError, ValueError):
        return None
    if len(cosines) != 6:
        return None
    letters = []
    for vector in (cosines[:3], cosines[3:]):
        order = sorted(range(3), key=lambda i: -abs(vector[i]))
        text = "".join("LPH"[i] if vector[i] > 0 else "RAF"[i]
                       for i in order if abs(vector[i]) > 0.25)
        letters.append(text)
    return tuple(letters) if all(letters) else None


def heatmap_image(source, overlay, series_uid, series_number, instance_number, model_info,
                  caption=""):
    """A Secondary Capture image of a Grad-CAM overlay, in the source's study.

    Args:
        source: the source instance's header (patient and study are copied).
        overlay: `(H, W, 3)` uint8 RGB, the heatmap blended over the image.
        series_uid, series_number: the new heatmap series.
        instance_number: its number in that series.
        model_info: see `structured_report`.
        caption: the Derivation Description (what the image shows).

    Returns:
        A `highdicom.sc.SCImage`: RGB, Burned In Annotation YES.
    """
    hd = _hd()
    pixels = np.ascontiguousarray(np.asarray(overlay, np.uint8))
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"The overlay must be (H, W, 3) uint8 RGB. Received shape {pixels.shape}")
    orientation = _orientation(source)
    laterality = str(source.get("Laterality", "") or source.get("ImageLaterality", "") or "")
    with _quiet():
        image = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB",
            bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=series_uid,
            series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=instance_number, manufacturer=MANUFACTURER,
            patient_orientation=orientation or ("L", "P"),
            laterality=laterality if laterality in ("L", "R") else None)
    if orientation is None:
        image.PatientOrientation = ""  # Type 2C: unknown (no placeholder kept)
    if laterality not in ("L", "R"):
        image.Laterality = ""  # Type 2C: unknown (a heatmap of a whole image)
    image.BurnedInAnnotation = "YES"
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.SeriesDescription = HEATMAP_DESCRIPTION
    image.DerivationDescription = (caption or "Grad-CAM heatmap over the source image")[:1024]
    from pydicom.dataset import Dataset

    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    image.SourceImageSequence = [reference]
    _stamp(image, model_info)
    return image
