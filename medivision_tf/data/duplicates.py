"""Exact and near-duplicate images, and leakage between splits.

A copy of a training image in the test split (the same file saved twice, a
resized, recompressed, re-encoded or slightly brightened copy) lets a model
"recognise" the test image instead of classifying it: the classic way medical
image classifiers report 95-99%. `find_duplicates` finds such pairs;
`check_leakage` refuses a split in which a validation or test image duplicates
a training image (what `train` calls unless `allow_duplicates=True`).

Every image is decoded once, by the package's reader (`decode.read_images`:
DICOM windowing, 16-bit scaling, NIfTI slices exactly as for training), and
gets two hashes:

- **exact**: a BLAKE2 digest of its decoded pixels (rounded to 0-255, as the
  model sees them), so a file saved twice or re-encoded losslessly (PNG to
  BMP or TIFF) is a pair with `distance` 0;
- **near**: the perceptual hash of `imagehash.phash` with `hash_size=16`
  (256 bits: the signs of the 16x16 lowest-frequency DCT coefficients of the
  gray image against their median). Two images are near duplicates when the
  Hamming distance of their hashes is at most `threshold` (`NEAR_THRESHOLD`).

Why 24 of 256 bits (measured with the tests' transforms on real photographs:
Fashion-MNIST, 400 images x 10 transforms, against all 50 million pairs of
its 10,000 distinct test images): planted copies (2x and 3.5x enlarged,
0.75x reduced, JPEG quality 50/75/90, PNG to JPEG, +15 and x1.1 / x0.9
brightness, enlarged + JPEG 70) are found at 98.5% (the worst, JPEG quality
50 of a 28-pixel image: 87%), while 7 pairs of distinct images come as close
(1.4e-7 of all pairs; 2 of the 7 are real duplicates in the data set). At 28
bits recall is 99.2% but 16 pairs are that close, at 32 bits 99.7% and 37.
The 64-bit `phash` is much weaker (98.1% recall at 4 bits, 4,062 distinct
pairs as close). See docs/data.md, "Duplicates and leakage".

Scaling: exact pairs come from a dictionary of digests (linear). Near pairs
are searched among one image per exact group, either `"exhaustive"`
(numpy-vectorised XOR + popcount over blocks, every pair compared) or with
`"bands"`: the 256 bits are cut into bands (a fixed random permutation, 16
bits each for the default threshold) and only images that agree on a whole
band are compared, so no 60,000² comparisons are made. By the pigeonhole
argument a pair at distance d agrees on some band unless all bands hold one
of its d differing bits; the band width is the widest whose miss rate at the
threshold distance (differing bits at random) is at most 5% (copies are
mostly 4 bits apart, where it is ~1e-13). On the 60,000 Fashion-MNIST training
images the band search found all 239 pairs within 24 bits that the
exhaustive search finds, in about 1 s against 56 s. `search="auto"` compares
exhaustively up to `EXHAUSTIVE_PAIRS` pairs.

Example:

```python
import numpy as np
from medivision_tf.data import from_numpy
from medivision_tf.data.duplicates import find_duplicates

rng = np.random.default_rng(0)
images = rng.integers(0, 255, (6, 32, 32), dtype=np.uint8)
images[5] = np.clip(images[0] * 1.05, 0, 255)          # a brightened copy of image 0
table = from_numpy(images, np.arange(6) % 2)
find_duplicates(table)[["path_a", "path_b", "kind", "distance"]]
#      path_a    path_b  kind  distance
# 0  array[0]  array[5]  near         0
```
"""

import hashlib
import os

import numpy as np
import pandas as pd

NEAR_THRESHOLD = 24
HASH_SIZE = 16
PAIR_COLUMNS = ("path_a", "path_b", "kind", "distance")
HASH_COLUMNS = ("path", "pixel_hash", "phash", "blank", "error")
SEARCHES = ("auto", "exhaustive", "bands")
#: `search="auto"` compares every pair up to this many pairs (~6,300 images).
EXHAUSTIVE_PAIRS = 20_000_000
#: The band width is chosen so a pair at the threshold distance is missed at
#: most this often (differing bits at random positions).
BAND_MISS = 0.05
_BAND_WIDTHS = (16, 14, 12, 10, 8)
_DECODE_BATCH = 256
_BLOCK_ELEMENTS = 1 << 22  # pairs per exhaustive block (~4M: a few MB per array)


