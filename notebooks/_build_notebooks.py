"""Writes the four tutorial notebooks of this folder, outputs cleared.

The notebooks are generated from this file so that they stay consistent (the
same badge, install cell and settings cell in each). Edit the cells here, then:

    python notebooks/_build_notebooks.py

`tests/test_notebooks.py` checks that the committed notebooks match this file
and executes each one with MEDIVISION_NOTEBOOK_QUICK=1.
"""

import os
import sys
import textwrap

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))

# A placeholder organisation (see README.md in this folder): replace it with
# the repository's real GitHub path when it is published.
REPOSITORY = "medivision-tf/medivision-tf"
COLAB_URL = "https://colab.research.google.com/github/{repo}/blob/main/notebooks/{name}.ipynb"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
PIP_SPEC = f"medivision-tf[serve] @ git+https://github.com/{REPOSITORY}"

QUICK_VARIABLE = "MEDIVISION_NOTEBOOK_QUICK"
WORKDIR_VARIABLE = "MEDIVISION_NOTEBOOK_WORKDIR"


def md(text):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text):
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip("\n"))


def header(name, title, teaches):
    """Title + Colab badge + what the notebook teaches, then the install cell."""
    url = COLAB_URL.format(repo=REPOSITORY, name=name)
    intro = md(
        f"# {title}\n\n"
        f"[![Open In Colab]({BADGE})]({url})\n\n"
        + textwrap.dedent(teaches).strip("\n")
    )
    install = code(
        f'''
        # Install MediVision-TF from its repository (Colab: nothing else is needed).
        # Skipped when the package is already importable (a local clone, the tests).
        import importlib.util

        if importlib.util.find_spec("medivision_tf") is None:
            %pip install -q "{PIP_SPEC}"
        '''
    )
    return [intro, install]


def settings(quick_values, full_values, extra=""):
    """The settings cell: one environment variable picks tiny or Colab-size values."""
    lines = [
        "# Settings. MEDIVISION_NOTEBOOK_QUICK=1 picks tiny values (the test suite runs",
        "# every notebook that way in about a minute); unset, the values suit Colab.",
        "# Everything this notebook writes goes under WORK_DIR.",
        "import os",
        "",
        'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up',
        "",
        f'QUICK = os.environ.get("{QUICK_VARIABLE}", "0") == "1"',
        f'WORK_DIR = os.path.abspath(os.environ.get("{WORKDIR_VARIABLE}", "medivision_work"))',
        "os.makedirs(WORK_DIR, exist_ok=True)",
        "",
    ]
    names = list(quick_values)
    width = max(len(n) for n in names)
    lines.append("if QUICK:")
    lines += [f"    {n.ljust(width)} = {quick_values[n]}" for n in names]
    lines.append("else:")
    lines += [f"    {n.ljust(width)} = {full_values[n]}" for n in names]
    if extra:
        lines += ["", textwrap.dedent(extra).strip("\n")]
    lines += ["", 'print(f"QUICK={QUICK}, writing to {WORK_DIR}")']
    cell = code("\n".join(lines))
    return [cell, code("%matplotlib inline")]


SHOW_PNG = '''
def show_png(path, title=None, width=10):
    """Shows a PNG file written by medivision_tf inline (matplotlib)."""
    image = plt.imread(path)
    height = width * image.shape[0] / image.shape[1]
    plt.figure(figsize=(width, height))
    plt.imshow(image)
    plt.axis("off")
    if title:
        plt.title(title)
    plt.show()
'''


# === 01: quick start ===


