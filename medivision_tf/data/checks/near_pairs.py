"""Pairs of perceptual hashes within a Hamming distance: `near_pairs`.

Two images are near duplicates when the Hamming distance of their 256-bit
perceptual hashes (`hashes.image_hashes`) is at most `threshold`
(`NEAR_THRESHOLD`).

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

Scaling: near pairs are searched either `"exhaustive"` (numpy-vectorised XOR
+ popcount over blocks, every pair compared) or with `"bands"`: the 256 bits
are cut into bands (a fixed random permutation, 16 bits each for the default
threshold) and only hashes that agree on a whole band are compared, so no
60,000² comparisons are made. By the pigeonhole argument a pair at distance
d agrees on some band unless all bands hold one of its d differing bits; the
band width is the widest whose miss rate at the threshold distance
(differing bits at random) is at most 5% (copies are mostly 4 bits apart,
where it is ~1e-13). On the 60,000 Fashion-MNIST training images the band
search found all 239 pairs within 24 bits that the exhaustive search finds,
in about 1 s against 56 s. `search="auto"` compares exhaustively up to
`EXHAUSTIVE_PAIRS` pairs.

Example:

```python
from medivision_tf.data.checks.near_pairs import band_width, near_pairs

i, j, d = near_pairs(["ff" * 32, "ff" * 31 + "fe", "00" * 32], threshold=24)
# i = [0], j = [1], d = [1]: the first two differ in one bit
band_width(24)    # 16: 16 bands of 16 bits
```
"""

import numpy as np

NEAR_THRESHOLD = 24
HASH_SIZE = 16
SEARCHES = ("auto", "exhaustive", "bands")
#: `search="auto"` compares every pair up to this many pairs (~6,300 images).
EXHAUSTIVE_PAIRS = 20_000_000
#: The band width is chosen so a pair at the threshold distance is missed at
#: most this often (differing bits at random positions).
BAND_MISS = 0.05
_BAND_WIDTHS = (16, 14, 12, 10, 8)
_BLOCK_ELEMENTS = 1 << 22  # pairs per exhaustive block (~4M: a few MB per array)


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