def _check_hash_size(hash_size):
    if not isinstance(hash_size, (int, np.integer)) or hash_size < 8 or hash_size % 4:
        raise ValueError(
            f"`hash_size` must be a multiple of 4, at least 8 (16 gives 256-bit hashes). "
            f"Received: hash_size={hash_size!r}"
        )
    return int(hash_size)


def _check_verbose(verbose):
    if verbose not in ("auto", 0, 1, True, False):
        raise ValueError(
            f"`verbose` must be 'auto', 0, 1, True or False. Received: verbose={verbose!r}"
        )


def _as_table(data, what="data"):
    """A sample table, or a list of paths as a one-column table."""
    if isinstance(data, pd.DataFrame):
        if "path" not in data and "image" not in data:
            raise ValueError(
                f"`{what}` must have a 'path' or an 'image' column. Columns: {list(data.columns)}"
            )
        return data
    if isinstance(data, (str, bytes, os.PathLike)):
        data = [data]
    try:
        paths = [os.fsdecode(p) for p in data]
    except TypeError:
        raise TypeError(
            f"`{what}` must be a sample table (pandas DataFrame) or a sequence of image "
            f"paths. Received: {type(data).__name__}"
        ) from None
    return pd.DataFrame({"path": paths})


def _decode_options(table, decode):
    """`decode.read_images` keyword arguments: from `decode` (a DecodeOptions or
    dict of its fields) or the table's attrs."""
    from medivision_tf.config import DecodeOptions

    if decode is None:
        attrs = table.attrs
        decode = DecodeOptions(
            dicom_window=attrs.get("dicom_window", "auto"),
            frames=attrs.get("frames", "middle"),
            nifti_axis=attrs.get("nifti_axis", "axial"),
        )
    elif isinstance(decode, dict):
        decode = DecodeOptions.from_dict(decode)
    if not isinstance(decode, DecodeOptions):
        raise TypeError(
            "`decode` must be a medivision_tf.config.DecodeOptions, a dict of its fields or "
            f"None (the table's own options). Received: {type(decode).__name__}"
        )
    return decode.image_kwargs()


def _to_rgb_uint8(image):
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"an image must be (H, W[, 1-4]); shape {image.shape}")
    if image.shape[-1] in (2, 4):  # drop alpha
        image = image[..., :-1]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype("float32")), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _hash_image(image, hash_size):
    import imagehash
    from PIL import Image

    rgb = _to_rgb_uint8(image)
    digest = hashlib.blake2b(repr(rgb.shape).encode() + rgb.tobytes(), digest_size=16)
    blank = bool(rgb.min() == rgb.max())
    return digest.hexdigest(), str(imagehash.phash(Image.fromarray(rgb), hash_size)), blank


def _decode_batch(paths, options):
    """Decoded images (or None) and error texts for `paths`, via `read_images`."""
    from medivision_tf.data.decode import read_images

    try:
        return read_images(paths, channels=3, **options), [None] * len(paths)
    except (ValueError, FileNotFoundError):
        pass  # decode one by one: the others still get hashed
    images, errors = [], []
    for path in paths:
        try:
            images.append(read_images([path], channels=3, **options)[0])
            errors.append(None)
        except (ValueError, FileNotFoundError) as error:
            images.append(None)
            lines = str(error).splitlines()  # read_images: summary, then the decoder's reason
            errors.append((lines[1] if len(lines) > 2 else lines[0])[:300])
    return images, errors


