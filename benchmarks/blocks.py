"""Generated blocks: the measured figures in the README and the docs, drawn from committed results.

A figure in `README.md`, `docs/*.md`, `benchmarks/README.md` or `notebooks/README.md` is
either written by a benchmark script into a file under `benchmarks/results/` and shown in the
page by a *generated block*, or it is not published. A block is the Markdown between two
markers:

```
<!-- generated:NAME from benchmarks/results/X.json by `python benchmarks/run_all.py --render-only`; do not edit -->
... whatever RENDERERS["NAME"] returns ...
<!-- end generated:NAME -->
```

`python benchmarks/run_all.py --render-only` rewrites every block (and the results pages,
`results/latest.md` and `results/resume.md`) from the committed result files;
`--check` writes nothing and lists what is stale. Rendering reads JSON and Markdown files
only and never imports TensorFlow (`tests/test_generated_blocks.py` checks both: every block
equals its rendering, and TensorFlow is not imported).

**Adding a block** (a new table in the README or a doc):

1. the script that measures it writes its results to `benchmarks/results/NAME.json`
   (`common.write_results(results, args.json)`), and the file is committed;
2. a renderer here, one function:

   ```python
   @renderer("gpu-speed", "gpu.json")          # block name, then its result files
   def _gpu_speed(gpu):                         # called with each file loaded (JSON: a dict)
       return bench_gpu.render_table(gpu)       # the Markdown between the markers
   ```

   (import the script's module inside the function if it imports anything heavy at its top);
3. the two markers, with nothing between them, where the table goes:
   `<!-- generated:gpu-speed -->` and `<!-- end generated:gpu-speed -->`;
4. `python benchmarks/run_all.py --render-only` fills the block (and completes its first
   marker), then commit.

A block name may appear in several documents (each copy is rendered the same). A renderer
used by no document, or a block with no renderer, fails the check.
"""

import dataclasses
import glob
import importlib
import json
import os
import re
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
#: The pages whose figures must all come from generated blocks (globs, from the repository root).
DOCUMENTS = ("README.md", "docs/*.md", "benchmarks/README.md", "notebooks/README.md")
COMMAND = "python benchmarks/run_all.py --render-only"

_BEGIN = re.compile(r"^<!-- generated:(?P<name>[A-Za-z0-9_.-]+)(?: [^\n]*)? -->$", re.M)
_END = "<!-- end generated:{name} -->"


@dataclasses.dataclass(frozen=True)
class Renderer:
    name: str
    sources: tuple  # file names under benchmarks/results/
    function: object

    def begin_marker(self):
        files = ", ".join(f"benchmarks/results/{s}" for s in self.sources)
        return f"<!-- generated:{self.name} from {files} by `{COMMAND}`; do not edit -->"

    def render(self):
        """The whole block, markers included (the body read from the committed sources)."""
        body = self.function(*(load(source) for source in self.sources)).strip("\n")
        return f"{self.begin_marker()}\n{body}\n{_END.format(name=self.name)}"


#: name -> Renderer
RENDERERS = {}
#: results page (relative to benchmarks/results/) -> (its JSON source, function(results) -> text)
PAGES = {}


def renderer(name, *sources):
    """Registers the decorated function as the renderer of block `name` (see the module doc)."""
    if not sources:
        raise ValueError(f"Block {name!r}: name at least one file under benchmarks/results/")

    def register(function):
        if name in RENDERERS:
            raise ValueError(f"Block {name!r} has two renderers")
        RENDERERS[name] = Renderer(name, tuple(sources), function)
        return function

    return register


def page(path, source):
    """Registers the decorated function as the renderer of results page `path`."""

    def register(function):
        PAGES[path] = (source, function)
        return function

    return register


def load(source):
    """A committed results file: JSON files as objects, anything else as text."""
    path = os.path.join(RESULTS_DIR, source)
    with open(path, encoding="utf-8") as f:
        return json.load(f) if source.endswith(".json") else f.read()


def bench_module(name):
    """A benchmark script imported as a module (their heavy imports are inside functions)."""
    if BENCH_DIR not in sys.path:
        sys.path.insert(0, BENCH_DIR)
    return importlib.import_module(name)


