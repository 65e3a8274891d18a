"""Leakage between splits: `check_leakage`, and the record a run keeps of it.

`check_leakage(train, val, test)` hashes every image of the three tables once
(`hashes.image_hashes`) and refuses a split in which a validation or test
image duplicates a training image, exact or near (`duplicates.find_duplicates`);
pairs inside one split are not leakage. `check_duplicates(config, ...)` is
what a training run calls: with `allow_duplicates` the pairs are found all
the same and returned as the run's record (`inputs.json`,
`leaking_pairs.csv`, the test report's `metrics.json`); split tables checked
together carry one token (`mark_checked`), so they are not hashed again.

Example:

```python
from medivision_tf.data import check_leakage, split_table

train, val, test = split_table(table, seed=0)
check_leakage(train, val, test)     # raises when a test image copies a train image
```
"""

import json
import uuid

import numpy as np
import pandas as pd

from medivision_tf.data.checks.duplicates import PAIR_COLUMNS, find_duplicates
from medivision_tf.data.checks.near_pairs import NEAR_THRESHOLD
from medivision_tf.data.shards.folder import is_shard_table

def check_leakage(train, val=None, test=None, *, threshold=NEAR_THRESHOLD, decode=None,
                  search="auto", shown=5, verbose=False, allow=False):
    """Refuses a split in which a validation or test image duplicates a training image.

    Every image of the three tables is hashed once (`image_hashes`); pairs
    between a training image and a validation or test image, exact or near
    (`find_duplicates`), are leakage. Pairs inside one split are not.

    Args:
        train: the training sample table.
        val, test: the validation and test tables (None or empty: none).
        threshold: near-duplicate distance (see `find_duplicates`).
        decode: decode options for files (see `image_hashes`).
        search: see `near_pairs`.
        shown: how many pairs the error names.
        verbose: progress bar while hashing.
        allow: return the leaking pairs instead of raising (what
            `allow_duplicates=True` does: the run records them).

    Returns:
        The DataFrame of leaking pairs (`path_a`, `path_b`, `kind`,
        `distance`, `split_a`, `split_b`): empty, or (with `allow=True`) the
        pairs found. Its `attrs["held_out"]` maps "val"/"test" to the
        held-out images that duplicate a training image.

    Raises:
        ValueError: some validation/test image duplicates a training image;
            the message gives the counts, the first `shown` pairs, and the two
            ways on (remove the copies, or `allow_duplicates=True` /
            `--allow-duplicates`).

    Example:

    ```python
    train, val, test = split_table(table, seed=0)
    check_leakage(train, val, test)     # raises when a test image copies a train image
    ```
    """
    parts = [(name, part) for name, part in (("train", train), ("val", val), ("test", test))
             if part is not None and len(part)]
    if len(parts) < 2 or parts[0][0] != "train":
        none = pd.DataFrame(columns=[*PAIR_COLUMNS, "split_a", "split_b"])
        none.attrs.update(threshold=int(threshold), held_out={"val": [], "test": []})
        return none
    keep = [c for c in ("path", "image", "source_path") if c in train]
    both = pd.concat([part[[c for c in keep if c in part]].assign(split=name)
                      for name, part in parts], ignore_index=True)
    both.attrs.update(train.attrs)
    pairs = find_duplicates(both, threshold=threshold, decode=decode, search=search,
                            verbose=verbose)
    crossing = (pairs["split_a"] == "train") != (pairs["split_b"] == "train")
    leaks = pairs[crossing].reset_index(drop=True)
    # Name the held-out image first, then the training image it copies.
    held = np.where(leaks["split_a"] == "train", leaks["path_b"], leaks["path_a"])
    seen = np.where(leaks["split_a"] == "train", leaks["path_a"], leaks["path_b"])
    held_split = np.where(leaks["split_a"] == "train", leaks["split_b"], leaks["split_a"])
    leaks.attrs["threshold"] = int(threshold)
    leaks.attrs["held_out"] = {
        split: sorted({str(h) for h, s in zip(held, held_split) if s == split})
        for split in ("val", "test")}
    if leaks.empty or allow:
        return leaks
    lines = [
        f"  {split} {h!r} ~ train {s!r} ({kind}, distance {d})"
        for split, h, s, kind, d in zip(held_split[:shown], held[:shown], seen[:shown],
                                        leaks["kind"][:shown], leaks["distance"][:shown])
    ]
    counts = pd.Series(held_split).groupby(held).first().value_counts()
    images = ", ".join(f"{int(counts.get(s, 0))} {s}" for s in ("val", "test") if s in counts)
    exact = int((leaks["kind"] == "exact").sum())
    raise ValueError(
        f"Leakage: {int(counts.sum())} held-out image(s) ({images}) duplicate training "
        f"images ({len(leaks)} pairs: "
        f"{exact} exact, {len(leaks) - exact} near, perceptual-hash distance <= {threshold} "
        f"of 256 bits). A copy on both sides of the split inflates every result:\n"
        + "\n".join(lines)
        + (f"\n  ... and {len(leaks) - shown} more pairs" if len(leaks) > shown else "")
        + "\nRemove or regroup the copies (`medivision scan SOURCE --duplicates pairs.csv` "
        "lists every pair), or train anyway with --allow-duplicates (config key "
        "allow_duplicates=True)."
    )


