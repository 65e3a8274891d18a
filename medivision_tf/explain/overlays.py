"""Heatmap overlays and grid PNGs (OpenCV)."""

import os

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BOX_COLOR = (0, 255, 0)  # RGB green
_TEXT_COLOR = (255, 255, 255)


def _as_rgb_uint8(image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            "`image` must be (height, width) or (height, width, 1|3|4) pixels. "
            f"Received shape: {np.shape(image)}"
        )
    return np.clip(image, 0, 255).astype("uint8")


def overlay(image, heatmap, alpha=0.45, colormap=cv2.COLORMAP_JET):
    """Blends a heatmap, colored with an OpenCV colormap, over an image.

    Args:
        image: `(height, width[, 1|3])` raw 0-255 pixels (gray or RGB).
        heatmap: `(h, w)` values in [0, 1]; resized (bilinear) to the image
            if its size differs.
        alpha: weight of the colored heatmap, in [0, 1].
        colormap: an OpenCV colormap id (`cv2.COLORMAP_*`).

    Returns:
        uint8 RGB array `(height, width, 3)`.

    Example:

    ```python
    rgb = overlay(data.images[0], maps[0])
    save_png("overlay.png", rgb)
    ```
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}")
    rgb = _as_rgb_uint8(image)
    heatmap = np.asarray(heatmap, dtype="float32")
    if heatmap.ndim != 2:
        raise ValueError(
            f"`heatmap` must be 2-D (height, width). Received shape: {heatmap.shape}"
        )
    if heatmap.shape != rgb.shape[:2]:
        heatmap = cv2.resize(
            heatmap, rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR
        )
    levels = np.uint8(np.round(255 * np.clip(heatmap, 0.0, 1.0)))
    colored = cv2.cvtColor(cv2.applyColorMap(levels, colormap), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(colored, alpha, rgb, 1.0 - alpha, 0.0)


def save_png(path, rgb):
    """Writes an RGB (or gray) image as a PNG file.

    Args:
        path: the file to write (its folder is created if needed).
        rgb: `(height, width[, 1|3|4])` pixels in 0-255 (e.g. from
            `overlay`); other dtypes are clipped to 0-255 and cast to uint8,
            gray is repeated to RGB, alpha dropped.

    Returns:
        `path`, as given.

    Raises:
        ValueError: `rgb` is not an image shape.
        OSError: OpenCV could not write the file.

    Example:

    ```python
    save_png("out/overlay.png", overlay(image, heatmap))
    ```
    """
    rgb = _as_rgb_uint8(rgb)
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write PNG {os.fspath(path)!r}")
    return path


def prediction_captions(probabilities, class_names, labels=None):
    """One caption per image: predicted class and its probability.

    Args:
        probabilities: `(n, classes)` model outputs.
        class_names: one name per class (`medivision_tf.get_class_names`).
        labels: optional `(n,)` true class ids, added as `(true: NAME)`.

    Returns:
        A list of `n` strings such as `"ring_lesion p=0.97 (true: ring_lesion)"`.

    Example:

    ```python
    captions = prediction_captions(model.predict(x), get_class_names(model), y)
    ```
    """
    probabilities = np.asarray(probabilities)
    top = probabilities.argmax(axis=1)
    captions = [
        f"{class_names[i]} p={probabilities[n, i]:.2f}" for n, i in enumerate(top)
    ]
    if labels is not None:
        captions = [
            f"{caption} (true: {class_names[int(label)]})"
            for caption, label in zip(captions, labels)
        ]
    return captions


def save_explanation_grid(
    path,
    images,
    maps,
    captions=None,
    boxes=None,
    tile_size=128,
    alpha=0.45,
    colormap=cv2.COLORMAP_JET,
):
    """Writes one PNG: a row per image, the image then one overlay per map.

    Args:
        path: the PNG file to write (folders are created).
        images: `(n, height, width[, channels])` raw 0-255 pixels, or a list
            of images of different sizes (each tile is scaled to a square).
        maps: dict `{column title: (n, height, width) maps in [0, 1]}` (or
            lists of maps), e.g. `{"gradcam": ..., "attention": ...}`; one
            column each.
        captions: one string per image, written above its row (e.g. from
            `prediction_captions`: predicted class and probability).
        boxes: optional `(n, 4)` `[y_min, x_min, y_max, x_max]` boxes drawn
            in green on every tile.
        tile_size: side of each (square) tile in pixels; images are scaled.
        alpha: heatmap weight in the overlays.
        colormap: OpenCV colormap of the overlays.

    Returns:
        `path`.

    Example:

    ```python
    save_explanation_grid(
        "grid.png", x, {"gradcam": cams, "attention": att},
        captions=prediction_captions(model.predict(x), class_names),
    )
    ```
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[..., None]  # a batch of 2-D grayscale images
    images = [np.asarray(image) for image in images]
    if not isinstance(maps, dict) or not maps:
        raise ValueError(
            "`maps` must be a non-empty dict {column title: (n, h, w) maps}. "
            f"Received: {type(maps).__name__}"
        )
    for title, column in maps.items():
        if len(column) != len(images):
            raise ValueError(
                f"maps[{title!r}] has {len(column)} maps; expected "
                f"{len(images)}, one per image."
            )
    if captions is not None and len(captions) != len(images):
        raise ValueError(
            f"{len(captions)} captions for {len(images)} images: pass one per image."
        )
    titles = ["image", *maps]
    header, strip = 22, 18 if captions is not None else 0
    rows = []
    for n, image in enumerate(images):
        tiles = [_as_rgb_uint8(image)]
        tiles += [overlay(image, maps[t][n], alpha, colormap) for t in maps]
        scale = (tile_size / image.shape[1], tile_size / image.shape[0])
        tiles = [
            cv2.resize(tile, (tile_size, tile_size), interpolation=cv2.INTER_NEAREST)
            for tile in tiles
        ]
        if boxes is not None:
            y0, x0, y1, x1 = np.asarray(boxes[n], dtype="float64")
            corner0 = (int(x0 * scale[0]), int(y0 * scale[1]))
            corner1 = (int(x1 * scale[0]) - 1, int(y1 * scale[1]) - 1)
            for tile in tiles:
                cv2.rectangle(tile, corner0, corner1, _BOX_COLOR, 1)
        row = np.concatenate(tiles, axis=1)
        if captions is not None:
            band = np.zeros((strip, row.shape[1], 3), "uint8")
            _text(band, str(captions[n]), (4, strip - 5))
            row = np.concatenate([band, row], axis=0)
        rows.append(row)
    top = np.zeros((header, tile_size * len(titles), 3), "uint8")
    for i, title in enumerate(titles):
        _text(top, title, (i * tile_size + 4, header - 6), scale=0.5)
    return save_png(path, np.concatenate([top, *rows], axis=0))


