"""``qsmrepro demo``: the synthetic study end to end (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

from ..progress import ConsoleProgress
from ..recon import pipeline


def add_command(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="run the synthetic 61-case study end to end")
    demo.add_argument("-o", "--output", required=True, help="output folder (report.html, features.csv, agreement.xlsx, study/)")
    demo.add_argument("--cases", type=int, default=61, help="number of cases (default 61: 36 haematomas, 25 calcifications)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--method", default=pipeline.STUDY_CHAIN["method"], choices=pipeline.METHODS)
    demo.add_argument("--background", default=pipeline.STUDY_CHAIN["background"], choices=pipeline.BACKGROUND_METHODS,
                      help="background field removal (default: V-SHARP, the study's chain, which the demo reproduces)")
    demo.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    demo.add_argument("--full-fov", action="store_true",
                      help="simulate the study's whole 320x240x70 matrix instead of a slab around V4 (slower)")
    demo.set_defaults(handler=_run)


def _run(args) -> int:
    from ..demo import run_demo

    with ConsoleProgress("demo") as bar:
        outputs = run_demo(args.output, n_cases=args.cases, seed=args.seed, method=args.method,
                           background=args.background, workers=args.workers, full_fov=args.full_fov, progress=bar)
    print(f"Report: {Path(outputs['report_html']).resolve()}")
    print(f"Features: {Path(outputs['features']).resolve()}")
    print(f"Study store: {Path(outputs['study']).resolve()}")
    return 0
