"""`medivision explain`: heatmap overlays and grid PNGs for image files.

Example:

```
medivision explain runs/demo-.../model.keras scan1.png scan2.dcm --method gradcam++ --out heatmaps
```

Files are decoded by the data layer (`medivision_tf.data.io`), as in
training and `medivision predict`: DICOM and 16-bit TIFF/PNG included.

A volume (NIfTI `.nii`/`.nii.gz`, or a multi-frame DICOM for a model trained
with frames "all") is cut into the slices the model was trained on and
explained by `medivision_tf.explain.explain_volume`: OUT/<name>_slice<NNN>_<method>.png
for the `--top-slices` slices that speak most for the volume's class,
OUT/<name>_grid_<k>.png, the montage OUT/<name>_volume_<method>.png and the
per-slice scores OUT/<name>_slices.csv.
"""

import sys

from medivision_tf.cli._text import quote, trust_legend


def register(subparsers):
    from medivision_tf.explain import METHODS

    parser = subparsers.add_parser(
        "explain",
        help="write Grad-CAM-family / attention overlays for image files",
        description="Explains the prediction of a .keras MediVision model on "
        "image files: writes OUT/<image>_<method>.png (the heatmap over the "
        "image) and OUT/grid_<k>.png per batch (image, heatmap, attention map, "
        "prediction and probability), and prints one line per image. A NIfTI "
        "volume (.nii, .nii.gz; or a multi-frame DICOM for a model trained with "
        "frames 'all') is cut into slices as in training: it gets "
        "OUT/<volume>_slice<NNN>_<method>.png for the slices most confident of the "
        "volume's class (mean of the slice probabilities), OUT/<volume>_grid_<k>.png, "
        "a montage OUT/<volume>_volume_<method>.png and the per-slice scores "
        "OUT/<volume>_slices.csv.",
    )
    parser.add_argument("model", help="path of a .keras MediVision model")
    parser.add_argument("images", nargs="+",
                        help="image files (PNG, JPEG, BMP, GIF, WebP, TIFF, DICOM) or "
                        "NIfTI volumes (.nii, .nii.gz)")
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
    parser.add_argument("--top-slices", type=int, default=9,
                        help="volumes: how many slices to explain, those with the highest "
                        "probability of the volume's class (default: 9; 0: every slice "
                        "the model's slice selection keeps)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (default: a progress bar on stderr "
                        "for more than 8 images)")
    parser.set_defaults(func=run)


def run(args):
    from medivision_tf.data.io.read_files import read_images
    from medivision_tf.data.sources.volumes import expand_paths
    from medivision_tf.explain import explain_images, explain_volume
    from medivision_tf.model import get_model_config, load_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}")
    if args.top_slices < 0:
        raise ValueError(f"--top-slices must be >= 0 (0: every slice). Received: {args.top_slices}")
    model = load_model(args.model, compile=False)
    config = get_model_config(model)
    class_index = _class_index(args.target_class, list(config.class_names))
    from medivision_tf.cli.predict import check_images

    paths, bad = check_images(args.images, "explain", config.decode)
    decode = config.decode
    samples = expand_paths(paths, decode.frames, decode.nifti_slices, decode.nifti_axis)
    volume_inputs = set(samples.loc[samples["frame"] >= 0, "input"])
    names = _unique_stems(paths)
    flat = [i for i in range(len(paths)) if i not in volume_inputs]
    quiet = False if args.quiet else "auto"
    if config.trust and not config.multi_label and not args.quiet:
        print(trust_legend(config.trust), file=sys.stderr)  # what "ood 0.41" means
    lines, grids, overlays = {}, set(), 0
    if flat:
        # One read for all files (every bad file named), decoded as the model sees them.
        images = read_images([paths[i] for i in flat], channels=config.channels,
                             **decode.image_kwargs())
        rows = explain_images(
            model, images, args.out, method=args.method, names=[names[i] for i in flat],
            class_index=class_index, layer_name=args.layer, batch_size=args.batch_size,
            verbose=quiet,
        )
        for i, row in zip(flat, rows):
            lines[i] = (f"{quote(paths[i])}\t{row['prediction']}\tp={row['probability']:.4f}"
                        f"{_trust_text(row)}\t{quote(row['overlay'])}")
            if row["map_note"]:
                lines[i] += f"\n  note: {row['map_note']}"
            grids.add(row["grid"])
        overlays += len(rows)
    for i in sorted(volume_inputs):
        result = explain_volume(
            model, paths[i], args.out, method=args.method, name=names[i],
            class_index=class_index, layer_name=args.layer, top_slices=args.top_slices,
            batch_size=args.batch_size, verbose=quiet,
        )
        lines[i] = (
            f"{quote(paths[i])} [volume: {len(result['slices'])} slices]\t{result['prediction']}"
            f"\tp={result['probability']:.3f}{_trust_text(result)}\t{quote(result['summary'])}\t"
            f"{len(result['rows'])} slices explained ({result['explained_class']}), most "
            f"responsible: slice {result['most_responsible_slice']}; scores: "
            f"{quote(result['csv'])}"
        )
        grids.update(row["grid"] for row in result["rows"])
        empty = [row for row in result["rows"] if row["map_note"]]
        if empty:
            lines[i] += (f"\n  note: {len(empty)} of {len(result['rows'])} slice maps are "
                         f"empty: {empty[0]['map_note']}")
        overlays += len(result["rows"])
    for i in range(len(paths)):
        print(lines[i])
    for path, message in bad:
        print(f"{quote(path)}\t{message}")
    volumes = f" and {len(volume_inputs)} volume montage(s)" if volume_inputs else ""
    print(f"Wrote {overlays} overlays, {len(grids)} grid(s){volumes} to {quote(args.out)}"
          if volumes else f"Wrote {overlays} overlays and {len(grids)} grid(s) to {quote(args.out)}")
    if bad:
        print(f"medivision explain: {len(paths)} of {len(args.images)} images explained, "
              f"{len(bad)} skipped", file=sys.stderr)
        return 1
    return 0


def _trust_text(row):
    """The prediction set, OOD score and flag, as `medivision predict` prints them."""
    if "prediction_set" not in row:
        return ""
    flag = "  OUT-OF-DISTRIBUTION" if row["out_of_distribution"] else ""
    return (f"\tset: {{{row['prediction_set'].replace('|', ', ')}}}"
            f"\tood {row['ood_score']:.2f}{flag}")


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
    from medivision_tf.explain.volumes import volume_stem

    stems, seen = [], {}
    for path in paths:
        stem = volume_stem(path)  # "a.png" -> "a", "brain.nii.gz" -> "brain"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems
