"""`medivision explain`: heatmap overlays and grid PNGs for image files.

Example:

```
medivision explain runs/demo-.../model.keras scan1.png scan2.dcm --method gradcam++ --out heatmaps
```

Files are decoded by the data layer (`medivision_tf.data.decode`), as in
training and `medivision predict`: DICOM and 16-bit TIFF/PNG included.
"""

import os
import sys

from medivision_tf.cli._text import quote


def register(subparsers):
    from medivision_tf.explain import METHODS

    parser = subparsers.add_parser(
        "explain",
        help="write Grad-CAM-family / attention overlays for image files",
        description="Explains the prediction of a .keras MediVision model on "
        "image files: writes OUT/<image>_<method>.png (the heatmap over the "
        "image) and OUT/grid_<k>.png per batch (image, heatmap, attention map, "
        "prediction and probability), and prints one line per image.",
    )
    parser.add_argument("model", help="path of a .keras MediVision model")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP, GIF, WebP, TIFF, DICOM)")
    parser.add_argument(
        "--method", default="gradcam", choices=METHODS,
        help="explanation method (default: gradcam)",
    )
    parser.add_argument("--out", default="explanations", help="output folder (default: explanations)")
    parser.add_argument(
        "--layer", default=None,
        help="layer to explain (default: feature_map, the backbone's last feature map)",
    )
    parser.add_argument(
        "--class", dest="target_class", default=None,
        help="class name or index to explain (default: each image's predicted class)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per grid (default: 16)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (default: a progress bar on stderr "
                        "for more than 8 images)")
    parser.set_defaults(func=run)


def run(args):
    from medivision_tf.data.decode import read_images
    from medivision_tf.explain import explain_images
    from medivision_tf.model import get_model_config, load_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}")
    model = load_model(args.model, compile=False)
    config = get_model_config(model)
    class_index = _class_index(args.target_class, list(config.class_names))
    from medivision_tf.cli.predict import check_images

    paths, bad = check_images(args.images, "explain", config.decode)
    # One read for all files (every bad file named), decoded as the model sees them.
    images = read_images(paths, channels=config.channels, **config.decode.image_kwargs())
    names = _unique_stems(paths)
    rows = explain_images(
        model, images, args.out, method=args.method, names=names,
        class_index=class_index, layer_name=args.layer, batch_size=args.batch_size,
        verbose=False if args.quiet else "auto",
    )
    for path, row in zip(paths, rows):
        print(
            f"{quote(path)}\t{row['prediction']}\tp={row['probability']:.3f}\t"
            f"{quote(row['overlay'])}"
        )
    for path, message in bad:
        print(f"{quote(path)}\t{message}")
    grids = sorted({row["grid"] for row in rows})
    print(f"Wrote {len(rows)} overlays and {len(grids)} grid(s) to {quote(args.out)}")
    if bad:
        print(f"medivision explain: {len(paths)} of {len(args.images)} images explained, "
              f"{len(bad)} skipped", file=sys.stderr)
        return 1
    return 0


def _class_index(target, class_names):
    if target is None:
        return None
    if target in class_names:
        return class_names.index(target)
    if target.lstrip("-").isdigit():
        return int(target)  # range checked by explain()
    raise ValueError(
        f"Unknown class {target!r}. Choose a name ({', '.join(class_names)}) "
        f"or an index from 0 to {len(class_names) - 1}."
    )


def _unique_stems(paths):
    stems, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems
