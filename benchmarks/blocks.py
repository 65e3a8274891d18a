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
       return bench_module("bench_gpu").render_table(gpu)   # the Markdown between the markers
   ```

   (`bench_module` imports a script of this folder; its TensorFlow imports must stay inside
   its functions, as in every script here, so that rendering never loads TensorFlow);
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
    """The generated blocks of a Markdown text: a list of (name, start, end) offsets
    (markers inside ``` code blocks are examples, not blocks).

    Raises:
        ValueError: a first marker without its end marker, or blocks inside each other.
    """
    blocks = []
    position = 0
    fences = _fenced_spans(text)
    while True:
        begin = _BEGIN.search(text, position)
        if begin is None:
            break
        if any(start <= begin.start() < end for start, end in fences):
            position = begin.end()  # an example in a code block, not a block
            continue
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


def _fenced_spans(text):
    """(start, end) offsets of the ``` code blocks of a Markdown text."""
    spans, start = [], None
    for match in re.finditer(r"^```.*$", text, re.M):
        if start is None:
            start = match.start()
        else:
            spans.append((start, match.end()))
            start = None
    return spans


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


def _run_line(machine, what=""):
    """"Run of DATE on CPU (N cores, load average L at start)"."""
    load = machine.get("load_average_1_5_15") or []
    return (f"{what}{machine['date'][:16].replace('T', ' ')} UTC, {machine['cpu_model']}, "
            f"{machine['cores']} cores" + (f", load average {load[0]} at start" if load else ""))


def _script_output(results, name):
    """The text a `run_all.py` entry without JSON printed (its tail), TensorFlow log lines out."""
    entry = results["benchmarks"][name]
    return bench_module("run_all")._without_log_lines(entry.get("stdout_tail") or "").strip()


def _parse_rates(text):
    """{label: images/s} of lines `label   123.4 images/s`, and {label: ratio} of `ratio ...: 9.9x`."""
    rates = {}
    for line in text.splitlines():
        match = re.match(r"^(?P<label>\S.*?)\s+(?P<rate>[0-9.]+) images/s", line)
        if match:
            rates[match["label"].strip()] = float(match["rate"])
    return rates


# --- benchmarks/README.md and docs/data.md: bench_decode.py, bench_hashes.py ---


@renderer("decode", "decode.json")
def _decode(decode):
    dicom, nifti, settings = decode["dicom"], decode["nifti"], decode["settings"]
    search = decode["duplicates"]
    size = settings["image_size"]

    def spread(ratios):
        return f"{min(ratios):.2f}-{max(ratios):.2f}"

    return "\n".join([
        f"{_run_line(decode['machine'], 'Committed run (`benchmarks/results/decode.json`): ')}; "
        f"{settings['rounds']} rounds. Ours is built once ({dicom['build_seconds']:.1f} s for "
        f"the DICOM table, {nifti['build_seconds']:.2f} s for the NIfTI one), then warmed by a "
        "pass; rounds alternate ours and the baseline, and the ratio is the median of the "
        "per-round ratios.",
        "",
        f"| data | ours (make_dataset, {size}², batch {settings['batch_size']}) | baseline alone "
        "| ours / baseline (aim ≥ 0.8) | per-round ratios |",
        "|---|---:|---:|---:|---|",
        f"| DICOM: {dicom['count']} copies of {len(dicom['files'])} pydicom test files, "
        f"images/s | {dicom['rates']['ours (make_dataset)']:.0f} | "
        f"{dicom['rates']['pydicom alone']:.0f} (pydicom) | **{dicom['ratio']:.2f}** | "
        f"{spread(dicom['ratios'])} |",
        f"| NIfTI: {nifti['volumes']} volumes, {nifti['slices']} slices, slices/s | "
        f"{nifti['rates']['ours (make_dataset)']:.0f} | {nifti['rates']['nibabel alone']:.0f} "
        f"(nibabel) | **{nifti['ratio']:.2f}** | {spread(nifti['ratios'])} |",
        "",
        f"| duplicate search, {search['images']:,} Fashion-MNIST training images | seconds | "
        "pairs within 24 bits |",
        "|---|---:|---:|",
        f"| hashing (pixel BLAKE2 + 256-bit `imagehash.phash`) | {search['hash_seconds']:.1f} "
        f"({search['hash_per_image_ms']:.2f} ms/image) | |",
        f"| band search (the default above ~6,300 images) | {search['band_seconds']:.1f} | "
        f"{search['band_pairs']} |",
        f"| exhaustive search (every pair, vectorised) | {search['exhaustive_seconds']:.1f} | "
        f"{search['exhaustive_pairs']} (the band search found {search['band_found_of_exhaustive']}"
        f" of them) |",
    ])


