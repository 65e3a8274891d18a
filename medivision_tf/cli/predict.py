"""`medivision predict`: classify image files.

```
medivision predict runs/brain/model.keras scan1.png scan2.dcm --top-k 2 --csv preds.csv
```
"""

import os


def register(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="classify image files (class, probability, top-k, prediction set, OOD flag)",
        description="Prints the predicted class, its probability and the top-k "
        "classes of each image (JPEG, PNG, BMP, GIF, WebP, TIFF, DICOM); for models "
        "with trust values (fitted by train on validation data) also the calibrated "
        "probability, the conformal prediction set, the OOD score and flag.",
    )
    parser.add_argument("model", help=".keras model file")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=int, default=None,
                        help="classes listed per image (default: 3, or the number of "
                        "classes when the model has fewer)")
    parser.add_argument("--csv", default=None,
                        help="also write the table to this CSV file (default: none)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation (default: off)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per batch (default: 32)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (default: a progress bar on stderr "
                        "for more than 8 images)")
    parser.set_defaults(func=run_predict)


def run_predict(args):
    import medivision_tf
    from medivision_tf.prediction import predict_files

    model = medivision_tf.load_model(args.model, compile=False)
    num_classes = len(medivision_tf.get_model_config(model).class_names)
    top_k = args.top_k if args.top_k is not None else min(3, num_classes)
    table = predict_files(model, args.images, top_k=top_k, batch_size=args.batch_size,
                          tta=args.tta, verbose=False if args.quiet else "auto")
    trusted = "prediction_set" in table
    for row in table.itertuples(index=False):
        line = f"{row.path}\t{row[1]}\t{row.probability:.4f}\ttop-{top_k}: {row.top_k}"
        if trusted:
            flag = "  OUT-OF-DISTRIBUTION" if row.out_of_distribution else ""
            line += f"\tset: {{{row.prediction_set.replace('|', ', ')}}}\tood {row.ood_score:.2f}{flag}"
        print(line)
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        table.to_csv(args.csv, index=False)
    return 0
