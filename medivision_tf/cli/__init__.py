"""The `medivision` command.

Each command lives in its own module of this package and exposes
`register(subparsers)`, which adds its sub-parser and sets `run(args)` as the
parser's `func` default. Modules are found automatically, so adding a command
touches no other file. Registering imports no TensorFlow (`--help` is
instant); a command imports it when it runs. TensorFlow's native log lines
are kept off stderr unless `--verbose` is given (see `_quiet`). Every command
runs on TensorFlow: with `KERAS_BACKEND=jax` or `torch` it stops with one line
that says so (`medivision_tf.backend`), exit code 2.

Example:

```
medivision demo
medivision --help
```
"""

import argparse
import importlib
import pkgutil
import sys


VERBOSE_HELP = "show TensorFlow's own log lines and warnings (default: hidden)"


def build_parser():
    """The argument parser with every command module registered."""
    parser = argparse.ArgumentParser(
        prog="medivision",
        description="MediVision: CNN-LSTM-attention medical image classifier "
        "with Grad-CAM explanations.",
    )
    from medivision_tf import __version__

    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}").register(subparsers)
    for sub in subparsers.choices.values():
        # SUPPRESS: `medivision --verbose CMD` and `medivision CMD --verbose` both work.
        sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                         help=VERBOSE_HELP)
    return parser


def main(argv=None):
    """Entry point of the `medivision` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not args.verbose and "tensorflow" not in sys.modules:
        from medivision_tf.cli import _quiet

        _quiet.install()
    from medivision_tf.backend import INSTEAD, BackendError, require_tensorflow

    try:
        require_tensorflow(f"medivision {args.command}", INSTEAD["cli"], command_line=True)
        return args.func(args) or 0
    except (ValueError, TypeError, FileNotFoundError, BackendError) as error:
        print(f"medivision {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
