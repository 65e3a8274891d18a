"""The paper's ten public datasets: where each comes from, its folder layout and its classes.

Each `DatasetSpec` records the dataset's usual public source, its folder
layout as downloaded, and its class names (sorted: the class ids).
`prepare.prepare_dataset` uses a spec to find the images of a downloaded
folder; `sources.prepared.load_prepared` uses its class order. This module
imports nothing else of the package.

Example:

```python
from medivision_tf.data import available_datasets, get_dataset

available_datasets()[:2]                      # ['alzheimer_mri', 'blood_cells']
get_dataset("retinal_oct").classes            # ('cnv', 'dme', 'drusen', 'normal')
```
"""

import dataclasses
import re

import pandas as pd

def norm(text):
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
        key = norm(folder)
        if key in self.aliases:
            return self.aliases[key]
        if self.prefix_match:
            for alias in sorted(self.aliases, key=len, reverse=True):
                if key.startswith(alias):
                    return self.aliases[alias]
        return None


def _spec(name, title, modality, source, aliases, layout, **options):
    aliases = {norm(k): v for k, v in aliases.items()}
    for value in set(aliases.values()):
        aliases.setdefault(norm(value), value)
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
