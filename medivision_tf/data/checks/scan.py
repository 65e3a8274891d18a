"""Finding bad input before training: `scan(table)` -> (clean table, report).

Every row is checked the way the pipeline will read it: the file exists,
lies inside the table's root, is a regular file (`io.regular_files`), is not
empty, is an image format we decode (sniffed from its bytes, not its name),
is not absurdly large (a decompression bomb: the size is read from the
header, `io.headers`), and decodes completely with the same decoder as
`make_dataset` (so truncated JPEGs and corrupt PNGs/DICOMs are caught). Rows
with an unknown label, and files listed twice, are reported too. Bad rows
are skipped and listed, never fatal mid-epoch; `strict=True` raises instead.

Example:

```python
from medivision_tf.data import from_directory, scan

table = from_directory("chest_xray/")
clean, report = scan(table)
report.groupby("reason").size()     # e.g. corrupt: 2, empty: 1
```
"""

import concurrent.futures
import os
import warnings

import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.data.io.frame_paths import split_frame
from medivision_tf.data.io.graph_decode import decode_image
from medivision_tf.data.io.headers import DEFAULT_MAX_PIXELS, MIN_IMAGE_SIZE, image_dimensions
from medivision_tf.data.io.memory_budget import DEFAULT_MAX_BYTES, TooLargeError, check_file_budget
from medivision_tf.data.io.python_decode import PYTHON_FORMATS, python_decode
from medivision_tf.data.io.read_files import clean_assert_message
from medivision_tf.data.io.regular_files import describe_file, read_file_bytes
from medivision_tf.data.io.sniff import sniff_format
from medivision_tf.data.sources.image_files import inside_root
from medivision_tf.data.sources.table import class_names_of, is_multi_label, with_attrs

REASONS = {
    "missing": "file not found",
    "outside_root": "path resolves (.., absolute path or link) outside the table's root folder",
    "not_regular": "not a regular file (FIFO, device, socket or folder): not opened",
    "unreadable": "the file cannot be read (permissions or I/O error)",
    "empty": "zero-byte file",
    "not_image": "not an image file (unknown format)",
    "too_large": "image larger than max_pixels (the pixel budget) or a DICOM/NIfTI file "
                 "whose pixels would exceed max_bytes (the memory budget); read from the "
                 "header, before decompressing",
    "too_small": "image smaller than min_size pixels on a side",
    "corrupt": "corrupt or truncated image (decoding failed)",
    "unreadable_dicom": "DICOM file without readable pixel data",
    "bad_array": "array image with an unusable shape",
    "unknown_label": "label not in the class names",
    "duplicate": "the same file as an earlier row (kept once)",
    "label_conflict": "the same file under different labels (every copy skipped)",
}
REPORT_COLUMNS = ("index", "path", "reason", "detail")
# A report keeps a reason long enough for its advice (a DICOM decoder error
# names the transfer syntax, what to install, then pydicom's own words).
_DETAIL_CHARS = 1000
#: `verbose="auto"` shows a progress bar only above this many images (also
#: used by `medivision_tf.prediction.progress_bar`: `data` is the lower layer).
PROGRESS_MIN_IMAGES = 8
#: How many unusable files a "No usable samples" error names.
SHOWN_UNUSABLE = 10


class NoUsableSamplesError(ValueError):
    """`scan` found no usable sample; `.report` is its report DataFrame
    (`index`, `path`, `reason`, `detail`), for a caller to save or show."""

    report = None


def _shortened(detail, limit=400):
    detail = str(detail)
    return detail if len(detail) <= limit else detail[: limit - 3] + "..."


def _duplicate_rows(table, results, multi):
    """Report rows for files listed more than once (by real path).

    A copy with the first row's label is a `duplicate` (the first row is
    kept); a copy with another label makes the label unknowable: every row
    of that file is a `label_conflict`, so no answer is trained on silently.
    """
    column = "labels" if multi else "label"
    names = class_names_of(table)

    def label_of(index):
        value = table.at[index, column]
        return tuple(sorted(value)) if multi else int(value)

    def name_of(label):
        ids = label if multi else (label,)
        return "+".join(names[i] if 0 <= i < len(names) else str(i) for i in ids)

    first, rows_of = {}, {}
    for index, path, problem in results:
        if problem is None:
            real = os.path.realpath(path)
            first.setdefault(real, (index, path))
            rows_of.setdefault(real, []).append((index, path, label_of(index)))
    bad = []
    for real, rows in rows_of.items():
        if len(rows) == 1:
            continue
        if len({label for _, _, label in rows}) > 1:
            detail = "the same file labelled " + ", ".join(
                f"{name_of(label)!r} (row {index})" for index, _, label in rows[:5])
            bad += [(index, path, "label_conflict", detail) for index, path, _ in rows]
        else:
            kept = first[real]
            bad += [(index, path, "duplicate", f"same file as row {kept[0]} ({kept[1]!r})")
                    for index, path, _ in rows[1:]]
    return bad