@renderer("duplicate-thresholds", "decode.json", "hashes.json")
def _duplicate_thresholds(decode, hashes):
    study, small = decode["thresholds"], hashes["hash64"]
    lines = [
        f"Fashion-MNIST test images: {study['planted_per_transform']} of them x "
        f"{len(study['transforms'])} transforms planted ({', '.join(study['transforms'])}); "
        f"distinct pairs counted among all {study['pairs']:,} pairs of its {study['images']:,} "
        "images (`bench_decode.py`, `results/decode.json`; the 64-bit rows: `bench_hashes.py`, "
        "`results/hashes.json`, same protocol):",
        "",
        "| hash, threshold (bits) | copies found | worst transform | pairs of distinct images "
        "as close |",
        "|---|---:|---|---:|",
    ]
    for row in study["rows"]:
        default = row["threshold"] == 24
        mark = "**" if default else ""
        lines.append(f"| {mark}256-bit, {row['threshold']}{' (default)' if default else ''}{mark} "
                     f"| {mark}{row['recall']:.1%}{mark} | {row['worst_transform']}: "
                     f"{row['worst']:.0%} | {mark}{row['distinct_pairs']:,}{mark} |")
    for row in small["rows"]:
        lines.append(f"| 64-bit `phash`, {row['threshold']} | {row['recall']:.1%} | "
                     f"{row['worst_transform']}: {row['worst']:.0%} | {row['distinct_pairs']:,} |")
    return "\n".join(lines)


@renderer("duplicate-figures", "decode.json", "hashes.json")
def _duplicate_figures(decode, hashes):
    study = decode["thresholds"]
    default = next(r for r in study["rows"] if r["threshold"] == 24)
    per = study["pairs"] / max(default["distinct_pairs"], 1)
    small = "; ".join(f"{s['set']}: {s['exact_pairs'] + s['near_pairs']} pairs among "
                      f"{s['images']:,}" for s in hashes["small_sets"])
    jpeg, split = hashes["digit_jpeg"], hashes["official_split"]
    return (
        f"At 24 bits a false alarm is rare enough that `train` can refuse on it (about 1 pair "
        f"per {per / 1e6:.1f} million pairs of distinct photographs above; {small}), while "
        f"{default['recall']:.1%} of the copies are still found. The hard case is tiny, "
        f"low-detail images: of JPEG-50 copies of the {jpeg['images']:,} scikit-learn digits "
        f"upscaled to {jpeg['size']}x{jpeg['size']}, only {jpeg['recall']:.0%} stay within "
        f"{jpeg['threshold']} bits (median distance {jpeg['median_distance']:.0f}). Fashion-MNIST's "
        f"official split itself holds {split['pairs']} test/train pairs within 24 bits "
        f"({split['exact']} exact, {split['near']} near; {split['test_images_in_pairs']} of its "
        f"{split['test_images']:,} test images), which is why training on it needs "
        f"`--allow-duplicates` (`benchmarks/bench_hashes.py`, `results/hashes.json`).")


@renderer("duplicate-search", "decode.json")
def _duplicate_search(decode):
    search = decode["duplicates"]
    return (f"On the {search['images']:,} Fashion-MNIST training images the band search found "
            f"{search['band_found_of_exhaustive']} of the {search['exhaustive_pairs']} pairs "
            f"within 24 bits that the exhaustive search finds, in {search['band_seconds']:.1f} s "
            f"against {search['exhaustive_seconds']:.1f} s; hashing took "
            f"{search['hash_seconds']:.1f} s (`benchmarks/bench_decode.py`, "
            f"`results/decode.json`, {decode['machine']['date'][:10]}).")


# --- docs/data.md, docs/reproduce.md, docs/explanations.md: run_all.py's latest.json ---


