"""Finding image files on disk: extensions, DICOM sniffing and folder walks that stay inside a root.

Example:

```python
from medivision_tf.data.sources.image_files import inside_root, list_images

refused = []
paths = list_images("chest_xray/NORMAL", exclude=("*_mask*",), refused=refused)
inside_root("/data/../etc/passwd", "/data")  # False
```
"""

import fnmatch
import os

from medivision_tf.data.io.regular_files import read_head
from medivision_tf.data.io.sniff import sniff_format

IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".dcm", ".dicom",
    ".nii", ".nii.gz",
)
DICOM_EXTENSIONS = (".dcm", ".dicom")


def _has_extension(name, extensions):
    lower = name.lower()
    if lower.startswith("."):
        return False
    return "*" in extensions or lower.endswith(tuple(extensions))


def _extensionless(name):
    """No extension, or a numeric one (UID-named DICOM files: `1.2.840.1`)."""
    extension = os.path.splitext(name)[1]
    return not extension or extension[1:].isdigit()


def inside_root(path, root, follow_links=False):
    """Whether `path` lies under `root` once `..` parts and links are resolved.

    Both are resolved with `os.path.realpath`: a symbolic link (to a file, or
    a linked folder on the way) that points outside the root is outside.
    `scan` reports paths where this is False as `outside_root` and
    `make_dataset` refuses them.

    Args:
        path: a file path.
        root: the folder it must stay inside.
        follow_links: trust links (compare the paths with only `..` parts
            resolved). Tables from `load_prepared` set
            `attrs["trusted_links"]`: `prepare_dataset(mode="symlink")` links
            into the downloaded folder.

    Example:

    ```python
    inside_root("/data/x/../y.png", "/data")     # True
    inside_root("/data/../etc/passwd", "/data")  # False
    ```
    """
    resolve = os.path.abspath if follow_links else os.path.realpath
    root = resolve(root)
    try:
        return os.path.commonpath([resolve(path), root]) == root
    except ValueError:  # different drives (Windows)
        return False


def is_dicom_file(path):
    """Whether a file is DICOM: `DICM` at byte 128, or a raw data set
    without preamble (see `io.sniff.sniff_format`). Only a regular file is
    opened (a FIFO would block the reader forever)."""
    head = read_head(path, 352)
    return head is not None and sniff_format(head) == "dicom"


def _extensionless_detail(path, head):
    """Why a file without an image extension was not taken (`head`: its
    first bytes, None when it is not a regular readable file)."""
    if head is None:
        return f"{path!r} has no image extension and is not a regular readable file"
    if not head:
        return f"{path!r} has no image extension and is empty"
    kind = sniff_format(head)
    if kind is None:
        return (f"{path!r} has no image extension and its bytes are not DICOM "
                f"(no 'DICM' marker at byte 128, no DICOM data set at byte 0)")
    return (f"{path!r} has no image extension and its bytes are {kind.upper()}, not DICOM: "
            f"rename it with its extension to use it")


def list_images(folder, extensions=IMAGE_EXTENSIONS, exclude=(), root=None, refused=None):
    """Image files under `folder` (recursive, sorted, hidden files skipped).

    Linked folders are followed only while they resolve inside `root`
    (default: `folder`) and were not visited yet (no loops); the others are
    not entered and are appended to `refused` as `(path, reason, detail)`.
    Files are listed as found: `scan` checks where each one resolves.

    Args:
        folder: the folder to walk.
        extensions: lower-case extensions to keep (`"*"`: every file).
        exclude: glob patterns of file names to skip, e.g. `("*_mask*",)`.
        root: the folder linked folders must stay inside (default `folder`).
        refused: a list collecting the folders not entered.

    Files without extension (or with a numeric one, as UID-named DICOM
    files have) are kept when their bytes are DICOM and `.dcm` is among
    `extensions` (only regular files are opened to look: never a FIFO);
    the others are appended to `refused` as `"not_image"`, with what their
    bytes are, so `scan` reports them instead of dropping them unseen.

    Example:

    ```python
    refused = []
    paths = list_images("chest_xray/NORMAL", refused=refused)
    ```
    """
    extensions = tuple(e.lower() for e in extensions)
    root = folder if root is None else root
    found = []
    seen = {os.path.realpath(folder)}
    def unreadable(error):  # a folder that cannot be listed is reported, not a crash
        if refused is not None:
            refused.append((error.filename, "unreadable",
                            f"folder {error.filename!r} cannot be listed: {error.strerror}"))

    for current, dirs, files in os.walk(folder, followlinks=True, onerror=unreadable):
        kept = []
        for d in sorted(d for d in dirs if not d.startswith((".", "__"))):
            path = os.path.join(current, d)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if not inside_root(real, root):
                    if refused is not None:
                        refused.append((path, "outside_root",
                                        f"linked folder {path!r} resolves outside {root!r}"))
                    continue
                if real in seen:
                    continue
                seen.add(real)
            kept.append(d)
        dirs[:] = kept
        for name in sorted(files):
            if name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in exclude):
                continue
            path = os.path.join(current, name)
            if not _has_extension(name, extensions):
                if not (".dcm" in extensions and _extensionless(name)):
                    continue  # another kind of file (notes.txt, labels.csv)
                head = read_head(path, 352)
                if head is None or sniff_format(head) != "dicom":
                    # A UID-named file is most likely meant as an image:
                    # it is reported, not dropped without a trace.
                    if refused is not None:
                        refused.append((path, "not_image", _extensionless_detail(path, head)))
                    continue
            found.append(path)
    return found
