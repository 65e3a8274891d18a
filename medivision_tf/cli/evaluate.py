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


def run_evaluate(args):
    import medivision_tf
    from medivision_tf.cli.train import print_summary
    from medivision_tf.data.pipeline import as_table
    from medivision_tf.data.table import with_attrs
    from medivision_tf.evaluation import evaluate_model

    model = medivision_tf.load_model(args.model, compile=False)
    table = as_table(args.source)  # a prepared folder keeps its split
    if args.split is not None:
        if "split" not in table.columns:
            raise ValueError(f"--split {args.split} given but {args.source!r} has no split column.")
        table = with_attrs(table[table["split"] == args.split], table)
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
