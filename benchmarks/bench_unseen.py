"""Unseen conditions: does the out-of-distribution flag catch a class the model never saw?

```
python benchmarks/bench_unseen.py [--quick] [--json OUT.json]
    [--datasets fashion,digits] [--classes 0,1,...] [--set KEY=VALUE ...]
```

Leave-one-class-out (issue 34). For each dataset and each class in turn, a
model is trained by `medivision_tf.training.train` with its defaults (two
phases, 10 + 5 epochs, label smoothing, the trust values fitted on the
validation split) on the other classes only, with the one change a CPU and
no downloads force: the from-scratch `smallcnn` at 28x28, one channel, in
place of ImageNet's EfficientNetB0 at 224x224. Then every score below is
computed on the same model, for the official test images of the held-out
class (positives) and of the known classes (negatives):

- the scores `fit_trust` ships, fitted on the validation images: `knn`
  (the earlier default: cosine kNN on the backbone's pooled feature map),
  `relative_mahalanobis` (on the same features), `mahalanobis_pool`
  (`ood_method="mahalanobis", ood_layer="pool"`) and `combined` (the
  default, `DEFAULT_SCORE`: the larger of the kNN and the `pool`
  Mahalanobis scores, each standardized by its held-out validation
  scores), all through `predict_with_trust`, as `predict` and the exported
  model compute them (which score `train` fits does not change the model,
  so a results file measured under the earlier default stays valid);
- the softmax and logit scores: maximum softmax probability (`msp`),
  maximum logit, energy (`-logsumexp` of the logits; the logits are the
  `predictions` layer's input times its kernel plus bias);
- class-conditional Mahalanobis on the head's pooled features (`pool`,
  one shared covariance; Lee et al. 2018; the package's `fit_mahalanobis`
  and `trust.apply.mahalanobis_scores`) and ViM (the pooled features'
  residual outside their principal subspace, scaled, minus the energy;
  Wang et al. 2022), both fitted on the training images;
- test-time augmentation disagreement (`tta`): the mean total-variation
  distance between the probabilities of the image and of the image
  shifted by 2 pixels in each of 4 directions (a cheap ensemble; MC
  dropout is left out: Keras' `training=True` also puts BatchNorm in
  training mode).

Per score: AUROC, the share of held-out images flagged and of known
images flagged at a threshold accepting 95% of the validation images (the
shipped scores: their own fitted threshold), and the known-class accuracy.
On Fashion-MNIST each model also scores unrelated images (scikit-learn's
1,797 digits, as in bench_realdata's OOD column): the AUROC against the
known test images and the share flagged, so a score that gains on unseen
classes shows what it gives up on images far from all of them.
The default is chosen by a protocol that never looks at the class it is
scored on: for each held-out class, the score with the best mean AUROC on
the *other* held-out classes. The test split is never used to choose.

`--set KEY=VALUE` changes one of `train`'s settings for every model (a
lever on the representation, e.g. `--set augment=true`); the value is
read as JSON and recorded in the results' settings.

Data: Fashion-MNIST from Debian's `dataset-fashion-mnist` (600 training and
100 validation images per known class from the official training split;
all 10,000 official test images), and scikit-learn's 1,797 handwritten
digits upscaled to 28x28 (per class 60% train, 15% validation, 25% test,
stratified; the held-out class's images all count as unseen). Validation and
known test images that copy a training image (the package's leakage check,
exact or near) are dropped first; the JSON records how many.
"""

import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCORES = ("knn", "relative_mahalanobis", "mahalanobis_pool", "combined", "msp", "max_logit",
          "energy", "mahalanobis", "vim", "tta")
#: The scores `fit_trust` ships: name -> (ood_method, ood_layer).
SHIPPED = {"knn": ("knn", "feature_map"),
           "relative_mahalanobis": ("relative_mahalanobis", "feature_map"),
           "mahalanobis_pool": ("mahalanobis", "pool"),
           "combined": ("combined", "auto")}
DIGIT_NAMES = [str(d) for d in range(10)]
ACCEPT_RATE = 0.95
#: The score `fit_trust` and `train` fit by default (the tables mark it;
#: `medivision_tf.config.DEFAULT_OOD_METHOD`, not imported: rendering imports
#: no package, and a test checks the two agree); the earlier default, `knn`,
#: is named beside it.
DEFAULT_SCORE = "combined"
EARLIER_DEFAULT = "knn"


