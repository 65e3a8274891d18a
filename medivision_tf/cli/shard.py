"""`medivision shard SOURCE --out DIR`: decode a dataset once into sharded TFRecords.

```
medivision shard data/oct --out shards/oct-224 --image-size 224
medivision shard data/oct --out gs://my-bucket/oct-224 --image-size 224 --channels 1
medivision train shards/oct-224 --image-size 224          # reads the shards
```

The shard folder holds `*.tfrecord` shards per split, `shards.json` (class
names, decode options, counts, shard checksums), `examples.csv` and
`bad_files.csv`. Rerunning the same command after an interruption keeps the
finished shards. See docs/shards.md.
"""


def register(subparsers):
    parser = subparsers.add_parser(
        "shard",
        help="decode a dataset once into sharded TFRecords (for clusters and TPUs)",
        description="Decodes every image of SOURCE (image folder, prepared dataset, .csv, "
        "DICOM folder) once, optionally resizes it, and writes split-aware TFRecord shards "
        "with a manifest to OUT (a local folder or a gs:// / any tf.io.gfile URL). "
        "`medivision train OUT` then reads the shards with TensorFlow ops only.",
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="dataset: image folder, prepared folder, .csv or DICOM folder")
    parser.add_argument("--out", required=True,
                        help="output folder or gfile URL, e.g. gs://bucket/name (required; "
                        "default: none)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize every image to this square size; use the training "
                        "size for the fastest reads (default: keep each image's size)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3,
                        help="stored channels (default: 3)")
    parser.add_argument("--resize", choices=("pad", "stretch", "crop"), default="pad",
                        help="how --image-size is reached (default: pad)")
    parser.add_argument("--examples-per-shard", type=int, default=1024,
                        help="examples per shard file (default: 1024)")
    parser.add_argument("--png-compression", type=int, choices=range(10), default=0,
                        metavar="{0..9}",
                        help="zlib level of the stored PNGs: 0 reads fastest, 6-9 makes "
                        "smaller shards (default: 0)")
    parser.add_argument("--dicom-window", default=None,
                        help="DICOM window: auto, minmax or CENTER,WIDTH "
                        "(default: the source's, else auto)")
    parser.add_argument("--bit-depth-16", choices=("auto", "scale", "12bit", "minmax"),
                        default="auto",
                        help="16-bit PNG/TIFF to 0-255: auto (12-bit data, max <= 4095, "
                        "scaled as 12-bit; else scale), scale, 12bit or minmax (default: auto)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the shuffle that deals rows to shards (default: 0)")
    parser.add_argument("--root", default=None,
                        help="folder CSV paths are relative to (default: the CSV's folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    parser.set_defaults(func=run_shard)


def _window(text):
    if text is None or text in ("auto", "minmax"):
        return text
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--dicom-window takes auto, minmax or CENTER,WIDTH. Received: {text!r}"
        ) from None
    return (center, width)


def run_shard(args):
    from medivision_tf.data.shards import MANIFEST_NAME, REPORT_NAME, write_shards

    manifest = write_shards(
        args.source, args.out, image_size=args.image_size, channels=args.channels,
        resize=args.resize, examples_per_shard=args.examples_per_shard,
        png_compression=args.png_compression,
        dicom_window=_window(args.dicom_window), bit_depth_16=args.bit_depth_16,
        seed=args.seed, root=args.root, verbose=not args.quiet,
    )
    for split, counts in manifest["counts"].items():
        classes = ", ".join(f"{k}: {v}" for k, v in counts["per_class"].items())
        print(f"  {split}: {counts['total']} images ({classes})")
    report = manifest["bad_files"]
    if len(report):
        print(report[["path", "reason", "detail"]].to_string(index=False))
    print(f"Manifest: {args.out.rstrip('/')}/{MANIFEST_NAME}; refused files: {REPORT_NAME}")
    return 0
