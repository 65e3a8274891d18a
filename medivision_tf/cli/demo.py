"""`medivision demo`: train and evaluate a small MediVision on synthetic data."""

from medivision_tf.cli._flags import add_config_flags, config_overrides, keras_verbosity


def register(subparsers):
    from medivision_tf.demo import DemoConfig

    parser = subparsers.add_parser(
        "demo",
        help="train a small MediVision on synthetic lesion data (no download)",
        description="Generates synthetic lesion images, trains a small MediVision "
        "on the CPU, prints held-out accuracy and writes a run folder.",
    )
    parser.add_argument("--out", default="runs",
                        help="parent folder of the run folder (default: runs)")
    parser.add_argument(
        "--export-root",
        default="saved_models",
        help="where the SavedModel export lands, EXPORT_ROOT/lesions/VERSION "
        "(default: saved_models)",
    )
    add_config_flags(parser, DemoConfig)
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (default: progress bars)")
    parser.set_defaults(func=run)


def run(args):
    from medivision_tf.demo import DemoConfig, run_demo

    settings = config_overrides(args, DemoConfig)
    run_demo(
        out_dir=args.out,
        export_root=args.export_root,
        verbose=keras_verbosity(args.quiet),
        **settings,
    )
    return 0
