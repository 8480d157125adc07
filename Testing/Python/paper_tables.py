"""Park et al., Sci Rep 2023 (the study this software serves): published Tables 1-3 and the demo's targets.

Used by the slow demo test (Testing/Python/test_demo.py) and by the observers' calibration script
(Testing/benchmarks/calibrate_observers.py). The targets (issue: simulated observers whose tables match the
paper's) are:

- Table 1: each of the 16 cells (2 lesion types x 2 observers x 2 readings x mean and median) within
  0.05 ppm of the paper's value;
- Table 2: per lesion type, at least 8 of the 10 ICCs (mean and median x 5 comparisons) inside the paper's
  95 % CI, and at least 8 of the 10 wCVs;
- Table 3: calcifications have more radiomic features stable (CCC and ICC > 0.85) in all five comparisons
  than haematomas.
"""

from __future__ import annotations

import pandas as pd

from QSMReproducibilityLib.agreement import COMPARISONS

# Park et al. 2023, Table 1: mean of the per-lesion mean / median χ (ppm), O1R1, O1R2, O2R1, O2R2.
PAPER_TABLE1 = {
    ("qsm_mean", "hematoma"): (0.304, 0.247, 0.297, 0.260),
    ("qsm_mean", "calcification"): (-0.212, -0.217, -0.210, -0.194),
    ("qsm_median", "hematoma"): (0.287, 0.240, 0.291, 0.254),
    ("qsm_median", "calcification"): (-0.207, -0.210, -0.206, -0.188),
}
TABLE1_TOLERANCE_PPM = 0.05
# Park et al. 2023, Table 2: (value, 95 % CI low, high) of ICC and wCV (%), per feature x lesion type, in the
# order of QSMReproducibilityLib.agreement.COMPARISONS.
PAPER_TABLE2 = {
    ("qsm_mean", "hematoma"): {
        "icc": ((0.712, 0.003, 0.902), (0.785, 0.438, 0.906), (0.832, 0.697, 0.911), (0.865, 0.750, 0.929),
                (0.793, 0.594, 0.895)),
        "wcv": ((18.7, 14.6, 24.2), (16.1, 12.6, 20.9), (12.9, 10.1, 16.7), (12.4, 9.7, 16.1), (15.5, 13.2, 18.4))},
    ("qsm_mean", "calcification"): {
        "icc": ((0.969, 0.932, 0.986), (0.894, 0.755, 0.954), (0.895, 0.777, 0.952), (0.910, 0.637, 0.968),
                (0.915, 0.846, 0.958)),
        "wcv": ((6.5, 4.8, 8.9), (12.7, 9.4, 17.6), (11.6, 8.6, 15.9), (12.1, 8.9, 16.8), (11.1, 9.0, 13.9))},
    ("qsm_median", "hematoma"): {
        "icc": ((0.746, 0.154, 0.905), (0.769, 0.471, 0.892), (0.823, 0.679, 0.906), (0.829, 0.690, 0.909),
                (0.798, 0.637, 0.892)),
        "wcv": ((17.8, 13.9, 23.1), (17.7, 13.8, 23.0), (13.9, 10.9, 18.1), (14.9, 11.6, 19.4), (16.0, 13.6, 19.1))},
    ("qsm_median", "calcification"): {
        "icc": ((0.948, 0.887, 0.977), (0.885, 0.712, 0.951), (0.892, 0.770, 0.951), (0.887, 0.668, 0.956),
                (0.901, 0.824, 0.950)),
        "wcv": ((8.7, 6.4, 12.0), (13.5, 10.0, 18.8), (12.3, 9.1, 16.9), (13.7, 10.1, 19.1), (12.3, 10.0, 15.4))},
}
TABLE2_MIN_INSIDE = 8
# Park et al. 2023, Results: radiomic features stable (CCC and ICC > 0.85) in all five comparisons.
PAPER_STABLE_ALL = {"hematoma": 9, "calcification": 19}


def compare_with_paper(table1: pd.DataFrame, table2: pd.DataFrame, table3: pd.DataFrame
                       ) -> tuple[list[str], dict[str, bool]]:
    """Lines of the paper-vs-demo comparison and whether each of the three targets is met.

    The tables are those of :class:`QSMReproducibilityLib.agreement.StudyAgreement` (or the report's
    ``table1_qsm_values.csv``, ``table2_qsm_agreement.csv``, ``table3_stable_features.csv``).
    """
    lines, ok = [], {}
    t1 = table1.set_index(["feature", "lesion_type", "observer", "reading"])["mean_ppm"]
    lines.append("Table 1 (mean of per-lesion values, ppm)      O1R1            O1R2            O2R1            O2R2"
                 "       paper | demo")
    t1_ok = True
    for (feature, lesion_type), paper in PAPER_TABLE1.items():
        cells = []
        for (observer, reading), value in zip((("O1", 1), ("O1", 2), ("O2", 1), ("O2", 2)), paper):
            demo = float(t1[(feature, lesion_type, observer, reading)])
            good = abs(demo - value) <= TABLE1_TOLERANCE_PPM
            t1_ok &= good
            cells.append(f"{value:+.3f} {demo:+.3f}{' ' if good else '*'}")
        lines.append(f"  {feature:<10} {lesion_type:<14}            " + "  ".join(cells))
    ok["table1"] = t1_ok

    t2 = table2.set_index(["feature", "lesion_type", "comparison"])
    lines.append("Table 2 (paper value [95 % CI] | demo; * outside the CI)")
    inside = {}
    for (feature, lesion_type), stats in PAPER_TABLE2.items():
        for stat, paper_rows in stats.items():
            for comparison, (value, low, high) in zip(COMPARISONS, paper_rows):
                demo = float(t2.loc[(feature, lesion_type, comparison.name), stat])
                good = low <= demo <= high
                inside.setdefault((lesion_type, stat), []).append(good)
                digits = 3 if stat == "icc" else 1
                lines.append(f"  {feature:<10} {lesion_type:<14} {stat:<4} {comparison.name:<16} "
                             f"{value:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}] | {demo:.{digits}f}"
                             f"{'' if good else ' *'}")
    t2_ok = True
    for (lesion_type, stat), flags in inside.items():
        count = int(sum(flags))
        t2_ok &= count >= TABLE2_MIN_INSIDE
        lines.append(f"  {lesion_type} {stat}: {count}/{len(flags)} inside the paper's CI "
                     f"(target >= {TABLE2_MIN_INSIDE})")
    ok["table2"] = t2_ok

    t3 = table3[table3["comparison"] == "All comparisons"].set_index("lesion_type")["n_stable"]
    lines.append("Table 3 (features stable, CCC and ICC > 0.85, in all five comparisons): "
                 + ", ".join(f"{lt} paper {PAPER_STABLE_ALL[lt]} | demo {int(t3[lt])}" for lt in PAPER_STABLE_ALL))
    ok["table3"] = int(t3["calcification"]) > int(t3["hematoma"])
    return lines, ok
