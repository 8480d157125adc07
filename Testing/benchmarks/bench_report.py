"""Benchmark: the agreement report of a study the size of the paper's (74 lesions x 109 features x 4 readings).

Prints wall time and peak memory of `qsmrepro agreement` as a user runs it, the time of each stage in process
(statistics, Figure 3, Bland-Altman plots, workbook and HTML), and as a baseline measured in this same run the
time to read the feature table and pivot it into one lesion x reading matrix per feature -- the data handling
no analysis can avoid.

    .venv/bin/python Testing/benchmarks/bench_report.py [--features FEATURES.csv]

Without --features the table is demo-output/features.csv when `make demo` has run, else a synthetic table of the
same shape (36 haematoma and 25 calcification cases, 13 of them bilateral).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def synthetic_table(seed: int = 0) -> pd.DataFrame:
    """Long feature table shaped like the study's: 40 + 34 lesions, 2 QSM values + 107 radiomic features."""
    rng = np.random.default_rng(seed)
    classes = {"firstorder": 18, "shape": 14, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}
    features = ["qsm_mean", "qsm_median"] + [f"original_{c}_F{i:02d}" for c, n in classes.items() for i in range(n)]
    noise = rng.uniform(0.02, 1.0, len(features))
    rows = []
    for lesion_type, n_cases, n_bilateral in (("hematoma", 36, 4), ("calcification", 25, 9)):
        for case in range(n_cases):
            for side in (("left", "right") if case < n_bilateral else ("right",)):
                truth = rng.normal(1.0, 0.3, len(features))
                for observer in ("O1", "O2"):
                    for reading in (1, 2):
                        values = truth + noise * 0.3 * rng.normal(size=len(features))
                        rows += [(f"{lesion_type[0].upper()}{case:03d}", side, lesion_type, observer, reading, f, v)
                                 for f, v in zip(features, values)]
    return pd.DataFrame(rows, columns=["case_id", "lesion_id", "lesion_type", "observer", "reading", "feature",
                                       "value"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", help="long feature table (default: demo-output/features.csv or synthetic)")
    args = parser.parse_args()

    from QSMReproducibilityLib.agreement import analyze_study
    from QSMReproducibilityLib.feature_table import read_feature_csv
    from QSMReproducibilityLib.report import figures as report_figures
    from QSMReproducibilityLib.report import write_report

    work = Path(tempfile.mkdtemp(prefix="qsm-bench-report-"))
    if args.features and not Path(args.features).is_file():
        print(f"{args.features} does not exist")
        return 1
    source = Path(args.features) if args.features else ROOT / "demo-output" / "features.csv"
    if not source.is_file():
        source = work / "features.csv"
        synthetic_table().to_csv(source, index=False)
    print(f"feature table: {source}")

    # Baseline measured in this run: read the CSV and pivot it to one matrix per lesion type and feature.
    t = time.perf_counter()
    table = read_feature_csv(source)
    wide = table.pivot_table(index=["lesion_type", "case_id", "lesion_id", "feature"],
                             columns=["observer", "reading"], values="value")
    matrices = [frame.to_numpy() for _key, frame in wide.groupby(level=["lesion_type", "feature"])]
    baseline_s = time.perf_counter() - t
    print(f"{len(table)} rows, {len(matrices)} lesion-type x feature matrices; read + pivot {baseline_s:.2f} s "
          "(baseline)")

    # The CLI, as a user runs it: wall time and peak resident memory of the child process.
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "QSMReproducibilityLib.cli", "agreement", str(source), "-o",
                           str(work / "report")], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr)
        return 1
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"CLI agreement: wall {wall:.1f} s ({wall / baseline_s:.0f} x baseline), peak RSS {peak_mb:.0f} MB")

    # In process: the stages.
    t = time.perf_counter()
    study = analyze_study(table)
    stats_s = time.perf_counter() - t
    t = time.perf_counter()
    report_figures.heatmap_png(study.feature_agreement, study.lesion_types, study.threshold, study.icc_form)
    heatmap_s = time.perf_counter() - t
    t = time.perf_counter()
    for lesion_type in study.lesion_types:
        report_figures.bland_altman_png(study.wide, study.bland_altman, lesion_type)
    bland_s = time.perf_counter() - t
    t = time.perf_counter()
    write_report(table, work / "report-in-process")
    total_s = time.perf_counter() - t
    n_estimates = 2 * len(study.feature_agreement) + 4 * len(study.table2)
    print(f"statistics      {stats_s:6.2f} s  ({n_estimates} estimates with CIs, "
          f"{stats_s / baseline_s:.1f} x baseline)")
    print(f"Figure 3        {heatmap_s:6.2f} s")
    print(f"Bland-Altman    {bland_s:6.2f} s")
    print(f"write_report    {total_s:6.2f} s  (all of the above + tables, workbook, HTML)")
    print(f"output in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
