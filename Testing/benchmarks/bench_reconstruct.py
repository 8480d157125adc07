"""Benchmark: one case of the study's matrix (320×240×70, 7 echoes) through `qsmrepro reconstruct`.

Prints wall time and peak memory of the CLI (NIfTI in and out), the time per stage, the number of FFTs
on the padded grid and the time of one FFT pair measured in this same run, so the distance to the
FFT-bound floor is visible. Targets on 2 cores: <= 30 s and <= 2 GB with the default chain (its background
removal fits the total field: 100 CG iterations), <= 10 s with the study's chain (`--background vsharp`).

    .venv/bin/python Testing/benchmarks/bench_reconstruct.py [--method star] [--background vsharp] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
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
    parser.add_argument("--background", default=None, help="background removal (default: the library's)")
    parser.add_argument("--keep", help="folder to keep the simulated case in")
    args = parser.parse_args()

    from QSMReproducibilityLib import phantom
    from QSMReproducibilityLib.cli.main import _keep_freed_memory
    from QSMReproducibilityLib.io import load_gre
    from QSMReproducibilityLib.recon import kernels, pipeline

    work = Path(args.keep or tempfile.mkdtemp(prefix="qsm-bench-"))
    anat = work / "case" / "anat"
    # Simulated in a child process: a child's peak RSS (ru_maxrss) counts the memory its parent had
    # when it was forked, so the benchmark process itself must stay small.
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from QSMReproducibilityLib import phantom; phantom.simulate_case("
                    f"'BENCH', 'hematoma', seed=1, out_dir={str(work / 'case')!r}, full_fov=True)"], check=True)
    print(f"simulated {phantom.FULL_FOV_SHAPE} x {len(phantom.STUDY_TE_S)} echoes in {time.perf_counter() - t:.1f} s")

    # The CLI, as a user runs it: wall time and peak resident memory of the child process. Three runs:
    # on virtual machines whose memory is backed lazily the first run after a large free pays
    # first-touch page faults that later runs do not, so the median is reported beside each run.
    out = work / "qsm.nii.gz"
    walls, peaks = [], []
    for _ in range(3):
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "QSMReproducibilityLib.cli", "reconstruct", str(anat),
                                 "-o", str(out), "--method", args.method,
                                 *(["--background", args.background] if args.background else [])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak resident memory
        walls.append(time.perf_counter() - t)
        peaks.append(usage.ru_maxrss / 1024**2)
        if os.waitstatus_to_exitcode(status) != 0:
            print(stderr)
            return 1
    wall, peak_gb = float(np.median(walls)), max(peaks)
    print(f"CLI reconstruct ({args.method}, {args.background or 'default background'}): wall {', '.join(f'{w:.1f}' for w in walls)} s (median {wall:.1f} s), "
          f"peak RSS {', '.join(f'{p:.2f}' for p in peaks)} GB")

    sidecar = json.loads(out.with_name("qsm.json").read_text())
    print("per stage (last CLI run): " + ", ".join(f"{k} {v:.2f} s" for k, v in sidecar["ProcessingSeconds"].items()))

    # In process, under the CLI's memory settings: count the FFTs and the grids they run on.
    _keep_freed_memory()
    counts = collections.Counter()
    forward, backward = kernels.rfftn, kernels.irfftn

    def counting_forward(a):
        counts[a.shape] += 1
        return forward(a)

    def counting_backward(a, shape, overwrite=False):
        counts[tuple(shape)] += 1
        return backward(a, shape, overwrite)

    kernels.rfftn, kernels.irfftn = counting_forward, counting_backward
    pipeline.reconstruct(load_gre(anat), pipeline.ReconParams(method=args.method,
                                                                     background=args.background or pipeline.BACKGROUND_METHODS[0]))
    kernels.rfftn, kernels.irfftn = forward, backward

    # Baseline measured in this run: the time of one real-to-complex FFT (half a forward/inverse pair)
    # on each grid the reconstruction used; the FFT-bound floor is their count-weighted sum.
    def one_fft_s(shape):
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        kernels.irfftn(kernels.rfftn(x), shape)
        t = time.perf_counter()
        for _ in range(5):
            kernels.irfftn(kernels.rfftn(x), shape)
        return (time.perf_counter() - t) / 10

    per_grid = {shape: one_fft_s(shape) for shape in counts}
    floor = sum(n * per_grid[shape] for shape, n in counts.items())
    print(f"FFTs: {sum(counts.values())}, " + ", ".join(
        f"{n} on {shape} at {per_grid[shape] * 1000:.1f} ms each" for shape, n in counts.most_common()) + " (baseline)")
    print(f"FFT-bound floor {floor:.1f} s; median wall / floor = {wall / floor:.2f}")
    target_s = 10.0 if args.background == "vsharp" else 30.0
    print(f"ratio to target: median wall {wall / target_s:.2f} x {target_s:.0f} s, memory {peak_gb / 2:.2f} x 2 GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