_DECODERS = {}


def _decoder(dicom_window, max_pixels=DEFAULT_MAX_PIXELS):
    key = (str(dicom_window), max_pixels)
    if key not in _DECODERS:

        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def decode(contents):
            return tf.shape(decode_image(contents, 3, dicom_window, max_pixels=max_pixels))

        _DECODERS[key] = decode
    return _DECODERS[key]


HEADER_BYTES = 65536  # what `check_file(decode=False)` reads of a file


def error_reason(error):
    """The line of a decoder error that says why (not TF's "Graph execution
    error" / node / stack lines)."""
    text = clean_assert_message(str(getattr(error, "message", error)))
    lines = [line.strip() for line in text.splitlines()]
    lines = [
        line for line in lines
        if line and not line.startswith(
            ("Graph execution error", "Detected at node", "<stack", "[[", "File ", "Stack trace")
        )
    ]
    return lines[0] if lines else type(error).__name__


def check_file(
    path, root=None, max_pixels=DEFAULT_MAX_PIXELS, decode=True, dicom_window="auto",
    frames="middle", *, min_size=MIN_IMAGE_SIZE, follow_links=False,
    max_bytes=DEFAULT_MAX_BYTES,
):
    """Checks one image file the way `scan` does.

    Args:
        path: the file path.
        root: the folder the path must stay inside once `..` and links are
            resolved (`os.path.realpath`; None: no check).
        max_pixels: refuse images with more pixels (height x width), read
            from the header before anything is decoded (default
            `DEFAULT_MAX_PIXELS`, Pillow's limit).
        decode: decode the whole image with the pipeline's decoder (catches
            truncated and corrupt files). False reads only the first
            `HEADER_BYTES` (64 KB) for the format and size checks (TIFF and
            DICOM headers are read by tifffile/pydicom, which seek).
        dicom_window: DICOM window used when decoding.
        frames: `"first"`/`"middle"`: the frame of a multi-frame file that
            is decoded (a path ending in `#frame=N` names its own).
        min_size: refuse images with a side shorter than this (default
            `MIN_IMAGE_SIZE`, 2 pixels).
        follow_links: trust links inside `root` (see `inside_root`).
        max_bytes: the memory budget of DICOM and NIfTI files (default
            `DEFAULT_MAX_BYTES`, 1 GiB of decoded pixels; all frames and
            slices), read from the header before anything is inflated
            (`io.memory_budget`).

    Returns:
        None when the file is usable, else `(reason, detail)` where `reason`
        is a key of `REASONS`. Nothing is opened unless it is a regular file
        inside the root.

    Example:

    ```python
    check_file("x.png")                     # None
    check_file("notes.png", decode=False)   # ('not_image', 'text content')
    ```
    """
    if not isinstance(path, str) or not path:
        return "missing", f"no path given ({path!r})"
    path, frame = split_frame(path)
    if root is not None and not inside_root(path, root, follow_links):
        real = os.path.realpath(path)
        where = "" if real == os.path.abspath(path) else f" (resolves to {real!r})"
        return "outside_root", f"{path!r}{where} is outside {root!r}"
    problem = describe_file(path)
    if problem:
        return problem
    size = os.path.getsize(path)
    if size == 0:
        return "empty", "0 bytes"
    data, problem = read_file_bytes(path, None if decode else HEADER_BYTES)
    if problem:
        return problem
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:16]
        if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
            # Say what kind of text, never the text: the file may be a secret
            # a link or a typo pointed at (predict opens what it is given).
            markup = head.lstrip()[:1] == b"<"
            return "not_image", "text content" + (" (HTML or XML)" if markup else "")
        return "not_image", f"binary content, first bytes {head[:4].hex(' ')}"
    complete = len(data) == size
    if fmt in ("dicom", "nifti"):  # the memory budget before any inflating
        try:
            check_file_budget(data if complete or fmt == "nifti" else path, fmt, max_bytes)
        except TooLargeError as error:
            return "too_large", f"{fmt}: {error}"[:_DETAIL_CHARS]
    try:
        dims = image_dimensions(data if complete or fmt not in ("tiff", "dicom") else path, fmt)
    except TooLargeError as error:
        return "too_large", f"{fmt}: {error}"[:_DETAIL_CHARS]
    if dims is None and not complete and fmt == "jpeg":  # size marker past the head
        more, problem = read_file_bytes(path)
        if problem:
            return problem
        dims = image_dimensions(more, fmt)
    if dims is not None and max_pixels is not None and dims[0] * dims[1] > max_pixels:
        return "too_large", f"{fmt} of {dims[1]}x{dims[0]} pixels > max_pixels={max_pixels}"
    if dims is not None and min_size and 0 < min(dims) < min_size:
        return "too_small", f"{fmt} of {dims[1]}x{dims[0]} pixels; at least {min_size}x{min_size} needed"
    if decode and fmt in PYTHON_FORMATS:
        # The same Python reader the graph calls through tf.numpy_function,
        # called directly so the detail is its message, not "Graph execution error".
        # The budget was checked above, from the same header (`headers.header_size`).
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shape = python_decode(
                    data, fmt, -1 if frame is None else frame, window=dicom_window,
                    frames=frames, max_pixels=None,
                ).shape
        except (ValueError, OSError) as error:
            detail = f"{fmt}: {error}"[:_DETAIL_CHARS]
            if isinstance(error, TooLargeError):
                return "too_large", detail
            return ("unreadable_dicom" if fmt == "dicom" else "corrupt"), detail
    elif decode:
        try:
            shape = _decoder(dicom_window, max_pixels)(tf.constant(data)).numpy()
        except (tf.errors.OpError, ValueError) as error:
            detail = f"{fmt}: {error_reason(error)}"[:_DETAIL_CHARS]
            return ("unreadable_dicom" if fmt == "dicom" else "corrupt"), detail
    if decode:
        if max_pixels is not None and shape[0] * shape[1] > max_pixels:
            return "too_large", f"{fmt} of {shape[1]}x{shape[0]} pixels > max_pixels={max_pixels}"
        if shape[0] < 1 or shape[1] < 1:
            return "corrupt", f"{fmt}: decoded to shape {tuple(shape)}"
        if min_size and min(shape[0], shape[1]) < min_size:
            return "too_small", (
                f"{fmt} of {shape[1]}x{shape[0]} pixels; at least {min_size}x{min_size} needed"
            )
    return None


