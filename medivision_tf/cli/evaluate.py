"""`medivision evaluate`: metrics, per-class table and plots of a trained model.

```
medivision evaluate runs/brain/model.keras data/brain_mri --split test --out runs/brain/eval
```
"""

import os


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained model: metrics JSON/CSV and plots",
        description="Computes accuracy, balanced accuracy, precision, recall, "
        "specificity, F1, ROC-AUC, confusion matrix and calibration (ECE) and "
        "draws the confusion matrix, ROC curves and reliability diagram.",
    )
    parser.add_argument("model", help=".keras model file")
    parser.add_argument("source", help="dataset: image folder, .csv, .npz or prepared folder")
    parser.add_argument("--split", default=None,
                        help="evaluate only rows of this split (e.g. test) when the "
                        "dataset has a split column (default: all rows)")
    parser.add_argument("--out", default=None,
                        help="report folder (default: evaluation/ beside the model)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average with the left-right flip "
                        "(default: off)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per batch (default: 32)")
    parser.add_argument("--history", default=None,
                        help="history.csv of the training run, to draw training curves "
                        "(default: none)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (default: a progress bar on stderr "
                        "for more than 8 images)")
    parser.set_defaults(func=run_evaluate)


def _csv_with_split(source):
    """Whether `source` is a CSV file whose header has `split` and `group`."""
    import csv

    if not str(source).lower().endswith(".csv") or not os.path.isfile(source):
        return False
    with open(source, newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    return "split" in header and "group" in header


def run_evaluate(args):
    import medivision_tf
    from medivision_tf.cli.train import print_summary
    from medivision_tf.data.shards.folder import is_shard_table
    from medivision_tf.data.sources.any_source import as_table
    from medivision_tf.data.sources.table import with_attrs
    from medivision_tf.data.sources.volumes import reexpand_volumes
    from medivision_tf.evaluation import evaluate_model

    model = medivision_tf.load_model(args.model, compile=False)
    table = as_table(args.source)  # a prepared folder keeps its split
    from medivision_tf.data.sources.prepared import MANIFEST, is_prepared

    # A prepared folder's manifest.csv is read by as_table, relative paths and all.
    manifest = (os.path.basename(str(args.source)) == MANIFEST
                and is_prepared(os.path.dirname(str(args.source)) or "."))
    if args.split is not None and not manifest and _csv_with_split(args.source):
        # A run folder's split.csv (or any CSV with a `split` column): keep
        # its split and group columns, so `--split test` re-scores that split.
        from medivision_tf.data.sources.csv_files import from_csv

        import pandas as pd

        # split.csv lists absolute paths: they are relative to their common
        # folder, which the user named by giving this file.
        paths = pd.read_csv(args.source, usecols=["path"])["path"].astype(str)
        folders = [os.path.dirname(p.split("#frame=")[0]) for p in paths]
        root = os.path.commonpath(folders) if folders and all(map(os.path.isabs, folders)) else None
        table = from_csv(args.source, root=root, split_column="split", group_column="group")
    # Volumes cut into the slices (and frames) the model was trained on, as
    # `predict` cuts them: its decode options read them (`make_dataset`).
    decode = medivision_tf.get_model_config(model).decode
    if "image" not in table and not is_shard_table(table):  # files (arrays, shards: decoded)
        table = reexpand_volumes(table, decode.frames, decode.nifti_slices, decode.nifti_axis)
    if args.split is not None:
        if "split" not in table.columns:
            raise ValueError(f"--split {args.split} given but {args.source!r} has no split column.")
        present = sorted(str(v) for v in table["split"].dropna().unique())
        if args.split not in present:
            raise ValueError(
                f"--split {args.split!r}: {args.source!r} has no rows of that split. "
                f"Its splits: {', '.join(present) or 'none'}."
            )
        table = with_attrs(table[table["split"] == args.split], table)
    if args.split is None and "split" in table.columns and table["split"].nunique() > 1:
        counts = ", ".join(f"{k} {v}" for k, v in table["split"].value_counts().items())
        print(f"Note: scoring all {len(table)} images of {args.source} ({counts}): the "
              "figures include any training and validation images. Pass --split test for "
              "held-out figures.", flush=True)
    if args.split is None and "split" not in table.columns:
        print(f"Note: scoring all {len(table)} images of {args.source} (it has no split "
              "column): if the model was trained on this folder, these figures include its "
              "training images. Held-out figures are in the run folder's evaluation/.",
              flush=True)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.model)), "evaluation")
    report = evaluate_model(model, table, out_dir=out, tta=args.tta,
                            batch_size=args.batch_size, history_csv=args.history,
                            verbose=False if args.quiet else "auto")
    print_summary(report.summary)
    print(f"Report written to {out}")
    return 0
