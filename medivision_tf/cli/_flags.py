"""One way to turn a config dataclass into command-line flags.

Every field becomes `--field-name`, typed from its annotation (`int`, `float`,
`str`, `bool` as true/false or the bare flag for true, `X | None` also
taking `none`), with the help
line taken from the class docstring's `Attributes:` section, its default
shown, and the allowed values listed (`choices`) for fixed-choice keys.

Example:

```python
parser = argparse.ArgumentParser()
add_config_flags(parser, TrainConfig, skip=("source",), choices=CHOICES)
args = parser.parse_args(["--epochs", "3"])
config_overrides(args, TrainConfig)      # {"epochs": 3}
```
"""

import argparse
import dataclasses
import inspect
import re
import typing


def field_help(cls):
    """`{field: help text}` from a dataclass docstring's `Attributes:` section.

    An entry may name several fields (`lstm_units, dropout: head sizes`);
    continuation lines are joined.
    """
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)*)", doc, re.MULTILINE)
    helps, names = {}, []
    for line in (match.group(1) if match else "").splitlines():
        entry = re.match(r"^    ([\w, ]+):\s*(.*)$", line)
        if entry and not line.startswith("     "):
            names = [n.strip() for n in entry.group(1).split(",") if n.strip()]
            for name in names:
                helps[name] = entry.group(2)
        elif line.strip() and names:
            for name in names:
                helps[name] += " " + line.strip()
    return helps


def _base(hint):
    if typing.get_origin(hint) is typing.Union:
        args = [t for t in typing.get_args(hint) if t is not type(None)]
        return args, type(None) in typing.get_args(hint)
    return [hint], False


def flag_type(name, hint):
    """An argparse `type=` function for a field annotation (named in errors)."""
    bases, optional = _base(hint)
    flag = f"--{name.replace('_', '-')}"

    def convert(text):
        lowered = text.lower()
        if optional and lowered in ("none", "null"):
            return None
        if bool in bases and lowered in ("true", "yes", "1", "on"):
            return True
        if bool in bases and lowered in ("false", "no", "0", "off"):
            return False
        for base in bases:
            if base is bool:
                continue
            try:
                return base(text)
            except ValueError:
                pass
        if bases == [bool]:
            raise argparse.ArgumentTypeError(
                f"{flag} takes true or false (or nothing: true), not {text!r}; "
                "give SOURCE before the flags"
            )
        allowed = " or ".join(b.__name__ for b in bases)
        raise argparse.ArgumentTypeError(f"{flag} takes {allowed}, not {text!r}")

    convert.__name__ = "/".join(b.__name__ for b in bases)
    return convert


def metavar(hint):
    bases, optional = _base(hint)
    text = "|".join("BOOL" if b is bool else b.__name__.upper() for b in bases)
    return text + ("|none" if optional else "")


def _shown(value):
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def add_config_flags(parser, cls, *, skip=(), only=None, choices=None, suppress=True):
    """Adds one flag per field of the dataclass `cls` to `parser`.

    Args:
        parser: an `argparse.ArgumentParser` (or argument group).
        cls: the dataclass.
        skip: field names to leave out.
        only: if given, only these fields (in this order).
        choices: `{field: allowed values}` for fixed-choice fields.
        suppress: leave unset flags out of the namespace (so values from a
            config file are not overridden); otherwise the field's default.
    """
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(only) if only is not None else list(fields)
    for name in names:
        if name in skip:
            continue
        field = fields[name]
        default = field.default
        allowed = (choices or {}).get(name)
        text = helps.get(name, name.replace("_", " ")).rstrip(".")
        if allowed and len(allowed) > 8:
            text += f". Choices: {', '.join(allowed)}"
        # A plain bool flag alone means true: `--allow-duplicates`.
        bare = {"nargs": "?", "const": True} if hints[name] is bool else {}
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            **bare,
            dest=name,
            type=flag_type(name, hints[name]),
            default=argparse.SUPPRESS if suppress else default,
            choices=allowed,
            metavar=("{" + ",".join(map(_shown, allowed)) + "}") if allowed and len(allowed) <= 8
            else metavar(hints[name]),
            help=f"{text} (default: {_shown(default)})".replace("%", "%%"),
        )


def config_overrides(args, cls, skip=()):
    """`{field: value}` for the fields of `cls` given on the command line."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.name not in skip and hasattr(args, f.name)
    }


def keras_verbosity(quiet):
    """Keras `verbose` for a command: 0 when `--quiet`; progress bars (1) on a
    terminal; one line per epoch (2) when stdout is a file or pipe, where
    Keras' bars would write their ANSI redraws into the log."""
    import sys

    if quiet:
        return 0
    return 1 if sys.stdout.isatty() else 2
