"""Benchmark: one case of the study's matrix (320×240×70, 7 echoes) through `qsmrepro reconstruct`.

Prints wall time and peak memory of the CLI (NIfTI in and out), the time per stage, the number of FFTs
on the padded grid and the time of one FFT pair measured in this same run, so the distance to the
FFT-bound floor is visible. Targets (issue: QSM reconstruction): <= 10 s and <= 2 GB on 2 cores.

    .venv/bin/python Testing/benchmarks/bench_reconstruct.py [--method star] [--keep DIR]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="star")
    parser.add_argument("--keep", help="folder to keep the simulated case in")
    args = parser.parse_args()

    from QSMReproducibilityLib import phantom
    from QSMReproducibilityLib.io import load_gre
    from QSMReproducibilityLib.recon import inversion, kernels, pipeline

    work = Path(args.keep or tempfile.mkdtemp(prefix="qsm-bench-"))
    t = time.perf_counter()
    case = phantom.simulate_case("BENCH", "hematoma", seed=1, out_dir=work / "case", full_fov=True)
    print(f"simulated {phantom.FULL_FOV_SHAPE} x {len(phantom.STUDY_TE_S)} echoes in {time.perf_counter() - t:.1f} s")

    # Baseline measured in this run: one real-to-complex FFT pair on the inversion's padded grid.
    grid = inversion._grid(phantom.FULL_FOV_SHAPE, phantom.STUDY_VOXEL_MM)
    x = np.random.default_rng(0).standard_normal(grid).astype(np.float32)
    kernels.irfftn(kernels.rfftn(x), grid)
    t = time.perf_counter()
    for _ in range(5):
        kernels.irfftn(kernels.rfftn(x), grid)
    fft_pair_s = (time.perf_counter() - t) / 5
    print(f"padded grid {grid}: one rfftn+irfftn pair {fft_pair_s * 1000:.1f} ms (baseline)")

    # The CLI, as a user runs it: wall time and peak resident memory of the child process. Three runs:
    # on virtual machines whose memory is backed lazily the first run after a large free pays
    # first-touch page faults that later runs do not, so the median is reported beside each run.
    out = work / "qsm.nii.gz"
    walls, peaks = [], []
    for _ in range(3):
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "QSMReproducibilityLib.cli", "reconstruct", str(case.anat_dir),
                                 "-o", str(out), "--method", args.method],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak resident memory
        walls.append(time.perf_counter() - t)
        peaks.append(usage.ru_maxrss / 1024**2)
        if os.waitstatus_to_exitcode(status) != 0:
            print(stderr)
            return 1
    wall, peak_gb = float(np.median(walls)), max(peaks)
    print(f"CLI reconstruct ({args.method}): wall {', '.join(f'{w:.1f}' for w in walls)} s (median {wall:.1f} s), "
          f"peak RSS {', '.join(f'{p:.2f}' for p in peaks)} GB")

    # In process: per-stage times and FFT count.
    counts = {"fft": 0, "seconds": 0.0}
    forward, backward = kernels.rfftn, kernels.irfftn

    def counting_forward(a):
        t0 = time.perf_counter()
        out = forward(a)
        counts["fft"] += 1
        counts["seconds"] += time.perf_counter() - t0
        return out

    def counting_backward(a, shape):
        t0 = time.perf_counter()
        out = backward(a, shape)
        counts["fft"] += 1
        counts["seconds"] += time.perf_counter() - t0
        return out

    kernels.rfftn, kernels.irfftn = counting_forward, counting_backward
    gre = load_gre(case.anat_dir)
    result = pipeline.reconstruct(gre, pipeline.ReconParams(method=args.method))
    kernels.rfftn, kernels.irfftn = forward, backward
    for stage, seconds in result.seconds.items():
        print(f"  {stage:>10}: {seconds:6.2f} s")
    floor = counts["seconds"]
    print(f"FFTs: {counts['fft']} taking {floor:.1f} s in all (grids cropped to the mask's box; the full padded "
          f"grid's pair above is the reference); reconstruction / FFT time = {result.seconds['total'] / floor:.2f}")
    print(f"ratio to target: median wall {wall / 10:.2f} x 10 s, memory {peak_gb / 2:.2f} x 2 GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