def quickstart():
    name = "01_quickstart"
    cells = header(
        name,
        "MediVision-TF quick start",
        """
        **What you will learn:** build a MediVision model (CNN backbone → LSTM → attention → skip
        connection → classifier) with `build_medivision(num_classes)`, train it on synthetic lesion
        images (no download: each class has its own lesion pattern), evaluate it on held-out images
        with `evaluate_model`, and plot its training curves and confusion matrix inline.

        Runs on a CPU in a few minutes; on Colab any runtime works.
        """,
    )
    cells += settings(
        dict(NUM_TRAIN=192, NUM_VAL=64, NUM_TEST=64, EPOCHS=2),
        dict(NUM_TRAIN=1200, NUM_VAL=200, NUM_TEST=400, EPOCHS=12),
        extra="""
        IMAGE_SIZE = 64   # synthetic images are 64x64 grayscale
        NUM_CLASSES = 4
        BATCH_SIZE = 32
        """,
    )
    cells += [
        code(
            """
            import keras
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd

            import medivision_tf
            from medivision_tf.data import make_synthetic_lesions
            from medivision_tf.evaluation import evaluate_model, plot_history

            print("medivision_tf", medivision_tf.__version__, "| keras", keras.__version__,
                  "| backend", keras.config.backend())
            """
        ),
        md(
            """
            **Backend.** This notebook runs on TensorFlow, Keras' default backend: its data
            (`medivision_tf.data`) and `evaluate_model` are built on TensorFlow. The model itself
            (building, `fit` on arrays, `.keras` files, Grad-CAM and Grad-CAM++, attention maps)
            also runs on JAX and PyTorch: set `KERAS_BACKEND=jax` or `torch` before Keras is
            imported, and the TensorFlow-only parts raise one clear error instead
            ([docs/backends.md](../docs/backends.md)).
            """
        ),
        code(SHOW_PNG),
        md(
            """
            ## 1. Data: synthetic lesions

            `make_synthetic_lesions` draws medical-looking grayscale images with one lesion each;
            the class is the lesion's pattern, and the lesion's bounding box is recorded (notebook 03
            uses it to score explanations). Images are raw `uint8` pixels in 0-255: the model does
            its own preprocessing. Three separate draws (different seeds) give train, validation
            and test images.
            """
        ),
        code(
            """
            train = make_synthetic_lesions(NUM_TRAIN, IMAGE_SIZE, NUM_CLASSES, seed=0)
            val = make_synthetic_lesions(NUM_VAL, IMAGE_SIZE, NUM_CLASSES, seed=1)
            test = make_synthetic_lesions(NUM_TEST, IMAGE_SIZE, NUM_CLASSES, seed=2)
            class_names = list(train.class_names)
            print(train.images.shape, train.images.dtype, "classes:", class_names)

            fig, axes = plt.subplots(1, 8, figsize=(16, 2.6))
            for ax, image, label, (y0, x0, y1, x1) in zip(axes, train.images, train.labels, train.boxes):
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                           fill=False, color="lime", linewidth=1))
                ax.set_title(class_names[label], fontsize=8)
                ax.axis("off")
            plt.show()
            """
        ),
        md(
            """
            ## 2. Build the model

            `build_medivision(num_classes, ...)` returns a plain `keras.Model`. Its defaults are the
            paper's setting: an EfficientNetB0 backbone with ImageNet weights at 224x224 RGB.
            Here we use the small from-scratch `smallcnn` backbone (`weights=None`, inputs from
            28x28), which learns these 64x64 grayscale images in minutes on a CPU. Grayscale input
            is repeated to RGB inside the model; the class names are stored in the model.
            """
        ),
        code(
            """
            keras.utils.set_random_seed(0)
            model = medivision_tf.build_medivision(
                NUM_CLASSES,
                backbone="smallcnn",
                weights=None,
                input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
                class_names=class_names,
            )
            model.summary(line_length=110)
            print("backbones available:", ", ".join(medivision_tf.available_backbones()))
            """
        ),
        md(
            """
            ## 3. Train

            Plain Keras: compile and `fit`. A `CSVLogger` keeps the history for `plot_history`.
            After a short from-scratch training the BatchNorm statistics lag behind the weights
            (validation accuracy during training can look poor), so `calibrate_batchnorm`
            re-estimates them on the training images before evaluating.

            `medivision_tf.train(...)` does all of this for you (two-phase fine-tuning, checkpoints,
            resume, a run folder): see notebook 02.
            """
        ),
        code(
            """
            run_dir = os.path.join(WORK_DIR, "quickstart")
            os.makedirs(run_dir, exist_ok=True)
            history_csv = os.path.join(run_dir, "history.csv")

            model.compile(
                optimizer=keras.optimizers.Adam(2e-3),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            history = model.fit(
                train.images, train.labels,
                validation_data=(val.images, val.labels),
                epochs=EPOCHS,
                batch_size=BATCH_SIZE,
                callbacks=[keras.callbacks.CSVLogger(history_csv)],
                verbose=2,
            )
            medivision_tf.calibrate_batchnorm(model, train.images)
            print("BatchNorm statistics re-estimated on the training images.")
            """
        ),
        md("Training curves, drawn by `plot_history` from the history CSV:"),
        code(
            """
            curves_png = plot_history(history_csv, os.path.join(run_dir, "training_curves.png"))
            show_png(curves_png)
            """
        ),
        md(
            """
            ## 4. Evaluate on held-out images

            `evaluate_model` predicts, computes accuracy, balanced accuracy, per-class precision /
            recall (sensitivity) / specificity / F1 / ROC-AUC and the calibration error, and (with
            `out_dir`) writes them as JSON/CSV with PNG plots.
            """
        ),
        code(
            """
            report = evaluate_model(
                model, test.images, test.labels, class_names,
                out_dir=os.path.join(run_dir, "evaluation"),
            )
            summary = {k: v for k, v in report.summary.items() if isinstance(v, float)}
            print(pd.Series(summary).round(3).to_string())
            report.per_class.round(3)
            """
        ),
        md("The confusion matrix (rows: true class, columns: predicted), drawn inline with matplotlib:"),
        code(
            """
            from sklearn.metrics import ConfusionMatrixDisplay

            fig, ax = plt.subplots(figsize=(6, 5))
            ConfusionMatrixDisplay(
                report.confusion_matrix.values, display_labels=class_names
            ).plot(ax=ax, cmap="Blues", xticks_rotation=30, colorbar=False)
            ax.set_title(f"Test accuracy {report.summary['accuracy']:.3f}")
            plt.show()
            print("Files written:", sorted(os.listdir(os.path.join(run_dir, "evaluation"))))
            """
        ),
        md("## 5. Predict, save and load"),
        code(
            """
            probabilities = model.predict(test.images[:6], verbose=0)
            fig, axes = plt.subplots(1, 6, figsize=(14, 2.8))
            for ax, image, label, p in zip(axes, test.images, test.labels, probabilities):
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
                ok = "✓" if p.argmax() == label else "✗"
                ax.set_title(f"{ok} {class_names[p.argmax()]}\\n{p.max():.2f} (true: {class_names[label]})",
                             fontsize=8)
                ax.axis("off")
            plt.show()

            model_path = os.path.join(run_dir, "model.keras")
            model.save(model_path)
            again = medivision_tf.load_model(model_path)
            print("reloaded:", medivision_tf.get_class_names(again))
            np.testing.assert_allclose(again.predict(test.images[:6], verbose=0), probabilities, atol=1e-5)
            """
        ),
        md(
            """
            ## Next

            * `02_train_on_your_dataset`: one of the paper's ten datasets, the tf.data pipeline,
              two-phase fine-tuning of a pretrained backbone, class weights, GPU/TPU strategies.
            * `03_explain_with_gradcam`: Grad-CAM, Grad-CAM++ and attention maps, scored against
              the known lesion boxes.
            * `04_export_to_tf_serving`: a SavedModel for TF Serving and a local REST server.
            * From a terminal, `medivision demo` runs all of this in one command.
            """
        ),
    ]
    return name, cells, {}


# === 02: train on your dataset ===


