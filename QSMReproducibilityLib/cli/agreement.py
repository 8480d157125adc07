"""``qsmrepro agreement``: the agreement report of a long feature table."""

from __future__ import annotations

from pathlib import Path

from ..progress import ConsoleProgress


def add_command(subparsers) -> None:
    """Register ``qsmrepro agreement FEATURES.csv -o DIR [--threshold 0.85] [--icc-form A,1]``."""
    from ..agreement import ICC_FORMS

    parser = subparsers.add_parser(
        "agreement", help="intra- and interobserver agreement report from a feature table",
        description="Compute ICC, wCV, Lin's CCC and Barnhart's overall CCC for the five comparisons of a "
                    "two-observer, two-reading study and write report.html, agreement.xlsx, CSV tables and "
                    "PNG figures into DIR.")
    parser.add_argument("features", metavar="FEATURES.csv",
                        help="long feature table (case_id, lesion_id, lesion_type, observer, reading, feature, "
                             "value)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--threshold", type=float, default=0.85,
                        help="a feature is stable when CCC and ICC exceed this value (default 0.85)")
    parser.add_argument("--icc-form", default="A,1", choices=ICC_FORMS,
                        help="ICC form in McGraw & Wong's notation (default A,1 = Shrout-Fleiss ICC(2,1))")
    parser.set_defaults(handler=_run)


def _run(args) -> int:
    from ..feature_table import read_feature_csv, validate_feature_table
    from ..report import write_report

    path = Path(args.features)
    features = read_feature_csv(path)
    validate_feature_table(features, source=str(path))
    with ConsoleProgress("agreement") as bar:
        outputs = write_report(features, args.output, settings={"Feature table": str(path.resolve())},
                               threshold=args.threshold, icc_form=args.icc_form, source=str(path), progress=bar)
    print(outputs["report_html"].resolve())
    return 0
