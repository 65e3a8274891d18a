"""`medivision train`: train MediVision on a dataset, resuming an interrupted run.

```
medivision train data/brain_mri --config train.json --epochs 5 --out runs/brain
medivision train data/digits --image-size 32 --channels 1 --backbone smallcnn --weights none
```

Every `TrainConfig` key is also a flag (`--fine-tune-epochs 3`); flags override
the `--config` JSON. Rerunning the same `train` command after a crash or a
kill resumes the run from its last finished epoch; rerunning it on a finished
run writes a missing evaluation and prints the summary.
"""

import json

from medivision_tf.cli._flags import add_config_flags, config_overrides, keras_verbosity


def register(subparsers):
    from medivision_tf.training.config import CHOICES, TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="train MediVision on a dataset (two-phase transfer learning)",
        description="Trains MediVision on an image folder, CSV, .npz or prepared "
        "dataset, writes a run folder (config, checkpoints, history, TensorBoard "
        "logs, model, evaluation report and plots) and resumes an interrupted run.",
    )
    parser.add_argument("source", nargs="?", default=None,
                        help="dataset: image folder, .csv, .npz or prepared dataset "
                        "(default: the config's 'source')")
    parser.add_argument("--config", help="JSON file of TrainConfig keys (default: none)")
    parser.add_argument("--out", default="runs/train",
                        help="run folder; rerun with the same folder to resume "
                        "(default: runs/train)")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="skip the evaluation on the held-out split (default: evaluate)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars and no progress lines (images used, "
                             "phases, resuming); warnings such as allowed leakage still "
                             "go to stderr (default: all shown)")
    add_config_flags(parser, TrainConfig, skip=("source",), choices=CHOICES)
    parser.set_defaults(func=run_train)


def print_summary(summary):
    """The headline metrics of an `EvaluationReport.summary`: one line, and
    one more for a model with trust values (`medivision_tf.trust`)."""
    keys = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro", "ece")
    print("  ".join(f"{k}={summary[k]:.4f}" for k in keys if k in summary))
    if "coverage" in summary:
        print(f"trust: ece_after_calibration={summary['ece_after_calibration']:.4f} "
              f"(temperature {summary['temperature']:.3f})  prediction sets "
              f"({summary['conformal_method']}, alpha {summary['conformal_alpha']:g}): "
              f"coverage={summary['coverage']:.4f}  mean_set_size={summary['mean_set_size']:.3f}  "
              f"empty_set_rate={summary.get('empty_set_rate', 0.0):.4f}")


def run_train(args):
    from medivision_tf.cli._text import trust_legend
    from medivision_tf.training import TrainConfig, load_config, train_and_evaluate
    from medivision_tf.trust import get_trust

    overrides = config_overrides(args, TrainConfig, skip=("source",))
    if args.source is not None:
        overrides["source"] = args.source
    config = load_config(args.config, **overrides)
    result = train_and_evaluate(config, run_dir=args.out, evaluate=not args.no_evaluate,
                                reuse=True, verbose=keras_verbosity(args.quiet))
    if result.reused:
        print(f"{args.out} holds a finished run of this config: not trained again.")
    if result.report is not None:
        print_summary(result.report.summary)
    legend = trust_legend(get_trust(result.model))
    if legend:  # which OOD score the model carries, and its threshold
        print(legend)
    print(json.dumps({"run_dir": result.run_dir, "model": result.model_path,
                      "epochs": result.epochs, "best_epoch": result.best_epoch}))
    return 0