def image_hashes(data, *, hash_size=HASH_SIZE, decode=None, batch_size=_DECODE_BATCH,
                 verbose="auto"):
    """The exact (pixel) hash and perceptual hash of every image, decoded once.

    Args:
        data: a sample table (files in `path`, or arrays in `image`) or a
            sequence of image paths (`"x.nii.gz#frame=3"` names a slice).
        hash_size: `imagehash.phash` size: `hash_size**2` bits (default 16:
            256 bits; a multiple of 4, at least 8).
        decode: a `medivision_tf.config.DecodeOptions` (or a dict of its
            fields): how DICOM, 16-bit and NIfTI pixels are read (default: the
            table's attrs, as its source read it).
        batch_size: files decoded per `tf.data` batch (memory, not results).
        verbose: a tqdm progress bar on stderr: `"auto"` (more than 8
            images), True or False.

    Returns:
        A DataFrame with the table's index and columns `path`, `pixel_hash`
        (hex BLAKE2 of the 0-255 RGB pixels and shape), `phash` (hex, as
        `str(imagehash.phash(...))`: `imagehash.hex_to_hash` reads it back)
        `blank` (every pixel the same: such images are never paired) and
        `error` (why a file could not be decoded, else missing; its hashes
        are then missing). Missing values are None under pandas 2 and NaN
        under pandas 3 (its string dtype): test them with `isna()`.

    Example:

    ```python
    hashes = image_hashes(["a.png", "b.dcm"])
    hashes["phash"][0]          # '9f3a...' (64 hex digits)
    ```
    """
    from tqdm.auto import tqdm

    from medivision_tf.data.scan import PROGRESS_MIN_IMAGES

    hash_size = _check_hash_size(hash_size)
    _check_verbose(verbose)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    table = _as_table(data)
    count = len(table)
    paths = (table["path"].astype(str).tolist() if "path" in table
             else [f"image[{i}]" for i in range(count)])
    show = count > PROGRESS_MIN_IMAGES if verbose == "auto" else bool(verbose)
    rows = []
    with tqdm(total=count, desc="Hashing images", unit="img", disable=not show) as bar:
        if "image" in table:
            for path, image in zip(paths, table["image"]):
                try:
                    rows.append((path, *_hash_image(image, hash_size), None))
                except ValueError as error:
                    rows.append((path, None, None, None, str(error)))
                bar.update(1)
        else:
            options = _decode_options(table, decode)
            for start in range(0, count, batch_size):
                chunk = paths[start:start + batch_size]
                images, errors = _decode_batch(chunk, options)
                for path, image, error in zip(chunk, images, errors):
                    hashes = (None,) * 3 if image is None else _hash_image(image, hash_size)
                    rows.append((path, *hashes, error))
                bar.update(len(chunk))
    return pd.DataFrame(rows, columns=list(HASH_COLUMNS), index=table.index)


# === Search ===


def _popcount(values):
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], np.uint8)
    as_bytes = values.view(np.uint8).reshape(*values.shape, values.dtype.itemsize)
    return table[as_bytes].sum(-1, dtype=np.uint8)


def _bits(phashes):
    """(n, bits) uint8 0/1 array and (n, words) uint64 packing of hex hashes."""
    raw = np.frombuffer(b"".join(bytes.fromhex(h) for h in phashes), np.uint8)
    raw = raw.reshape(len(phashes), -1)
    bits = np.unpackbits(raw, axis=1)
    pad = (-raw.shape[1]) % 8
    words = np.ascontiguousarray(np.pad(raw, ((0, 0), (0, pad)))).view(np.uint64)
    return bits, words


def _distance(words, i, j):
    return _popcount(words[i] ^ words[j]).sum(axis=1, dtype=np.int64)