@renderer("pipeline-speed", "latest.json")
def _pipeline_speed(results):
    entry = results["benchmarks"]["pipeline"]
    return "\n".join([
        f"`python benchmarks/run_all.py` of {results['machine']['date'][:10]} "
        f"(`benchmarks/results/latest.json`, {results['machine']['cores']} cores), "
        f"`{entry['script']}` without `--peers`:", "",
        "```", _script_output(results, "pipeline"), "```"])


@renderer("reproduce-time", "latest.json")
def _reproduce_time(results):
    rates = _parse_rates(_script_output(results, "pipeline"))
    step = next(v for k, v in rates.items() if k.startswith("training step"))
    pipeline = rates["pipeline, prefetch (default)"]
    images, without_oct = 145_000 * 15, (145_000 - 84_000) * 15

    def hours(count, rate):
        seconds = count / rate
        return f"~{seconds / 3600:.0f} hours" if seconds >= 5400 else f"~{seconds / 60:.0f} min"

    return "\n".join([
        "| throughput (images/s) | all ten datasets | without `retinal_oct` |",
        "|----------------------:|-----------------:|----------------------:|",
        f"| {step:g} (EfficientNetB0 224² training step, 2 CPU cores: `results/latest.json`, "
        f"{results['machine']['date'][:10]}) | {hours(images, step)} | "
        f"{hours(without_oct, step)} |",
        f"| 300 (assumed) | {hours(images, 300)} | {hours(without_oct, 300)} |",
        f"| 1,000 (assumed) | {hours(images, 1000)} | {hours(without_oct, 1000)} |",
        "",
        f"In the same run the augmented input pipeline (read, decode, augment, resize to 224²) "
        f"delivered {pipeline:g} images/s on the same 2 cores.",
    ])


@renderer("gradcam-speed", "latest.json")
def _gradcam_speed(results):
    text = _script_output(results, "gradcam")
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^(?P<label>\S.*?)\s+(?P<ms>[0-9.]+)\s+(?P<fwd>[0-9.]+)\s+[0-9.]+$", line)
        if match:
            rows[match["label"].strip()] = (float(match["ms"]), float(match["fwd"]))
    forward = rows["forward pass (batch, tf.function)"][0]
    native = rows["native Grad-CAM (batch, tf.function)"][0]
    batch = rows["tf-keras-vis Grad-CAM (batch)"][0]
    loop = rows["tf-keras-vis Grad-CAM (loop, 1 image/call)"][0]
    return "\n".join([
        f"`python benchmarks/run_all.py` of {results['machine']['date'][:10]} "
        "(`benchmarks/results/latest.json`):", "", "```", text, "```", "",
        f"The native Grad-CAM costs {native / forward:.1f}x a forward pass (target <= 3x) and is "
        f"{batch / native:.0f}x faster than tf-keras-vis on the batch, {loop / native:.0f}x "
        "faster than tf-keras-vis image by image (tf-keras-vis builds a new Keras model on "
        "every call)."])


# --- docs/trust.md and README.md: bench_realdata.py ---


@renderer("realdata-6k", "realdata_6k.json")
def _realdata_6k(results):
    return bench_module("bench_realdata").render_table(results)


@renderer("realdata-55k", "realdata_55k.json")
def _realdata_55k(results):
    return bench_module("bench_realdata").render_table(results)


@renderer("realdata-6k-smallvgg", "realdata_6k_smallvgg.json")
def _realdata_6k_smallvgg(results):
    return bench_module("bench_realdata").render_table(results)


@renderer("realdata-summary", "realdata_6k.json", "realdata_6k_smallvgg.json",
          "realdata_55k.json")
