"""The paper's table: train and evaluate on every prepared paper dataset.

`reproduce(data_root, out_dir)` looks under `data_root` for the paper's ten
datasets, each prepared by `medivision prepare NAME DOWNLOADED --out
data_root/NAME` (a folder holding `manifest.csv`), trains MediVision on each
with the same `TrainConfig` (`medivision_tf.training.train`), evaluates the
model on the dataset's held-out test split
(`medivision_tf.evaluation.evaluate_model`) and writes, beside the paper's
reported figures:

```
out_dir/
  NAME/                     one training run folder per dataset (config, model,
    evaluation/metrics.json  history, ...) and its evaluation report
  reproduce_table.csv       one row per dataset (trained, failed or not found)
  reproduce_table.md        the same table in Markdown, with machine and settings
  reproduce_accuracy.png    bar chart: our test accuracy vs the paper's
```

Precision, recall and F1 are **macro averages** over the classes (each class
counts the same, whatever its size): `precision_macro`, `recall_macro` and
`f1_macro` of `evaluate_model`'s summary. Accuracy is the plain fraction of
test images classified correctly.

A dataset is found when `data_root/NAME/manifest.csv` exists for a registry
name, or when another sub-folder's `manifest.csv` has exactly the class names
of one registry dataset (e.g. `data_root/oct/` prepared from `retinal_oct`).
A dataset whose training or evaluation fails is reported with its error and
the others go on; datasets not found are listed with the `medivision prepare`
command that makes them. Rerunning with the same `out_dir` and settings
resumes interrupted trainings (see `medivision_tf.training.train`) and
re-evaluates finished ones without training them again.

Example:

```python
from medivision_tf.reproduce import reproduce, render_table

table = reproduce("data", "runs/reproduce", epochs=10, fine_tune_epochs=5)
print(render_table(table))
```
"""

import json
import os
import platform
import time
import traceback

import numpy as np
import pandas as pd

from medivision_tf.data.datasets.registry import PAPER_DATASETS, available_datasets, get_dataset
from medivision_tf.data.sources.prepared import MANIFEST

#: Where the paper's figures come from.
PAPER_CITATION = (
    "A Hybrid Convolutional Neural Network-Long Short-Term Memory (CNN-LSTM)-Attention "
    "Model Architecture for Precise Medical Image Analysis and Disease Diagnosis "
    "(MediVision), Diagnostics 2025, 15(21), 2673, "
    "doi:10.3390/diagnostics15212673 (abstract)"
)

#: What the paper's abstract states for all ten datasets together: test
#: accuracies "above 95%, with a peak of 98%". Nothing else is claimed here.
PAPER_OVERALL = {"accuracy_above": 0.95, "accuracy_peak": 0.98}

#: Per-dataset figures of the paper, `{dataset: {metric: value in [0, 1]}}`
#: with metrics among "accuracy", "precision", "recall", "f1". Only figures
#: read from the paper itself belong here; none has been transcribed yet, so
#: every dataset shows `PAPER_NOT_KNOWN` (see `PAPER_OVERALL`). Users who
#: have the paper pass its figures as a CSV (`read_paper_figures`,
#: `reproduce(..., paper_figures=...)`, `medivision reproduce --paper-figures`).
PAPER_REPORTED = {}

#: Shown where the paper's per-dataset figure is not recorded in `PAPER_REPORTED`.
PAPER_NOT_KNOWN = "n/a (paper: >95% overall)"

METRICS = ("accuracy", "precision", "recall", "f1")
#: Our metric columns, named as the keys of `evaluate_model`'s summary.
SUMMARY_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
COLUMNS = (
    "dataset", "title", "status", "accuracy", "precision_macro", "recall_macro", "f1_macro",
    "paper_accuracy", "paper_precision", "paper_recall", "paper_f1",
    "num_train", "num_val", "num_test", "epochs", "train_seconds", "reused",
    "data_dir", "run_dir", "error", "prepare_command",
)
TABLE_CSV = "reproduce_table.csv"
TABLE_MD = "reproduce_table.md"
CHART_PNG = "reproduce_accuracy.png"


