"""A run's `split.csv`: every sample with its split, and the check that a rerun sees the same data.

`split_record` lists every sample of a run's train, val and test tables
(`path`, `label`, `group`, `split`; NIfTI slices and DICOM frames by their
`#frame=N` path), so a result can be audited; `write_split_file` writes it
into the run folder, after `check_same_split` has refused a folder whose
`split.csv` says other data (a resumed or re-evaluated run must see the
samples it started with).

Example:

```python
from medivision_tf.data.checks.split_record import split_record, write_split_file

record = split_record({"train": train, "val": val, "test": test}, names)
write_split_file("runs/x", {"train": train, "val": val, "test": test}, names)
```
"""

import os

import pandas as pd

from medivision_tf.data.sources.table import is_multi_label

SPLIT_FILE = "split.csv"
SPLIT_COLUMNS = ("path", "label", "group", "split")


def split_record(tables, class_names):
    """One row per sample of the run: `path`, `label` (class name; several
    joined by `;` for multi-label), `group` (patient or volume; the path when
    the table has no groups) and `split`, for `split.csv`.

    Args:
        tables: `{split name: sample table or None}`.
        class_names: the run's classes, in label-id order.

    Returns:
        A DataFrame with the `SPLIT_COLUMNS`.

    Example:

    ```python
    split_record({"train": train, "val": val, "test": test}, names)
    ```
    """
    frames = []
    for name, table in tables.items():
        if table is None or not len(table):
            continue
        paths = table["path"].astype(str) if "path" in table else pd.Series(
            [f"{name}[{i}]" for i in range(len(table))], index=table.index)
        if is_multi_label(table):
            labels = [";".join(class_names[i] for i in ids if 0 <= i < len(class_names))
                      for ids in table["labels"]]
        else:
            labels = [class_names[i] if 0 <= i < len(class_names) else "" for i in table["label"]]
        groups = table["group"].astype(str) if "group" in table else paths
        frames.append(pd.DataFrame({"path": paths.to_numpy(), "label": labels,
                                    "group": groups.to_numpy(), "split": name}))
    if not frames:
        return pd.DataFrame(columns=list(SPLIT_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def check_same_split(run_dir, tables, class_names):
    """Refuses to go on in a run folder whose `split.csv` says other data.

    A rerun (a resume, or the evaluation after a kill) must see the samples
    the run started with: a file added, removed or relabelled would re-split
    the data, move trained images into the test split and mix two datasets in
    one history. Each split the folder's `split.csv` and `tables` both have
    must hold the same (path, label, group) rows; a split only one side has
    is left alone (`train` records train/val, the evaluation adds test).

    Args:
        run_dir: the run folder (nothing to check without a `split.csv`).
        tables: `{split name: sample table or None}`.
        class_names: the run's classes, in label-id order.

    Raises:
        ValueError: naming how many samples were added, removed or moved,
            with a few paths.

    Example:

    ```python
    check_same_split("runs/x", {"train": train, "val": val}, names)
    ```
    """
    path = os.path.join(run_dir, SPLIT_FILE)
    if not os.path.isfile(path) or all(t is None for t in tables.values()):
        return
    # Strings throughout: a label or group read back from CSV must compare
    # equal to the one in memory.
    before = pd.read_csv(path, dtype=str, keep_default_na=False)
    now = split_record(tables, class_names).astype(str)
    shared = sorted(set(before["split"]) & set(now["split"]))
    keys = ["path", "label", "group"]

    def rows(frame):
        frame = frame[frame["split"].isin(shared)]
        return {tuple(r): s for r, s in zip(frame[keys].itertuples(index=False), frame["split"])}

    old, new = rows(before), rows(now)
    removed = sorted(set(old) - set(new))
    added = sorted(set(new) - set(old))
    moved = sorted(r for r in set(old) & set(new) if old[r] != new[r])
    if not (removed or added or moved):
        return
    parts = [f"{len(items)} {what}" for items, what in (
        (added, "added or relabelled"), (removed, "removed or relabelled"),
        (moved, "moved to another split")) if items]
    examples = [f"  + {r[0]} ({r[1]})" for r in added[:3]]
    examples += [f"  - {r[0]} ({r[1]})" for r in removed[:3]]
    examples += [f"  ~ {r[0]}: {old[r]} -> {new[r]}" for r in moved[:3]]
    raise ValueError(
        f"The data changed since this run started (its {SPLIT_FILE}, splits "
        f"{', '.join(shared)}): {', '.join(parts)}.\n" + "\n".join(examples)
        + f"\nGoing on would mix two datasets in one run. Restore the data, or train "
        f"into a new folder (or remove {run_dir!r})."
    )


def write_split_file(run_dir, tables, class_names):
    """Writes `run_dir/split.csv` (`split_record`) atomically; nothing when
    every table is None (a user's tf.data datasets). A folder that has one
    already must describe the same data (`check_same_split`).

    Example:

    ```python
    splits, names = load_source(config)
    write_split_file("runs/x", splits, names)
    ```
    """
    if all(t is None for t in tables.values()):
        return
    check_same_split(run_dir, tables, class_names)
    record = split_record(tables, class_names)
    write_atomic(os.path.join(run_dir, SPLIT_FILE), lambda p: record.to_csv(p, index=False))


def write_atomic(path, write):
    """`write(partial_path)`, then renamed over `path`: a reader never sees half
    a file (`.partial-PID-NAME`, the run folder's convention, removed on error)."""
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".partial-{os.getpid()}-{name}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
