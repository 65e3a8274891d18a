"""`medivision dicom-report`: DICOM results (SR + heatmap series) for DICOM input.

```
medivision dicom-report runs/x/model.keras study/ --out results
MEDIVISION_DICOMWEB_USER=ai MEDIVISION_DICOMWEB_PASSWORD=... \\
  medivision dicom-report runs/x/model.keras --dicomweb http://127.0.0.1:8042/dicom-web \\
  --study 1.2.3.4 --store --out results
```

Per series: one TID 1500 Structured Report (class, calibrated probability,
prediction set, OOD flag and score per instance and for the series, the
model's name, version and config hash, references to every source instance)
and one Secondary Capture series of Grad-CAM overlays, in the source's study
(`medivision_tf.dicom_out`). Needs the `[pacs]` extra. Research use only.
"""

import json
import sys


def register(subparsers):
    parser = subparsers.add_parser(
        "dicom-report",
        help="write DICOM results (Structured Report + Grad-CAM heatmap series) for DICOM "
        "files or a study on a DICOMweb server (PACS), and store them back",
        description="Classifies DICOM instances as `medivision predict` does and writes, per "
        "series, a TID 1500 Structured Report and a Secondary Capture series of Grad-CAM "
        "overlays into the source's study. Local files: medivision dicom-report MODEL INPUT... "
        "--out DIR. A PACS: medivision dicom-report MODEL --dicomweb URL --study UID [--store] "
        "(credentials from $MEDIVISION_DICOMWEB_USER/$MEDIVISION_DICOMWEB_PASSWORD, "
        "$MEDIVISION_DICOMWEB_TOKEN or a netrc file, never on the command line). Needs the "
        "[pacs] extra. Research use only: not a certified medical device.",
    )
    parser.add_argument("model", help=".keras MediVision model file")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="DICOM files or folders (an instance, a series, a study)")
    parser.add_argument("--out", default="dicom-results",
                        help="output folder (default: dicom-results)")
    parser.add_argument("--dicomweb", metavar="URL", default=None,
                        help="DICOMweb root of a PACS, e.g. http://127.0.0.1:8042/dicom-web "
                        "(default: none: INPUT files are read)")
    parser.add_argument("--study", metavar="UID", default=None,
                        help="with --dicomweb: the Study Instance UID to read (default: none)")
    parser.add_argument("--store", action="store_true",
                        help="with --dicomweb: store the results back (STOW-RS) (default: off: "
                        "written to --out only)")
    parser.add_argument("--class-codes", metavar="JSON", default=None,
                        help='a JSON file {"class": ["code value", "scheme", "meaning"]} coding '
                        "the classes (e.g. SNOMED CT); default: MediVision's own codes")
    parser.add_argument("--method", default="gradcam",
                        choices=("gradcam", "gradcam++", "scorecam", "layercam"),
                        help="heatmap method (default: gradcam)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per DICOMweb request (default: 30)")
    parser.add_argument("--max-response-mb", type=int, default=1024,
                        help="largest DICOMweb response accepted, MiB (default: 1024)")
    parser.add_argument("--ca-bundle", default=None,
                        help="CA certificates to verify the server's TLS certificate "
                        "(default: the system's)")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify TLS certificates, for test servers only (default: "
                        "off: certificates are verified)")
    parser.add_argument("--netrc", default=None,
                        help="netrc file with the server's credentials (default: $NETRC or "
                        "~/.netrc, when no environment variable gives them)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (default: a progress bar on stderr for more than "
                        "8 images)")
    parser.set_defaults(func=run)


def _check_args(args):
    if args.dicomweb:
        if args.inputs:
            raise ValueError("Give either INPUT files or --dicomweb URL --study UID, not both.")
        if not args.study:
            raise ValueError("--dicomweb needs --study UID (the Study Instance UID).")
    else:
        if not args.inputs:
            raise ValueError("Give DICOM files or folders, or --dicomweb URL --study UID.")
        for flag, value in (("--study", args.study), ("--store", args.store)):
            if value:
                raise ValueError(f"{flag} goes with --dicomweb URL.")
    if args.timeout <= 0 or args.max_response_mb < 1:
        raise ValueError("--timeout and --max-response-mb must be positive. Received: "
                         f"{args.timeout}, {args.max_response_mb}")
    if args.ca_bundle and args.insecure:
        raise ValueError("--ca-bundle and --insecure contradict each other.")


def _class_codes(path):
    if path is None:
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"--class-codes: no such file {path!r}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--class-codes: {path!r} is not valid JSON ({error})") from None


def run(args):
    from medivision_tf.dicom_out.requirements import require_pacs

    _check_args(args)
    require_pacs(*(("highdicom", "dicomweb-client") if args.dicomweb else ("highdicom",)))
    codes = _class_codes(args.class_codes)
    if args.dicomweb:
        from medivision_tf.dicom_out.dicomweb import DicomWebStudy

        # URL, UID and credentials checked before the model loads (seconds).
        DicomWebStudy(args.dicomweb, args.study, timeout=args.timeout, netrc_file=args.netrc)
    from medivision_tf.dicom_out.report import dicom_report, dicomweb_report
    from medivision_tf.model import load_model

    model = load_model(args.model, compile=False)
    verbose = False if args.quiet else "auto"
    if args.dicomweb:
        verify = False if args.insecure else (args.ca_bundle or True)
        report = dicomweb_report(
            model, args.dicomweb, args.study, args.out, store=args.store, class_codes=codes,
            method=args.method, verbose=verbose, echo=print, timeout=args.timeout,
            max_response_bytes=args.max_response_mb * 2 ** 20, verify=verify,
            netrc_file=args.netrc)
    else:
        report = dicom_report(model, args.inputs, args.out, class_codes=codes,
                              method=args.method, verbose=verbose, echo=print)
    for name, reason in report.skipped:
        print(f"{name}\tskipped: {reason}")
    reports = sum(o.kind == "SR" for o in report.written)
    heatmaps = len(report.written) - reports
    print(f"Wrote {len(report.written)} DICOM objects ({reports} SR, {heatmaps} heatmap "
          f"image{'' if heatmaps == 1 else 's'}) and report.json to {args.out}")
    from medivision_tf.dicom_out.inputs import is_problem

    problems = [name for name, reason in report.skipped if is_problem(reason)]
    status = 1 if problems else 0
    if args.store:
        from medivision_tf.dicom_out.dicomweb import safe_url

        stored = [o for o in report.written if o.stored]
        print(f"Stored {len(stored)} of {len(report.written)} objects in study {args.study} on "
              f"{safe_url(args.dicomweb)}")
        for obj in report.not_stored:
            print(f"NOT stored: {obj.kind} of {obj.series_label} ({obj.sop_instance_uid}): "
                  f"{obj.reason}")
        if report.not_stored:
            print(f"medivision dicom-report: {len(report.not_stored)} of {len(report.written)} "
                  f"objects were NOT stored (listed above and in {args.out}/report.json)"
                  + (f": {report.store_error}" if report.store_error else ""), file=sys.stderr)
            return 1
    if problems:
        print(f"medivision dicom-report: {len(problems)} image(s) skipped (listed above)",
              file=sys.stderr)
    return status
