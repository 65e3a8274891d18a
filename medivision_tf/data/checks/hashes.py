"""Two hashes of every image, each image decoded once: `image_hashes`.

Every image is decoded by the package's reader (`io.read_files.read_images`:
DICOM windowing, 16-bit scaling, NIfTI slices exactly as for training) and
gets two hashes:

- **exact**: a BLAKE2 digest of its decoded pixels (rounded to 0-255, as the
  model sees them), so a file saved twice or re-encoded losslessly (PNG to
  BMP or TIFF) is a pair with `distance` 0;
- **near**: the perceptual hash of `imagehash.phash` with `hash_size=16`
  (256 bits: the signs of the 16x16 lowest-frequency DCT coefficients of the
  gray image against their median), compared by `near_pairs`.

Example:

```python
import numpy as np
from medivision_tf.data import from_numpy, image_hashes

table = from_numpy(np.random.default_rng(0).integers(0, 255, (3, 32, 32), "uint8"), [0, 1, 0])
image_hashes(table)[["path", "pixel_hash", "phash", "blank"]]
```
"""

import hashlib
import os

import numpy as np
import pandas as pd

from medivision_tf.config import DecodeOptions
from medivision_tf.data.checks.near_pairs import HASH_SIZE
from medivision_tf.data.checks.scan import PROGRESS_MIN_IMAGES
from medivision_tf.data.io.read_files import read_images
from medivision_tf.data.sources.table import decode_options_of

HASH_COLUMNS = ("path", "pixel_hash", "phash", "blank", "error")
_DECODE_BATCH = 256


def _check_hash_size(hash_size):
    if not isinstance(hash_size, (int, np.integer)) or hash_size < 8 or hash_size % 4:
        raise ValueError(
            f"`hash_size` must be a multiple of 4, at least 8 (16 gives 256-bit hashes). "
            f"Received: hash_size={hash_size!r}"
        )
    return int(hash_size)


def check_verbose(verbose):
    if verbose not in ("auto", 0, 1, True, False):
        raise ValueError(
            f"`verbose` must be 'auto', 0, 1, True or False. Received: verbose={verbose!r}"
        )


def paths_table(data, what="data"):
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
    """`read_files.read_images` keyword arguments: from `decode` (a DecodeOptions
    or dict of its fields) or the table's attrs (`decode_options_of`)."""
    if decode is None:
        decode = decode_options_of(table)
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

    hash_size = _check_hash_size(hash_size)
    check_verbose(verbose)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    table = paths_table(data)
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
