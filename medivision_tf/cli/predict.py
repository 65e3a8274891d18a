"""`medivision predict`: classify image files and volumes.

```
medivision predict runs/brain/model.keras scan1.png scan2.dcm --top-k 2 --csv preds.csv
medivision predict runs/mri/model.keras brain.nii.gz --csv preds.csv
```

A NIfTI volume (and a multi-frame DICOM when the model was trained with
`--frames all`) prints one line per slice the model's slice selection keeps
(`path [slice 12]`) and one volume-level line (`path [volume: 24 slices]`);
the CSV gets a `slice` column (`"12"`, `"volume"`, `""` for 2-D images),
see `medivision_tf.prediction.predict_files`.
"""

import os
import sys

from medivision_tf.cli._text import quote, trust_legend


def register(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="classify image files (class, probability, top-k, prediction set, OOD flag)",
        description="Prints the predicted class, its probability and the top-k "
        "classes of each image (JPEG, PNG, BMP, GIF, WebP, TIFF, DICOM); for models "
        "with trust values (fitted by train on validation data) also the calibrated "
        "probability, the conformal prediction set, the OOD score and flag. A NIfTI "
        "volume (.nii, .nii.gz; or a multi-frame DICOM for a model trained with "
        "frames 'all') gives one line per slice, cut and selected as in training, "
        "and a volume-level line (mean of the slice probabilities).",
    )
    parser.add_argument("model", help=".keras model file")
    parser.add_argument("images", nargs="+", help="image or volume files")
    parser.add_argument("--top-k", type=int, default=None,
                        help="classes listed per image (default: 3, or the number of "
                        "classes when the model has fewer)")
    parser.add_argument("--csv", default=None,
                        help="also write the table to this CSV file; a skipped file gets a "
                        "row with the reason in column `skipped` (default: none)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation (default: off)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per batch (default: 32)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (default: a progress bar on stderr "
                        "for more than 8 images)")
    parser.set_defaults(func=run_predict)


def check_images(paths, command, decode=None):
    """`(usable paths, [(path, message)])`: every file checked before any is
    read (`medivision_tf.data.checks.scan.check_file`: regular file, format, pixel
    budget, at least 2x2 pixels, decodes with the model's `decode` options:
    DICOM window, frame); a NIfTI volume must also have a slice the model's
    `nifti_slices` selection keeps (`data.sources.volumes.check_volume`)."""
    from medivision_tf.data.checks.scan import REASONS, check_file
    from medivision_tf.data.io.frame_paths import split_frame
    from medivision_tf.data.sources.volumes import check_volume, is_nifti_path

    good, bad = [], []
    options = {} if decode is None else {
        "dicom_window": decode.dicom_window,
        "frames": "middle" if decode.frames == "all" else decode.frames,
    }
    for path in paths:
        problem = check_file(os.fspath(path), **options)
        if problem is None and is_nifti_path(path) and split_frame(path)[1] is None:
            try:
                check_volume(os.fspath(path), *([] if decode is None else
                                                [decode.nifti_slices, decode.nifti_axis]))
            except ValueError as error:
                bad.append((path, f"skipped: {error}"))
                continue
        if problem is None:
            good.append(path)
        else:
            reason, detail = problem
            bad.append((path, f"skipped: {reason} ({REASONS[reason]}): {detail}"))
    if not good:
        raise ValueError(
            f"none of the {len(paths)} images can be used:\n"
            + "\n".join(f"  {quote(p)}: {m}" for p, m in bad)
        )
    return good, bad


def run_predict(args):
    import medivision_tf
    from medivision_tf.prediction import predict_files

    model = medivision_tf.load_model(args.model, compile=False)
    config = medivision_tf.get_model_config(model)
    num_classes = len(config.class_names)
    top_k = args.top_k if args.top_k is not None else min(3, num_classes)
    paths, bad = check_images(args.images, "predict", config.decode)
    table = predict_files(model, paths, top_k=top_k, batch_size=args.batch_size,
                          tta=args.tta, verbose=False if args.quiet else "auto")
    # File names are quoted when they hold control characters: one image, one line.
    trusted = "prediction_set" in table
    if trusted and not args.quiet:  # the scale of `ood` depends on its method
        print(trust_legend(config.trust), file=sys.stderr)
    labels = _row_labels(table)
    for label, row in zip(labels, table.to_dict("records")):
        line = f"{label}\t{row['class']}\t{row['probability']:.4f}\ttop-{top_k}: {row['top_k']}"
        if trusted:
            flag = "  OUT-OF-DISTRIBUTION" if row["out_of_distribution"] else ""
            line += (f"\tset: {{{row['prediction_set'].replace('|', ', ')}}}"
                     f"\tood {row['ood_score']:.2f}{flag}")
        print(line)
    for path, message in bad:
        print(f"{quote(path)}\t{message}")
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        # Every image asked for has a row: a skipped one gets its path and why
        # (column `skipped`, empty for predicted rows), so the CSV alone tells
        # which files have no prediction.
        import pandas as pd

        rows = table.assign(skipped="")
        if bad:
            rows = pd.concat([rows, pd.DataFrame({
                "path": [os.fspath(p) for p, _ in bad],
                "skipped": [m.removeprefix("skipped: ") for _, m in bad]})], ignore_index=True)
        rows.to_csv(args.csv, index=False)
    if bad:
        print(f"medivision predict: {len(paths)} of {len(args.images)} images predicted, "
              f"{len(bad)} skipped", file=sys.stderr)
        return 1
    return 0


def _row_labels(table):
    """The printed name of each row: the quoted path, with `[slice N]` or
    `[volume: K slices]` for the rows of a volume."""
    from medivision_tf.prediction import VOLUME_ROW

    if "slice" not in table:
        return [quote(path) for path in table["path"]]
    labels, count = [], 0
    for path, piece in zip(table["path"], table["slice"]):
        if piece == VOLUME_ROW:
            labels.append(f"{quote(path)} [volume: {count} slices]")
        elif piece:
            labels.append(f"{quote(path)} [slice {piece}]")
        else:
            labels.append(quote(path))
        count = count + 1 if piece and piece != VOLUME_ROW else 0
    return labels
