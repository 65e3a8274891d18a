"""The paper's ten public datasets: registry and `prepare_dataset`.

Each `DatasetSpec` records the dataset's usual public source, its folder
layout as downloaded, and its class names. `prepare_dataset(name, src, out)`
turns the downloaded (unzipped) folder into our canonical layout

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
from medivision_tf.data import available_datasets, prepare_dataset, load_prepared

available_datasets()[:2]           # ['alzheimer_mri', 'blood_cells']
table = prepare_dataset("brain_tumor_mri", "downloads/brain-tumor-mri", "data/brain")
table = load_prepared("data/brain")              # later runs
```
"""

import dataclasses
import os
import re
import shutil

import pandas as pd

from medivision_tf.data.files import IMAGE_EXTENSIONS, list_images
from medivision_tf.data.sources import from_csv
from medivision_tf.data.table import SPLIT_ALIASES

MANIFEST = "manifest.csv"
COPY_MODES = ("copy", "hardlink", "symlink")


def _norm(text):
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One public dataset of the paper.

    Attributes:
        name: registry name, e.g. `"chest_xray_pneumonia"`.
        title: human-readable title.
        modality: imaging modality.
        source: where to download it.
        classes: canonical class names, sorted (index = class id).
        aliases: normalized folder name (lower case, letters and digits
            only) -> canonical class name.
        layout: the expected folder layout after unzipping.
        exclude: glob patterns of file names that are not samples (masks).
        exclude_dirs: normalized folder names to skip (duplicate subsets).
        group_pattern: regex whose first matching group in a file name is
            the patient id, or None.
        prefix_match: a folder matches an alias when its normalized name
            starts with it (for folders like
            `adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib`).
        csv: for CSV-labelled layouts: `{"file", "id_column",
            "label_column", "labels"}`, `labels` mapping CSV values to
            classes; image files are found by their name without extension.
    """

    name: str
    title: str
    modality: str
    source: str
    classes: tuple
    aliases: dict
    layout: str
    exclude: tuple = ()
    exclude_dirs: tuple = ()
    group_pattern: str = None
    prefix_match: bool = False
    csv: dict = None

    def class_of(self, folder):
        """Canonical class of a folder name, or None."""
        key = _norm(folder)
        if key in self.aliases:
            return self.aliases[key]
        if self.prefix_match:
            for alias in sorted(self.aliases, key=len, reverse=True):
                if key.startswith(alias):
                    return self.aliases[alias]
        return None


def _spec(name, title, modality, source, aliases, layout, **options):
    aliases = {_norm(k): v for k, v in aliases.items()}
    for value in set(aliases.values()):
        aliases.setdefault(_norm(value), value)
    return DatasetSpec(
        name, title, modality, source, tuple(sorted(set(aliases.values()))),
        aliases, layout.strip("\n"), **options,
    )


PAPER_DATASETS = {
    spec.name: spec
    for spec in (
        _spec(
            "alzheimer_mri",
            "Alzheimer's disease MRI (4 classes of dementia)",
            "brain MRI",
            "https://www.kaggle.com/datasets/tourist55/alzheimers-dataset-4-class-of-images",
            {
                "MildDemented": "mild_demented",
                "ModerateDemented": "moderate_demented",
                "NonDemented": "non_demented",
                "VeryMildDemented": "very_mild_demented",
            },
            """
