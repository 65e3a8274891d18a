"""`medivision reproduce`: the paper's table on the datasets you downloaded.

```
medivision prepare retinal_oct downloads/OCT2017 --out data/retinal_oct
medivision prepare kidney_ct downloads/ct-kidney --out data/kidney_ct
medivision reproduce --data-root data --out runs/reproduce --epochs 10 --fine-tune-epochs 5
medivision reproduce --data-root data --datasets retinal_oct --config train.json
medivision reproduce --data-root data --paper-figures paper.csv   # the paper's columns
```

Writes `OUT/NAME/` (one training run per dataset), `OUT/reproduce_table.csv`,
`OUT/reproduce_table.md` and `OUT/reproduce_accuracy.png`. Exits with 0 when
at least one dataset was trained and evaluated, 1 otherwise.
"""


from medivision_tf.cli._flags import add_config_flags, config_overrides

#: The TrainConfig keys that are also flags here (the rest go in --config).
FLAGS = ("backbone", "weights", "image_size", "channels", "epochs", "fine_tune_epochs",
         "batch_size")


def register(subparsers):
    from medivision_tf.training.config import CHOICES, TrainConfig

    parser = subparsers.add_parser(
        "reproduce",
        help="train and evaluate on every prepared paper dataset; the paper's table",
        description="Trains and evaluates MediVision on every paper dataset prepared "
        "under --data-root (by `medivision prepare NAME DIR --out DATA_ROOT/NAME`) and "
        "writes accuracy, macro precision, macro recall and macro F1 per dataset beside "
        "the paper's reported figures (CSV, Markdown, PNG chart).",
    )
    parser.add_argument("--data-root", required=True, metavar="DIR",
                        help="folder holding the prepared datasets (DIR/NAME/manifest.csv)")
    parser.add_argument("--out", default="runs/reproduce",
                        help="run folder per dataset + the summary (default: runs/reproduce)")
    parser.add_argument("--datasets", default=None, metavar="NAME,NAME",
                        help="only these datasets (default: all ten)")
    parser.add_argument("--config", default=None, metavar="JSON",
                        help="TrainConfig JSON applied to every dataset; flags override it (default: none)")
    add_config_flags(parser, TrainConfig, only=FLAGS, choices=CHOICES)
    parser.add_argument("--paper-figures", default=None, metavar="CSV",
                        help="the paper's per-dataset figures, transcribed: columns dataset "
                        "and any of accuracy, precision, recall, f1 (fractions or percent) (default: none)")
    parser.add_argument("--quiet", action="store_true",
                        help="no per-epoch lines (default: one line per epoch)")
    parser.set_defaults(func=run_reproduce)


def run_reproduce(args):
    from medivision_tf.reproduce import render_table, reproduce
    from medivision_tf.training.config import TrainConfig

    overrides = {k: v for k, v in config_overrides(args, TrainConfig).items() if k in FLAGS}
    table = reproduce(args.data_root, args.out, datasets=args.datasets, config=args.config,
                      paper_figures=args.paper_figures, verbose=0 if args.quiet else 2,
                      **overrides)
    print(render_table(table))
    for name, path in table.attrs["paths"].items():
        print(f"{name}: {path}")
    return 0 if (table["status"] == "ok").any() else 1