def documents(root=REPO_ROOT):
    """The Markdown pages that may hold figures, relative to `root`, sorted."""
    found = set()
    for pattern in DOCUMENTS:
        found.update(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern)))
    return sorted(found)


def find_blocks(text, where="text"):
    """The generated blocks of a Markdown text: a list of (name, start, end) offsets.

    Raises:
        ValueError: a first marker without its end marker, or blocks inside each other.
    """
    blocks = []
    position = 0
    while True:
        begin = _BEGIN.search(text, position)
        if begin is None:
            break
        name = begin["name"]
        end_marker = _END.format(name=name)
        end = text.find(end_marker, begin.end())
        if end < 0:
            raise ValueError(f"{where}: the block 'generated:{name}' has no end marker "
                             f"'{end_marker}'")
        inner = _BEGIN.search(text, begin.end(), end)
        if inner is not None:
            raise ValueError(f"{where}: the block 'generated:{inner['name']}' starts inside "
                             f"'generated:{name}'")
        blocks.append((name, begin.start(), end + len(end_marker)))
        position = end + len(end_marker)
    return blocks


def render_text(text, where="text", cache=None):
    """`text` with every generated block rendered anew; the names of the blocks found."""
    cache = {} if cache is None else cache
    pieces, names, last = [], [], 0
    for name, start, end in find_blocks(text, where):
        if name not in RENDERERS:
            raise ValueError(f"{where}: no renderer for the block 'generated:{name}'. "
                             f"Known blocks: {', '.join(sorted(RENDERERS))}")
        if name not in cache:
            cache[name] = RENDERERS[name].render()
        pieces += [text[last:start], cache[name]]
        names.append(name)
        last = end
    pieces.append(text[last:])
    return "".join(pieces), names


def render_pages():
    """{path under benchmarks/results/: the text its JSON renders to}."""
    return {path: function(load(source)) for path, (source, function) in PAGES.items()}


def stale(root=REPO_ROOT):
    """What differs from its rendering: a list of "file: block" strings (empty: all current).

    Raises:
        ValueError: a malformed block, a block without renderer, or a renderer that no
            document uses.
    """
    differing, used, cache = [], set(), {}
    for path in documents(root):
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = f.read()
        _, names = render_text(text, path, cache)
        used.update(names)
        for name, start, end in find_blocks(text, path):
            if text[start:end] != cache[name]:
                differing.append(f"{path}: generated:{name}")
    unused = sorted(set(RENDERERS) - used)
    if unused:
        raise ValueError(f"Renderers that no document uses (add their markers or remove "
                         f"them): {', '.join(unused)}")
    for path, text in render_pages().items():
        with open(os.path.join(RESULTS_DIR, path), encoding="utf-8") as f:
            if f.read() != text:
                differing.append(f"benchmarks/results/{path}")
    return differing


def render_all(root=REPO_ROOT, verbose=True):
    """Rewrites every results page and every generated block; returns the files changed."""
    changed = []
    for path, text in render_pages().items():
        full = os.path.join(RESULTS_DIR, path)
        with open(full, encoding="utf-8") as f:
            if f.read() == text:
                continue
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)
        changed.append(f"benchmarks/results/{path}")
    cache = {}
    for path in documents(root):
        full = os.path.join(root, path)
        with open(full, encoding="utf-8") as f:
            text = f.read()
        rendered, _ = render_text(text, path, cache)
        if rendered != text:
            with open(full, "w", encoding="utf-8") as f:
                f.write(rendered)
            changed.append(path)
    if verbose:
        print("Rendered from benchmarks/results/: "
              + (", ".join(changed) if changed else "everything was current") + ".")
    return changed


def shift_headings(markdown, levels=2):
    """Markdown headings moved `levels` down (outside code fences): a page nested in another."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        lines.append("#" * levels + line if line.startswith("#") and not fenced else line)
    return "\n".join(lines)


# === Results pages ===


@page("latest.md", "latest.json")
def _latest_page(results):
    return bench_module("run_all").render_markdown(results)


@page("resume.md", "resume.json")
def _resume_page(results):
    return bench_module("bench_resume").render_page(results)


# === Blocks ===


@renderer("benchmarks", "latest.json")
def _benchmarks(results):
    """README: the whole `run_all.py` page, its headings nested under the README's own."""
    return shift_headings(bench_module("run_all").render_markdown(results))