# === Data ===


def fashion_splits(data, held_out, per_class_train=600, per_class_val=100, seed=0):
    """Known-class train/val arrays from the official training split and
    the official test split divided into known and held-out images."""
    rng = np.random.default_rng(seed)
    images = data["train_images"][..., None].astype("float32")
    labels = data["train_labels"].astype("int64")
    train_idx, val_idx = [], []
    for label in range(10):
        if label == held_out:
            continue
        idx = rng.permutation(np.flatnonzero(labels == label))
        train_idx.append(idx[:per_class_train])
        val_idx.append(idx[per_class_train:per_class_train + per_class_val])
    train_idx, val_idx = np.concatenate(train_idx), np.concatenate(val_idx)
    test_x = data["test_images"][..., None].astype("float32")
    test_y = data["test_labels"].astype("int64")
    return _assemble(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
                     test_x, test_y, held_out)


def digits_splits(images, labels, held_out, seed=0):
    """Stratified 60 / 15 / 25 split of the known digits; every image of the
    held-out digit is unseen."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(labels == label))
        if label == held_out:
            parts["test"].append(idx)
            continue
        n_train, n_val = int(0.6 * len(idx)), int(0.15 * len(idx))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    train, val, test = (np.concatenate(parts[k]) for k in ("train", "val", "test"))
    return _assemble(images[train], labels[train], images[val], labels[val], images[test],
                     labels[test], held_out)


def _assemble(train_x, train_y, val_x, val_y, test_x, test_y, held_out):
    """Labels of the known classes renumbered 0..8 (the model's classes)."""
    known = [c for c in range(10) if c != held_out]
    remap = {c: i for i, c in enumerate(known)}
    unseen = test_y == held_out
    return {
        "train": (train_x, np.array([remap[c] for c in train_y], "int32")),
        "val": (val_x, np.array([remap[c] for c in val_y], "int32")),
        "test_known": (test_x[~unseen], np.array([remap[c] for c in test_y[~unseen]], "int32")),
        "test_unseen": test_x[unseen],
        "known": known,
    }


def drop_copies_of_training(splits):
    """The validation and known test images that duplicate a training image
    (exact or near: the package's leakage check) removed, and how many.

    Fashion-MNIST holds such copies; `train` refuses them in validation (the
    leakage guard), and in the test split they would make the known images
    look more familiar than new ones are."""
    from medivision_tf.data.checks.leakage import check_leakage
    from medivision_tf.data.sources.arrays import from_numpy

    train = from_numpy(splits["train"][0], splits["train"][1], name="train", split="train")
    held = {part: from_numpy(splits[part][0], splits[part][1], name=part, split=part)
            for part in ("val", "test_known")}
    pairs = check_leakage(train, held["val"], held["test_known"], allow=True)
    dropped = {}
    for part in held:
        copies = {int(path[len(part) + 1:-1]) for path in
                  pairs.loc[pairs["split_b"] == part, "path_b"]}
        keep = np.setdiff1d(np.arange(len(splits[part][0])), sorted(copies))
        splits[part] = (splits[part][0][keep], splits[part][1][keep])
        dropped[part] = len(copies)
    return dropped


def load_digits_28():
    """scikit-learn's digits as 28x28 one-channel images, 0-255, and labels."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([cv2.resize(image * (255.0 / 16.0), (28, 28),
                                  interpolation=cv2.INTER_LINEAR) for image in digits.images])
    return np.clip(images, 0, 255).astype("float32")[..., None], digits.target.astype("int64")


# === Scores (higher = more unusual) ===


def logit_scores(logits):
    """Maximum softmax probability, maximum logit and energy, as OOD scores."""
    from scipy.special import logsumexp, softmax  # SciPy comes with scikit-learn

    return {"msp": -softmax(logits, axis=1).max(axis=1), "max_logit": -logits.max(axis=1),
            "energy": -logsumexp(logits, axis=1)}


def mahalanobis_scores(train_features, train_labels, features):
    """Class-conditional Mahalanobis distance (shared covariance; Lee et al.
    2018): the package's own fit (`trust.fit_mahalanobis`, Ledoit-Wolf
    shrinkage) and score (`trust.apply.mahalanobis_scores`, `keras.ops`, what
    an exported model would run), here fitted on the training features."""
    import keras

    from medivision_tf.trust import fit_mahalanobis
    from medivision_tf.trust.apply import mahalanobis_scores as apply_mahalanobis

    whitening, centers = fit_mahalanobis(train_features, train_labels,
                                         int(train_labels.max()) + 1)
    return {name: keras.ops.convert_to_numpy(apply_mahalanobis(x, whitening, centers))
            for name, x in features.items()}


# ViM is in no library this project uses (not in Keras, scikit-learn or
# tf-keras-vis): written here from the paper.
def fit_vim(features, kernel, bias, logits, dims=None):
    """ViM's origin, principal subspace and scale, fitted on training features."""
    origin = -np.linalg.pinv(kernel.T) @ bias
    centred = features - origin
    dims = dims or max(1, features.shape[1] // 2)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    residual_basis = vt[dims:].T
    residual = np.linalg.norm(centred @ residual_basis, axis=1)
    alpha = logits.max(axis=1).mean() / max(residual.mean(), 1e-12)
    return {"origin": origin, "basis": residual_basis, "alpha": alpha}


def vim_scores(features, logits, fit):
    residual = np.linalg.norm((features - fit["origin"]) @ fit["basis"], axis=1)
    return fit["alpha"] * residual + logit_scores(logits)["energy"]


def shifted_copies(images, pixels=2):
    """The images shifted by `pixels` right, left, down and up (edges zero)."""
    copies = []
    for axis, step in ((2, pixels), (2, -pixels), (1, pixels), (1, -pixels)):
        shifted = np.roll(images, step, axis=axis)
        index = [slice(None)] * images.ndim
        index[axis] = slice(0, step) if step > 0 else slice(step, None)
        shifted[tuple(index)] = 0
        copies.append(shifted)
    return copies


def tta_scores(probabilities, augmented_probabilities):
    """Mean total-variation distance between the image's and its copies' probabilities."""
    return np.mean([0.5 * np.abs(probabilities - p).sum(axis=1)
                    for p in augmented_probabilities], axis=0)


# === Summaries ===


def score_metrics(known_scores, unseen_scores, threshold):
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.zeros(len(known_scores)), np.ones(len(unseen_scores))]
    return {"auroc": float(roc_auc_score(truth, np.r_[known_scores, unseen_scores])),
            "flagged_unseen": float((unseen_scores > threshold).mean()),
            "flagged_known": float((known_scores > threshold).mean())}