def save_montage(path, tiles, captions=None, title=None, highlight=None, tile_size=128,
                 columns=None):
    """Writes one PNG: images (e.g. the overlays of a volume's slices) tiled
    in rows, each with a caption, one of them framed.

    Args:
        path: the PNG file to write (folders are created).
        tiles: list of `(height, width[, 1|3])` 0-255 images (sizes may
            differ; each is scaled to a `tile_size` square).
        captions: one string per tile, written above it (e.g. `"slice 12
            p=0.91"`), or None.
        title: a line written at the top, or None.
        highlight: index of the tile framed in green (e.g. the slice that
            speaks most for the volume's class), or None.
        tile_size: side of each tile in pixels.
        columns: tiles per row (default: `ceil(sqrt(len(tiles)))`).

    Returns:
        `path`.

    Raises:
        ValueError: no tiles, captions of the wrong length, or `highlight`
            out of range.

    Example:

    ```python
    save_montage("montage.png", [overlay(x, m) for x, m in zip(images, maps)],
                 captions=[f"slice {i}" for i in range(len(images))], highlight=0)
    ```
    """
    tiles = [_as_rgb_uint8(tile) for tile in tiles]
    if not tiles:
        raise ValueError("`tiles` is empty: pass at least one image.")
    if captions is not None and len(captions) != len(tiles):
        raise ValueError(f"{len(captions)} captions for {len(tiles)} tiles: pass one per tile.")
    if highlight is not None and not 0 <= int(highlight) < len(tiles):
        raise ValueError(
            f"`highlight` must be a tile index from 0 to {len(tiles) - 1}. "
            f"Received: highlight={highlight!r}"
        )
    columns = columns or int(np.ceil(np.sqrt(len(tiles))))
    strip = 18 if captions is not None else 0
    cells = []
    for n, tile in enumerate(tiles):
        cell = cv2.resize(tile, (tile_size, tile_size), interpolation=cv2.INTER_AREA)
        if n == highlight:
            cv2.rectangle(cell, (0, 0), (tile_size - 1, tile_size - 1), _BOX_COLOR, 3)
        if captions is not None:
            band = np.zeros((strip, tile_size, 3), "uint8")
            _text(band, str(captions[n]), (3, strip - 5), scale=0.35)
            cell = np.concatenate([band, cell], axis=0)
        cells.append(cell)
    blank = np.zeros_like(cells[0])
    cells += [blank] * (-len(cells) % columns)
    rows = [np.concatenate(cells[i:i + columns], axis=1) for i in range(0, len(cells), columns)]
    canvas = np.concatenate(rows, axis=0)
    if title:
        width = max(canvas.shape[1], 7 * len(str(title)) + 8)  # room for the title
        canvas = np.pad(canvas, ((0, 0), (0, width - canvas.shape[1]), (0, 0)))
        top = np.zeros((22, width, 3), "uint8")
        _text(top, str(title), (4, 16), scale=0.45)
        canvas = np.concatenate([top, canvas], axis=0)
    return save_png(path, canvas)


def _text(canvas, text, origin, scale=0.4):
    cv2.putText(canvas, text, origin, _FONT, scale, _TEXT_COLOR, 1, cv2.LINE_AA)
