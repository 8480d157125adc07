"""Benchmark: the browser reading station, read by Debian's chromium, on QSM maps of the study's matrix.

A study of N cases (320×240×70 float32 maps, 0.72×0.72×2 mm, as the study's) is read by one observer in
one station process, one reading after another, through the page as a reader uses it:

- Start → first frame: from the click on *Start* until the page shows the reading and the axial view has
  received a new frame (its image changes). Target <= 2 s.
- Mouse-up → counts: from releasing the mouse after a lesion stroke (and after a CSF stroke) until the
  page shows the new voxel count. Target <= 1.5 s.
- Finish: from the click on *Finish reading* until the page says the reading is saved. Target <= 1.5 s.
- Memory: the station process's resident memory after each reading; target growth under 100 MB over
  20 readings (counted from the end of the first reading, and the largest growth after any reading).

Baseline, measured in the same run on the same maps: the reading core alone in this process on a bare
MRML scene (``start_reading`` → two masks drawn → ``finish_reading``), without rendering or a browser;
the ratios say what the station adds to the reading itself.

    .venv-station/bin/python Testing/benchmarks/bench_station.py [--readings 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Testing" / "Python"))

import station_support as support  # noqa: E402

STUDY_SHAPE = (320, 240, 70)


def _summary(values) -> str:
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def baseline(study_dir: Path, readings: int) -> dict[str, list[float]]:
    """The reading core alone: start, two masks, finish, on a bare scene (observer B0)."""
    import slicer

    import QSMReproducibilityMRML as mrml
    from QSMReproducibilityLib.readings import Study

    mrml.register_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    times = {"start": [], "finish": []}
    with Study.open(study_dir) as study:
        study.add_observer("B0")
        for _ in range(readings):
            t = time.perf_counter()
            reading = mrml.start_reading(scene, study, "B0")
            times["start"].append(time.perf_counter() - t)
            lesion = np.zeros(STUDY_SHAPE, bool)
            lesion[158:162, 118:122, 34:36] = True
            csf = np.zeros(STUDY_SHAPE, bool)
            csf[150:156, 90:96, 40:42] = True
            mrml.set_segment_masks(reading.segmentation_node, {"lesion_right": lesion, "csf": csf}, reading.qsm_node)
            t = time.perf_counter()
            mrml.finish_reading(scene, study, reading)
            times["finish"].append(time.perf_counter() - t)
    return times


def station_readings(study_dir: Path, readings: int) -> tuple[dict[str, list[float]], list[float]]:
    times = {"first frame": [], "lesion counts": [], "csf counts": [], "finish": []}
    memory = []
    with support.Station(study_dir, "O1") as station, support.browser() as context:
        page = context.new_page()
        page.goto(station.url)
        page.wait_for_selector("#case-list")
        memory.append(station.rss_mb())
        for number in range(readings):
            axial = page.locator(".image-display-area").first
            before = axial.get_attribute("src")
            t = time.perf_counter()
            page.click("#next-case")
            page.wait_for_selector("#finish")
            page.wait_for_function("(before) => document.querySelector('.image-display-area').src !== before",
                                   arg=before, polling=20)
            times["first frame"].append(time.perf_counter() - t)

            support.choose(page, "#effect-paint")
            t = support.stroke(page, 0, (0.47, 0.5), (0.53, 0.5))
            support.wait_for_count_change(page, "lesion_right", 0)
            times["lesion counts"].append(time.perf_counter() - t)
            support.choose(page, "#segment-csf")
            t = support.stroke(page, 0, (0.5, 0.4), (0.55, 0.4))
            support.wait_for_count_change(page, "csf", 0)
            times["csf counts"].append(time.perf_counter() - t)

            t = time.perf_counter()
            page.click("#finish")
            page.wait_for_selector("#notice-message")
            page.wait_for_selector("#next-case")
            times["finish"].append(time.perf_counter() - t)
            memory.append(station.rss_mb())
            print(f"  reading {number + 1:2d}: first frame {times['first frame'][-1]:.2f} s, counts "
                  f"{times['lesion counts'][-1]:.2f}/{times['csf counts'][-1]:.2f} s, finish "
                  f"{times['finish'][-1]:.2f} s, station RSS {memory[-1]:.0f} MB", flush=True)
    return times, memory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20)
    args = parser.parse_args(argv)
    why = support.missing_station_packages() or support.missing_browser()
    if why:
        print(f"bench_station: cannot run here: {why}")
        return 2
    with tempfile.TemporaryDirectory(prefix="qsmrepro_bench_station_") as tmp:
        t = time.perf_counter()
        study_dir = support.make_study(Path(tmp), cases=args.readings, shape=STUDY_SHAPE, observers=("O1",))
        print(f"study of {args.readings} cases of {STUDY_SHAPE} made in {time.perf_counter() - t:.1f} s")
        base = baseline(study_dir, min(args.readings, 5))
        print(f"baseline (reading core, bare scene, {len(base['start'])} readings): start {_summary(base['start'])}, "
              f"finish {_summary(base['finish'])}")
        times, memory = station_readings(study_dir, args.readings)
    start_base, finish_base = statistics.median(base["start"]), statistics.median(base["finish"])
    print(f"Start -> first frame:      {_summary(times['first frame'])} (target <= 2 s); "
          f"{statistics.median(times['first frame']) / start_base:.1f}x the core's start_reading")
    counts = times["lesion counts"] + times["csf counts"]
    print(f"mouse-up -> voxel counts:  {_summary(counts)} (target <= 1.5 s)")
    print(f"Finish -> saved:           {_summary(times['finish'])} (target <= 1.5 s); "
          f"{statistics.median(times['finish']) / finish_base:.1f}x the core's finish_reading")
    # Growth is counted from the first reading on: the first reading also builds what every later one reuses
    # (the views' render windows and shaders, the editor's pipelines), which is not kept per reading.
    growth, peak = memory[-1] - memory[1], max(memory[1:]) - memory[1]
    verdict = "meets" if growth < 100 and peak < 100 else "MISSES"
    print(f"station memory: {memory[0]:.0f} MB idle, {memory[1]:.0f} MB after reading 1, {memory[-1]:.0f} MB after "
          f"reading {len(memory) - 1}: growth {growth:+.0f} MB over readings 2-{len(memory) - 1} (largest "
          f"{peak:+.0f} MB after any reading); {verdict} the target (< 100 MB over 20 readings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
