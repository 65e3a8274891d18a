"""Prediction on image files: class, probability and top-k per image.

Files are read with `medivision_tf.data.decode` (JPEG, PNG 8/16-bit, BMP,
GIF, WebP, TIFF, DICOM; the format is sniffed from the bytes) and resized the
way the training pipeline does (aspect ratio kept, black padding).

Example:

```python
import medivision_tf
from medivision_tf.prediction import predict_files

model = medivision_tf.load_model("runs/x/model.keras")
table = predict_files(model, ["scan1.png", "scan2.dcm"], top_k=2)
table[["path", "class", "probability", "top_k"]]
```
"""

import os

import numpy as np
import pandas as pd

from medivision_tf.evaluation import predict_probabilities
from medivision_tf.model import get_class_names, is_multi_label


def load_images(paths, image_size, channels=3, resize="pad"):
    """Decodes and resizes image files into a float32 0-255 array.

    `medivision_tf.data.decode.load_images`: the pixels equal the training
    pipeline's (`make_dataset`) for the same size, channels and resize mode.

    Args:
        paths: image file paths.
        image_size: int or `(height, width)` of the output.
        channels: 1 or 3.
        resize: `"pad"`, `"stretch"` or `"crop"` (see `decode.resize_image`).

    Returns:
        float32 array `(len(paths), height, width, channels)`.

    Raises:
        FileNotFoundError: some paths are not files (they are listed).
        ValueError: some files cannot be decoded (they are listed).

    Example:

    ```python
    images = load_images(["scan1.png", "scan2.dcm"], (224, 224))
    ```
    """
    from medivision_tf.data import decode

    return decode.load_images([os.fspath(p) for p in paths], image_size, channels, resize)


def predict_files(model, paths, top_k=3, batch_size=32, tta=False, threshold=0.5):
    """Predicts every image file and returns one row per image.

    Args:
        model: a MediVision `keras.Model`.
        paths: image file paths.
        top_k: how many classes to list per image (1..num_classes).
        batch_size: images per forward pass.
        tta: test-time augmentation (see `evaluation.predict_probabilities`).
        threshold: multi-label models: classes with probability >= threshold
            are listed in `present`.

    Returns:
        DataFrame with `path`, `class`, `probability` (top class), `top_k`
        (`"name:prob; ..."`), `present` (multi-label only) and one `prob_<class>`
        column per class.

    Example:

    ```python
    predict_files(model, ["a.png"], top_k=2).loc[0, "top_k"]   # 'tumor:0.910; normal:0.090'
    ```
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("No image files given.")
    class_names = get_class_names(model)
    if not isinstance(top_k, int) or not 1 <= top_k <= len(class_names):
        raise ValueError(
            f"`top_k` must be an integer from 1 to {len(class_names)} (the number of "
            f"classes). Received: top_k={top_k!r}"
        )
    height, width, channels = model.input_shape[1:]
    images = load_images(paths, (height, width), channels)
    probabilities = predict_probabilities(model, images, batch_size, tta)
    order = np.argsort(-probabilities, axis=1)
    frame = pd.DataFrame(
        {
            "path": paths,
            "class": [class_names[i] for i in order[:, 0]],
            "probability": probabilities[np.arange(len(paths)), order[:, 0]],
            "top_k": [
                "; ".join(f"{class_names[i]}:{p[i]:.3f}" for i in row[:top_k])
                for row, p in zip(order, probabilities)
            ],
        }
    )
    if is_multi_label(model):
        frame["present"] = [
            "|".join(class_names[i] for i in np.flatnonzero(p >= threshold))
            for p in probabilities
        ]
    for i, name in enumerate(class_names):
        frame[f"prob_{name}"] = probabilities[:, i]
    return frame
