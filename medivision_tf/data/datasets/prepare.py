"""`prepare_dataset`: a downloaded paper dataset -> our canonical layout and a manifest.

`prepare_dataset(name, src, out)` turns the downloaded (unzipped) folder into

```
out/CLASS/[SPLIT_]original_name.ext     class folders, canonical names
out/manifest.csv                        path,label,class_name[,split][,group],source
```
where `split` keeps the dataset's own train/val/test split when it has one,
`group` is the patient id when file names carry one, and `source` is the
original relative path. Nothing is downloaded: fetch the data from the
source (e.g. `kaggle datasets download -d ...`) and unzip it first.

Class ids are the sorted canonical class names, so `from_directory(out)` and
`load_prepared(out)` agree; `make_dataset(out)`, `scan` and
`medivision scan out` read the manifest (keeping split and group).

Example:

```python
from medivision_tf.data import prepare_dataset, load_prepared

table = prepare_dataset("brain_tumor_mri", "downloads/brain-tumor-mri", "data/brain")
table = load_prepared("data/brain")              # later runs
```
"""

import os
import re
import shutil

import pandas as pd

from medivision_tf.data.datasets.registry import get_dataset, norm
from medivision_tf.data.sources.image_files import IMAGE_EXTENSIONS, list_images
from medivision_tf.data.sources.prepared import MANIFEST, load_prepared
from medivision_tf.data.sources.table import SPLIT_ALIASES

COPY_MODES = ("copy", "hardlink", "symlink")


def _group_of(spec, filename):
    if not spec.group_pattern:
        return None
    match = re.search(spec.group_pattern, filename)
    if not match:
        return None
    return next((g for g in match.groups() if g), None)


def _skip_dir(spec, parts):
    return any(norm(p) in spec.exclude_dirs for p in parts)


def _locate_from_folders(spec, source_dir, files):
    found, skipped = [], 0
    for path in files:
        parts = os.path.relpath(path, source_dir).split(os.sep)[:-1]
        if _skip_dir(spec, parts):
            continue
        name = next((spec.class_of(p) for p in reversed(parts) if spec.class_of(p)), None)
        split = next((SPLIT_ALIASES[p.lower()] for p in reversed(parts) if p.lower() in SPLIT_ALIASES), None)
        if name is None:
            skipped += 1
            continue
        found.append((path, name, split))
    return found, skipped


def _locate_from_csv(spec, source_dir, files):
    config = spec.csv
    candidates = sorted(
        (os.path.join(d, config["file"]) for d, _, names in os.walk(source_dir) if config["file"] in names),
        key=lambda p: (p.count(os.sep), p),
    )
    if not candidates:
        return None
    frame = pd.read_csv(candidates[0], dtype=str)
    missing = {config["id_column"], config["label_column"]} - set(frame.columns)
    if missing:
        raise ValueError(
            f"{candidates[0]!r} lacks columns {sorted(missing)}; "
            f"expected {config['id_column']!r} and {config['label_column']!r}."
        )
    by_stem = {}
    for path in files:
        if _skip_dir(spec, os.path.relpath(path, source_dir).split(os.sep)[:-1]):
            continue
        by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], path)
    found, skipped = [], 0
    for image_id, value in zip(frame[config["id_column"]], frame[config["label_column"]]):
        name = config["labels"].get(str(value).strip())
        path = by_stem.get(str(image_id).strip())
        if name is None or path is None:
            skipped += 1
            continue
        found.append((path, name, None))
    return found, skipped


def prepare_dataset(name, source_dir, out_dir, *, mode="copy", verbose=True):
    """Turns a downloaded paper dataset into the canonical layout + manifest.

    Args:
        name: a name from `available_datasets()`.
        source_dir: the downloaded, unzipped folder (any folder above the
            layout in `get_dataset(name).layout` works: it is searched).
        out_dir: where to write `CLASS/...` folders and `manifest.csv`
            (created; existing files of the same name are replaced).
        mode: `"copy"`, `"hardlink"` (no extra disk space; falls back to a
            copy across file systems) or `"symlink"`.
        verbose: show a tqdm progress bar.

    Returns:
        The sample table read back from the manifest (`from_csv`), with
        `split` and `group` columns when the dataset has them.

    Raises:
        FileNotFoundError: `source_dir` is not a folder.
        ValueError: unknown dataset, no images found, or a class has no
            images (the message shows the expected layout).

    Example:

    ```python
    table = prepare_dataset("retinal_oct", "downloads/OCT2017", "data/oct")
    table.groupby(["split", "class_name"]).size()
    ```
    """
    from tqdm.auto import tqdm

    spec = get_dataset(name)
    if mode not in COPY_MODES:
        raise ValueError(f"Unknown mode {mode!r}. Choose one of: {', '.join(COPY_MODES)}.")
    if not os.path.isdir(source_dir):
        raise FileNotFoundError(f"No such folder: source_dir={os.fspath(source_dir)!r}")
    source_dir = os.path.abspath(source_dir)
    out_dir = os.path.abspath(out_dir)
    files = list_images(source_dir, IMAGE_EXTENSIONS, spec.exclude)
    # out_dir may lie inside source_dir: never take its files as sources.
    files = [f for f in files if os.path.commonpath([f, out_dir]) != out_dir]
    located = _locate_from_csv(spec, source_dir, files) if spec.csv else None
    if not located or not located[0]:
        located = _locate_from_folders(spec, source_dir, files)
    found, skipped = located
    hint = f"Expected layout of {spec.name} ({spec.source}):\n{spec.layout}"
    if not found:
        raise ValueError(f"No {spec.name} images found under {source_dir!r}.\n{hint}")
    present = {n for _, n, _ in found}
    absent = [c for c in spec.classes if c not in present]
    if absent:
        raise ValueError(f"Classes with no images under {source_dir!r}: {absent}.\n{hint}")

    rows, seen, used = [], set(), set()
    for path, class_name, split in found:
        filename = os.path.basename(path)
        key = (split, class_name, filename)
        if key in seen:  # duplicated copies (e.g. chest_xray/chest_xray)
            continue
        seen.add(key)
        stem, ext = os.path.splitext(filename)
        target = f"{split}_{stem}" if split else stem
        candidate, counter = f"{class_name}/{target}{ext}", 1
        while candidate in used:
            candidate = f"{class_name}/{target}_{counter}{ext}"
            counter += 1
        used.add(candidate)
        rows.append(
            {
                "path": candidate,
                "dataset": spec.name,
                "label": spec.classes.index(class_name),
                "class_name": class_name,
                "split": split,
                "group": _group_of(spec, filename),
                "source": os.path.relpath(path, source_dir),
                "_from": path,
            }
        )
    for class_name in spec.classes:
        os.makedirs(os.path.join(out_dir, class_name), exist_ok=True)
    for row in tqdm(rows, desc=f"Preparing {spec.name}", unit="img", disable=not verbose):
        _place(row["_from"], os.path.join(out_dir, row["path"]), mode)
    manifest = pd.DataFrame(rows).drop(columns="_from")
    for column in ("split", "group"):
        if manifest[column].isna().all():
            manifest = manifest.drop(columns=column)
    if "group" in manifest:  # files without a patient id are their own group
        manifest["group"] = manifest["group"].fillna(manifest["path"])
    manifest.to_csv(os.path.join(out_dir, MANIFEST), index=False)
    table = load_prepared(out_dir, spec.name)
    table.attrs["skipped_files"] = skipped
    return table


def _place(source, target, mode):
    if os.path.lexists(target):
        os.remove(target)
    if mode == "symlink":
        os.symlink(source, target)
        return
    if mode == "hardlink":
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)