def train_on_your_dataset():
    name = "02_train_on_your_dataset"
    cells = header(
        name,
        "Train MediVision on one of the paper's datasets",
        """
        **What you will learn:** turn a downloaded dataset (here the Kaggle chest X-ray pneumonia
        set, one of the paper's ten) into a clean sample table with `prepare_dataset`, split it by
        patient, build the `tf.data` pipeline with `make_dataset`, weight the classes, and train
        in two phases (backbone frozen, then fine-tuned) under the right `tf.distribute` strategy
        for your GPU or TPU.

        No download needed to run it: when the dataset's folder is absent, a small synthetic
        stand-in is written in the same folder layout, so every cell runs as it would on the real
        data. On Colab, pick a GPU runtime (*Runtime → Change runtime type*).
        """,
    )
    cells += settings(
        dict(
            IMAGES_PER_CLASS="{\"NORMAL\": 18, \"PNEUMONIA\": 36}",
            STAND_IN_SIZE=64,
            BACKBONE='"smallcnn"',
            WEIGHTS="None",
            IMAGE_SIZE=64,
            BATCH_SIZE=16,
            EPOCHS=1,
            FINE_TUNE_EPOCHS=1,
            FINE_TUNE_LAYERS="None",
        ),
        dict(
            IMAGES_PER_CLASS="{\"NORMAL\": 200, \"PNEUMONIA\": 600}",
            STAND_IN_SIZE=256,
            BACKBONE='"efficientnetb0"',
            WEIGHTS='"imagenet"',
            IMAGE_SIZE=224,
            BATCH_SIZE=32,
            EPOCHS=5,
            FINE_TUNE_EPOCHS=5,
            FINE_TUNE_LAYERS=40,
        ),
        extra="""
        # Where you unzipped the Kaggle download (any folder above chest_xray/ works).
        DATASET = "chest_xray_pneumonia"
        DOWNLOAD_DIR = os.environ.get("MEDIVISION_DATASET_DIR", os.path.join(WORK_DIR, "downloads", DATASET))
        PREPARED_DIR = os.path.join(WORK_DIR, "data", DATASET)
        """,
    )
    cells += [
        md(
            """
            ## 1. The strategy cell: GPU, TPU or CPU

            Create the `tf.distribute` strategy first thing: TPUs and multi-worker clusters must be
            set up before TensorFlow runs any other operation. `choose_strategy("auto")` picks
            `TPUStrategy` on a Colab TPU runtime, `MirroredStrategy` with several GPUs, a
            multi-worker strategy when `TF_CONFIG` names a cluster, else the default strategy (one
            GPU or the CPU). The batch size below is per replica.
            """
        ),
        code(
            """
            import tensorflow as tf

            from medivision_tf.training import choose_strategy

            strategy = choose_strategy("auto")
            gpus = tf.config.list_physical_devices("GPU")
            tpus = tf.config.list_logical_devices("TPU")
            print(f"TensorFlow {tf.__version__}")
            print(f"Strategy: {type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)")
            print(f"GPUs: {[g.name for g in gpus] or 'none'}; TPU cores: {len(tpus) or 'none'}")
            if not gpus and not tpus:
                print("Running on the CPU. On Colab: Runtime > Change runtime type > T4 GPU (or a TPU).")
            GLOBAL_BATCH = BATCH_SIZE * strategy.num_replicas_in_sync
            """
        ),
        code(
            """
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd

            import medivision_tf
            from medivision_tf import data
            from medivision_tf.evaluation import evaluate_model, plot_history
            from medivision_tf.training import TrainConfig, train
            """
        ),
        code(SHOW_PNG),
        md(
            """
            ## 2. The paper's ten datasets

            `medivision_tf.data` knows where each of them comes from, its classes and the folder
            layout of its download. Nothing is downloaded for you: get the files from Kaggle (for
            example with the Kaggle CLI, after putting your `kaggle.json` API token in place):

            ```bash
            kaggle datasets download -d paultimothymooney/chest-xray-pneumonia
            unzip -q chest-xray-pneumonia.zip -d /content/chest_xray_pneumonia
            ```

            then set `MEDIVISION_DATASET_DIR=/content/chest_xray_pneumonia` (or `DOWNLOAD_DIR` in
            the settings cell).
            """
        ),
        code(
            """
            spec = data.get_dataset(DATASET)
            print(f"{spec.title}\\nsource: {spec.source}\\nclasses: {spec.classes}\\nlayout:\\n{spec.layout}")
            data.datasets_table()[["name", "modality", "num_classes", "classes"]]
            """
        ),
        md(
            """
            ### A synthetic stand-in when the download is absent

            If `DOWNLOAD_DIR` does not exist, the next cell writes synthetic grayscale images in the
            download's exact layout: `chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`, with
            the dataset's file names (`IM-0115-0001.jpeg` for normal, `person1_bacteria_1.jpeg` for
            pneumonia; three images per patient), three times as many pneumonia images as normal
            ones (the real set is imbalanced the same way) and a tiny `val/` folder (the real one
            has 16 images). The two classes are two synthetic lesion patterns, so the model has
            something to learn. Everything after this cell is the same for the real data.
            """
        ),
        code(
            """
            import cv2


            def write_chest_xray_stand_in(root, per_class, image_size, seed=0):
                \"\"\"Synthetic images in the Kaggle chest_xray/{split}/{CLASS}/ layout.\"\"\"
                fractions = {"train": 0.8, "val": 0.04, "test": 0.16}
                for s, (split, fraction) in enumerate(fractions.items()):
                    for label, folder in enumerate(("NORMAL", "PNEUMONIA")):
                        count = max(2, round(per_class[folder] * fraction))
                        lesions = data.make_synthetic_lesions(
                            2 * count, image_size, 2, seed=seed + 10 * s + label)
                        images = lesions.images[lesions.labels == label][:count]
                        os.makedirs(os.path.join(root, "chest_xray", split, folder), exist_ok=True)
                        for i, image in enumerate(images):
                            patient = 1000 * s + i // 3 + 1  # three images per patient
                            if folder == "NORMAL":
                                filename = f"IM-{patient:04d}-{i % 3 + 1:04d}.jpeg"
                            else:
                                filename = f"person{patient}_bacteria_{i + 1}.jpeg"
                            cv2.imwrite(os.path.join(root, "chest_xray", split, folder, filename), image)
                return root


            if os.path.isdir(DOWNLOAD_DIR) and os.listdir(DOWNLOAD_DIR):
                print("Using the downloaded dataset in", DOWNLOAD_DIR)
            else:
                write_chest_xray_stand_in(DOWNLOAD_DIR, IMAGES_PER_CLASS, STAND_IN_SIZE)
                print("No download found: wrote a synthetic stand-in to", DOWNLOAD_DIR)
            for split in ("train", "val", "test"):
                for folder in ("NORMAL", "PNEUMONIA"):
                    folder_path = os.path.join(DOWNLOAD_DIR, "chest_xray", split, folder)
                    if os.path.isdir(folder_path):
                        files = sorted(os.listdir(folder_path))
                        print(f"chest_xray/{split}/{folder}/: {len(files)} files, e.g. {files[:2]}")
            """
        ),
        md(
            """
            ## 3. Prepare: the download → a canonical folder and a manifest

            `prepare_dataset` finds the layout under `DOWNLOAD_DIR`, maps the folder names to the
            canonical class names (`normal`, `pneumonia`), keeps the dataset's own train/val/test
            split in a `split` column, reads patient ids from the file names into `group`, skips
            duplicate copies (`chest_xray/chest_xray`, `__MACOSX`), and writes
            `PREPARED_DIR/CLASS/split_name.jpeg` plus `manifest.csv`. `mode="hardlink"` avoids
            copying the images (it falls back to a copy across file systems).

            The same from a terminal: `medivision prepare chest_xray_pneumonia DOWNLOAD_DIR --out PREPARED_DIR`.
            """
        ),
        code(
            """
            table = data.prepare_dataset(DATASET, DOWNLOAD_DIR, PREPARED_DIR, mode="hardlink", verbose=False)
            class_names = data.class_names_of(table)
            print(len(table), "images, classes:", class_names)
            print(data.summarize(table))
            table.head()
            """
        ),
        md(
            """
            `scan` checks every file before training (missing, empty, not an image, corrupt,
            oversized, unknown label) and returns the clean rows plus a report of the bad ones:
            """
        ),
        code(
            """
            table, bad = data.scan(table, verbose=False)
            print(f"{len(table)} good images, {len(bad)} bad")
            bad.head()
            """
        ),
        md(
            """
            ### DICOM windowing and NIfTI volumes

            DICOM files are read with pydicom's own pipeline (modality LUT, then the file's VOI LUT or
            window with its `VOILUTFunction`, PALETTE COLOR, MONOCHROME1 inverted), or with an
            explicit window such as CT soft tissue `(40, 400)`; the choice is a training option
            (`--dicom-window 40,400`) saved with the model, so `predict` and `explain` read files the
            same way. NIfTI volumes (`.nii`, `.nii.gz`) become 2-D slices (`--nifti-axis axial`,
            `--nifti-slices nonempty`), one `group` per volume so a split never cuts a volume. See
            `docs/data.md`, "DICOM windowing" and "Frames and volumes".
            """
        ),
        code(
            """
            import glob, os
            import pydicom
            from medivision_tf.data import read_dicom, sniff_format

            corpus = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
            ct = os.path.join(corpus, "CT_small.dcm")      # its preamble looks like a TIFF file
            if os.path.exists(ct):
                own = read_dicom(ct)                        # the file's own window
                soft = read_dicom(ct, window=(40, 400))     # CT soft tissue
                print(sniff_format(open(ct, "rb").read(352)), own.shape, soft.mean().round(1))
            """
        ),
        md(
            """
            ## 4. Splits by patient, class weights

            The official `val/` folder is tiny, so we keep the official `test/` split and re-split
            train + val with `split_table(..., group_column="group")`: all images of one patient land
            in the same split (no leakage), and the classes stay stratified.

            `class_weights` gives each class `n / (k * count)`: errors on the rare class (here
            `normal`) cost more, so the model does not just predict the majority class.
            """
        ),
        code(
            """
            test_table = table[table["split"] == "test"]
            train_table, val_table, _ = data.split_table(
                table[table["split"] != "test"], val=0.2, test=0.0, seed=0, group_column="group")
            for name, part in (("train", train_table), ("val", val_table), ("test", test_table)):
                print(f"{name:5s}: {len(part):4d} images, {part['group'].nunique():3d} patients, "
                      f"{part['class_name'].value_counts().to_dict()}")
            assert not set(train_table["group"]) & set(val_table["group"]), "a patient in two splits"

            weights = data.class_weights(train_table)
            print("class weights:", {class_names[c]: round(w, 3) for c, w in weights.items()})
            """
        ),
        md(
            """
            ### Duplicates and leakage

            A copy of a training image in the test split (the same file twice, a resized or
            recompressed copy) inflates every result. `find_duplicates` hashes every image once
            (exact: its decoded pixels; near: `imagehash`'s 256-bit perceptual hash, within 24 bits)
            and lists the pairs, with each one's split; `check_leakage` refuses a split where a
            val/test image copies a training image, as `train` does unless
            `allow_duplicates=True`. From a terminal: `medivision scan DIR --duplicates pairs.csv`.
            """
        ),
        code(
            """
            import cv2

            pairs = data.find_duplicates(table, verbose=False)
            print(len(pairs), "duplicate pairs", pairs["kind"].value_counts().to_dict())
            data.check_leakage(train_table, val_table, test_table)   # raises when a copy leaks

            # A recompressed, enlarged copy of a training image is found:
            original = train_table["path"].iloc[0]
            copy = os.path.join(WORK_DIR, "copy_of_a_training_image.jpg")
            pixels = cv2.imread(original, cv2.IMREAD_UNCHANGED)
            cv2.imwrite(copy, cv2.resize(pixels, None, fx=1.5, fy=1.5), [cv2.IMWRITE_JPEG_QUALITY, 80])
            data.find_duplicates([original, copy], verbose=False)
            """
        ),
        md(
            """
            ## 5. The tf.data pipeline

            `make_dataset` reads, decodes (JPEG/PNG/BMP/GIF/WebP in the graph, TIFF and DICOM
            through Python), resizes with the aspect ratio kept (black padding), batches and
            prefetches. With `training=True` it shuffles (seeded) and augments (flip, small rotation,
            zoom, contrast, brightness). Images stay raw 0-255 floats: the model preprocesses them.
            """
        ),
        code(
            """
            train_ds = data.make_dataset(train_table, image_size=IMAGE_SIZE, channels=1,
                                         batch_size=GLOBAL_BATCH, training=True, augment=True, seed=0)
            val_ds = data.make_dataset(val_table, image_size=IMAGE_SIZE, channels=1,
                                       batch_size=GLOBAL_BATCH)
            print(train_ds.element_spec)

            images, labels = next(iter(train_ds))
            fig, axes = plt.subplots(1, 8, figsize=(16, 2.6))
            for ax, image, label in zip(axes, images.numpy(), labels.numpy()):
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
                ax.set_title(class_names[label], fontsize=9)
                ax.axis("off")
            plt.suptitle("One augmented training batch")
            plt.show()
            """
        ),
        md(
            """
            ## 6. Two-phase fine-tuning

            `train` builds and compiles the model inside `strategy.scope()` and trains in two
            phases:

            1. `epochs` with the pretrained backbone **frozen**: only the LSTM-attention head learns,
               at `learning_rate` (`freeze_backbone="auto"`, the default, freezes it only when
               it starts from pretrained weights; a from-scratch backbone trains from the start);
            2. `fine_tune_epochs` with the backbone (or its top `fine_tune_layers` layers)
               **unfrozen**: a new optimizer warms up from 0 to `fine_tune_learning_rate` (by
               default 3e-5 for pretrained weights, 1e-4 from scratch) over `fine_tune_warmup`
               of the phase, then decays to 0 (cosine), so the switch does not wreck the
               pretrained features; BatchNorm stays frozen for pretrained weights
               (docs/training.md, "Transfer learning", has the measured comparison).

            `class_weight="balanced"` applies the class weights above. The run folder gets the
            config, checkpoints (`checkpoints/best.keras`), `history.csv`, TensorBoard logs and the
            final `model.keras`; calling `train` again with the same `run_dir` resumes an
            interrupted run. `mixed_precision="auto"` uses float16 on GPUs and bfloat16 on TPUs.

            With `MEDIVISION_NOTEBOOK_QUICK=1` the backbone is the small from-scratch `smallcnn`
            (no ImageNet download) and `"auto"` trains it from the first epoch.
            """
        ),
        code(
            """
            import datetime

            config = TrainConfig(
                backbone=BACKBONE,
                weights=WEIGHTS,
                image_size=IMAGE_SIZE,
                channels=1,                # X-rays are grayscale: repeated to RGB inside the model
                batch_size=BATCH_SIZE,     # per replica
                epochs=EPOCHS,             # phase 1: backbone frozen if pretrained
                freeze_backbone="auto",    # frozen for ImageNet weights, trained from scratch
                learning_rate=1e-3,
                fine_tune_epochs=FINE_TUNE_EPOCHS,   # phase 2: backbone unfrozen
                fine_tune_layers=FINE_TUNE_LAYERS,   # None: all backbone layers
                fine_tune_learning_rate=None,        # 3e-5 for pretrained weights, 1e-4 from scratch
                class_weight="balanced",
                monitor="val_loss",
                mixed_precision="auto",
                tensorboard=not QUICK,
                seed=0,
            )
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = os.path.join(WORK_DIR, "runs", f"{DATASET}-{stamp}")
            result = train(
                config,
                train_data=train_ds,
                val_data=val_ds,
                class_names=class_names,
                run_dir=run_dir,
                strategy=strategy,
                verbose=2,
            )
            result.history.round(4)
            """
        ),
        code(
            """
            curves = plot_history(os.path.join(result.run_dir, "history.csv"),
                                  os.path.join(result.run_dir, "training_curves.png"))
            show_png(curves, f"Phase 1: epochs 1-{EPOCHS}, phase 2 (fine-tuning): the rest")
            """
        ),
        md(
            """
            ### Pretrained weights from a local file

            A machine without internet (a hospital server, a cluster node) cannot download
            `weights="imagenet"`. Pass a local file as `weights` instead, in any form you have:
            Keras' own `efficientnetb0_notop.h5` fetched elsewhere, a backbone's `.weights.h5`
            (`backbone.save_weights(...)`, any input size), or a **whole classifier** that contains
            the backbone (`.keras` or `.h5`, e.g. a model a colleague trained, or one shipped in a
            public wheel): its backbone is taken out and the rest ignored. From a terminal:
            `medivision train DATA --backbone efficientnetb0 --weights FILE`.

            Here the file is the model trained above: a new model for another task (three
            classes) starts from its fine-tuned backbone. A file of another backbone is one
            clear error that says what the file holds.
            """
        ),
        code(
            """
            new_model = medivision_tf.build_medivision(
                3, backbone=BACKBONE, weights=result.model_path,
                input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), class_names=["a", "b", "c"])
            pairs = zip(medivision_tf.backbone_layers(result.model),
                        medivision_tf.backbone_layers(new_model))
            same = all(np.array_equal(a, b) for old, new in pairs
                       for a, b in zip(old.get_weights(), new.get_weights()))
            print(f"Backbone taken from {os.path.basename(result.model_path)}: identical weights: {same}")

            try:
                medivision_tf.build_medivision(3, backbone="mobilenet", weights=result.model_path,
                                               input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1))
            except ValueError as error:
                print("ValueError:", str(error).splitlines()[0])
            """
        ),
        md(
            """
            To watch a long run live on Colab: `%load_ext tensorboard` then
            `%tensorboard --logdir WORK_DIR/runs` (the logs are in each run's `logs/` folder).

            ## 7. Evaluate on the official test split

            `evaluate_model` takes the test table directly (read at the model's input size). With an
            imbalanced test set, look at the balanced accuracy and the per-class recall
            (sensitivity) and specificity, not just the accuracy.
            """
        ),
        code(
            """
            report = evaluate_model(result.model, test_table,
                                    out_dir=os.path.join(result.run_dir, "evaluation"))
            for key in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro", "ece"):
                print(f"{key:18s} {report.summary[key]:.3f}")
            show_png(os.path.join(result.run_dir, "evaluation", "confusion_matrix.png"), width=5)
            report.per_class.round(3)
            """
        ),
        code(
            """
            print("The run folder", result.run_dir)
            for root, dirs, files in sorted(os.walk(result.run_dir)):
                depth = os.path.relpath(root, result.run_dir).count(os.sep)
                if depth < 2:
                    print("  " + os.path.relpath(root, result.run_dir) + "/", sorted(files)[:8])
            """
        ),
        md(
            """
            `split.csv` records the split of a run (`path, label, group, split`), so a result can be
            audited: `train` writes it for sources and tables; here we passed tf.data datasets, so
            we write it from the tables with the same function.
            """
        ),
        code(
            """
            import pandas as pd
            from medivision_tf.data.checks.split_record import write_split_file

            write_split_file(result.run_dir, {"train": train_table, "val": val_table,
                                              "test": test_table}, class_names)
            split = pd.read_csv(os.path.join(result.run_dir, "split.csv"))
            assert split.groupby("group")["split"].nunique().max() == 1, "a patient on two sides"
            split.sample(5, random_state=0)
            """
        ),
        md(
            """
            ## Next

            * The same run from a terminal, with every `TrainConfig` key as a flag:
              `medivision train PREPARED_DIR --backbone efficientnetb0 --epochs 5 --fine-tune-epochs 5 --class-weight balanced --out runs/xray`
            * `03_explain_with_gradcam`: where does the model look?
            * `04_export_to_tf_serving`: export `result.model` and serve it.
            """
        ),
    ]
    metadata = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
    return name, cells, metadata


