"""`medivision train`, `medivision evaluate` and `medivision predict`.

```
medivision train data/brain_mri --config train.json --epochs 5 --out runs/brain
medivision evaluate runs/brain/model.keras data/brain_mri_test --out runs/brain/eval --tta
medivision predict runs/brain/model.keras scan1.png scan2.dcm --top-k 2 --csv preds.csv
```

Every `TrainConfig` key is also a flag (`--fine-tune-epochs 3`); flags override
the `--config` JSON. Rerunning the same `train` command after a crash or a
kill resumes the run from its last completed epoch.
"""

import argparse
import dataclasses
import json
import os
import typing


def register(subparsers):
    from medivision_tf.training import TrainConfig

    # === train ===
    parser = subparsers.add_parser(
        "train",
        help="train MediVision on a dataset (two-phase transfer learning)",
        description="Trains MediVision on an image folder, CSV, .npz or prepared "
        "dataset, writes a run folder (config, checkpoints, history, TensorBoard "
        "logs, model, evaluation report and plots) and resumes an interrupted run.",
    )
    parser.add_argument("source", nargs="?", default=None,
                        help="dataset: image folder, .csv, .npz or prepared dataset "
                        "(or the config's 'source')")
    parser.add_argument("--config", help="JSON file of TrainConfig keys")
    parser.add_argument("--out", default="runs/train",
                        help="run folder; rerun with the same folder to resume (default: runs/train)")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="skip the evaluation on the held-out split")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name == "source":
            continue
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=_flag_type(field.name, hints[field.name]),
            default=argparse.SUPPRESS,
            metavar=_metavar(hints[field.name]),
            help=f"(default: {field.default})",
        )
    parser.set_defaults(func=run_train)

    # === evaluate ===
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained model: metrics JSON/CSV and plots",
        description="Computes accuracy, balanced accuracy, precision, recall, "
        "specificity, F1, ROC-AUC, confusion matrix and calibration (ECE) and "
        "draws the confusion matrix, ROC curves and reliability diagram.",
    )
    parser.add_argument("model", help=".keras model file")
    parser.add_argument("source", help="dataset: image folder, .csv or .npz")
    parser.add_argument("--split", default=None,
                        help="evaluate only rows of this split (e.g. test) when the "
                        "dataset has a split column")
    parser.add_argument("--out", default=None,
                        help="report folder (default: evaluation/ beside the model)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average with the left-right flip")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--history", default=None,
                        help="history.csv of the training run, to draw training curves")
    parser.set_defaults(func=run_evaluate)

    # === predict ===
    parser = subparsers.add_parser(
        "predict",
        help="classify image files (class, probability, top-k)",
        description="Prints the predicted class, its probability and the top-k "
        "classes of each image (JPEG, PNG, BMP, GIF, WebP, TIFF, DICOM).",
    )
    parser.add_argument("model", help=".keras model file")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--csv", default=None, help="also write the table to this CSV file")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.set_defaults(func=run_predict)


def _base(hint):
    args = [t for t in typing.get_args(hint) if t is not type(None)]
    return (args[0] if args else hint), bool(args)


def _metavar(hint):
    base, optional = _base(hint)
    return base.__name__.upper() + ("|none" if optional else "")


def _flag_type(name, hint):
    base, optional = _base(hint)

    def convert(text):
        if optional and text.lower() in ("none", "null"):
            return None
        if base is bool:
            if text.lower() in ("true", "yes", "1", "on"):
                return True
            if text.lower() in ("false", "no", "0", "off"):
                return False
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} takes true or false, not {text!r}")
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--{name.replace('_', '-')} takes {base.__name__}, not {text!r}"
            ) from None

    convert.__name__ = base.__name__
    return convert


def run_train(args):
    from medivision_tf.training import TrainConfig, load_config, train_and_evaluate

    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name != "source" and hasattr(args, f.name)
    }
    if args.source is not None:
        overrides["source"] = args.source
    config = load_config(args.config, **overrides)
    verbose = 0 if args.quiet else 1
    result = train_and_evaluate(config, run_dir=args.out, evaluate=not args.no_evaluate,
                                verbose=verbose)
    if result.report is not None:
        _print_summary(result.report.summary)
    print(json.dumps({"run_dir": result.run_dir, "model": result.model_path,
                      "epochs": result.epochs}))
    return 0


def run_evaluate(args):
    import medivision_tf
    from medivision_tf.data.sources import with_attrs
    from medivision_tf.evaluation import evaluate_model
    from medivision_tf.data.pipeline import as_table

    model = medivision_tf.load_model(args.model, compile=False)
    table = as_table(args.source)  # a prepared folder keeps its split
    if args.split is not None:
        if "split" not in table.columns:
            raise ValueError(f"--split {args.split} given but {args.source!r} has no split column.")
        table = with_attrs(table[table["split"] == args.split], table)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.model)), "evaluation")
    report = evaluate_model(model, table, out_dir=out, tta=args.tta,
                            batch_size=args.batch_size, history_csv=args.history)
    _print_summary(report.summary)
    print(f"Report written to {out}")
    return 0


def _print_summary(summary):
    keys = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro", "ece")
    print("  ".join(f"{k}={summary[k]:.4f}" for k in keys if k in summary))


def run_predict(args):
    import medivision_tf
    from medivision_tf.prediction import predict_files

    model = medivision_tf.load_model(args.model, compile=False)
    table = predict_files(model, args.images, top_k=args.top_k,
                          batch_size=args.batch_size, tta=args.tta)
    for path, name, probability, top in zip(
        table["path"], table["class"], table["probability"], table["top_k"]
    ):
        print(f"{path}\t{name}\t{probability:.4f}\ttop-{args.top_k}: {top}")
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        table.to_csv(args.csv, index=False)
    return 0
