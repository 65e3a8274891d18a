"""The package's shape (issue 31): module sizes, and `data/`'s stages importing one way.

No module of `medivision_tf/data/` is over 500 lines and none elsewhere in
`medivision_tf/` over 650 (lines of each `.py` file). Inside `data/`, each
stage imports only the stages before it (DESIGN.md: an image visits each room
once), and `data` imports nothing of the package but `config`.
"""

import ast
import os

import pytest

PACKAGE = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, "medivision_tf"))
DATA_LIMIT = 500
PACKAGE_LIMIT = 650
# What each stage of data/ may import (a stage, or one module of a stage).
# sources.any_source reads shard folders (shards.folder) and sources.prepared
# the registry's class order (datasets.registry); nothing imports a later stage.
ALLOWED = {
    "io": {"io"},
    "sources": {"io", "sources", "shards.folder", "datasets.registry"},
    "datasets": {"io", "sources", "datasets"},
    "checks": {"io", "sources", "checks", "shards.folder"},
    "shards": {"io", "sources", "checks", "shards"},
    "pipeline": {"io", "sources", "checks", "shards", "pipeline"},
}


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, PACKAGE).replace(os.sep, "/"), path


def _line_count(path):
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def test_no_data_module_over_500_lines():
    sizes = {name: _line_count(path) for name, path in _modules() if name.startswith("data/")}
    assert len(sizes) > 30  # the walk found the subpackages
    over = {name: lines for name, lines in sizes.items() if lines > DATA_LIMIT}
    assert not over, f"modules of medivision_tf/data over {DATA_LIMIT} lines: {over}"


def test_no_module_over_650_lines():
    over = {name: lines for name, path in _modules()
            if (lines := _line_count(path)) > PACKAGE_LIMIT}
    assert not over, f"modules of medivision_tf over {PACKAGE_LIMIT} lines: {over}"


def _package_imports(path):
    """Every `medivision_tf...` module a file imports (at any depth)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("medivision_tf"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medivision_tf"):
            yield node.module


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_data_stages_import_only_earlier_stages(stage):
    wrong = []
    for name, path in _modules():
        if not name.startswith(f"data/{stage}/"):
            continue
        for module in _package_imports(path):
            parts = module.split(".")
            if module in ("medivision_tf.config", "medivision_tf.data"):
                allowed = module == "medivision_tf.config"
            elif parts[:2] == ["medivision_tf", "data"] and len(parts) > 2:
                allowed = parts[2] in ALLOWED[stage] or ".".join(parts[2:4]) in ALLOWED[stage]
            else:
                allowed = False  # data imports nothing else of the package
            if not allowed:
                wrong.append(f"{name} imports {module}")
    assert not wrong, "\n".join(wrong)
