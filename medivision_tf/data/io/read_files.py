"""Image files read outside `tf.data`: `load_images` (resized) and `read_images` (own size).

The one reader of image files for prediction, evaluation of arrays and
explanation: each file is decoded by `graph_decode.load_image` (the decoder of
the training pipeline: format sniffed, DICOM window, 16-bit scaling, alpha
dropped, channels converted) in a parallel `tf.data` map, refused under
`MIN_IMAGE_SIZE` pixels a side, and (`load_images`) finished by
`finish.finish_image`, so the pixels equal the pipeline's for the same
options. Only regular files are opened; every missing or undecodable file is
named in one error.

Example:

```python
import numpy as np, cv2, tempfile, os
from medivision_tf.data.io.read_files import load_images, read_images

path = os.path.join(tempfile.mkdtemp(), "x.png")
cv2.imwrite(path, np.full((40, 60), 100, "uint8"))
batch = load_images([path, path], 32)        # (2, 32, 32, 3) float32 numpy
own = read_images([path], channels=1)        # [(40, 60, 1) float32 numpy]
```
"""

import os
import re
import stat

import numpy as np
import tensorflow as tf

from medivision_tf.data.io.finish import finish_image
from medivision_tf.data.io.frame_paths import split_frame
from medivision_tf.data.io.graph_decode import load_image
from medivision_tf.data.io.headers import MIN_IMAGE_SIZE
from medivision_tf.data.io.options import check_channels, check_resize, check_size, check_window

def load_images(
    paths,
    image_size,
    channels=3,
    resize="pad",
    batch_size=32,
    *,
    interpolation="bilinear",
    antialias=False,
    dicom_window="auto",
    bit_depth_16="auto",
    frames="middle",
    nifti_axis="axial",
):
    """Reads image files into one float32 array, the way `make_dataset` does.

    Every format the pipeline reads (JPEG, PNG 8/16-bit, BMP, GIF, WebP,
    TIFF, DICOM), decoded in parallel by a `tf.data` map (AUTOTUNE) with
    `load_image` and `finish_image`, so the pixels equal `make_dataset`'s
    for the same options (without augmentation).

    Args:
        paths: a file path or a sequence of file paths.
        image_size: int or `(height, width)` of the output images.
        channels: 1 (grayscale) or 3 (RGB).
        resize: `"pad"` (default), `"stretch"` or `"crop"`.
        batch_size: images decoded per step (memory, not results).
        interpolation, antialias: see `resize_image`.
        dicom_window: `"auto"`, `"minmax"` or `(center, width)`.
        bit_depth_16: `"auto"`, `"scale"`, `"12bit"` or `"minmax"` for
            16-bit PNG/TIFF (see `decode_image`).
        frames, nifti_axis: see `decode_image` (`model_config.decode`
            holds a model's choices: `DecodeOptions.image_kwargs()`).

    Returns:
        float32 array `(n, height, width, channels)`, raw pixels 0-255, in
        the order of `paths`.

    Raises:
        FileNotFoundError: some paths are not files (all are listed).
        ValueError: some files cannot be decoded (all are listed, with the
            decoder's message for the first ones).

    Example:

    ```python
    images = load_images(["a.png", "b.dcm"], image_size=224)   # (2, 224, 224, 3)
    probabilities = model.predict(images)
    ```
    """
    paths = _check_paths(paths)
    size = check_size(image_size)
    channels = check_channels(channels)
    check_resize(resize)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: {batch_size!r}")
    window = check_window(dicom_window)
    if not paths:
        return np.zeros((0, *size, channels), "float32")

    def finish(image):
        return finish_image(image, size, channels, resize, interpolation, antialias)

    options = {"frames": frames, "nifti_axis": nifti_axis}
    images = _decode_files(paths, channels, window, bit_depth_16, finish, batch_size, options)
    return np.concatenate(images).astype("float32", copy=False)


