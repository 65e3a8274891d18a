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


import argparse
import typing

#: The TrainConfig keys that are also flags here (the rest go in --config).
FLAGS = (
    ("backbone", str, "STR", "backbone (default: efficientnetb0)"),
    ("weights", typing.Optional[str], "STR|none",
     "imagenet, none (from scratch) or a weights file (default: imagenet)"),
    ("image_size", int, "INT", "square input size (default: 224)"),
    ("epochs", int, "INT", "phase-1 epochs, backbone frozen (default: 10)"),
    ("fine_tune_epochs", int, "INT", "phase-2 epochs, backbone unfrozen (default: 5)"),
    ("batch_size", int, "INT", "images per batch (default: 32)"),
)


def register(subparsers):
    from medivision_tf.cli.train import _flag_type

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
                        help="TrainConfig JSON applied to every dataset; flags override it")
    for name, hint, metavar, text in FLAGS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_flag_type(name, hint),
                            default=argparse.SUPPRESS, metavar=metavar, help=text)
    parser.add_argument("--paper-figures", default=None, metavar="CSV",
                        help="the paper's per-dataset figures, transcribed: columns dataset "
                        "and any of accuracy, precision, recall, f1 (fractions or percent)")
    parser.add_argument("--quiet", action="store_true",
                        help="no per-epoch lines (default: one line per epoch)")
    parser.set_defaults(func=run_reproduce)


def run_reproduce(args):
    from medivision_tf.reproduce import render_table, reproduce

    overrides = {name: getattr(args, name) for name, *_ in FLAGS if hasattr(args, name)}
    table = reproduce(args.data_root, args.out, datasets=args.datasets, config=args.config,
                      paper_figures=args.paper_figures, verbose=0 if args.quiet else 2,
                      **overrides)
    print(render_table(table))
    for name, path in table.attrs["paths"].items():
        print(f"{name}: {path}")
    return 0 if (table["status"] == "ok").any() else 1
