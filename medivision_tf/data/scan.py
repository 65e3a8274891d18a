"""Finding bad input before training: `scan(table)` -> (clean table, report).

Every row is checked the way the pipeline will read it: the file exists,
lies inside the table's root, is not empty, is an image format we decode
(sniffed from its bytes, not its name), is not absurdly large (a
decompression bomb), and decodes completely with the same decoder as
`make_dataset` (so truncated JPEGs and corrupt PNGs/DICOMs are caught). Rows
with an unknown label are reported too. Bad rows are skipped and listed,
never fatal mid-epoch; `strict=True` raises instead.

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
import struct
import warnings

import numpy as np
import pandas as pd
import tensorflow as tf

from medivision_tf.data import formats
from medivision_tf.data.decode import PYTHON_FORMATS, decode_image, sniff_format
from medivision_tf.data.sources import class_names_of, inside_root, is_multi_label, with_attrs

REASONS = {
    "missing": "file not found",
    "outside_root": "path points outside the table's root folder",
    "empty": "zero-byte file",
    "not_image": "not an image file (unknown format)",
    "too_large": "image larger than max_pixels",
    "corrupt": "corrupt or truncated image (decoding failed)",
    "unreadable_dicom": "DICOM file without readable pixel data",
    "bad_array": "array image with an unusable shape",
    "unknown_label": "label not in the class names",
}
REPORT_COLUMNS = ("index", "path", "reason", "detail")
DEFAULT_MAX_PIXELS = 100_000_000  # 10k x 10k
#: `verbose="auto"` shows a progress bar only above this many images (also
#: used by `medivision_tf.prediction.progress_bar`: `data` is the lower layer).
PROGRESS_MIN_IMAGES = 8


def image_dimensions(data, fmt):
    """(height, width) from an image file's header, without decoding it.

    Args:
        data: the file's bytes (the first 64 KB are enough except for
            some JPEGs), or, for TIFF and DICOM, also the file's path.
        fmt: its format as given by `decode.sniff_format`.

    Returns:
        (height, width), or None when the header does not say.
    """
    try:
        if fmt == "png":
            width, height = struct.unpack(">II", data[16:24])
            return height, width
        if fmt == "gif":
            width, height = struct.unpack("<HH", data[6:10])
            return height, width
        if fmt == "bmp":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(height), width
        if fmt == "jpeg":
            return _jpeg_dimensions(data)
        if fmt == "tiff":
            import io

            import tifffile

            source = data if isinstance(data, str) else io.BytesIO(data)
            with tifffile.TiffFile(source) as tif:
                shape = tif.pages[0].shape
            return int(shape[0]), int(shape[1])
        if fmt == "dicom":
            import io

            import pydicom

            source = data if isinstance(data, str) else io.BytesIO(data)
            meta = pydicom.dcmread(source, stop_before_pixels=True, force=True)
            return int(meta.Rows), int(meta.Columns)
    except Exception:  # a broken header is found by the decode step
        return None
    return None


def _jpeg_dimensions(data):
    offset = 2
    while offset + 9 < len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return height, width
        offset += 2 + length
    return None


_DECODERS = {}


def _decoder(dicom_window):
    key = str(dicom_window)
    if key not in _DECODERS:

        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def decode(contents):
            return tf.shape(decode_image(contents, 3, dicom_window))

        _DECODERS[key] = decode
    return _DECODERS[key]


HEADER_BYTES = 65536  # what `check_file(decode=False)` reads of a file


def check_file(
    path, root=None, max_pixels=DEFAULT_MAX_PIXELS, decode=True, dicom_window="auto",
    frames="middle",
):
    """Checks one image file the way `scan` does.

    Args:
        path: the file path.
        root: the folder the path must stay inside (None: no check).
        max_pixels: refuse images with more pixels (height x width), read
            from the header before anything is decoded.
        decode: decode the whole image with the pipeline's decoder (catches
            truncated and corrupt files). False reads only the first
            `HEADER_BYTES` (64 KB) for the format and size checks (TIFF and
            DICOM headers are read by tifffile/pydicom, which seek).
        dicom_window: DICOM window used when decoding.
        frames: `"first"`/`"middle"`: the frame of a multi-frame file that
            is decoded (a path ending in `#frame=N` names its own).

    Returns:
        None when the file is usable, else `(reason, detail)` where `reason`
        is a key of `REASONS`.

    Example:

    ```python
    check_file("x.png")                     # None
    check_file("notes.png", decode=False)   # ('not_image', "text content starting b'hello'")
    ```
    """
    if not isinstance(path, str) or not path:
        return "missing", f"no path given ({path!r})"
    path, frame = formats.split_frame(path)
    if root is not None and not inside_root(path, root):
        return "outside_root", f"{path!r} is outside {root!r}"
    if not os.path.isfile(path):
        return "missing", f"{path!r} does not exist or is not a file"
    size = os.path.getsize(path)
    if size == 0:
        return "empty", "0 bytes"
    with open(path, "rb") as handle:
        data = handle.read() if decode else handle.read(HEADER_BYTES)
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:16]
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary"
        return "not_image", f"{kind} content starting {head[:12]!r}"
    complete = len(data) == size
    dims = image_dimensions(data if complete or fmt not in ("tiff", "dicom") else path, fmt)
    if dims is None and not complete and fmt == "jpeg":  # size marker past the head
        with open(path, "rb") as handle:
            dims = image_dimensions(handle.read(), fmt)
    if dims is not None and dims[0] * dims[1] > max_pixels:
        return "too_large", f"{fmt} of {dims[1]}x{dims[0]} pixels > max_pixels={max_pixels}"
    if decode and fmt in PYTHON_FORMATS:
        # The same Python reader the graph calls through tf.numpy_function,
        # called directly so the detail is its message, not "Graph execution error".
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shape = formats.python_decode(
                    data, fmt, -1 if frame is None else frame, window=dicom_window,
                    frames=frames,
                ).shape
        except (ValueError, OSError) as error:
            detail = f"{fmt}: {error}"[:300]
            return ("unreadable_dicom" if fmt == "dicom" else "corrupt"), detail
        if shape[0] * shape[1] > max_pixels:
            return "too_large", f"{fmt} of {shape[1]}x{shape[0]} pixels > max_pixels={max_pixels}"
    elif decode:
        try:
            shape = _decoder(dicom_window)(tf.constant(data)).numpy()
        except (tf.errors.OpError, ValueError) as error:
            message = str(getattr(error, "message", error)).strip().splitlines()
            detail = f"{fmt}: {message[0] if message else type(error).__name__}"[:300]
            return ("unreadable_dicom" if fmt == "dicom" else "corrupt"), detail
        if shape[0] * shape[1] > max_pixels:
            return "too_large", f"{fmt} of {shape[1]}x{shape[0]} pixels > max_pixels={max_pixels}"
        if shape[0] < 1 or shape[1] < 1:
            return "corrupt", f"{fmt}: decoded to shape {tuple(shape)}"
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
):
    """Checks every sample of a table; returns the usable rows and a report.

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

    Returns:
        `(clean_table, report)`: `clean_table` keeps the usable rows (same
        columns and attrs); `report` is a DataFrame with columns `index`
        (row label in `table`), `path`, `reason` (a key of `REASONS`) and
        `detail`.

    Raises:
        ValueError: `strict=True` and some samples are bad (the message lists
            them), or no usable sample is left.

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

    def check(item):
        index, row = item
        problem = _check_label(row, multi, num_classes)
        if problem is None and has_arrays:
            image = np.asarray(row["image"])
            if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or min(image.shape[:2]) < 1:
                problem = "bad_array", f"shape {image.shape}"
        elif problem is None:
            problem = check_file(row["path"], root, max_pixels, decode, dicom_window)
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
    report = pd.DataFrame(bad, columns=list(REPORT_COLUMNS))
    if strict and bad:
        lines = "\n".join(f"  {p}: {r} ({d})" for _, p, r, d in bad[:50])
        more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
        raise ValueError(f"{len(bad)} of {len(table)} samples are unusable:\n{lines}{more}")
    clean = table.drop(index=report["index"]) if bad else table.copy()
    clean = with_attrs(clean, table)
    if clean.empty:
        raise ValueError(
            f"No usable samples: all {len(table)} were skipped "
            f"(reasons: {report['reason'].value_counts().to_dict()})."
        )
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