Alzheimer_s Dataset/
  train/{MildDemented,ModerateDemented,NonDemented,VeryMildDemented}/*.jpg
  test/{MildDemented,ModerateDemented,NonDemented,VeryMildDemented}/*.jpg
""",
        ),
        _spec(
            "breast_ultrasound",
            "Breast ultrasound images (BUSI)",
            "ultrasound",
            "https://www.kaggle.com/datasets/aryashah2k/breast-ultrasound-images-dataset",
            {"benign": "benign", "malignant": "malignant", "normal": "normal"},
            """
Dataset_BUSI_with_GT/
  {benign,malignant,normal}/"benign (1).png"   (+ "benign (1)_mask.png" masks, skipped)
""",
            exclude=("*_mask*",),
        ),
        _spec(
            "blood_cells",
            "Blood cell images (BCCD-derived, 4 white blood cell types)",
            "microscopy",
            "https://www.kaggle.com/datasets/paultimothymooney/blood-cells",
            {
                "EOSINOPHIL": "eosinophil",
                "LYMPHOCYTE": "lymphocyte",
                "MONOCYTE": "monocyte",
                "NEUTROPHIL": "neutrophil",
            },
            """
dataset2-master/dataset2-master/images/
  TRAIN/{EOSINOPHIL,LYMPHOCYTE,MONOCYTE,NEUTROPHIL}/_0_1169.jpeg
  TEST/{...}/*.jpeg
  TEST_SIMPLE/{...}/*.jpeg     (a subset of TEST, skipped)
""",
            exclude_dirs=("testsimple",),
            # Augmented copies of one source image share the last number.
            group_pattern=r"^_\d+_(\d+)\.",
        ),
        _spec(
            "chest_xray_pneumonia",
            "Chest X-ray pneumonia (Kermany et al., pediatric)",
            "chest X-ray",
            "https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia",
            {"NORMAL": "normal", "PNEUMONIA": "pneumonia"},
            """
chest_xray/
  {train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg
  (a duplicate chest_xray/chest_xray/ copy and __MACOSX/ are skipped)
""",
            group_pattern=r"^(person\d+)_|^(?:NORMAL2-)?(IM-\d+)-",
        ),
        _spec(
            "chest_ct_cancer",
            "Chest CT-scan images (lung cancer types)",
            "chest CT",
            "https://www.kaggle.com/datasets/mohamedhanyyy/chest-ctscan-images",
            {
                "adenocarcinoma": "adenocarcinoma",
                "large.cell.carcinoma": "large_cell_carcinoma",
                "normal": "normal",
                "squamous.cell.carcinoma": "squamous_cell_carcinoma",
            },
            """
Data/
  {train,valid,test}/
    adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib/*.png   (test/: adenocarcinoma/)
    large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa/*.png
    normal/*.png
    squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa/*.png
""",
            prefix_match=True,
        ),
        _spec(
            "diabetic_retinopathy",
            "Diabetic retinopathy fundus images (APTOS 2019, grades 0-4)",
            "fundus photography",
            "https://www.kaggle.com/competitions/aptos2019-blindness-detection",
            {
                "No_DR": "no_dr",
                "Mild": "mild",
                "Moderate": "moderate",
                "Severe": "severe",
                "Proliferate_DR": "proliferative_dr",
                "Proliferative_DR": "proliferative_dr",
            },
            """
train.csv                  id_code,diagnosis (0 no DR ... 4 proliferative)
train_images/{id_code}.png
or the class-folder variant (e.g. gaussian_filtered_images/):
  {No_DR,Mild,Moderate,Severe,Proliferate_DR}/*.png
""",
            csv={
                "file": "train.csv",
                "id_column": "id_code",
                "label_column": "diagnosis",
                "labels": {
                    "0": "no_dr", "1": "mild", "2": "moderate",
                    "3": "severe", "4": "proliferative_dr",
                },
            },
        ),
        _spec(
            "kidney_ct",
            "CT kidney: normal, cyst, tumor, stone",
            "abdominal CT",
            "https://www.kaggle.com/datasets/nazmul0087/ct-kidney-dataset-normal-cyst-tumor-and-stone",
            {"Cyst": "cyst", "Normal": "normal", "Stone": "stone", "Tumor": "tumor"},
            """
CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone/CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone/
  {Cyst,Normal,Stone,Tumor}/"Cyst- (1).jpg"
""",
        ),
        _spec(
            "bone_fracture",
            "Bone fracture multi-region X-ray",
            "X-ray",
            "https://www.kaggle.com/datasets/bmadushanirodrigo/fracture-multi-region-x-ray-data",
            {"fractured": "fractured", "not fractured": "not_fractured"},
            """
Bone_Fracture_Binary_Classification/Bone_Fracture_Binary_Classification/
  {train,val,test}/{fractured,"not fractured"}/*.jpg
""",
        ),
        _spec(
            "retinal_oct",
            "Retinal OCT (Kermany et al., OCT2017)",
            "optical coherence tomography",
            "https://www.kaggle.com/datasets/paultimothymooney/kermany2018",
            {"CNV": "cnv", "DME": "dme", "DRUSEN": "drusen", "NORMAL": "normal"},
            """
OCT2017/
  {train,val,test}/{CNV,DME,DRUSEN,NORMAL}/CNV-1016042-1.jpeg   (patient 1016042)
""",
            group_pattern=r"^[A-Za-z]+-(\d+)-",
        ),
        _spec(
            "brain_tumor_mri",
            "Brain tumor MRI (glioma, meningioma, pituitary, no tumor)",
            "brain MRI",
            "https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset",
            {
                "glioma": "glioma",
                "glioma_tumor": "glioma",
                "meningioma": "meningioma",
                "meningioma_tumor": "meningioma",
                "notumor": "no_tumor",
                "pituitary": "pituitary",
                "pituitary_tumor": "pituitary",
            },
            """
{Training,Testing}/{glioma,meningioma,notumor,pituitary}/Tr-gl_0010.jpg
""",
        ),
    )
}


def available_datasets():
    """Sorted names of the registered paper datasets."""
    return sorted(PAPER_DATASETS)


def get_dataset(name):
    """The `DatasetSpec` registered as `name`.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    key = str(name).lower().replace("-", "_")
    if key not in PAPER_DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}. Choose one of: {', '.join(available_datasets())}."
        )
    return PAPER_DATASETS[key]


def datasets_table():
    """The registry as a DataFrame (name, title, modality, classes, source)."""
    return pd.DataFrame(
        [
            {
                "name": s.name,
                "title": s.title,
                "modality": s.modality,
                "num_classes": len(s.classes),
                "classes": ", ".join(s.classes),
                "source": s.source,
            }
            for s in (PAPER_DATASETS[n] for n in available_datasets())
        ]
    )


def _group_of(spec, filename):
    if not spec.group_pattern:
        return None
    match = re.search(spec.group_pattern, filename)
    if not match:
        return None
    return next((g for g in match.groups() if g), None)


def _skip_dir(spec, parts):
    return any(_norm(p) in spec.exclude_dirs for p in parts)


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


def is_prepared(folder):
    """Whether `folder` was written by `prepare_dataset`: it holds a
    `manifest.csv` with `path` and `class_name` columns."""
    manifest = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.isfile(manifest):
        return False
    try:
        header = pd.read_csv(manifest, nrows=0).columns
    except (ValueError, OSError):  # empty or unreadable file
        return False
    return {"path", "class_name"} <= set(header)


def load_prepared(out_dir, name=None):
    """The sample table of a folder written by `prepare_dataset`.

    `make_dataset`, `scan`, `as_table` and `medivision scan` call it for a
    folder holding `manifest.csv` (or that file's path), so the dataset's
    `split` and patient `group` columns are kept.

    Args:
        out_dir: the prepared folder (holding `manifest.csv`).
        name: the dataset name, to use its class order (default: the one
            `prepare_dataset` wrote in the manifest's `dataset` column, so the
            class ids stay the registry's even if a class's rows were
            removed; for a manifest without it, its sorted class names).

    Returns:
        The sample table, paths absolute under `out_dir` (its root).

    Raises:
        FileNotFoundError: no `manifest.csv` in `out_dir`.
        ValueError: the manifest names an unknown dataset, or several.

    Example:

    ```python
    table = load_prepared("data/oct")
    train, val, test = by_split(table)
    ```
    """
    manifest = os.path.join(out_dir, MANIFEST)
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"No {MANIFEST} in {os.fspath(out_dir)!r}: run prepare first.")
    # Read once; from_csv takes the frame (root given: paths stay confined to it).
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if name is None and "dataset" in frame:
        names = sorted(set(frame["dataset"]) - {""})
        if len(names) > 1:
            raise ValueError(
                f"{manifest} mixes datasets {names}: prepare each into its own folder."
            )
        name = names[0] if names else None
    table = from_csv(
        frame,
        root=out_dir,
        path_column="path",
        label_column="class_name",
        class_names=get_dataset(name).classes if name else None,
        group_column="group" if "group" in frame else None,
        split_column="split" if "split" in frame else None,
    )
    # prepare_dataset(mode="symlink") links into the downloaded folder: the
    # links it wrote are trusted (`..` and absolute paths still are not).
    table.attrs["trusted_links"] = True
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
