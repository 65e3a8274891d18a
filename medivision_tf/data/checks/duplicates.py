"""Exact and near-duplicate images: `find_duplicates`.

A copy of a training image in the test split (the same file saved twice, a
resized, recompressed, re-encoded or slightly brightened copy) lets a model
"recognise" the test image instead of classifying it: the classic way medical
image classifiers report 95-99%. `find_duplicates` finds such pairs within
and across splits; `leakage.check_leakage` refuses a split in which a
validation or test image duplicates a training image (what `train` calls
unless `allow_duplicates=True`).

Every image is hashed once (`hashes.image_hashes`: an exact digest of its
decoded pixels and a 256-bit perceptual hash). Exact pairs come from a
dictionary of digests (linear); near pairs are searched among one image per
exact group (`near_pairs.near_pairs`: why 24 bits, and how 60,000 images are
searched without 60,000² comparisons).

Example:

```python
import numpy as np
from medivision_tf.data import find_duplicates, from_numpy

rng = np.random.default_rng(0)
images = rng.integers(0, 255, (6, 32, 32), dtype=np.uint8)
images[5] = np.clip(images[0] * 1.05, 0, 255)          # a brightened copy of image 0
table = from_numpy(images, np.arange(6) % 2)
find_duplicates(table)[["path_a", "path_b", "kind", "distance"]]
#      path_a    path_b  kind  distance
# 0  array[0]  array[5]  near         0
```
"""

import numpy as np
import pandas as pd

from medivision_tf.data.checks.hashes import check_verbose, image_hashes, paths_table
from medivision_tf.data.checks.near_pairs import (
    HASH_SIZE,
    NEAR_THRESHOLD,
    SEARCHES,
    near_pairs,
)
from medivision_tf.data.io.frame_paths import split_frame

PAIR_COLUMNS = ("path_a", "path_b", "kind", "distance")


def _source_files(table):
    """The file of each row (frames of one file share it); arrays: the row."""
    if "image" in table or "path" not in table:
        return np.array([f"row {i}" for i in range(len(table))], dtype=object)
    files = np.array([split_frame(str(p))[0] for p in table["path"]], dtype=object)
    if "source_path" in table:
        given = table["source_path"].notna().to_numpy()
        files[given] = table["source_path"][given].astype(str).to_numpy()
    return files


