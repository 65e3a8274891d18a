"""`medivision datasets`, `medivision prepare NAME DIR` and `medivision scan`.

Example:

```
medivision datasets                       # the paper's ten datasets
medivision datasets retinal_oct           # one dataset: source, classes, layout
medivision prepare retinal_oct downloads/OCT2017 --out data/oct
medivision scan data/oct/manifest.csv --report bad.csv
medivision scan data/oct --duplicates pairs.csv   # exact and near-duplicate pairs
```
"""

import os


def register(subparsers):
    listing = subparsers.add_parser(
        "datasets",
        help="list the paper's ten datasets (source, classes, layout)",
        description="Lists the registered public datasets of the paper, or shows "
        "one dataset's source, classes and expected folder layout.",
    )
    listing.add_argument("name", nargs="?",
                         help="show the details of this dataset (default: list all)")
    listing.set_defaults(func=run_datasets)

    prepare = subparsers.add_parser(
        "prepare",
        help="turn a downloaded paper dataset into class folders + manifest.csv",
        description="Reads a downloaded, unzipped paper dataset from DIR and writes "
        "OUT/CLASS/... plus OUT/manifest.csv (nothing is downloaded).",
    )
    prepare.add_argument("name", metavar="NAME", help="dataset name (see `medivision datasets`)")
    prepare.add_argument("source", metavar="DIR", help="the downloaded, unzipped folder")
    prepare.add_argument("--out", default=None, help="output folder (default: data/NAME)")
    prepare.add_argument(
        "--mode",
        choices=("copy", "hardlink", "symlink"),
        default="copy",
        help="how files are placed (default: copy)",
    )
    prepare.add_argument("--quiet", action="store_true",
                         help="no progress bar (default: a progress bar on stderr)")
    prepare.set_defaults(func=run_prepare)

    scan = subparsers.add_parser(
        "scan",
        help="find corrupt, empty, non-image or unlabelled files before training",
        description="Checks every image of a class-folder tree, a prepared dataset folder "
        "(its manifest.csv: split and patient groups kept), a CSV or an .npz file, and lists "
        "the unusable ones with the reason.",
    )
    scan.add_argument("source", metavar="SOURCE", help="folder (class folders or prepared), .csv or .npz")
    scan.add_argument("--root", default=None,
                      help="folder CSV paths are relative to (default: the CSV's folder)")
    scan.add_argument("--report", default=None,
                      help="write the report to this CSV (default: none)")
    scan.add_argument("--max-pixels", type=int, default=None,
                      help="pixel budget: refuse images with more pixels (height x width), "
                      "read from the header (default: 89478485, Pillow's limit)")
    scan.add_argument("--strict", action="store_true",
                      help="exit with an error if any file is bad (default: skip them)")
    scan.add_argument("--quiet", action="store_true",
                      help="no progress bar (default: a progress bar on stderr for more "
                      "than 8 images)")
    scan.add_argument("--dicom-window", default="auto",
                      help='DICOM window: auto, minmax or "center,width" such as 40,400 '
                      "(default: auto, the file's VOI LUT or window)")
    scan.add_argument("--frames", default="middle", choices=("first", "middle", "all"),
                      help="multi-frame DICOM: which frames are samples (default: middle)")
    scan.add_argument("--nifti-slices", default="nonempty",
                      help="NIfTI slices: all, nonempty, middle or k (default: nonempty)")
    scan.add_argument("--nifti-axis", default="axial", choices=("axial", "coronal", "sagittal"),
                      help="NIfTI slicing axis (default: axial)")
    scan.add_argument("--duplicates", default=None, metavar="FILE.csv",
                      help="also find exact and near-duplicate images (within and across "
                      "splits) and write the pairs to this CSV: path_a, path_b, kind "
                      "(exact|near), distance, and each one's split (default: not searched)")
    scan.add_argument("--near-threshold", type=int, default=None, metavar="BITS",
                      help="largest perceptual-hash distance (of 256 bits) that counts as a "
                      "near duplicate (default: 24; see docs/data.md)")
    scan.set_defaults(func=run_scan)


def run_datasets(args):
    from medivision_tf.data.datasets.registry import datasets_table, get_dataset

    if args.name:
        spec = get_dataset(args.name)
        print(f"{spec.name}: {spec.title}")
        print(f"  modality: {spec.modality}")
        print(f"  source:   {spec.source}")
        print(f"  classes:  {', '.join(spec.classes)}")
        if spec.group_pattern:
            print(f"  patient ids from file names: {spec.group_pattern}")
        print("  expected layout:")
        for line in spec.layout.splitlines():
            print(f"    {line}")
        return 0
    table = datasets_table()
    width = max(len(n) for n in table["name"])
    for row in table.itertuples():
        print(f"{row.name:<{width}}  {row.num_classes} classes  {row.modality:<28}  {row.source}")
        print(f"{'':<{width}}  {row.classes}")
    print("\nPrepare one with: medivision prepare NAME DOWNLOADED_DIR --out OUT")
    return 0