def read_images(
    paths, channels=3, *, dicom_window="auto", bit_depth_16="auto", frames="middle",
    nifti_axis="axial",
):
    """Reads image files at their own sizes, decoded exactly as for training.

    The same decoder as `make_dataset` and `load_images` (`load_image`:
    format sniffed from the bytes, DICOM window, 16-bit scaling, alpha
    dropped, channels converted), without the resize: for explanations drawn
    at each image's own size. Files are decoded in parallel (`tf.data`).

    Args:
        paths: a file path or a sequence of file paths.
        channels: 1 (grayscale) or 3 (RGB); pass the model's input channels
            to see the images as the model does.
        dicom_window: `"auto"`, `"minmax"` or `(center, width)` (see
            `read_dicom`).
        bit_depth_16: `"auto"`, `"scale"`, `"12bit"` or `"minmax"` for
            16-bit PNG/TIFF (see `decode_image`).

    Returns:
        A list of float32 arrays `(height, width, channels)` in [0, 255], in
        the order of `paths`.

    Raises:
        FileNotFoundError: some paths are not files (all are listed).
        ValueError: some files cannot be decoded (all are listed).

    Example:

    ```python
    images = read_images(["a.png", "ct.dcm"], channels=1)   # [(h1, w1, 1), (h2, w2, 1)]
    ```
    """
    paths = _check_paths(paths)
    channels = check_channels(channels)
    window = check_window(dicom_window)
    if not paths:
        return []
    options = {"frames": frames, "nifti_axis": nifti_axis}
    decoded = _decode_files(paths, channels, window, bit_depth_16, None, 1, options)
    return [image[0] for image in decoded]


def _check_paths(paths):
    """`paths` as a list of str; every missing file named in one error."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    paths = [os.fsdecode(p) for p in paths]
    files = [split_frame(p)[0] for p in paths]
    missing = [p for p, f in zip(paths, files) if not os.path.exists(f)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} image files not found: {missing[:10]}"
            + (" ..." if len(missing) > 10 else "")
        )
    # Only regular files are opened: reading a FIFO named x.png blocks forever.
    special = [p for p, f in zip(paths, files) if not stat.S_ISREG(os.stat(f).st_mode)]
    if special:
        raise ValueError(
            f"{len(special)} of {len(paths)} paths are not regular files (FIFO, device, "
            f"socket or folder), not opened: {special[:10]}"
            + (" ..." if len(special) > 10 else "")
        )
    return paths


def clean_assert_message(message):
    """The reason in a `tf.debugging.Assert` error, without TF's wrapping."""
    match = re.search(r"Summarized data: b'(.*?)'|assertion failed: \[(.*?)\]", message, re.S)
    return next(g for g in match.groups() if g is not None) if match else message


def check_min_size(image):
    """`image` (H, W, C), after asserting (graph op) it is at least MIN_IMAGE_SIZE a side.

    A 1x1 image would get a confident class; it is refused with its size named.
    """
    shape = tf.shape(image)
    check = tf.debugging.Assert(
        tf.reduce_min(shape[:2]) >= MIN_IMAGE_SIZE,
        [tf.strings.format(
            "Image of {}x{} pixels is too small: at least "
            f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} needed", (shape[1], shape[0]))],
    )
    with tf.control_dependencies([check]):
        return tf.identity(image)


def _decode_files(paths, channels, window, bit_depth_16, finish, batch_size, options=None):
    """The one file reader: `load_image` (+ `finish`) over `paths` in a
    parallel `tf.data` map; NumPy batches of `batch_size` in path order."""

    def checked(path):
        return check_min_size(load_image(path, channels, window, bit_depth_16,
                                         **(options or {})))

    def load(index, path):
        image = checked(path)
        return index, (image if finish is None else finish(image))

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Errors are collected, not raised mid-way, so every bad file is named.
    dataset = dataset.ignore_errors().batch(batch_size)
    indices, images = [], []
    for index, batch in dataset:
        indices.append(index.numpy())
        images.append(batch.numpy().astype("float32", copy=False))
    done = np.concatenate(indices) if indices else np.zeros(0, int)
    if len(done) != len(paths):
        bad = sorted(set(range(len(paths))) - set(done.tolist()))
        details = []
        for i in bad[:3]:
            try:
                checked(paths[i])
            except (tf.errors.OpError, ValueError) as error:
                message = str(getattr(error, "message", error))
                message = clean_assert_message(message)
                message = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", message).strip().splitlines()
                details.append(f"{paths[i]}: {message[0] if message else type(error).__name__}")
        raise ValueError(
            f"Could not decode image files: {len(bad)} of {len(paths)} image files cannot "
            f"be decoded (not a PNG, JPEG, BMP, GIF, WebP, TIFF, DICOM or NIfTI image, over "
            f"the pixel budget or under {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels): "
            f"{[paths[i] for i in bad[:10]]}" + (" ..." if len(bad) > 10 else "")
            + ("\n" + "\n".join(d[:300] for d in details) if details else "")
            + "\nRun medivision_tf.data.scan to check files before use."
        )
    return images