def scores_measured(per_class):
    """The scores every class's result holds, in `SCORES` order (a results
    file written before a score was added lacks it)."""
    return [s for s in SCORES if all(s in r["scores"] for r in per_class.values())]


def choose_without_looking(per_class):
    """For each held-out class, the score with the best mean AUROC over the
    *other* classes (the class scored is never looked at), and its figures."""
    measured = scores_measured(per_class)
    chosen = {}
    for held_out in per_class:
        others = [c for c in per_class if c != held_out]
        if not others:
            continue
        mean_auroc = {s: np.mean([per_class[c]["scores"][s]["auroc"] for c in others])
                      for s in measured}
        best = max(measured, key=lambda s: mean_auroc[s])
        chosen[held_out] = dict(score=best, **per_class[held_out]["scores"][best])
    return chosen


def summarize(per_class):
    """Per score: mean and worst AUROC (and which class), mean flag shares;
    the protocol's choice; the known-class accuracy."""
    summary = {"scores": {}}
    for score in scores_measured(per_class):
        rows = {c: r["scores"][score] for c, r in per_class.items()}
        worst = min(rows, key=lambda c: rows[c]["auroc"])
        summary["scores"][score] = {
            "mean_auroc": float(np.mean([r["auroc"] for r in rows.values()])),
            "worst_auroc": rows[worst]["auroc"], "worst_class": worst,
            "flagged_unseen": float(np.mean([r["flagged_unseen"] for r in rows.values()])),
            "flagged_known": float(np.mean([r["flagged_known"] for r in rows.values()])),
        }
        if all("unrelated_auroc" in r for r in rows.values()):
            summary["scores"][score].update(
                unrelated_auroc=float(np.mean([r["unrelated_auroc"] for r in rows.values()])),
                flagged_unrelated=float(np.mean([r["flagged_unrelated"]
                                                 for r in rows.values()])))
    chosen = choose_without_looking(per_class)
    if chosen:
        summary["protocol"] = {
            "chosen": {c: v["score"] for c, v in chosen.items()},
            "mean_auroc": float(np.mean([v["auroc"] for v in chosen.values()])),
            "worst_auroc": float(min(v["auroc"] for v in chosen.values())),
            "flagged_unseen": float(np.mean([v["flagged_unseen"] for v in chosen.values()])),
            "flagged_known": float(np.mean([v["flagged_known"] for v in chosen.values()])),
        }
    summary["accuracy_known"] = float(np.mean([r["accuracy_known"] for r in per_class.values()]))
    return summary


