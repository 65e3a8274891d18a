"""DICOM files -> series of image instances, from their headers alone.

`collect_series(paths)` takes files and folders (an instance, a series, a
study, or several), checks every file the way `medivision predict` does
(`data.checks.scan.check_file`: regular file, pixel and memory budgets from
the header, decodes), reads each header once (`io.memory_budget.
read_dicom_header`: a deflated file is inflated only as far as its header)
and groups the image instances by study and series, in Instance Number
order. It never decodes a pixel itself.

Skipped, each with its reason: objects that are not images (Structured
Reports, RT objects, presentation states, key object selections,
encapsulated documents, segmentations, ...: no Rows/Columns, or an SOP class
that holds no image to classify), MediVision's own results (a study stored
back holds them), and files that fail the checks (`too_large`, `corrupt`,
...). A named file that is not DICOM at all (NIfTI, PNG, ...) is refused:
DICOM results go into the source's study, so they need DICOM input.

Example:

```python
from pydicom.data import get_testdata_file
from medivision_tf.dicom_out.inputs import collect_series

series, skipped = collect_series([get_testdata_file("CT_small.dcm")])
series[0].modality, len(series[0].instances)      # ('CT', 1)
```
"""

import dataclasses
import os

from medivision_tf.data.checks.scan import REASONS, check_file
from medivision_tf.data.io.dicom_budget import read_dicom_header
from medivision_tf.data.io.regular_files import read_head
from medivision_tf.data.io.sniff import sniff_format

# SOP classes with pixel data that is no picture to classify.
_NOT_IMAGES = ("Segmentation", "Parametric Map", "Real World Value Mapping", "Raw Data",
               "Waveform", "Encapsulated", "Presentation State", "Key Object", " SR ",
               "Structured Report", "RT ", "Spectroscopy", "Surface", "Registration")
#: In every reason for an object that is left out because it is no image to
#: classify (not a problem: a study holds such objects).
NOT_IMAGE = "not an image to classify"
_NAMES = {"nifti": "NIfTI", "png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "gif": "GIF",
          "webp": "WebP", "tiff": "TIFF"}


@dataclasses.dataclass
class Instance:
    """One image instance: its local file, header (no pixels), frame count."""

    path: str
    header: object
    frames: int = 1


@dataclasses.dataclass
class Series:
    """The image instances of one series, in Instance Number order."""

    study_uid: str
    series_uid: str
    modality: str
    series_number: object
    instances: list

    @property
    def label(self):
        """A name for logs without patient data: `series 3 (CT)`."""
        number = self.series_number if self.series_number not in (None, "") else "?"
        return f"series {number} ({self.modality or 'unknown modality'})"


def _files(paths):
    """`(path, named)` for every file: named ones as given, folders walked
    in sorted order (named False)."""
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    if not name.startswith("."):
                        yield os.path.join(folder, name), False
        else:
            yield path, True


def sop_class_not_image(sop_class_uid):
    """Why an SOP class holds no image to classify (e.g. `"Comprehensive SR
    Storage: not an image to classify"`), or `""`; from the UID alone, as a
    QIDO-RS listing gives it."""
    import pydicom

    name = pydicom.uid.UID(str(sop_class_uid or "")).name
    if any(word in f" {name} " for word in _NOT_IMAGES):
        return f"{name}: {NOT_IMAGE}"
    return ""


def is_problem(reason):
    """Whether a skip reason is a problem (an unusable image), not an object
    that holds no image (an SR, an RT object, an earlier MediVision result)."""
    return NOT_IMAGE not in reason


def not_an_image(header):
    """Why a DICOM header is no image to classify, or `""`."""
    sop = header.get("SOPClassUID")
    name = getattr(sop, "name", "") or str(sop or "unknown SOP class")
    if str(header.get("Manufacturer", "")) == "MediVision" and str(
            header.get("SeriesDescription", "")).startswith("MediVision"):
        return f"a MediVision result (SR or heatmap): {NOT_IMAGE}"
    padded = f" {name} "
    if any(word in padded for word in _NOT_IMAGES):
        return f"{name}: {NOT_IMAGE}"
    if "Rows" not in header or "Columns" not in header:
        if "Image Storage" in name:
            # An image's SOP class without its image module: a file cut short
            # (or damaged), a problem to report, not an object to pass over.
            return (f"{name} without Rows/Columns: the file ends before its image "
                    "(truncated or damaged)")
        return f"{name}: no pixel data, {NOT_IMAGE}"
    return ""


def collect_series(paths, decode=None):
    """Groups DICOM files into series of image instances.

    Args:
        paths: files and folders (folders are walked; hidden files skipped).
        decode: the model's `DecodeOptions` (the DICOM window and frame the
            decode check uses), or None (defaults).

    Returns:
        `(series, skipped)`: a list of `Series` (sorted by study, series
        number, series UID) and a list of `(path, reason)` for every file
        left out.

    Raises:
        ValueError: a named file that is not DICOM (DICOM results need DICOM
            input); no files at all.
        FileNotFoundError: a named path that does not exist.
    """
    options = {} if decode is None else {
        "dicom_window": decode.dicom_window,
        "frames": "middle" if decode.frames == "all" else decode.frames}
    groups, skipped, refused = {}, [], []
    count = 0
    for path, named in _files(paths):
        count += 1
        if named and not os.path.lexists(path):
            raise FileNotFoundError(f"No such file or folder: {path!r}")
        fmt = sniff_format(read_head(path, 352) or b"") if os.path.isfile(path) else None
        header = None
        if fmt == "dicom":  # the header first: objects without images are named as such
            try:
                header = read_dicom_header(path)
            except Exception:  # pydicom's many error types: check_file says why
                header = None
            why = not_an_image(header) if header is not None else ""
            if why:
                skipped.append((path, why))
                continue
        problem = check_file(path, **options)
        if problem is not None:
            reason, detail = problem
            if reason == "not_image" and named:
                refused.append((path, "not an image"))
            else:
                skipped.append((path, f"{reason} ({REASONS[reason]}): {detail}"))
            continue
        if fmt != "dicom" or header is None:
            if named:
                refused.append((path, _NAMES.get(fmt, fmt or "not an image")))
            else:
                skipped.append((path, f"not DICOM ({_NAMES.get(fmt, fmt)})"))
            continue
        try:
            frames = max(1, int(header.get("NumberOfFrames", 1) or 1))
        except (TypeError, ValueError):
            frames = 1
        key = (str(header.get("StudyInstanceUID", "")), str(header.get("SeriesInstanceUID", "")))
        groups.setdefault(key, []).append(Instance(path, header, frames))
    if refused:
        lines = "\n".join(f"  {path!r}: {kind}" for path, kind in refused)
        raise ValueError(
            "DICOM results need DICOM input: the SR and heatmap series go into the source's "
            f"study. Not DICOM:\n{lines}\nUse `medivision predict` or `medivision explain` for "
            "these files.")
    if count == 0:
        raise ValueError(f"No files found in: {', '.join(map(repr, map(os.fspath, paths)))}")
    series = []
    for (study, uid), instances in groups.items():
        instances.sort(key=lambda i: (_number(i.header.get("InstanceNumber")), i.path))
        first = instances[0].header
        series.append(Series(study, uid, str(first.get("Modality", "")),
                             first.get("SeriesNumber"), instances))
    series.sort(key=lambda s: (s.study_uid, _number(s.series_number), s.series_uid))
    return series, skipped


def _number(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 2 ** 31