def check_duplicates(config, train, val=None, test=None, what="The data"):
    """Refuses leakage: a val/test image that duplicates a training image.

    `check_leakage` on the sample tables (each
    image hashed once, decoded with the config's decode options). With
    `config.allow_duplicates` the leaking pairs are found all the same and
    returned, so the run records them (`inputs.json`, `leaking_pairs.csv`,
    the test report's `metrics.json`) instead of leaving no trace. Shard
    tables are left alone (their images are checked when the shards are
    written from a source), and so are a user's tf.data datasets (None here).

    Returns:
        None when nothing was checked (shards, tf.data), else a dict:
        `checked` (True), `allowed`, `threshold`, `leaking_pairs`, `exact`,
        `near`, `held_out_images` (`{"val": n, "test": n}`), `held_out`
        (the held-out paths per split) and `pairs` (one dict per pair).

    Raises:
        ValueError: naming the count and a few pairs (not allowed).

    Example:

    ```python
    splits, _ = load_source(config)
    check_duplicates(config, splits["train"], splits["val"], splits["test"])
    ```
    """
    if train is None or is_shard_table(train):
        return None
    val, test = (None if t is None or is_shard_table(t) else t for t in (val, test))
    allowed = bool(config.allow_duplicates)
    try:
        leaks = check_leakage(train, val, test, decode=config.decode_options(), allow=allowed)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    held_out = leaks.attrs["held_out"]
    exact = int((leaks["kind"] == "exact").sum())
    return {
        "checked": True, "allowed": allowed, "threshold": leaks.attrs["threshold"],
        "leaking_pairs": int(len(leaks)), "exact": exact, "near": int(len(leaks)) - exact,
        "held_out_images": {split: len(paths) for split, paths in held_out.items()},
        "held_out": held_out,
        "pairs": json.loads(leaks.to_json(orient="records")),
    }


def leakage_of(table):
    """The `check_duplicates` record a split table carries (None: unchecked)."""
    return None if table is None else table.attrs.get(_LEAKAGE)


_CHECKED = "duplicates_checked"
_LEAKAGE = "leakage"


def mark_checked(splits, leakage=None):
    """Marks split tables checked together by `check_duplicates` (one token in
    their attrs), so `training_inputs` does not hash them again; `leakage`
    (what `check_duplicates` returned) travels with them, for the run's
    files and the test report."""
    token = uuid.uuid4().hex
    for table in splits.values():
        table.attrs[_CHECKED] = token
        if leakage is not None:
            table.attrs[_LEAKAGE] = leakage
    return splits


def checked_together(train, *others):
    """Whether `train` and the non-empty `others` were checked as one split."""
    token = None if train is None else train.attrs.get(_CHECKED)
    return token is not None and all(
        t is None or not len(t) or t.attrs.get(_CHECKED) == token for t in others
    )
