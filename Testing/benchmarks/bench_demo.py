"""Benchmark: the whole synthetic study, `qsmrepro demo` (what `make demo` runs after set-up).

Prints the wall time and peak memory of the 61-case demo, and a baseline measured in the same run: one
case simulated, reconstructed and read in this process, times 61 cases divided by the worker count —
the time the demo would take if the per-case work were all there is. Target (issue: synthetic study):
<= 5 minutes on 2 cores.

    .venv/bin/python Testing/benchmarks/bench_demo.py [--cases 61]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=61)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="qsm-bench-demo-"))
    workers = os.cpu_count() or 1
    # The demo first, while this process is small: a child's peak RSS (ru_maxrss) counts the memory its
    # parent had when it was forked.
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "QSMReproducibilityLib.cli", "demo", "-o", str(work / "demo"),
                           "--cases", str(args.cases)], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(proc.stderr)
        return 1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"qsmrepro demo, {args.cases} cases: wall {wall:.0f} s ({wall / 60:.1f} min), "
          f"largest process peak RSS {peak:.0f} MB")

    from QSMReproducibilityLib.demo import cohort, simulate_and_read

    task = cohort(args.cases, 0, work / "baseline")[0]
    t = time.perf_counter()
    simulate_and_read(task)
    one_case = time.perf_counter() - t
    floor = one_case * args.cases / workers
    print(f"baseline: one case simulated, reconstructed and read in {one_case:.2f} s; "
          f"x {args.cases} cases / {workers} workers = {floor:.0f} s")
    print(f"ratio to the per-case floor: {wall / floor:.2f}; to the 5-minute target: {wall / 300:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