def _realdata_summary(*runs):
    """README: MediVision against the pooling baseline in each committed bench_realdata run."""
    realdata = bench_module("bench_realdata")
    files = ("realdata_6k.json", "realdata_6k_smallvgg.json", "realdata_55k.json")

    def pm(stats, digits=3):
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"

    lines = ["| run (`benchmarks/results/`) | model | test accuracy | ECE after temperature | "
             "coverage at α = 0.1: APS; LAC (empty sets) | OOD AUROC vs digits | "
             "in-distribution flagged |", "|---|---|---|---|---|---|---|"]
    for name, results in zip(files, runs):
        config = results["settings"]
        run = (f"`{name}`: {config['train_images']:,} training images, "
               f"`{config.get('backbone', 'smallcnn')}`, {config['epochs']} epochs, "
               f"{len(config['seeds'])} seeds")
        for model in ("medivision", "baseline"):
            stats = results["summary"][model]
            lac = (f"; {pm(stats['lac_coverage'])} ({pm(stats['lac_empty_sets'])})"
                   if "lac_coverage" in stats else "")
            lines.append(f"| {run} | {realdata.MODELS[model]} | {pm(stats['accuracy'])} | "
                         f"{pm(stats['ece_after'])} | {pm(stats['coverage'])}{lac} | "
                         f"{pm(stats['ood_auroc'])} | {pm(stats['flagged_in_distribution'])} |")
            run = ""
    lines.append("")
    for name, results in zip(files, runs):
        for model, paired in results.get("paired_vs_baseline", {}).items():
            if model == "medivision":
                lines.append(
                    f"- `{name}`: MediVision − pooling baseline, paired by seed: "
                    f"{paired['mean']:+.4f} ± {paired['std']:.4f}, at least as accurate on "
                    f"{paired['seeds_at_least_as_accurate']} seed(s) of {paired['seeds']}.")
    return "\n".join(lines)


# --- docs/training.md and README.md: bench_transfer.py, bench_transfer_recipe.py ---


@renderer("transfer-recipe", "transfer_recipe_densenet121.json", "transfer_recipe_xception.json",
          "transfer_recipe_densenet121_long.json")
def _transfer_recipe(densenet, xception, long):
    return bench_module("bench_transfer_recipe").render_table(densenet, xception, long)


@renderer("transfer-peak", "transfer.json", "transfer_peak_1e-4.json")
def _transfer_peak(default, earlier):
    return bench_module("bench_transfer").render_peak_comparison(default, earlier)


@renderer("transfer-learning", "transfer.json")
def _transfer_learning(results):
    return bench_module("bench_transfer").render_table(results)


# --- README.md and docs/explanations.md: bench_demo.py ---


@renderer("demo", "demo.json")
def _demo(results):
    return bench_module("bench_demo").render_demo(results)


@renderer("faithfulness", "demo.json")
def _faithfulness(results):
    return bench_module("bench_demo").render_faithfulness(results)


@renderer("explain-pretrained", "explain_pretrained.json")
def _explain_pretrained(results):
    return bench_module("bench_explain_pretrained").render_table(results)


def _unseen_table(results):
    return bench_module("bench_unseen").render_table(results)


# One table per leave-one-class-out run: the default settings, another seed, augmentation.
for _block, _source in (("unseen", "unseen.json"), ("unseen-seed1", "unseen_seed1.json"),
                        ("unseen-augment", "unseen_augment.json")):
    renderer(_block, _source)(_unseen_table)
del _block, _source


@renderer("unseen-summary", "unseen.json", "unseen_seed1.json")
def _unseen_summary(results, check):
    return bench_module("bench_unseen").render_summary(results, check)


@renderer("gradcam-upsampling", "demo.json")
def _gradcam_upsampling(results):
    zoom, native = results["tf_keras_vis_zoom"], results["faithfulness"]["methods"]["gradcam"]
    return (f"On the demo's held-out images (`benchmarks/bench_demo.py`, `results/demo.json`) "
            f"tf-keras-vis' own expansion gives Grad-CAM a pointing game of "
            f"{zoom['pointing_game']:.3f} and an energy in box of {zoom['energy_in_box']:.3f}, "
            f"against {native['pointing_game']:.3f} and {native['energy_in_box']:.3f} upsampled "
            f"here; the two maps correlate at {zoom['correlation_with_native_min']:.2f}-"
            f"{zoom['correlation_with_native_max']:.2f} per image.")


@renderer("letterbox", "demo.json")
def _letterbox(results):
    box, faith = results["letterboxed"], results["faithfulness"]
    return (f"On {box['size'][0]}x{box['size'][1]} crops of the demo's held-out images "
            f"(`benchmarks/bench_demo.py`), accuracy was {box['accuracy']:.3f} (against "
            f"{faith['accuracy']:.3f} on the squares) and Grad-CAM's pointing game "
            f"{box['pointing_game']:.3f} (against {faith['methods']['gradcam']['pointing_game']:.3f}).")