def paper_figure(name, metric, figures=None):
    """The paper's `metric` for dataset `name`: a float, or `PAPER_NOT_KNOWN`.

    Args:
        name: a registry name, e.g. `"retinal_oct"`.
        metric: one of `"accuracy"`, `"precision"`, `"recall"`, `"f1"`.
        figures: per-dataset figures read by `read_paper_figures` (or a dict
            of the same form); they take precedence over `PAPER_REPORTED`.

    Example:

    ```python
    paper_figure("retinal_oct", "accuracy")   # 'n/a (paper: >95% overall)'
    ```
    """
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}. Choose one of: {', '.join(METRICS)}.")
    name = get_dataset(name).name
    value = (figures or {}).get(name, {}).get(metric)
    if value is None:
        value = PAPER_REPORTED.get(name, {}).get(metric)
    return PAPER_NOT_KNOWN if value is None else float(value)


def read_paper_figures(path):
    """Reads the paper's per-dataset figures from a CSV you transcribed.

    The CSV has a `dataset` column (registry names, e.g. `retinal_oct`) and any
    of the columns `accuracy`, `precision`, `recall`, `f1`, as fractions
    (0.97) or percentages (97.0 or 97.0%), one or the other in a file;
    empty cells stay unknown.

    Args:
        path: the CSV file.

    Returns:
        `{dataset: {metric: value in [0, 1]}}`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no `dataset` column, an unknown dataset or column, a
            dataset listed twice, a value that is not a number in [0, 100],
            or fractions and percentages in one file.

    Example:

    ```python
    # paper.csv:  dataset,accuracy,f1
    #             retinal_oct,97.1,96.8
    figures = read_paper_figures("paper.csv")
    reproduce("data", "runs/reproduce", paper_figures=figures)
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Paper figures file not found: {path!r}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "dataset" not in frame.columns:
        raise ValueError(
            f"{path}: needs a 'dataset' column and some of {', '.join(METRICS)}. "
            f"Received columns: {list(frame.columns)}"
        )
    unknown = [c for c in frame.columns if c != "dataset" and c not in METRICS]
    if unknown:
        raise ValueError(
            f"{path}: unknown column(s) {unknown}. Allowed: dataset, {', '.join(METRICS)}."
        )
    figures = {}
    for line, row in enumerate(frame.to_dict(orient="records"), start=2):
        try:
            name = get_dataset(row["dataset"].strip()).name
        except ValueError as error:
            raise ValueError(f"{path}, line {line}: {error}") from None
        if name in figures:
            raise ValueError(f"{path}, line {line}: dataset {name!r} is listed twice.")
        values = {}
        for metric in METRICS:
            text = str(row.get(metric, "")).strip().rstrip("%")
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not 0 <= value <= 100:  # also refuses NaN
                raise ValueError(
                    f"{path}, line {line}: {metric}={row[metric]!r} for {name!r} must be a "
                    "number in [0, 1] (fraction) or [0, 100] (percent)."
                )
            values[metric] = value
        figures[name] = values
    values = [v for row in figures.values() for v in row.values()]
    if any(v > 1 for v in values):
        fractions = [v for v in values if 0 < v <= 1]
        if fractions:
            # 97.5 beside 0.95 is a typo in one of them; guessing would put a
            # wrong figure beside ours.
            raise ValueError(
                f"{path}: mixes percentages (above 1) and fractions ({fractions[0]}). "
                "Write all figures as fractions (0.975) or all as percentages (97.5)."
            )
        figures = {n: {m: v / 100 for m, v in row.items()} for n, row in figures.items()}
    return figures


def _parse_names(datasets):
    if datasets is None:
        return available_datasets()
    if isinstance(datasets, str):
        datasets = [d for d in datasets.split(",") if d.strip()]
    try:
        names = [get_dataset(str(d).strip()).name for d in datasets]
    except TypeError:
        raise TypeError(
            "`datasets` must be None, a comma-separated string or a list of names. "
            f"Received: {datasets!r}"
        ) from None
    if not names:
        raise ValueError(
            f"`datasets` names no dataset. Received: {datasets!r}. "
            f"Choose among: {', '.join(available_datasets())}."
        )
    return list(dict.fromkeys(names))


def _is_dataset_folder(folder):
    """A prepared folder (`manifest.csv`) or a shard folder (`shards.json`)."""
    from medivision_tf.data.shards import MANIFEST_NAME

    return os.path.isfile(os.path.join(folder, MANIFEST)) or os.path.isfile(
        os.path.join(folder, MANIFEST_NAME))


def _manifest_classes(folder):
    from medivision_tf.data.shards import MANIFEST_NAME

    if os.path.isfile(os.path.join(folder, MANIFEST_NAME)):  # a shard folder
        with open(os.path.join(folder, MANIFEST_NAME)) as handle:
            return frozenset(json.load(handle)["class_names"])
    try:
        frame = pd.read_csv(os.path.join(folder, MANIFEST), usecols=["class_name"], dtype=str)
    except (ValueError, OSError, pd.errors.ParserError):
        return None
    return frozenset(frame["class_name"].dropna())


def find_prepared(data_root, datasets=None):
    """The prepared paper datasets under `data_root`.

    `data_root/NAME/manifest.csv` (a prepared folder) or
    `data_root/NAME/shards.json` (a shard folder from `medivision shard`)
    counts for the registry name `NAME`; any other such sub-folder counts for the dataset whose class
    names it holds exactly (a folder named after a dataset wins over one found
    by its classes; among several, the first in sorted order).

    Args:
        data_root: the folder holding the prepared datasets.
        datasets: registry names to look for (default: all ten).

    Returns:
        `{name: folder}` for the datasets found.

    Raises:
        FileNotFoundError: `data_root` is not a folder.
        ValueError: an unknown dataset name (the valid ones are listed).

    Example:

    ```python
    find_prepared("data")     # {'retinal_oct': 'data/retinal_oct', 'kidney_ct': 'data/kidney'}
    ```
    """
    data_root = os.fspath(data_root)
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"No such folder: data_root={data_root!r}")
    names = _parse_names(datasets)
    found = {}
    for name in names:
        folder = os.path.join(data_root, name)
        if _is_dataset_folder(folder):
            found[name] = folder
    by_classes = {frozenset(spec.classes): spec.name for spec in PAPER_DATASETS.values()}
    for entry in sorted(os.listdir(data_root)):
        folder = os.path.join(data_root, entry)
        if entry in PAPER_DATASETS or not _is_dataset_folder(folder):
            continue
        name = by_classes.get(_manifest_classes(folder))
        if name in names and name not in found:
            found[name] = folder
    return found


def _prepare_command(name, data_root):
    return (f"medivision prepare {name} DOWNLOADED_DIR --out "
            f"{os.path.join(os.fspath(data_root), name)}")


def _machine():
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        gpus.append(details.get("device_name", device.name))
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def _base_row(name, paper_figures):
    spec = get_dataset(name)
    row = {column: None for column in COLUMNS}
    row.update(dataset=name, title=spec.title)
    for metric in METRICS:
        row[f"paper_{metric}"] = paper_figure(name, metric, paper_figures)
    return row


def _run_one(name, folder, config, out_dir, verbose):
    """Trains and evaluates one dataset; fills a row (raises on failure)."""
    import keras

    from medivision_tf.training import train_and_evaluate

    run_dir = os.path.join(out_dir, name)
    row = {"data_dir": os.path.abspath(folder), "run_dir": os.path.abspath(run_dir)}
    keras.backend.clear_session()
    # Reads and splits the manifest once; a finished run of these settings is
    # evaluated again without training (another config there is refused).
    result = train_and_evaluate(
        config.replace(source=os.path.abspath(folder)), run_dir=run_dir, reuse=True,
        require_test=True, verbose=verbose,
    )
    row.update(num_train=result.num_train, num_val=result.num_val, num_test=result.num_test,
               reused=result.reused, epochs=result.epochs or None,
               train_seconds=result.train_seconds)
    for key in SUMMARY_KEYS:
        row[key] = float(result.report.summary[key])
    row["status"] = "ok"
    return row


def reproduce(data_root, out_dir="runs/reproduce", *, datasets=None, config=None,
              paper_figures=None, verbose=1, **overrides):
    """Trains and evaluates MediVision on every prepared paper dataset under `data_root`.

    Each dataset found (see `find_prepared`) gets its own run folder
    `out_dir/NAME` trained by `medivision_tf.training.train` on the prepared
    folder (its own train/val/test split when it has one, else a split by
    `val_split`/`test_split`/`seed` that keeps patients together) and is
    evaluated on its test split by `medivision_tf.evaluation.evaluate_model`
    (`out_dir/NAME/evaluation/`). A failure is recorded in the row's `error`
    column (the traceback in `out_dir/NAME/error.txt`) and the next dataset
    goes on. A run folder that already holds a finished run with the same
    settings is not trained again: its model is evaluated (`reused` is True),
    so adding a dataset later trains only that one. Writes
    `reproduce_table.csv`, `reproduce_table.md` and `reproduce_accuracy.png`
    into `out_dir`.

    Args:
        data_root: folder holding the prepared datasets (`data_root/NAME/manifest.csv`).
        out_dir: where run folders and the summary go (created).
        datasets: registry names to run, as a list or a comma-separated string
            (default: all ten; those absent are listed as "not found").
        config: a `TrainConfig`, a dict or a JSON file path applied to every
            dataset (its `source` is replaced by each dataset's folder).
        paper_figures: the paper's per-dataset figures for the `paper_*`
            columns: a CSV path (see `read_paper_figures`) or its dict.
            Default: `PAPER_REPORTED` only.
        verbose: Keras progress bars (1), one line per epoch (2) or none (0).
        **overrides: `TrainConfig` keys applied on top of `config`, e.g.
            `backbone="efficientnetb0"`, `weights=None`, `image_size=224`,
            `epochs=10`, `fine_tune_epochs=5`, `batch_size=32`.

    Returns:
        A pandas DataFrame with one row per dataset (`COLUMNS`): `status` is
        "ok", "failed" or "not found"; `accuracy`, `precision_macro`,
        `recall_macro`, `f1_macro` in [0, 1] for "ok" rows; `paper_*` the
        paper's figure or `PAPER_NOT_KNOWN`. `frame.attrs` holds `settings`
        (the config), `machine`, `data_root`, `out_dir` and `paths`.

    Raises:
        FileNotFoundError: `data_root` is not a folder.
        ValueError / TypeError: unknown dataset names or config keys, bad
            config values (nothing is trained then).

    Example:

    ```python
    table = reproduce("data", "runs/reproduce", datasets="retinal_oct,kidney_ct",
                      backbone="efficientnetb0", epochs=10, fine_tune_epochs=5)
    table[["dataset", "accuracy", "f1_macro", "paper_accuracy"]]
    ```
    """
    from medivision_tf.training import load_config

    names = _parse_names(datasets)
    config = load_config(config, **overrides)
    paper_source = None
    if isinstance(paper_figures, (str, os.PathLike)):
        paper_source = os.path.abspath(paper_figures)
        paper_figures = read_paper_figures(paper_figures)
    found = find_prepared(data_root, names)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    rows = []
    for name in names:
        row = _base_row(name, paper_figures)
        if name not in found:
            row.update(status="not found", prepare_command=_prepare_command(name, data_root))
            rows.append(row)
            continue
        if verbose:
            print(f"=== {name}: {found[name]} ===", flush=True)
        try:
            row.update(_run_one(name, found[name], config, out_dir, verbose))
        except Exception as error:  # reported in the table; the others go on
            row.update(status="failed", error=f"{type(error).__name__}: {error}",
                       data_dir=os.path.abspath(found[name]))
            run_dir = os.path.join(out_dir, name)
            os.makedirs(run_dir, exist_ok=True)
            with open(os.path.join(run_dir, "error.txt"), "w") as f:
                f.write(traceback.format_exc())
            if verbose:
                print(f"{name} failed: {row['error']}", flush=True)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("num_train", "num_val", "num_test", "epochs"):
        frame[column] = frame[column].astype("Int64")  # integers with gaps
    frame.attrs.update(
        settings=config.resolved().to_dict(),
        machine=_machine(),
        data_root=os.path.abspath(data_root),
        out_dir=os.path.abspath(out_dir),
        total_seconds=round(time.perf_counter() - started, 1),
        paper_figures=paper_source,
    )
    paths = {
        "csv": os.path.join(out_dir, TABLE_CSV),
        "markdown": os.path.join(out_dir, TABLE_MD),
        "chart": os.path.join(out_dir, CHART_PNG),
    }
    frame.to_csv(paths["csv"], index=False)
    with open(paths["markdown"], "w") as f:
        f.write(render_table(frame))
    plot_accuracy(frame, paths["chart"])
    frame.attrs["paths"] = paths
    return frame


def _cell(value):
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_table(frame):
    """The table as Markdown: ours vs the paper, then machine and settings.

    Args:
        frame: the DataFrame returned by `reproduce` (or read back from
            `reproduce_table.csv`; machine and settings come from
            `frame.attrs` when present).

    Returns:
        A Markdown string.

    Example:

    ```python
    table = reproduce("data", "runs/reproduce", epochs=1, fine_tune_epochs=0)
    print(render_table(table))
    ```
    """
    missing = [c for c in ("dataset", "status", "accuracy", "precision_macro",
                           "recall_macro", "f1_macro") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"render_table needs the columns of reproduce()'s table; missing {missing}. "
            f"Received columns: {list(frame.columns)}"
        )
    headers = ["dataset", "status", "accuracy", "precision (macro)", "recall (macro)",
               "F1 (macro)", "paper accuracy", "paper precision", "paper recall", "paper F1",
               "test images", "note"]
    lines = [
        "# MediVision on the paper's datasets",
        "",
        "Ours: test split of each prepared dataset. Precision, recall and F1 are macro "
        "averages over the classes (scikit-learn `average=\"macro\"`); accuracy is the "
        "fraction of test images classified correctly.",
        f"Paper: {PAPER_CITATION}; it reports test accuracies above "
        f"{PAPER_OVERALL['accuracy_above']:.0%} on all ten datasets, peak "
        f"{PAPER_OVERALL['accuracy_peak']:.0%}. Per-dataset figures are shown only where "
        "recorded from the paper (`PAPER_REPORTED`"
        + (f", or `{frame.attrs['paper_figures']}`" if frame.attrs.get("paper_figures") else "")
        + ").",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * 8 + ["---:", "---"]) + "|",
    ]
    for row in frame.to_dict(orient="records"):
        if row["status"] == "not found":
            note = f"not found; get it: `{row.get('prepare_command')}`"
        elif row["status"] != "ok":
            note = f"error: {row.get('error')}"
        else:
            note = ""
        cells = [row["dataset"], row["status"]]
        cells += [row[c] for c in ("accuracy", "precision_macro", "recall_macro", "f1_macro")]
        cells += [row.get(f"paper_{m}", PAPER_NOT_KNOWN) for m in METRICS]
        test_images = row.get("num_test")
        if isinstance(test_images, float) and test_images.is_integer():
            test_images = int(test_images)  # read back from the CSV
        cells += [test_images, note]
        lines.append("| " + " | ".join(_cell(v) for v in cells) + " |")
    ok = frame[frame["status"] == "ok"]
    lines.append("")
    if len(ok):
        lines.append(
            f"Mean over {len(ok)} trained dataset(s): accuracy {ok['accuracy'].mean():.4f}, "
            f"F1 (macro) {ok['f1_macro'].mean():.4f}; "
            f"{int((ok['accuracy'] > PAPER_OVERALL['accuracy_above']).sum())} of {len(ok)} "
            f"above the paper's {PAPER_OVERALL['accuracy_above']:.0%}."
        )
    else:
        lines.append("No dataset was trained.")
    machine, settings = frame.attrs.get("machine"), frame.attrs.get("settings")
    if machine:
        gpus = ", ".join(machine.get("gpus") or []) or "none"
        lines += ["", "## Machine", "",
                  f"{machine.get('platform')}; processor {machine.get('processor')}; "
                  f"{machine.get('cpu_count')} CPU cores; GPUs: {gpus}; Python "
                  f"{machine.get('python')}; TensorFlow {machine.get('tensorflow')}."]
        if frame.attrs.get("total_seconds") is not None:
            lines.append(f"Total time: {frame.attrs['total_seconds']} s.")
    if settings:
        keys = ("backbone", "weights", "image_size", "channels", "epochs", "fine_tune_epochs",
                "batch_size", "learning_rate", "fine_tune_learning_rate", "augment", "seed")
        lines += ["", "## Settings", "",
                  ", ".join(f"`{k}={settings[k]!r}`" for k in keys if k in settings) + ".",
                  "", "Full config (every dataset; `source` set per dataset):", "",
                  "```json", json.dumps(settings, indent=2), "```"]
    return "\n".join(lines) + "\n"


def plot_accuracy(frame, path):
    """Bar chart of our test accuracy vs the paper's, one group per dataset.

    Datasets without a per-dataset paper figure show the paper's overall
    claim as lines (above 95%, peak 98%); failed and missing datasets are
    labelled instead of drawn.

    Args:
        frame: the DataFrame returned by `reproduce`.
        path: the PNG file to write.

    Returns:
        `path`.
    """
    from matplotlib.figure import Figure

    names = list(frame["dataset"])
    x = np.arange(len(names))
    ours = [float(a) if s == "ok" else 0.0 for a, s in zip(frame["accuracy"], frame["status"])]
    paper = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0
             for v in frame["paper_accuracy"]]
    figure = Figure(figsize=(max(7.0, 0.9 * len(names) + 4), 4.5), dpi=100)
    axes = figure.add_subplot()
    width = 0.4
    shift = -width / 2 if any(paper) else 0.0  # ours alone: centred on its tick
    axes.bar(x + shift, ours, width, label="ours (test accuracy)", color="#3b75af")
    if any(paper):
        axes.bar(x + width / 2, paper, width, label="paper (per dataset)", color="#ef8636")
    axes.axhline(PAPER_OVERALL["accuracy_above"], color="#ef8636", linestyle="--", linewidth=1,
                 label=f"paper: >{PAPER_OVERALL['accuracy_above']:.0%} on every dataset")
    axes.axhline(PAPER_OVERALL["accuracy_peak"], color="#ef8636", linestyle=":", linewidth=1,
                 label=f"paper: peak {PAPER_OVERALL['accuracy_peak']:.0%}")
    for i, (status, value) in enumerate(zip(frame["status"], ours)):
        text = f"{value:.2f}" if status == "ok" else status
        axes.text(i + shift, (value if status == "ok" else 0) + 0.01, text,
                  ha="center", va="bottom", fontsize=7, rotation=90 if status != "ok" else 0)
    axes.set_xticks(x)
    axes.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("accuracy")
    axes.set_title("MediVision: our test accuracy vs the paper")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path