# === 03: explanations ===


def explain_with_gradcam():
    name = "03_explain_with_gradcam"
    cells = header(
        name,
        "Explain MediVision's predictions: Grad-CAM, Grad-CAM++ and attention maps",
        """
        **What you will learn:** compute Grad-CAM and Grad-CAM++ heatmaps and the model's own
        attention maps, lay them over the images inline, and check them against the known lesion
        boxes of synthetic data with the pointing game (is the map's peak inside the lesion?) and
        the share of the map's energy inside the box.
        """,
    )
    cells += settings(
        dict(NUM_TRAIN=256, EPOCHS=3, NUM_EXPLAINED=16, NUM_SHOWN=4),
        dict(NUM_TRAIN=1200, EPOCHS=12, NUM_EXPLAINED=100, NUM_SHOWN=6),
        extra="""
        IMAGE_SIZE = 64
        NUM_CLASSES = 4
        """,
    )
    cells += [
        code(
            """
            import keras
            import matplotlib.pyplot as plt
            import numpy as np
            import pandas as pd

            import medivision_tf
            from medivision_tf import explain as mx
            from medivision_tf.data import make_synthetic_lesions
            """
        ),
        code(SHOW_PNG),
        md(
            """
            ## 1. A model to explain

            Explanations of an untrained network are noise, so we first train a small MediVision on
            synthetic lesions (as in notebook 01). To explain your own model instead:
            `model = medivision_tf.load_model("runs/.../model.keras")`.
            """
        ),
        code(
            """
            train = make_synthetic_lesions(NUM_TRAIN, IMAGE_SIZE, NUM_CLASSES, seed=0)
            test = make_synthetic_lesions(NUM_EXPLAINED, IMAGE_SIZE, NUM_CLASSES, seed=2)
            class_names = list(train.class_names)

            keras.utils.set_random_seed(0)
            model = medivision_tf.build_medivision(
                NUM_CLASSES, backbone="smallcnn", weights=None,
                input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), class_names=class_names)
            model.compile(optimizer=keras.optimizers.Adam(2e-3),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(train.images, train.labels, epochs=EPOCHS, batch_size=32, verbose=2)
            medivision_tf.calibrate_batchnorm(model, train.images)

            probabilities = model.predict(test.images, verbose=0)
            predicted = probabilities.argmax(axis=1)
            print(f"accuracy on the {len(test)} images to explain: {(predicted == test.labels).mean():.3f}")
            """
        ),
        md(
            """
            ## 2. Grad-CAM, Grad-CAM++ and attention maps

            * **Grad-CAM** weights the channels of the backbone's last feature map (the layer named
              `feature_map` in every MediVision model) by the gradient of the class score.
            * **Grad-CAM++** uses higher-order gradient terms: sharper when a class shows up at
              several places.
            * **Attention maps** need no gradient: they are the attention layer's weights over the
              feature-map positions, i.e. where the LSTM-attention head looked.

            `mx.explain(model, images, method=...)` returns maps in [0, 1] at the images' size
            (`class_index=None` explains the predicted class; pass the labels to explain the true
            class). `mx.METHODS` also lists Score-CAM and LayerCAM.
            """
        ),
        code(
            """
            maps = {
                "Grad-CAM": mx.explain(model, test.images, method="gradcam"),
                "Grad-CAM++": mx.explain(model, test.images, method="gradcam++"),
                "attention": mx.attention_maps(model, test.images),
            }
            print("methods:", mx.METHODS)
            print({name: m.shape for name, m in maps.items()})
            """
        ),
        md("`mx.overlay(image, heatmap)` blends a colored heatmap over an image (RGB `uint8`); the green box is the lesion:"),
        code(
            """
            def draw_box(ax, box):
                y0, x0, y1, x1 = box
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                           fill=False, color="lime", linewidth=1.5))


            columns = ["image"] + list(maps)
            fig, axes = plt.subplots(NUM_SHOWN, len(columns), figsize=(2.6 * len(columns), 2.6 * NUM_SHOWN))
            for row in range(NUM_SHOWN):
                image, box = test.images[row], test.boxes[row]
                for col, title in enumerate(columns):
                    ax = axes[row, col]
                    if title == "image":
                        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
                        ax.set_title(f"true {class_names[test.labels[row]]}\\n"
                                     f"pred {class_names[predicted[row]]} {probabilities[row].max():.2f}",
                                     fontsize=8)
                    else:
                        ax.imshow(mx.overlay(image, maps[title][row]))
                        ax.set_title(title, fontsize=9)
                    draw_box(ax, box)
                    ax.axis("off")
            plt.tight_layout()
            plt.show()
            """
        ),
        md(
            """
            The attention maps often peak just to the right of the lesion: the LSTM reads the
            feature map position by position, row by row from left to right, so its output a little
            after the lesion (in that reading order) already carries what it saw there, and the
            attention layer may pick that position. Grad-CAM maps the feature map itself, so it stays
            on the lesion.

            ## 3. The pointing game

            With known lesion boxes we can score the maps: the **pointing game** counts a hit when
            the map's maximum lies inside the box; **energy in box** is the share of the map's mass
            inside it. Chance level for both is the boxes' share of the image area. Here we explain
            the true class (`class_index=test.labels`), the pointing game's usual protocol.
            """
        ),
        code(
            """
            targeted = {
                "Grad-CAM": mx.explain(model, test.images, method="gradcam", class_index=test.labels),
                "Grad-CAM++": mx.explain(model, test.images, method="gradcam++", class_index=test.labels),
                "attention": maps["attention"],  # no class: the same map for every class
            }
            chance = mx.box_area_share(test.boxes, (IMAGE_SIZE, IMAGE_SIZE)).mean()
            scores = pd.DataFrame({
                name: {"pointing game": mx.pointing_game(m, test.boxes).mean(),
                       "energy in box": mx.energy_in_box(m, test.boxes).mean()}
                for name, m in targeted.items()
            }).T
            scores["chance"] = chance
            print(f"{len(test)} images; Pearson correlation attention vs Grad-CAM: "
                  f"{mx.map_correlation(targeted['attention'], targeted['Grad-CAM']).mean():.3f}")
            scores.round(3)
            """
        ),
        code(
            """
            ax = scores[["pointing game", "energy in box"]].plot.bar(figsize=(7, 3.5), rot=0)
            ax.axhline(chance, color="gray", linestyle="--", label="chance")
            ax.set_ylim(0, 1)
            ax.legend()
            ax.set_title("Explanations vs the known lesion boxes")
            plt.show()
            """
        ),
        md(
            """
            ## 4. All of it in one call: `explain_report`

            `explain_report` scores every method on images with boxes and writes a grid PNG
            (image + one overlay per method, boxes in green, prediction in the caption) and a JSON
            file. `medivision demo` runs it on the held-out images; `medivision explain MODEL
            IMAGES...` writes overlays for your own image files.
            """
        ),
        code(
            """
            report = mx.explain_report(
                model, test.images, test.labels, test.boxes,
                out_dir=os.path.join(WORK_DIR, "explanations"),
                methods=("gradcam", "gradcam++", "attention"),
                num_overlays=NUM_SHOWN,
            )
            print(pd.DataFrame(report["methods"]).T.round(3))
            print("chance:", {k: round(v, 3) for k, v in report["chance"].items()})
            show_png(report["grid_path"], width=9)
            """
        ),
        md(
            """
            ## 5. Grad-CAM inside a SavedModel

            `mx.gradcam_heatmaps` is a native, batched Grad-CAM written with TensorFlow ops only
            (about 2x the cost of a forward pass). The `explain` signature of an exported model
            (notebook 04) uses it, so a server can return heatmaps.
            """
        ),
        code(
            """
            native = mx.gradcam_heatmaps(model, test.images[:NUM_SHOWN].astype("float32")).numpy()
            print("native Grad-CAM", native.shape, "correlation with tf-keras-vis Grad-CAM:",
                  round(float(mx.map_correlation(native, maps["Grad-CAM"][:NUM_SHOWN]).mean()), 3))
            """
        ),
        md(
            """
            ## 6. How far to trust each answer

            A heatmap says where the model looked, not whether to believe it. `medivision_tf.trust`
            adds three answers, fitted on validation images (never the test images) and stored in
            the model, so `.keras` files, SavedModels and `medivision serve` carry them
            ([docs/trust.md](../docs/trust.md)):

            * **calibrated probabilities** (temperature scaling): a 0.8 is right about 80% of the time;
            * a **prediction set** (split-conformal, LAC by default): the classes that, together, hold
              the true class for 1 - alpha of new images: one class when the model is sure, more when it
              is not, and none ("no class is plausible enough") for an image the model cannot place;
            * an **out-of-distribution flag**: two detectors, the more surprised one counting: how far
              the image's backbone features are from the 5th nearest validation image (cosine
              distance), and how far its pooled head features are from the nearest class center
              (Mahalanobis), each in standard deviations of the validation images' scores; flagged
              above a threshold that accepts 95% of validation images.

            `medivision train` fits them itself when it has a validation split.
            """
        ),
        code(
            """
            from medivision_tf.evaluation import expected_calibration_error
            from medivision_tf.trust import fit_trust, get_trust, predict_with_trust

            val = make_synthetic_lesions(max(NUM_EXPLAINED, 100), IMAGE_SIZE, NUM_CLASSES, seed=1)
            fit_trust(model, val.images, val.labels, alpha=0.1)
            trust = get_trust(model)
            out = predict_with_trust(model, test.images)
            sets = out["prediction_set"]
            print(f"temperature {trust['temperature']:.2f}; ECE before "
                  f"{expected_calibration_error(test.labels, out['uncalibrated_probabilities'])[0]:.3f}, "
                  f"after {expected_calibration_error(test.labels, out['probabilities'])[0]:.3f}")
            print(f"coverage of the 90% sets: {sets[np.arange(len(test)), test.labels].mean():.3f}, "
                  f"mean set size {sets.sum(axis=1).mean():.2f}")
            for i in range(NUM_SHOWN):
                members = [class_names[c] for c in np.flatnonzero(sets[i])]
                print(f"image {i}: true {class_names[test.labels[i]]:>10}, set {members}, "
                      f"OOD score {out['ood_score'][i]:.1f}")

            noise = np.random.default_rng(0).uniform(0, 255, (16,) + test.images.shape[1:])
            far = predict_with_trust(model, noise.astype("float32"))
            print(f"flagged out-of-distribution: {out['out_of_distribution'].mean():.0%} of test "
                  f"images, {far['out_of_distribution'].mean():.0%} of noise images")
            """
        ),
    ]
    return name, cells, {}