def run_prepare(args):
    from medivision_tf.data.checks.splits import summarize
    from medivision_tf.data.datasets.prepare import prepare_dataset
    from medivision_tf.data.datasets.registry import get_dataset
    from medivision_tf.data.sources.prepared import MANIFEST

    spec = get_dataset(args.name)
    out = args.out or os.path.join("data", spec.name)
    table = prepare_dataset(spec.name, args.source, out, mode=args.mode, verbose=not args.quiet)
    print(f"Prepared {len(table)} images of {spec.name} in {os.path.abspath(out)}")
    print(summarize(table).to_string(index=False))
    if table.attrs.get("skipped_files"):
        print(f"Skipped {table.attrs['skipped_files']} files outside the class folders.")
    print(f"Manifest: {os.path.join(os.path.abspath(out), MANIFEST)}")
    return 0


def run_scan(args):
    from medivision_tf.data.sources.any_source import as_table
    from medivision_tf.data.checks.scan import NoUsableSamplesError, scan

    from medivision_tf.config import DecodeOptions
    from medivision_tf.data.sources.volumes import reexpand_volumes

    options = DecodeOptions(dicom_window=args.dicom_window, frames=args.frames,
                            nifti_slices=args.nifti_slices, nifti_axis=args.nifti_axis)
    table = as_table(args.source, root=args.root)
    table = reexpand_volumes(table, options.frames, options.nifti_slices, options.nifti_axis)
    limits = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    try:
        clean, report = scan(table, strict=args.strict, verbose=False if args.quiet else "auto",
                             dicom_window=options.dicom_window, **limits)
    except NoUsableSamplesError as error:
        # Nothing usable: the report is what the user needs, saved and shown.
        _show_report(error.report, args.report)
        raise
    # A linked folder that was not entered is one skipped entry of the total.
    print(f"{len(clean)} usable, {len(report)} skipped of {len(clean) + len(report)} samples")
    if "frame" in table:
        # Only rows with a frame index came from a volume or multi-frame
        # file; 2-D images carry frame -1 and are not counted here.
        framed = table[table["frame"] >= 0]
        print(f"Volumes/multi-frame files: {framed['source_path'].nunique()} files give "
              f"{len(framed)} frame/slice samples (frames={options.frames}, NIfTI slices="
              f"{options.nifti_slices}, axis={options.nifti_axis})")
    _show_report(report, args.report)
    if args.duplicates:
        _write_duplicates(clean, options, args)
    elif args.near_threshold is not None:
        raise ValueError("--near-threshold needs --duplicates FILE.csv (where the pairs go).")
    return 0


def _show_report(report, path):
    """Prints the skipped files and writes them to `path` (when given)."""
    if len(report):
        from medivision_tf.cli._text import quote

        # One unpadded line per file (a table pads every row to the longest
        # detail, hundreds of characters); quoted: a name cannot split or
        # forge a row.
        print("Skipped (path  reason: detail):")
        for path_, reason, detail in zip(report["path"], report["reason"], report["detail"]):
            print(f"{quote(path_)}  {reason}: {quote(detail)}")
    if path:
        report.to_csv(path, index=False)
        print(f"Report: {path}")


def _write_duplicates(clean, options, args):
    from medivision_tf.cli._text import quote
    from medivision_tf.data.checks.duplicates import find_duplicates
    from medivision_tf.data.checks.near_pairs import NEAR_THRESHOLD

    threshold = NEAR_THRESHOLD if args.near_threshold is None else args.near_threshold
    pairs = find_duplicates(clean, threshold=threshold, decode=options,
                            verbose=False if args.quiet else "auto")
    exact = int((pairs["kind"] == "exact").sum())
    line = (f"Duplicates: {exact} exact and {len(pairs) - exact} near pairs "
            f"(perceptual-hash distance <= {threshold} of 256 bits)")
    if "split_a" in pairs:
        crossing = pairs[pairs["split_a"] != pairs["split_b"]]
        leaks = crossing[(crossing["split_a"] == "train") | (crossing["split_b"] == "train")]
        line += f"; {len(crossing)} across splits, {len(leaks)} between train and val/test"
    print(line)
    if len(pairs):
        shown = pairs.head(10).copy()
        for column in ("path_a", "path_b"):
            shown[column] = shown[column].map(quote)
        print(shown.to_string(index=False))
        if len(pairs) > 10:
            print(f"... and {len(pairs) - 10} more")
    folder = os.path.dirname(os.path.abspath(args.duplicates))
    os.makedirs(folder, exist_ok=True)
    pairs.to_csv(args.duplicates, index=False)
    print(f"Duplicate pairs: {args.duplicates}")
