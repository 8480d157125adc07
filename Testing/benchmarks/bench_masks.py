"""Benchmark: brain masks on the realistic head at the study's matrix (320×240×70, 7 echoes).

Prints the time of the default mask (BET, f = 0.5) and of all nine candidates, each beside the
magnitude-threshold mask measured in the same run (the baseline: what the default cost before BET);
the wall time of `qsmrepro reconstruct` with the default mask and with `--mask-preview` (all nine
candidates drawn); and the accuracy on the head: coverage of the true brain, demeaned NRMSE against the
reconstruction with the true brain mask, and the deep-grey-matter slope. Targets (issue: brain masks on
real heads): default reconstruction <= 30 s, all nine candidates <= 90 s, on 2 cores.

    .venv/bin/python Testing/benchmarks/bench_masks.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return value, float(np.median(times))


def _cli(args) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "QSMReproducibilityLib.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="folder to keep the simulated head and outputs in")
    args = parser.parse_args()

    from QSMReproducibilityLib import head_phantom as hp
    from QSMReproducibilityLib.io import load_gre
    from QSMReproducibilityLib.recon import mask, pipeline

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Python"))
    from head_support import deep_grey_scores, write_head_case

    work = Path(args.keep or tempfile.mkdtemp(prefix="qsm-bench-masks-"))
    t = time.perf_counter()
    phantom = hp.make_head()
    case = write_head_case(work / "head", "HEAD", phantom=phantom)
    print(f"simulated the head, {phantom.shape} x {len(hp.STUDY_TE_S)} echoes, in {time.perf_counter() - t:.1f} s")
    gre = load_gre(case.anat_dir)
    vox = gre.voxel_size_mm

    _, baseline = _timed(lambda: mask.candidate_masks(gre.magnitude, vox, "threshold", indices=[4]))
    default, t_default = _timed(lambda: mask.candidate_masks(gre.magnitude, vox, indices=[4]))
    nine, t_nine = _timed(lambda: mask.candidate_masks(gre.magnitude, vox), repeats=1)
    print(f"baseline: magnitude-threshold mask {baseline:.2f} s (median of 3)")
    print(f"default mask (BET f = 0.5): {t_default:.2f} s (median of 3), {t_default / baseline:.1f} x baseline")
    print(f"all nine BET candidates: {t_nine:.2f} s, {t_nine / baseline:.1f} x baseline")

    out = work / "out"
    wall = _cli(["reconstruct", str(case.anat_dir), "-o", str(out / "qsm.nii.gz")])
    wall_preview = _cli(["reconstruct", str(case.anat_dir), "-o", str(out / "qsm_preview.nii.gz"),
                         "--mask-preview", str(out / "masks.png")])
    print(f"CLI reconstruct, default mask: {wall:.1f} s ({wall / 30:.2f} x the 30 s target)")
    print(f"CLI reconstruct with --mask-preview (nine candidates): {wall_preview:.1f} s "
          f"({wall_preview / 90:.2f} x the 90 s target)")

    truth = phantom.brain_mask
    with_truth = pipeline.reconstruct(gre, pipeline.ReconParams(), user_mask=truth)
    rows = [("true brain mask", with_truth)]
    rows.append(("default (BET f = 0.5)", pipeline.reconstruct(gre, pipeline.ReconParams(), mask_candidates=default)))
    rows.append(("threshold 0.30 (old default)", pipeline.reconstruct(gre, pipeline.ReconParams(mask_method="threshold"))))
    rows.append(("threshold 0.20 (takes the scalp)",
                 pipeline.reconstruct(gre, pipeline.ReconParams(mask_method="threshold", mask_index=2))))
    for name, result in rows:
        region = with_truth.local_field_mask & result.local_field_mask & truth
        rec = result.chi_ppm[region] - result.chi_ppm[region].mean()
        ref = phantom.chi_ppm[region] - phantom.chi_ppm[region].mean()
        nrmse = np.linalg.norm(rec - ref) / np.linalg.norm(ref)
        scores = deep_grey_scores(phantom, result.chi_ppm, result.local_field_mask)
        slope, error = scores["slope"], scores["mean_error"]
        coverage = (result.brain_mask & truth).sum() / truth.sum()
        outside = (result.brain_mask & ~truth).sum() / truth.sum()
        print(f"{name:34s} coverage {coverage:.3f}, outside the brain {outside:.3f} of its volume, "
              f"NRMSE {nrmse:.3f}, deep grey slope {slope:.2f}, mean |error| {100 * error:.1f} %")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