# === 04: export and serve ===


def export_to_tf_serving():
    name = "04_export_to_tf_serving"
    cells = header(
        name,
        "Export MediVision for TensorFlow Serving and query it over REST",
        """
        **What you will learn:** export a trained model as a SavedModel in TF Serving's folder
        layout, inspect its three signatures (`serving_default`, `predict_images`, `explain`)
        with `saved_model_cli` and `tf.saved_model.load`, serve it locally with
        `medivision serve` (TF Serving's REST API), send requests with float pixels and with
        base64 PNG bytes, and deploy the same folder with the TF Serving Docker image or KServe.
        """,
    )
    cells += settings(
        dict(NUM_TRAIN=128, EPOCHS=1),
        dict(NUM_TRAIN=600, EPOCHS=8),
        extra="""
        IMAGE_SIZE = 64
        NUM_CLASSES = 4
        MODEL_NAME = "lesions"
        EXPORT_BASE = os.path.join(WORK_DIR, "saved_models", MODEL_NAME)
        """,
    )
    cells += [
        code(
            """
            import base64
            import json
            import subprocess
            import sys

            import keras
            import matplotlib.pyplot as plt
            import numpy as np
            import requests
            import tensorflow as tf

            import medivision_tf
            from medivision_tf.data import make_synthetic_lesions
            from medivision_tf.explain import overlay
            from medivision_tf.export import export_saved_model, read_export_metadata
            """
        ),
        md(
            """
            ## 1. A trained model

            A small MediVision trained on synthetic lesions (notebook 01). With your own run:
            `model = medivision_tf.load_model("runs/.../model.keras")`.
            """
        ),
        code(
            """
            train = make_synthetic_lesions(NUM_TRAIN, IMAGE_SIZE, NUM_CLASSES, seed=0)
            test = make_synthetic_lesions(8, IMAGE_SIZE, NUM_CLASSES, seed=2)
            class_names = list(train.class_names)

            keras.utils.set_random_seed(0)
            model = medivision_tf.build_medivision(
                NUM_CLASSES, backbone="smallcnn", weights=None,
                input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), class_names=class_names)
            model.compile(optimizer=keras.optimizers.Adam(2e-3),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(train.images, train.labels, epochs=EPOCHS, batch_size=32, verbose=2)
            medivision_tf.calibrate_batchnorm(model, train.images)
            print("trained; classes:", medivision_tf.get_class_names(model))
            """
        ),
        md(
            """
            ## 2. Export

            `export_saved_model(model, EXPORT_BASE)` writes the next integer version folder
            (`EXPORT_BASE/1`, then `/2`, ...), the layout TF Serving and KServe expect; they serve
            the largest version. Besides the SavedModel, `assets.extra/` holds the class names and
            input shape (`read_export_metadata` reads them without TensorFlow).
            From a terminal: `medivision export runs/.../model.keras saved_models/lesions`.
            """
        ),
        code(
            """
            version_dir = export_saved_model(model, EXPORT_BASE)
            print("SavedModel:", version_dir)
            for root, dirs, files in sorted(os.walk(version_dir)):
                print("  " + os.path.relpath(root, EXPORT_BASE) + "/", sorted(files))
            print(json.dumps(read_export_metadata(EXPORT_BASE), indent=1))
            """
        ),
        md(
            """
            ## 3. Inspect the signatures

            TensorFlow's own tool, `saved_model_cli show --dir VERSION_DIR --all` (in Colab you can
            also write `!saved_model_cli show --dir {version_dir} --all`):
            """
        ),
        code(
            """
            # The saved_model_cli script installed next to this Python (falls back to the PATH).
            cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
            if not os.path.exists(cli):
                cli = "saved_model_cli"
            shown = subprocess.run([cli, "show", "--dir", version_dir, "--all"],
                                   capture_output=True, text=True, check=True)
            print(shown.stdout[shown.stdout.index("signature_def['explain']"):])
            """
        ),
        md(
            """
            | signature | input | outputs |
            |---|---|---|
            | `serving_default` | `image`: float32 `(batch, H, W, C)`, raw 0-255 pixels | `probabilities` |
            | `predict_images` | `image_bytes`: string `(batch,)`, PNG/JPEG/BMP/GIF file bytes, any size | `probabilities`, `class_index`, `class_name` |
            | `explain` | `image`: as `serving_default` | `probabilities`, `class_index`, `heatmap` (Grad-CAM of the top class) |

            The same from Python, without Keras: `tf.saved_model.load` gives the signatures as
            functions, plus the class names and input shape stored as variables.
            """
        ),
        code(
            """
            loaded = tf.saved_model.load(version_dir)
            for name, function in loaded.signatures.items():
                inputs = function.structured_input_signature[1]
                print(f"{name}: {inputs} -> {sorted(function.structured_outputs)}")
            print("class names:", [c.decode() for c in loaded.class_names[0].numpy()])
            print("input shape:", loaded.input_shape[0].numpy())

            png_bytes = [tf.io.encode_png(image).numpy() for image in test.images[:3]]
            answer = loaded.signatures["predict_images"](image_bytes=tf.constant(png_bytes))
            print("in process:", [c.decode() for c in answer["class_name"].numpy()],
                  "true:", [class_names[i] for i in test.labels[:3]])
            """
        ),
        md(
            """
            ## 4. Serve locally: `medivision serve`

            `medivision serve EXPORT_BASE --port PORT` serves the newest version over TF Serving's
            REST API, on 127.0.0.1 (KServe's Python model server; install the `serve` extra,
            which the first cell did). We start it as a background process on a free port and
            wait until the model reports itself ready. The last cell of this notebook stops it.
            """
        ),
        code(
            """
            import atexit
            import socket
            import time

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                PORT = s.getsockname()[1]
            URL = f"http://127.0.0.1:{PORT}"
            server_log_path = os.path.join(WORK_DIR, "server.log")
            server_log = open(server_log_path, "w")
            server = subprocess.Popen(
                [sys.executable, "-m", "medivision_tf", "serve", EXPORT_BASE, "--port", str(PORT)],
                stdout=server_log, stderr=subprocess.STDOUT,
            )
            with open(os.path.join(WORK_DIR, "server.pid"), "w") as f:
                f.write(str(server.pid))
            atexit.register(server.terminate)  # also stopped if the kernel exits early

            deadline = time.monotonic() + 300
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"The server exited:\\n{open(server_log_path).read()[-3000:]}")
                try:
                    if requests.get(f"{URL}/v1/models/{MODEL_NAME}", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Not ready in 300 s:\\n{open(server_log_path).read()[-3000:]}")
                time.sleep(0.5)
            print(f"Serving {MODEL_NAME!r} at {URL} (process {server.pid})")
            """
        ),
        md("Model status and metadata, as TF Serving returns them:"),
        code(
            """
            print(json.dumps(requests.get(f"{URL}/v1/models/{MODEL_NAME}").json(), indent=1))
            metadata = requests.get(f"{URL}/v1/models/{MODEL_NAME}/metadata").json()
            signatures = metadata["metadata"]["signature_def"]["signature_def"]
            for name, signature in signatures.items():
                print(name, {k: v["dtype"] for k, v in signature["inputs"].items()},
                      "->", sorted(signature["outputs"]))
            """
        ),
        md(
            """
            ## 5. Requests

            **Float pixels** (`serving_default`): `{"instances": [...]}`, one `(H, W, C)` nested list
            of raw 0-255 values per image; the answer is `{"predictions": [...]}`.
            """
        ),
        code(
            """
            PREDICT = f"{URL}/v1/models/{MODEL_NAME}:predict"
            images = test.images[:4].astype("float32")
            answer = requests.post(PREDICT, json={"instances": images.tolist()}, timeout=60)
            answer.raise_for_status()
            served = np.array(answer.json()["predictions"])
            print(served.round(3))
            np.testing.assert_allclose(served, model.predict(images, verbose=0), atol=1e-4)
            print("predicted:", [class_names[i] for i in served.argmax(axis=1)])
            print("true:     ", [class_names[i] for i in test.labels[:4]])
            """
        ),
        md(
            """
            **Image file bytes** (`predict_images`): TF Serving's REST API takes bytes as
            `{"b64": "<base64>"}`. Any size, gray or color: decoding and resizing happen inside the
            graph, so a client needs nothing but HTTP. The answer names the class.
            """
        ),
        code(
            """
            def b64_png(image):
                return {"b64": base64.b64encode(tf.io.encode_png(image).numpy()).decode()}


            body = {"signature_name": "predict_images", "instances": [b64_png(i) for i in test.images[:4]]}
            answer = requests.post(PREDICT, json=body, timeout=60)
            answer.raise_for_status()
            for prediction, label in zip(answer.json()["predictions"], test.labels):
                print(f"{prediction['class_name']:22s} p={max(prediction['probabilities']):.3f}"
                      f"  (true: {class_names[label]})")
            """
        ),
        md("**Heatmaps** (`explain`): the Grad-CAM of the top class comes back with the prediction:"),
        code(
            """
            body = {"signature_name": "explain", "instances": images[:4].tolist()}
            answer = requests.post(PREDICT, json=body, timeout=60)
            answer.raise_for_status()
            predictions = answer.json()["predictions"]
            fig, axes = plt.subplots(1, 4, figsize=(11, 3))
            for ax, image, prediction in zip(axes, test.images, predictions):
                ax.imshow(overlay(image, np.array(prediction["heatmap"])))
                ax.set_title(f"{class_names[prediction['class_index']]}", fontsize=9)
                ax.axis("off")
            plt.show()
            """
        ),
        md("Bad requests get HTTP 400 with a message naming what was received and what is allowed:"),
        code(
            """
            answer = requests.post(PREDICT, json={"instances": [[1.0, 2.0]]}, timeout=60)
            print(answer.status_code, answer.json())
            """
        ),
        md(
            """
            ## 6. The same folder in TensorFlow Serving (Docker)

            TF Serving's image serves `/models/$MODEL_NAME`, the folder that holds the version
            folders. The requests above work unchanged (port 8501). Not run here:

            ```bash
            docker run --rm -p 8501:8501 \\
              --mount type=bind,source="$(pwd)/saved_models/lesions",target=/models/lesions,readonly \\
              -e MODEL_NAME=lesions \\
              tensorflow/serving:2.21.0
            # GPU: tensorflow/serving:2.21.0-gpu with --gpus all

            curl -s http://localhost:8501/v1/models/lesions
            curl -s -X POST http://localhost:8501/v1/models/lesions:predict \\
              -d "{\\"signature_name\\": \\"predict_images\\", \\"instances\\": [{\\"b64\\": \\"$(base64 -w0 lesion.png)\\"}]}"
            ```

            A new version folder written next to the old one is picked up while TF Serving runs
            (exports are written to a hidden folder and renamed, so it never loads half a version).

            ## 7. KServe on Kubernetes

            `deploy/kserve-inferenceservice.yaml` in the repository runs KServe's TensorFlow predictor
            (TF Serving inside) on the export folder. Copy the folder to storage KServe can read, set
            `storageUri` in the manifest, and apply it. Not run here:

            ```bash
            gsutil -m cp -r saved_models/lesions gs://YOUR-BUCKET/saved_models/
            kubectl apply -f deploy/kserve-inferenceservice.yaml
            kubectl get inferenceservice medivision-lesions        # wait for READY=True

            SERVICE_HOSTNAME=$(kubectl get inferenceservice medivision-lesions -o jsonpath='{.status.url}' | cut -d/ -f3)
            curl -s -H "Host: ${SERVICE_HOSTNAME}" -X POST \\
              "http://${INGRESS_HOST}:${INGRESS_PORT}/v1/models/medivision-lesions:predict" \\
              -d "{\\"signature_name\\": \\"predict_images\\", \\"instances\\": [{\\"b64\\": \\"$(base64 -w0 lesion.png)\\"}]}"
            ```

            KServe names the model after the InferenceService (`medivision-lesions`).

            ## 8. Stop the server

            Always run this cell when you are done (it frees the port).
            """
        ),
        code(
            """
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
            server_log.close()
            print(f"Server stopped (exit code {server.returncode}).")
            """
        ),
    ]
    return name, cells, {}


NOTEBOOKS = (quickstart, train_on_your_dataset, explain_with_gradcam, export_to_tf_serving)


def build():
    """Returns `{filename: notebook}` for every tutorial, outputs cleared."""
    notebooks = {}
    for make in NOTEBOOKS:
        name, cells, metadata = make()
        notebook = nbformat.v4.new_notebook()
        notebook.cells = cells
        notebook.metadata = {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "colab": {"provenance": []},
        }
        notebook.metadata.update(metadata)
        for index, cell in enumerate(notebook.cells):
            cell["id"] = f"{name[:2]}-cell-{index:02d}"  # stable ids: no diff noise on rebuild
        nbformat.validate(notebook)
        notebooks[f"{name}.ipynb"] = notebook
    return notebooks


def main(out_dir=HERE):
    for filename, notebook in build().items():
        path = os.path.join(out_dir, filename)
        with open(path, "w", encoding="utf-8") as f:
            nbformat.write(notebook, f)
        print("wrote", path)


if __name__ == "__main__":
    main(*sys.argv[1:])
