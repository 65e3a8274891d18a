"""A run's input report: the scan of its files, and the files that record it.

`scan_inputs` scans a table once (`scan.scan`) and keeps the usable rows, the
count and the skipped files travelling in `attrs["input_report"]`;
`merged_report` adds the reports of a run's tables. `write_input_report`
writes them into the run folder: `split.csv` (`split_record`),
`skipped_files.csv`, `inputs.json` and, when leakage was allowed,
`leaking_pairs.csv`, and says "N of M images used".

Example:

```python
from medivision_tf.data import as_table
from medivision_tf.data.checks.input_report import scan_inputs

clean = scan_inputs(as_table("data/chest_xray"))
clean.attrs["input_report"]["num_used"]
```
"""

import json
import os
import sys
import uuid

import pandas as pd

from medivision_tf.data.checks.scan import scan
from medivision_tf.data.checks.split_record import write_atomic, write_split_file
from medivision_tf.data.shards.folder import is_shard_table

REPORT_FILE = "skipped_files.csv"
SUMMARY_FILE = "inputs.json"
LEAKS_FILE = "leaking_pairs.csv"


def scan_inputs(table, what="The data"):
    """Scans a file table once (`medivision_tf.data.scan`) and keeps the usable rows.

    The count and the skipped files travel in `attrs["input_report"]`
    (`num_images`, `num_used`, `skipped`: rows of path/reason/detail) so
    that `TrainingInputs.write_report` can write them to the run folder.
    Array tables are counted (every row used: no file to refuse); shard
    tables (`load_shards`: checked when written) and tables scanned
    already are returned as they are.

    Args:
        table: a sample table.
        what: how error messages name the data.

    Returns:
        The usable rows (attrs kept, `attrs["scanned"] = True`).

    Raises:
        ValueError: no usable file is left.

    Example:

    ```python
    clean = scan_inputs(as_table("data/chest_xray"))
    clean.attrs["input_report"]["num_used"]
    ```
    """
    if "image" in table.columns and not table.attrs.get("scanned"):
        # Arrays have no file to refuse: every row is used, and counted.
        counted = table.copy(deep=False)
        counted.attrs["scanned"] = True
        counted.attrs["input_report"] = {"id": uuid.uuid4().hex, "num_images": int(len(table)),
                                         "num_used": int(len(table)), "skipped": []}
        return counted
    if table.attrs.get("scanned") or table.empty or is_shard_table(table):
        return table
    try:
        clean, report = scan(table, verbose=False)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    clean = clean.reset_index(drop=True)
    clean.attrs.update(table.attrs)
    clean.attrs["scanned"] = True
    clean.attrs["input_report"] = {
        "id": uuid.uuid4().hex,  # one report per scan, however often pandas copies attrs
        # A linked folder not entered counts as one skipped input.
        "num_images": int(len(clean) + len(report)),
        "num_used": int(len(clean)),
        "skipped": [
            {"path": str(p), "reason": str(r), "detail": str(d)}
            for p, r, d in zip(report["path"], report["reason"], report["detail"])
        ],
    }
    return clean


def merged_report(*tables):
    """One input report (counts added, skipped files listed) for several tables."""
    total = {"num_images": 0, "num_used": 0, "skipped": []}
    seen = set()
    for table in tables:
        report = None if table is None else table.attrs.get("input_report")
        if not report or report["id"] in seen:
            continue
        seen.add(report["id"])
        total["num_images"] += report["num_images"]
        total["num_used"] += report["num_used"]
        total["skipped"] += report["skipped"]
    return total if seen else None


def write_input_report(run_dir, tables, class_names, report, leakage=None, say=print):
    """Writes `run_dir/split.csv`, `skipped_files.csv`, `inputs.json`
    (and `leaking_pairs.csv` when leakage was allowed) and says "N of M
    images used" (`say`: a print function, or None for silence). Each
    file is written atomically.

    `split.csv` (`path`, `label`, `group`, `split`) lists every sample of
    the run's train, val and test tables, NIfTI slices and DICOM frames
    by their `#frame=N` path with the volume (or patient) as group, so a
    result can be audited; it is not written for a user's tf.data
    datasets. `inputs.json` is written for every run: image counts
    (None for a user's tf.data dataset, whose length is not known),
    skipped files by reason (none for arrays: nothing to skip) and the
    duplicate check (`duplicates`: whether it ran, whether leakage was
    allowed, the leaking pairs and held-out images it found).

    Args:
        run_dir: the run folder.
        tables: `{split name: sample table or None}` (all None: a user's
            tf.data datasets; no `split.csv`).
        class_names: the run's classes, in label-id order.
        report: the run's input report (`merged_report` of the scanned
            tables): `num_images`, `num_used`, `skipped`.
        leakage: what `leakage.check_duplicates` returned (None: unchecked).
        say: a print function, or None for silence.

    Example:

    ```python
    write_input_report("runs/x", {"train": train, "val": val, "test": None}, names,
                       merged_report(train, val), leakage)
    ```
    """
    write_split_file(run_dir, tables, class_names)
    skipped = pd.DataFrame(report["skipped"], columns=["path", "reason", "detail"])
    write_atomic(os.path.join(run_dir, REPORT_FILE),
                  lambda p: skipped.to_csv(p, index=False))
    leakage = leakage or {"checked": False}
    summary = {
        "num_images": report["num_images"],
        "num_used": report["num_used"],
        "num_skipped": int(len(skipped)),
        "skipped_by_reason": {str(k): int(v) for k, v in
                              skipped["reason"].value_counts().items()},
        "duplicates": {k: v for k, v in leakage.items() if k not in ("pairs", "held_out")},
    }
    if leakage.get("leaking_pairs"):
        pairs = pd.DataFrame(leakage["pairs"])
        write_atomic(os.path.join(run_dir, LEAKS_FILE),
                      lambda p: pairs.to_csv(p, index=False))
        summary["duplicates"]["pairs_file"] = LEAKS_FILE

    def write_summary(partial):
        with open(partial, "w") as handle:
            json.dump(summary, handle, indent=2)

    write_atomic(os.path.join(run_dir, SUMMARY_FILE), write_summary)
    if leakage.get("leaking_pairs"):
        held = leakage["held_out_images"]
        # Said even when quiet (on stderr then): the results are inflated.
        (say or _to_stderr)(
            f"Leakage allowed (allow_duplicates): {held['val']} val and {held['test']} "
            f"test image(s) duplicate training images ({leakage['leaking_pairs']} pairs), "
            f"listed in {os.path.join(run_dir, LEAKS_FILE)}; results on them are inflated.")
    if say is None:
        return
    if report["num_images"] is not None:
        reasons = ", ".join(f"{k}: {v}" for k, v in summary["skipped_by_reason"].items())
        # Which split took how many, when the tables hold every sample used
        # (not when the test split is drawn later, or a table counts a
        # volume's slices where the report counts files: the total alone).
        sizes = {name: len(table) for name, table in tables.items() if table is not None}
        by_split = (" (" + ", ".join(f"{name} {size}" for name, size in sizes.items()) + ")"
                    if sizes and sum(sizes.values()) == report["num_used"] else "")
        say(
            f"{report['num_used']} of {report['num_images']} images used{by_split}"
            + (f"; {len(skipped)} skipped ({reasons}), listed in "
               f"{os.path.join(run_dir, REPORT_FILE)}" if len(skipped) else "")
        )


def _to_stderr(message):
    print(message, file=sys.stderr)
