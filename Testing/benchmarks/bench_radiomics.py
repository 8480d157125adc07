"""Benchmark: the 107 PyRadiomics features of one small lesion, and of a whole 61-case study.

1. A 50-voxel lesion in a volume of the study's matrix (320×240×70, 0.72×0.72×2 mm): time of
   ``radiomics.roi_features`` (what every reading goes through), against PyRadiomics' own extractor
   called directly on the same image and ROI in this run (the baseline). Target <= 0.2 s.
2. The demo study (``demo-output/study``: 61 cases × 2 observers × 2 readings; simulated with the demo's
   functions when absent): wall time of ``radiomics.extract_readings`` with 2 worker processes, against
   PyRadiomics' extractor called directly, one ROI after another in this process, on the same
   CSF-referenced images and ROIs (the baseline; file reading excluded). Target <= 2 min on 2 cores.

Peak resident memory of this process and of the worker processes is printed for each.

    .venv/bin/python Testing/benchmarks/bench_radiomics.py [--study DIR] [--workers 2] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _peak_mb(who) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: imports, first-call caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_small_lesion(repeats: int) -> None:
    from QSMReproducibilityLib import radiomics
    from QSMReproducibilityLib.phantom import FULL_FOV_SHAPE, STUDY_VOXEL_MM

    rng = np.random.default_rng(0)
    chi = rng.normal(0.0, 0.05, FULL_FOV_SHAPE).astype(np.float32)
    roi = np.zeros(FULL_FOV_SHAPE, bool)
    roi[150:155, 110:115, 30:32] = True  # 5 × 5 × 2 = 50 voxels, a vessel-wall lesion
    chi[roi] += rng.uniform(0.1, 0.4, roi.sum()).astype(np.float32)
    affine = np.diag([*STUDY_VOXEL_MM, 1.0])
    extractor = radiomics.make_extractor()

    # Baseline: PyRadiomics' extractor on the whole image, SimpleITK images built beforehand.
    image = radiomics.to_sitk(chi.astype(np.float64), affine)
    mask = radiomics.to_sitk(roi.astype(np.uint8), affine)
    baseline = _median_time(lambda: extractor.execute(image, mask), repeats)
    ours = _median_time(lambda: radiomics.roi_features(extractor, chi, roi, affine), repeats)
    uncropped = _median_time(lambda: radiomics.roi_features(extractor, chi, roi, affine, crop=False), repeats)
    n = sum(1 for k in radiomics.roi_features(extractor, chi, roi, affine).values if k.startswith("original_"))
    print(f"[1] {n} features of a {int(roi.sum())}-voxel lesion in a {FULL_FOV_SHAPE} volume "
          f"(median of {repeats}):")
    print(f"    roi_features             {ours:7.3f} s   (target <= 0.2 s: {'met' if ours <= 0.2 else 'MISSED'})")
    print(f"    baseline: PyRadiomics    {baseline:7.3f} s   ratio {ours / baseline:.2f}")
    print(f"    roi_features, no crop    {uncropped:7.3f} s   ratio {uncropped / baseline:.2f}")
    print(f"    peak RSS of this process {_peak_mb(resource.RUSAGE_SELF):7.0f} MB")


def _demo_readings(work: Path) -> list:
    """Simulate, reconstruct and read the 61 demo cases with the demo's own functions."""
    from concurrent.futures import ProcessPoolExecutor

    from QSMReproducibilityLib.demo import cohort, simulate_and_read

    readings = []
    with ProcessPoolExecutor(2) as pool:
        for case in pool.map(simulate_and_read, cohort(61, 0, work)):
            readings += [SimpleNamespace(case_id=case["case_id"], lesion_type=case["lesion_type"],
                                         observer=r["observer"], reading=r["reading"], qsm_path=case["qsm"],
                                         segmentation_path=r["path"])
                         for r in case["readings"]]
    return readings


def _direct_pyradiomics(readings) -> tuple[float, int]:
    """Seconds PyRadiomics' extractor takes on every lesion ROI of ``readings``, called directly."""
    from QSMReproducibilityLib import radiomics
    from QSMReproducibilityLib.io import load_volume
    from QSMReproducibilityLib.segio import read_seg_nrrd

    extractor = radiomics.make_extractor()
    total, n_rois = 0.0, 0
    for r in readings:
        qsm, affine = load_volume(r.qsm_path)
        seg = read_seg_nrrd(r.segmentation_path)
        masks = seg.on_grid(qsm.shape, affine)
        image = radiomics.to_sitk((qsm - qsm[masks["csf"]].mean()).astype(np.float64), affine)
        for seg_id in sorted(k for k in masks if k.startswith("lesion_")):
            mask = radiomics.to_sitk(masks[seg_id].astype(np.uint8), affine)
            t = time.perf_counter()
            extractor.execute(image, mask)
            total += time.perf_counter() - t
            n_rois += 1
    return total, n_rois


def bench_study(study_dir: Path, workers: int) -> None:
    from QSMReproducibilityLib import radiomics

    if (study_dir / "study.sqlite").exists():
        from QSMReproducibilityLib.readings import Study

        study = Study.open(study_dir)
        readings = study.readings()
        source = f"study store {study_dir}"
    else:
        work = Path(tempfile.mkdtemp(prefix="qsm-bench-radiomics-"))
        print(f"    no study at {study_dir}: simulating the 61 demo cases in {work} (minutes)")
        readings = _demo_readings(work)
        source = f"simulated demo cases in {work}"
    cases = {r.case_id for r in readings}
    observers = {r.observer for r in readings}
    print(f"[2] {len(readings)} readings of {len(cases)} cases, {len(observers)} observers ({source}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    t = time.perf_counter()
    table = radiomics.extract_readings(readings, workers=workers)
    wall = time.perf_counter() - t
    n_rois = len(table.groupby(["case_id", "lesion_id", "observer", "reading"]))
    print(f"    extract_readings, {workers} workers: {wall:7.1f} s for {n_rois} ROIs × "
          f"{table.feature.nunique()} features ({len(table)} rows); target <= 120 s: "
          f"{'met' if wall <= 120 else 'MISSED'}")
    print(f"    peak RSS: this process {_peak_mb(resource.RUSAGE_SELF):.0f} MB, "
          f"largest worker {_peak_mb(resource.RUSAGE_CHILDREN):.0f} MB")

    baseline, n_direct = _direct_pyradiomics(readings)
    print(f"    baseline: PyRadiomics directly, 1 process, {n_direct} ROIs: {baseline:7.1f} s; "
          f"ratio {wall / baseline:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(REPO / "demo-output" / "study"), help="study store folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-study", action="store_true", help="only the single-lesion benchmark")
    args = parser.parse_args()
    bench_small_lesion(args.repeats)
    if not args.skip_study:
        bench_study(Path(args.study), args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