def _exhaustive(words, threshold):
    """All pairs i < j within `threshold`, in vectorised blocks."""
    n = len(words)
    found = []
    for start in range(0, n, max(1, _BLOCK_ELEMENTS // max(1, n))):
        stop = min(n, start + max(1, _BLOCK_ELEMENTS // max(1, n)))
        rows = words[start:stop]
        cols = words[start:]
        distance = np.zeros((len(rows), len(cols)), np.uint16)
        for w in range(words.shape[1]):
            distance += _popcount(rows[:, w, None] ^ cols[None, :, w])
        ii, jj = np.nonzero(distance <= threshold)
        keep = jj > ii
        ii, jj = ii[keep], jj[keep]
        found.append((ii + start, jj + start, distance[ii, jj].astype(np.int64)))
    return _joined(found)


def _joined(found):
    if not found:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return tuple(np.concatenate([f[k] for f in found]).astype(np.int64) for k in range(3))


def band_width(threshold, bits=HASH_SIZE * HASH_SIZE):
    """The band width the `"bands"` search uses for `threshold`, or None.

    The widest of 16, 14, 12, 10, 8 bits whose chance of missing a pair at
    exactly `threshold` differing bits (at random positions) is at most
    `BAND_MISS`: `(1 - (1 - w/bits)**threshold) ** (bits // w)`. None: no
    width is good enough (the search is then exhaustive).

    Example:

    ```python
    band_width(24)    # 16: 16 bands of 16 bits
    band_width(28)    # 14
    ```
    """
    for width in _BAND_WIDTHS:
        if width * 2 > bits:
            continue
        miss = (1 - (1 - width / bits) ** threshold) ** (bits // width)
        if miss <= BAND_MISS:
            return width
    return None


def _band_pairs(keys, words, threshold, large=64):
    """Pairs agreeing on `keys` (one band) and within `threshold`."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(ordered)])
    found = []
    for start, size in zip(starts[sizes > large], sizes[sizes > large]):
        members = order[start:start + size]  # a big bucket: compared in blocks
        i, j, d = _exhaustive(words[members], threshold)
        found.append((members[i], members[j], d))
    small = np.repeat(sizes <= large, sizes)
    for offset in range(1, large):
        same = (ordered[offset:] == ordered[:-offset]) & small[offset:]
        if not same.any():
            break
        at = np.flatnonzero(same)
        i, j = order[at], order[at + offset]
        i, j = np.minimum(i, j), np.maximum(i, j)
        d = _distance(words, i, j)
        keep = d <= threshold
        found.append((i[keep], j[keep], d[keep]))
    return _joined(found)


def _banded(bits, words, threshold, width):
    n, total = bits.shape
    permutation = np.random.default_rng(0).permutation(total)
    powers = (1 << np.arange(width)).astype(np.int64)
    codes, distances = [], []
    for band in range(total // width):
        chosen = permutation[band * width:(band + 1) * width]
        keys = bits[:, chosen].astype(np.int64) @ powers
        i, j, d = _band_pairs(keys, words, threshold)
        codes.append(i * n + j)
        distances.append(d)
    codes = np.concatenate(codes) if codes else np.zeros(0, np.int64)
    distances = np.concatenate(distances) if distances else np.zeros(0, np.int64)
    codes, first = np.unique(codes, return_index=True)
    return codes // n, codes % n, distances[first]


def near_pairs(phashes, threshold=NEAR_THRESHOLD, search="auto"):
    """Index pairs `(i, j, distance)`, i < j, of hashes within `threshold` bits.

    Args:
        phashes: hex perceptual hashes of equal length (`image_hashes`'
            `phash` column).
        threshold: the largest Hamming distance that counts as near.
        search: `"auto"` (exhaustive up to `EXHAUSTIVE_PAIRS` pairs, else
            bands), `"exhaustive"` (every pair compared, vectorised) or
            `"bands"` (only pairs agreeing on a band of bits; see the module
            docstring).

    Returns:
        Three int64 arrays `i`, `j`, `distance`, sorted by `(i, j)`.

    Example:

    ```python
    i, j, d = near_pairs(hashes["phash"], threshold=24)
    ```
    """
    if search not in SEARCHES:
        raise ValueError(f"Unknown search {search!r}. Choose one of: {', '.join(SEARCHES)}.")
    phashes = list(phashes)
    if len({len(h) for h in phashes}) > 1:
        raise ValueError("The perceptual hashes differ in length (mixed hash sizes).")
    if len(phashes) < 2:
        return _joined([])
    bits, words = _bits(phashes)
    if not isinstance(threshold, (int, np.integer)) or not 0 <= threshold < bits.shape[1]:
        raise ValueError(
            f"`threshold` must be an integer in [0, {bits.shape[1]}) (bits of difference). "
            f"Received: threshold={threshold!r}"
        )
    n = len(phashes)
    width = band_width(threshold, bits.shape[1])
    if search == "exhaustive" or width is None or (
        search == "auto" and n * (n - 1) // 2 <= EXHAUSTIVE_PAIRS
    ):
        i, j, d = _exhaustive(words, threshold)
    else:
        i, j, d = _banded(bits, words, threshold, width)
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


# === Pairs ===


def _source_files(table):
    """The file of each row (frames of one file share it); arrays: the row."""
    from medivision_tf.data.formats import split_frame

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
            counts as a near duplicate (default `NEAR_THRESHOLD`, 24; see the
            module docstring for the measured trade-off).
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
    _check_verbose(verbose)
    if search not in SEARCHES:
        raise ValueError(f"Unknown search {search!r}. Choose one of: {', '.join(SEARCHES)}.")
    table = _as_table(data)
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
