"""`medivision demo`: train and evaluate a small MediVision on synthetic data."""

import dataclasses


def register(subparsers):
    from medivision_tf.demo import DemoConfig

    parser = subparsers.add_parser(
        "demo",
        help="train a small MediVision on synthetic lesion data (no download)",
        description="Generates synthetic lesion images, trains a small MediVision "
        "on the CPU, prints held-out accuracy and writes a run folder.",
    )
    parser.add_argument("--out", default="runs", help="parent folder of the run folder")
    parser.add_argument(
        "--export-root",
        default="saved_models",
        help="where the SavedModel export lands (EXPORT_ROOT/lesions/VERSION)",
    )
    for field in dataclasses.fields(DemoConfig):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=field.type if isinstance(field.type, type) else type(field.default),
            default=field.default,
            help=f"(default: {field.default})",
        )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args):
    from medivision_tf.demo import DemoConfig, run_demo

    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)}
    run_demo(
        out_dir=args.out,
        export_root=args.export_root,
        verbose=0 if args.quiet else 1,
        **settings,
    )
    return 0
