"""`medivision export` and `medivision serve`: TF Serving layout and a local server.

Examples:

```
medivision export runs/demo-.../model.keras saved_models/lesions
medivision serve saved_models/lesions --port 8501
```
"""

import os
import sys


def register(subparsers):
    export = subparsers.add_parser(
        "export",
        help="export a .keras model as a SavedModel in TF Serving's layout",
        description="Writes EXPORT_DIR/VERSION/ (next integer version unless "
        "--version) with the signatures serving_default, predict_images and "
        "explain, ready for TF Serving, KServe or `medivision serve`.",
    )
    export.add_argument("model", help="path of a .keras MediVision model")
    export.add_argument(
        "export_dir", help="model base path, e.g. saved_models/lesions (its name is the served name)"
    )
    export.add_argument("--version", type=int, default=None, help="version number (default: next)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version (default: refuse)")
    export.set_defaults(func=run_export)

    serve = subparsers.add_parser(
        "serve",
        help="serve an export over TF Serving's REST API (needs the 'serve' extra; "
        "127.0.0.1 by default)",
        description="Loads the newest version under MODEL_DIR and serves all its "
        "signatures at http://HOST:PORT/v1/models/NAME[:predict], the REST API "
        "of TF Serving.",
    )
    serve.add_argument("model_dir", help="model base path, e.g. saved_models/lesions")
    serve.add_argument("--name", default=None, help="model name in URLs (default: folder name)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8501, help="port (default: 8501, as TF Serving)")
    serve.add_argument(
        "--max-batch-size", type=int, default=64, help="most instances per request (default: 64)"
    )
    serve.add_argument(
        "--max-body-mb", type=float, default=16.0, help="largest request body in MiB (default: 16)"
    )
    serve.set_defaults(func=run_serve)


def run_export(args):
    import medivision_tf
    from medivision_tf.export import export_saved_model

    model = medivision_tf.load_model(args.model, compile=False)
    try:
        path = export_saved_model(
            model, args.export_dir, version=args.version, overwrite=args.overwrite
        )
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    print(f"SavedModel written to {path}")
    print(f"Serve it: medivision serve {os.path.dirname(path)}")
    return 0


def run_serve(args):
    import importlib.util

    if importlib.util.find_spec("kserve") is None:  # say so before TensorFlow starts
        print("medivision serve: error: serving needs the 'serve' extra: "
              "pip install 'medivision-tf[serve]' (or pip install kserve).", file=sys.stderr)
        return 2
    try:
        from medivision_tf.serving import serve
    except ImportError as error:  # kserve is the optional 'serve' extra
        print(f"medivision serve: error: {error}", file=sys.stderr)
        return 2

    serve(
        args.model_dir,
        name=args.name,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
    )
    return 0