# === One held-out class ===


def run_one(splits, class_names, settings, seed=0, train_options=None, unrelated=None):
    """Trains on the known classes and scores every method on the test images
    (and on `unrelated` images, when given)."""
    import keras

    from medivision_tf.training import train
    from medivision_tf.trust import feature_model, fit_trust, predict_with_trust

    keras.backend.clear_session()
    dropped = drop_copies_of_training(splits)
    train_x, train_y = splits["train"]
    unseen_x = splits["test_unseen"]
    names = [class_names[c] for c in splits["known"]]
    val_x, val_y = splits["val"]
    known_x, known_y = splits["test_known"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-unseen-") as run_dir:
        result = train(dict(backbone="smallcnn", weights=None, image_size=28, channels=1,
                            epochs=settings["epochs"],
                            fine_tune_epochs=settings["fine_tune_epochs"], seed=seed,
                            tensorboard=False, **(train_options or {})),
                       train_data=(train_x, train_y), val_data=(val_x, val_y),
                       class_names=names, run_dir=run_dir, verbose=0)
    train_seconds = time.perf_counter() - start
    model = result.model

    def pooled_and_logits(images):
        features, probabilities = feature_model(model, "pool").predict(
            images, batch_size=256, verbose=0)
        kernel, bias = model.get_layer("predictions").get_weights()
        return features, features @ kernel + bias, probabilities

    def shipped(method, layer):
        fit_trust(model, val_x, val_y, ood_method=method, ood_layer=layer, seed=seed)
        return [predict_with_trust(model, x, batch_size=256) for x in images_of.values()]

    images_of = {"val": val_x, "known": known_x, "unseen": unseen_x}
    if unrelated is not None:
        images_of["unrelated"] = unrelated
    raw = {name: {} for name in images_of}
    thresholds = {}
    for name, (method, layer) in SHIPPED.items():
        outputs = shipped(method, layer)
        for part, out in zip(raw, outputs):
            raw[part][name] = out["ood_score"]
        thresholds[name] = float(get_threshold(model))
    train_features, train_logits, _ = pooled_and_logits(train_x)
    kernel, bias = model.get_layer("predictions").get_weights()
    vim = fit_vim(train_features, kernel, bias, train_logits)
    accuracy = None
    pooled = {}
    for part, images in images_of.items():
        features, logits, probabilities = pooled_and_logits(images)
        pooled[part] = features
        raw[part].update(logit_scores(logits))
        raw[part]["vim"] = vim_scores(features, logits, vim)
        augmented = [model.predict(copy, batch_size=256, verbose=0)
                     for copy in shifted_copies(images)]
        raw[part]["tta"] = tta_scores(probabilities, augmented)
        if part == "known":
            accuracy = float((probabilities.argmax(axis=1) == known_y).mean())
    for part, values in mahalanobis_scores(train_features, train_y, pooled).items():
        raw[part]["mahalanobis"] = values
    scores = {}
    for score in SCORES:
        threshold = thresholds.get(score, float(np.quantile(raw["val"][score], ACCEPT_RATE)))
        scores[score] = score_metrics(raw["known"][score], raw["unseen"][score], threshold)
        if unrelated is not None:
            far = score_metrics(raw["known"][score], raw["unrelated"][score], threshold)
            scores[score].update(unrelated_auroc=far["auroc"],
                                 flagged_unrelated=far["flagged_unseen"])
    return {"accuracy_known": accuracy, "scores": scores, "num_known": int(len(known_x)),
            "num_unseen": int(len(unseen_x)), "num_train": int(len(train_x)),
            "copies_of_training_dropped": dropped,
            "train_seconds": round(train_seconds, 1)}


def get_threshold(model):
    """The OOD threshold `fit_trust` stored in the model."""
    from medivision_tf.trust import get_trust

    return get_trust(model)["ood"]["threshold"]


# === Table ===


def render_table(results):
    """The Markdown of docs/trust.md and the README (no TensorFlow)."""
    lines = []
    for dataset, block in results["datasets"].items():
        summary = block.get("summary")
        if not summary:
            continue
        done = len(block["classes"])
        far = all("unrelated_auroc" in row for row in summary["scores"].values())
        lines += [f"**{block['title']}** ({done} of 10 classes held out in turn; known-class "
                  f"accuracy {summary['accuracy_known']:.3f} on average):", "",
                  "| score | mean AUROC | worst AUROC (class) | unseen flagged | known flagged |"
                  + (" unrelated AUROC | unrelated flagged |" if far else ""),
                  "|---|---|---|---|---|" + ("---|---|" if far else "")]
        for score in SCORES:
            if score not in summary["scores"]:
                continue
            row = summary["scores"][score]
            mark = " (default)" if score == DEFAULT_SCORE else ""
            lines.append(f"| {score}{mark} | {row['mean_auroc']:.3f} | {row['worst_auroc']:.3f} "
                         f"({row['worst_class']}) | {row['flagged_unseen']:.1%} | "
                         f"{row['flagged_known']:.1%} |"
                         + (f" {row['unrelated_auroc']:.3f} | {row['flagged_unrelated']:.1%} |"
                            if far else ""))
        protocol = summary.get("protocol")
        if protocol:
            picks = sorted(set(protocol["chosen"].values()))
            lines.append(f"| chosen on the other classes ({', '.join(picks)}) | "
                         f"{protocol['mean_auroc']:.3f} | {protocol['worst_auroc']:.3f} | "
                         f"{protocol['flagged_unseen']:.1%} | {protocol['flagged_known']:.1%} |"
                         + (" | |" if far else ""))
        lines.append("")
        if far:
            lines += [f"Unrelated: scikit-learn's {block['num_unrelated']:,} handwritten digits, "
                      "scored by every model against its known test images.", ""]
        for score in (DEFAULT_SCORE, EARLIER_DEFAULT):
            if score not in summary["scores"]:
                continue  # a results file from before the score existed
            per_class = ", ".join(f"{c} {r['scores'][score]['auroc']:.2f}"
                                  for c, r in block["classes"].items())
            label = "Default" if score == DEFAULT_SCORE else "Earlier default"
            lines += [f"{label} (`{score}`) AUROC per held-out class: {per_class}.", ""]
    settings = results["settings"]
    options = "".join(f", {k}={v}" for k, v in settings.get("train_options", {}).items())
    lines.append(
        f"`benchmarks/bench_unseen.py` ({settings['epochs']} + {settings['fine_tune_epochs']} "
        f"epochs{options}, smallcnn at 28x28, seed {settings['seed']}; thresholds accept "
        f"{ACCEPT_RATE:.0%} of validation images), measured {results['machine']['date'][:10]}"
        + (" (**partial run**)" if results.get("partial") else "") + ".")
    return "\n".join(lines)


def render_summary(results, *checks):
    """The README's lines: the default score, the earlier default and the
    protocol's choice per dataset, for `results` and for each further run in
    `checks` (another seed, say; no TensorFlow)."""
    lines = []
    for run in (results,) + checks:
        seed = run["settings"]["seed"]
        for block in run["datasets"].values():
            summary = block.get("summary")
            if summary:
                lines.append(_summary_line(block, summary, seed if run is not results else None))
    files = ", ".join(f"seed {run['settings']['seed']}: {run['machine']['date'][:10]}"
                      + ("; **partial run**" if run.get("partial") else "")
                      for run in (results,) + checks)
    lines.append(f"(`benchmarks/bench_unseen.py`, `benchmarks/results/unseen*.json`; {files}.)")
    return "\n".join(lines)


def _summary_line(block, summary, seed=None):
    # A results file from before the default score existed describes the earlier one.
    default_score = DEFAULT_SCORE if DEFAULT_SCORE in summary["scores"] else EARLIER_DEFAULT
    default = summary["scores"][default_score]
    earlier = summary["scores"][EARLIER_DEFAULT]
    title = block["title"] + (f" with seed {seed} (an independent check)" if seed is not None
                              else "")
    line = (f"- {title}, {len(block['classes'])} classes held out in turn: the "
            f"shipped flag (`{default_score}`, the default"
            f"{'' if default_score == DEFAULT_SCORE else ' when measured'}) mean AUROC "
            f"{default['mean_auroc']:.3f}, worst {default['worst_auroc']:.3f} "
            f"({default['worst_class']}), {default['flagged_unseen']:.0%} of unseen-class "
            f"images flagged, {default['flagged_known']:.0%} of known")
    if default_score != EARLIER_DEFAULT:
        line += (f"; the earlier default `{EARLIER_DEFAULT}` mean AUROC "
                 f"{earlier['mean_auroc']:.3f}, worst {earlier['worst_auroc']:.3f}, "
                 f"{earlier['flagged_unseen']:.0%} flagged")
        if "flagged_unrelated" in default:
            line += (f" (unrelated images flagged: `{default_score}` "
                     f"{default['flagged_unrelated']:.0%}, `{EARLIER_DEFAULT}` "
                     f"{earlier['flagged_unrelated']:.0%})")
    protocol = summary.get("protocol")
    if protocol:
        best = max(summary["scores"], key=lambda s: summary["scores"][s]["mean_auroc"])
        line += (f"; the best score measured, `{best}`, mean AUROC "
                 f"{summary['scores'][best]['mean_auroc']:.3f}; chosen class by class "
                 f"without looking at it, {protocol['mean_auroc']:.3f}")
    return line + "."


# === Main ===


def parse_settings(pairs):
    """`["augment=true", ...]` as `{"augment": True, ...}` (values read as JSON,
    else kept as text); the keys are checked by `train`'s config."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE. Received: {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def main(argv=None):
    parser = common.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="fashion,digits")
    parser.add_argument("--classes", default=",".join(map(str, range(10))))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="one of train's settings for every model (VALUE read as JSON)")
    args = parser.parse_args(argv)
    import bench_realdata

    settings = dict(epochs=1, fine_tune_epochs=1) if args.quick else dict(
        epochs=10, fine_tune_epochs=5)
    settings.update(seed=args.seed, datasets=args.datasets.split(","),
                    classes=[int(c) for c in args.classes.split(",")])
    train_options = parse_settings(args.set)
    if train_options:  # recorded only when given: earlier results files resume as before
        settings["train_options"] = train_options
        from medivision_tf.training import TrainConfig

        TrainConfig.from_dict(train_options)  # an unknown key or bad value: refused now
    results = None
    if args.json and os.path.exists(args.json) and not args.quick:
        import json

        with open(args.json) as handle:
            previous = json.load(handle)
        if previous.get("settings") == settings:
            results = previous
            print(f"Resuming {args.json}.", flush=True)
    if results is None:
        results = {"settings": settings, "datasets": {}, "partial": True,
                   "machine": common.machine_info()}
    for dataset in settings["datasets"]:
        if dataset == "fashion":
            data = bench_realdata.load_fashion_mnist()
            if data is None:
                raise SystemExit("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist")
            names, title = bench_realdata.CLASS_NAMES, "Fashion-MNIST"
            if args.quick:  # a tenth of the images: checks the code path only
                data = {k: v[::10] for k, v in data.items()}

            def split(k, data=data):
                return fashion_splits(data, k, *((60, 10) if args.quick else (600, 100)),
                                      seed=args.seed)

            unrelated = load_digits_28()[0][::10 if args.quick else 1]
        elif dataset == "digits":
            images, labels = load_digits_28()
            names, title, unrelated = DIGIT_NAMES, "scikit-learn digits", None

            def split(k, images=images, labels=labels):
                return digits_splits(images, labels, k, seed=args.seed)
        else:
            raise SystemExit(f"--datasets: 'fashion' or 'digits'. Received: {dataset!r}")
        block = results["datasets"].setdefault(dataset, {"title": title, "classes": {}})
        if unrelated is not None:
            block["num_unrelated"] = int(len(unrelated))
        for k in settings["classes"]:
            if names[k] in block["classes"]:
                continue
            print(f"{dataset}: holding out {names[k]} ...", flush=True)
            block["classes"][names[k]] = run_one(split(k), names, settings, seed=args.seed,
                                                 train_options=train_options,
                                                 unrelated=unrelated)
            block["summary"] = summarize(block["classes"])
            common.write_results(results, args.json)  # after each class: resumable
    results["partial"] = False
    common.write_results(results, args.json)
    print(render_table(results))
    return results


if __name__ == "__main__":
    main()