def _check_label(row, multi, num_classes):
    if multi:
        ids = row["labels"]
        unknown = row.get("unknown_label", "") if hasattr(row, "get") else ""
        bad = [i for i in ids if not 0 <= i < num_classes]
        if bad or (isinstance(unknown, str) and unknown):
            return "unknown_label", f"labels {unknown or bad!r} not among {num_classes} classes"
        return None
    label = row["label"]
    if not 0 <= label < num_classes:
        return "unknown_label", f"{row.get('class_name', label)!r} is not a known class"
    return None


def scan(
    table,
    strict=False,
    *,
    max_pixels=DEFAULT_MAX_PIXELS,
    decode=True,
    num_workers=None,
    verbose="auto",
    dicom_window=None,
    min_size=MIN_IMAGE_SIZE,
):
    """Checks every sample of a table; returns the usable rows and a report.

    Paths are resolved (`os.path.realpath`) against the table's root: `..`,
    absolute paths and links that leave it are `outside_root`; FIFOs,
    devices and sockets are `not_regular` and never opened; rows naming a
    file already listed are `duplicate` (the first is kept). Linked folders
    that `from_directory` did not enter, and files without an image
    extension whose bytes are not DICOM (`attrs["refused"]`), are listed
    with `index` None.

    Args:
        table: a sample table (from `from_directory`, `from_csv`, ...).
        strict: raise a `ValueError` listing every bad sample instead of
            skipping them.
        max_pixels: images with more pixels (height x width) are refused;
            the header is read first, so a decompression bomb is never
            decoded.
        decode: fully decode each image (slower, catches truncation and
            corruption); False checks existence, size, format and header.
        num_workers: threads reading files (default: CPU count, max 8).
        verbose: a tqdm progress bar on stderr: `"auto"` (default: for more
            than `PROGRESS_MIN_IMAGES` samples, as in
            `medivision_tf.prediction`), 1/True (always) or 0/False (never).
        dicom_window: DICOM window for decoding (default: the table's
            `attrs["dicom_window"]` or `"auto"`).
        min_size: images with a side below this many pixels are
            `too_small` (default `MIN_IMAGE_SIZE`, 2).

    Returns:
        `(clean_table, report)`: `clean_table` keeps the usable rows (same
        columns and attrs); `report` is a DataFrame with columns `index`
        (row label in `table`), `path`, `reason` (a key of `REASONS`) and
        `detail`.

    Raises:
        ValueError: `strict=True` and some samples are bad (the message lists
            them).
        NoUsableSamplesError: (a `ValueError`) no usable sample is left; the
            message names the first files with their reasons, and the
            error's `report` holds them all.

    Example:

    ```python
    clean, report = scan(table)
    print(report.to_string())
    clean, _ = scan(table, strict=True)   # raises if anything is wrong
    ```
    """
    from tqdm.auto import tqdm

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`table` must be a pandas DataFrame. Received: {type(table).__name__}")
    if table.empty:
        raise ValueError("The table is empty: there are no samples to scan.")
    multi = is_multi_label(table)
    num_classes = len(class_names_of(table))
    root = table.attrs.get("root")
    if dicom_window is None:
        dicom_window = table.attrs.get("dicom_window", "auto")
    has_arrays = "image" in table
    follow_links = bool(table.attrs.get("trusted_links", False))

    def check(item):
        index, row = item
        problem = _check_label(row, multi, num_classes)
        if problem is None and has_arrays:
            image = np.asarray(row["image"])
            if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or min(image.shape[:2]) < 1:
                problem = "bad_array", f"shape {image.shape}"
        elif problem is None:
            problem = check_file(row["path"], root, max_pixels, decode, dicom_window,
                                 min_size=min_size, follow_links=follow_links)
        return index, row["path"], problem

    if verbose not in ("auto", 0, 1, True, False):
        raise ValueError(
            f"`verbose` must be 'auto', 0, 1, True or False. Received: verbose={verbose!r}"
        )
    workers = num_workers or min(8, os.cpu_count() or 1)
    rows = list(table.iterrows())
    show = len(rows) > PROGRESS_MIN_IMAGES if verbose == "auto" else bool(verbose)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(
            tqdm(
                pool.map(check, rows),
                total=len(rows),
                desc="Scanning images",
                unit="img",
                disable=not show,
            )
        )
    bad = [(i, p, r, d) for i, p, problem in results if problem for r, d in [problem]]
    if not has_arrays:
        bad += _duplicate_rows(table, results, multi)
    bad += [(None, p, r, d) for p, r, d in table.attrs.get("refused") or ()]
    report = pd.DataFrame(bad, columns=list(REPORT_COLUMNS))
    if report["index"].isna().any():  # refused folders: no row index (kept as <NA>)
        try:
            report["index"] = report["index"].astype("Int64")
        except (TypeError, ValueError):
            report["index"] = report["index"].astype(object)
    if strict and bad:
        lines = "\n".join(f"  {p}: {r} ({d})" for _, p, r, d in bad[:50])
        more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
        raise ValueError(f"{len(bad)} of {len(table)} samples are unusable:\n{lines}{more}")
    rows_bad = [i for i in report["index"] if i is not None and not pd.isna(i)]
    clean = table.drop(index=rows_bad) if rows_bad else table.copy()
    clean = with_attrs(clean, table)
    if clean.empty:
        # Each file's reason and advice (a plugin to install, a window to
        # set) matters most when nothing decodes: the first ones are named.
        lines = "\n".join(f"  {p}: {r} ({_shortened(d)})" for _, p, r, d in bad[:SHOWN_UNUSABLE])
        more = (f"\n  ... and {len(bad) - SHOWN_UNUSABLE} more"
                if len(bad) > SHOWN_UNUSABLE else "")
        error = NoUsableSamplesError(
            f"No usable samples: all {len(table)} were skipped "
            f"(reasons: {report['reason'].value_counts().to_dict()}):\n{lines}{more}"
        )
        error.report = report
        raise error
    if not multi:
        lost = sorted(set(table.loc[table["label"] >= 0, "label"]) - set(clean["label"]))
        if lost:
            names = class_names_of(table)
            warnings.warn(
                f"After skipping bad files these classes have no images: "
                f"{[names[i] for i in lost]}",
                stacklevel=2,
            )
    return clean, report
