"""Benchmark: vertebral-artery wall lesions next to the skull base, per background-removal method.

The realistic head (:mod:`QSMReproducibilityLib.head_phantom`, study matrix and echoes) carries wall
lesions on both V4 segments, near the foramen magnum, mid-segment and near the vertebrobasilar junction.
For each background removal, with STAR and the default BET mask, this prints each lesion's CSF-referenced
mean over the voxels it touches (occupancy-weighted) against its partial-volume truth, the share of those
voxels left in the final mask, the deep-grey-matter slope and mean error, and the time of the background
step and the inversion. The field map (mask, unwrapping, fit) is computed once and timed as the baseline.
Targets: every lesion the right sign, within 25 % of its truth, >= 95 % of its voxels kept; deep grey
matter within 10 %.

    .venv/bin/python Testing/benchmarks/bench_skull_base.py [--seed S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="noise seed")
    args = parser.parse_args()

    from QSMReproducibilityLib import head_phantom as hp
    from QSMReproducibilityLib.io import GreSeries
    from QSMReproducibilityLib.recon import pipeline

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "Python"))
    from head_support import deep_grey_scores

    lesion_sets = {
        "default lesions": hp.DEFAULT_LESIONS,
        "other positions": (
            hp.Lesion("left", 0.1, "calcification", -0.8, span_deg=100.0, thickness_mm=2.0, length_mm=5.0),
            hp.Lesion("right", 0.45, "hematoma", 0.28, span_deg=150.0, thickness_mm=2.8, length_mm=10.0,
                      angle_deg=180.0),
            hp.Lesion("right", 0.9, "calcification", -0.8, span_deg=90.0, thickness_mm=2.0, length_mm=4.0,
                      angle_deg=-90.0),
        ),
    }
    for set_name, lesions in lesion_sets.items():
        phantom = hp.make_head(lesions=lesions)
        magnitude, phase, _ = hp.simulate_head(phantom, seed=args.seed)
        gre = GreSeries(np.ascontiguousarray(magnitude), np.ascontiguousarray(phase), np.asarray(hp.STUDY_TE_S),
                        3.0, phantom.affine, source="head phantom")
        del magnitude, phase
        t = time.perf_counter()
        fieldmap = pipeline.estimate_field(gre, pipeline.ReconParams())
        baseline = time.perf_counter() - t
        print(f"{set_name}: field map (BET mask, unwrapping, fit) {baseline:.1f} s (baseline)")
        horns = phantom.regions["posterior_horns"]
        for background in pipeline.BACKGROUND_METHODS:
            params = pipeline.ReconParams(background=background)
            t = time.perf_counter()
            result = pipeline.invert_field(fieldmap, params)
            seconds = time.perf_counter() - t
            chi, kept_mask = result.chi_ppm, result.local_field_mask
            reference = chi[horns & kept_mask].mean()
            cells, met = [], True
            for truth in phantom.lesions:
                weights = truth.occupancy * kept_mask
                value = float(((chi - reference) * weights).sum() / max(weights.sum(), 1e-12))
                kept = ((truth.occupancy > 0) & kept_mask).sum() / (truth.occupancy > 0).sum()
                met &= abs(value / truth.pv_chi_ppm - 1) <= 0.25 and kept >= 0.95
                cells.append(f"{truth.lesion.kind} at {truth.lesion.fraction:.2f}: {value:+.3f}/{truth.pv_chi_ppm:+.3f} "
                             f"ppm = {value / truth.pv_chi_ppm:.2f}x, kept {kept:.2f}")
            scores = deep_grey_scores(phantom, chi, kept_mask)
            slope, error = scores["slope"], scores["mean_error"]
            default = " (default)" if background == pipeline.BACKGROUND_METHODS[0] else ""
            print(f"  {background:7s} + STAR{default}: " + "; ".join(cells))
            met &= error <= 0.10
            print(f"  {'':7s}   deep grey slope {slope:.2f}, mean |error| {100 * error:.1f} %; "
                  f"background + inversion {seconds:.1f} s ({seconds / baseline:.1f} x baseline); "
                  f"targets {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