def find_duplicates(data, *, threshold=NEAR_THRESHOLD, hashes=None, decode=None,
                    search="auto", hash_size=HASH_SIZE, verbose="auto"):
    """Pairs of exact and near-duplicate images, within and across splits.

    Frames or slices of one file (a NIfTI volume's neighbouring slices) are
    not paired with each other: they are one group and never split apart.

    Args:
        data: a sample table (files or arrays; with a `split` column the
            pairs name each image's split) or a sequence of image paths.
        threshold: the largest perceptual-hash distance (bits of 256) that
            counts as a near duplicate (default `NEAR_THRESHOLD`, 24; see
            `near_pairs`' module docstring for the measured trade-off).
        hashes: `image_hashes(data)` when already computed (nothing is
            decoded again).
        decode: decode options for files (see `image_hashes`).
        search: `"auto"`, `"exhaustive"` or `"bands"` (see `near_pairs`).
        hash_size: perceptual hash size (see `image_hashes`).
        verbose: progress bar while hashing (`"auto"`, True, False).

    Returns:
        A DataFrame of pairs, one row each, `path_a` the earlier row:
        `path_a`, `path_b`, `kind` (`"exact"`: the same decoded pixels;
        `"near"`: perceptual hashes within `threshold`), `distance` (Hamming
        distance in bits, 0 for exact), plus `split_a` and `split_b` when the
        table has a `split` column. Exact pairs first, then by distance.
        Undecodable files are left out (`medivision_tf.data.scan` reports
        them; their number is in `attrs["unhashed"]`), and so are blank
        images (one value everywhere: empty slices, black frames), which
        all hash alike and hold nothing to leak.

    Example:

    ```python
    pairs = find_duplicates(from_directory("chest_xray/"))
    pairs[pairs["split_a"] != pairs["split_b"]]      # copies across splits
    ```
    """
    check_verbose(verbose)
    if search not in SEARCHES:
        raise ValueError(f"Unknown search {search!r}. Choose one of: {', '.join(SEARCHES)}.")
    table = paths_table(data)
    if hashes is None:
        hashes = image_hashes(table, hash_size=hash_size, decode=decode, verbose=verbose)
    if len(hashes) != len(table):
        raise ValueError(
            f"`hashes` has {len(hashes)} rows but the table has {len(table)}: pass "
            "image_hashes(table) of this table."
        )
    paths = hashes["path"].to_numpy(dtype=object)
    files = _source_files(table)
    # A copy: pandas 3 (copy-on-write) hands out read-only views.
    ok = hashes["pixel_hash"].notna().to_numpy().copy()
    # A blank image (one value everywhere: an empty slice, a black frame) has no
    # content to leak, and every blank image hashes alike: never paired.
    ok &= ~hashes["blank"].eq(True).to_numpy()  # None (unhashed) is not blank
    rows = np.flatnonzero(ok)
    digests = hashes["pixel_hash"].to_numpy(dtype=object)[rows]
    # One image per exact group is searched for near pairs; groups expand after.
    groups = pd.Series(np.arange(len(rows))).groupby(pd.Series(digests), sort=False).indices
    members = [rows[np.asarray(g)] for g in groups.values()]
    leaders = np.array([m[0] for m in members], dtype=np.int64)
    pairs_i, pairs_j, kinds, distances = [], [], [], []
    for group in members:
        if len(group) > 1:
            a, b = np.triu_indices(len(group), 1)
            pairs_i.append(group[a])
            pairs_j.append(group[b])
            kinds.append(np.full(len(a), "exact", dtype=object))
            distances.append(np.zeros(len(a), np.int64))
    phashes = hashes["phash"].to_numpy(dtype=object)[leaders]
    li, lj, ld = near_pairs(phashes, threshold, search)
    for a, b, d in zip(li, lj, ld):
        left, right = members[a], members[b]
        if len(left) == 1 and len(right) == 1:
            continue
        grid_a, grid_b = np.meshgrid(left, right, indexing="ij")
        pairs_i.append(grid_a.ravel())
        pairs_j.append(grid_b.ravel())
        kinds.append(np.full(grid_a.size, "near", dtype=object))
        distances.append(np.full(grid_a.size, d, np.int64))
    single = np.array([len(members[a]) == 1 and len(members[b]) == 1
                       for a, b in zip(li, lj)], bool)
    if single.any():
        pairs_i.append(leaders[li[single]])
        pairs_j.append(leaders[lj[single]])
        kinds.append(np.full(int(single.sum()), "near", dtype=object))
        distances.append(ld[single])
    if pairs_i:
        i = np.concatenate(pairs_i)
        j = np.concatenate(pairs_j)
        first, second = np.minimum(i, j), np.maximum(i, j)
        kind = np.concatenate(kinds)
        distance = np.concatenate(distances)
    else:
        first = second = distance = np.zeros(0, np.int64)
        kind = np.zeros(0, dtype=object)
    other_file = files[first] != files[second]
    first, second, kind, distance = (first[other_file], second[other_file],
                                     kind[other_file], distance[other_file])
    pairs = pd.DataFrame({"path_a": paths[first], "path_b": paths[second], "kind": kind,
                          "distance": distance.astype(np.int64)})
    if "split" in table:
        split = table["split"].astype(str).to_numpy()
        pairs["split_a"] = split[first]
        pairs["split_b"] = split[second]
    pairs["_a"], pairs["_b"] = first, second
    pairs = pairs.sort_values(["kind", "distance", "_a", "_b"]).drop(columns=["_a", "_b"])
    pairs = pairs.reset_index(drop=True)
    pairs.attrs["threshold"] = int(threshold)
    pairs.attrs["unhashed"] = int(hashes["pixel_hash"].isna().sum())
    return pairs
