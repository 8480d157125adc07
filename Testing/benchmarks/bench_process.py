"""Benchmark: `qsmrepro study process` on the synthetic cohort at the study's full matrix (320x240x70, 7 echoes),
serially in one process, on a LocalCluster of N worker processes, and on a Dask cluster of a `dask scheduler` and
N `dask worker` processes started on this machine.

For each: the wall time of the reconstructions (every case registered with its GRE) and of the features and report
(after the simulated readings are imported), the speed-up over the serial run measured in the same run, and the
scaling efficiency, serial time / (N x parallel time). Also the figures a cluster plan needs: peak memory of a
worker process, bytes per case on disk, tasks the scheduler sees and the size of one task.

    .venv/bin/python Testing/benchmarks/bench_process.py [--cases 61] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def simulate(n_cases: int, work: Path) -> list[dict]:
    from QSMReproducibilityLib.demo import cohort
    from QSMReproducibilityLib.io import load_volume
    from QSMReproducibilityLib.observers import DEFAULT_OBSERVERS, simulate_reading
    from QSMReproducibilityLib.phantom import simulate_case
    from QSMReproducibilityLib.segio import write_seg_nrrd
    from QSMReproducibilityLib.terminology import csf_segment, lesion_segment, reading_tags

    cases = []
    for task in cohort(n_cases, 0, work):
        case = simulate_case(task.case_id, task.lesion_type, seed=task.seed, out_dir=work / task.case_id,
                             full_fov=True)
        labels, affine = load_volume(case.labels_path)
        chi = load_volume(case.chi_path)[0]  # the readers draw on the true χ: the QSMs come from `study process`
        rng = np.random.default_rng(task.seed + 1)
        readings = []
        for profile in DEFAULT_OBSERVERS:
            for number in (1, 2):
                masks = simulate_reading(chi, labels.astype(np.int16), task.lesion_type, case.sides, profile,
                                         np.sqrt((affine[:3, :3] ** 2).sum(0)), rng, reading=number)
                tags = reading_tags(observer=profile.observer_id, reading=number, case_id=task.case_id,
                                    session_uid=f"{task.case_id}{profile.observer_id}{number}", status="finished")
                specs = [lesion_segment(s, task.lesion_type, tags) for s in case.sides] + [csf_segment(tags)]
                path = work / task.case_id / f"{profile.observer_id}_r{number}.seg.nrrd"
                write_seg_nrrd(path, masks, affine, specs)
                started = dt.datetime(2024, 1, 8, tzinfo=dt.timezone.utc) + dt.timedelta(days=70 * (number - 1))
                readings.append((profile.observer_id, number, path, started))
        cases.append(dict(case_id=task.case_id, lesion_type=task.lesion_type, anat=case.anat_dir,
                          readings=readings))
    return cases


def import_readings(study_dir: Path, cases) -> None:
    from QSMReproducibilityLib.readings import Study

    with Study.open(study_dir) as study:
        for case in cases:
            for observer, number, path, started in case["readings"]:
                study.import_reading(case["case_id"], observer, number, path, started_at=started,
                                     finished_at=started + dt.timedelta(minutes=10))


def run(template: Path, work: Path, cases, name: str, **where) -> dict:
    from QSMReproducibilityLib.process import process_study

    study_dir = work / name
    shutil.copytree(template, study_dir)
    t = time.perf_counter()
    recon = process_study(study_dir, **where)
    recon_s = time.perf_counter() - t
    assert not recon.failed, recon.failed
    import_readings(study_dir, cases)
    t = time.perf_counter()
    features = process_study(study_dir, **where)
    features_s = time.perf_counter() - t
    assert features.ok, (features.failed, features.report_error)
    return dict(name=name, dir=study_dir, recon_s=recon_s, features_s=features_s, executor=recon.executor,
                owner_s=recon.owner_seconds / max(1, len(recon.reconstructed)),
                peak_mb=max(recon.peak_task_rss_mb, features.peak_task_rss_mb), readings=features.readings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=61)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from QSMReproducibilityLib.readings import Study

    work = Path(tempfile.mkdtemp(prefix="qsm-bench-process-"))
    t = time.perf_counter()
    cases = simulate(args.cases, work / "gre")
    print(f"{args.cases} cases simulated at 320x240x70, 7 echoes, in {time.perf_counter() - t:.0f} s")
    template = work / "template"
    t = time.perf_counter()
    with Study.create(template) as study:
        for observer in ("O1", "O2"):
            study.add_observer(observer)
        for case in cases:
            study.add_gre_case(case["case_id"], case["lesion_type"], case["anat"])
    print(f"study add-case --later (GRE read, checked and stored): {(time.perf_counter() - t) / args.cases:.2f} s "
          "per case")

    results = [run(template, work, cases, "serial", workers=0)]
    results.append(run(template, work, cases, "local", workers=args.workers))
    dask = Path(sys.executable).with_name("dask")
    port = free_port()
    procs = [subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([str(dask), "worker", f"tcp://127.0.0.1:{port}", "--host", "127.0.0.1",
                                   "--nworkers", str(args.workers), "--nthreads", "1", "--no-dashboard",
                                   "--local-directory", str(work / "dask-worker")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        from dask.distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="30s") as client:
            client.wait_for_workers(args.workers, timeout=120)
        results.append(run(template, work, cases, "cluster", scheduler=f"tcp://127.0.0.1:{port}"))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)

    serial = results[0]
    print(f"\n{'run':<46} {'reconstruct':>12} {'features+report':>16} {'speed-up':>9} {'efficiency':>11}")
    for r in results:
        total, base = r["recon_s"] + r["features_s"], serial["recon_s"] + serial["features_s"]
        n = 1 if r is serial else args.workers
        print(f"{r['executor']:<46} {r['recon_s']:>10.1f} s {r['features_s']:>14.1f} s {base / total:>8.2f}x "
              f"{base / (n * total):>10.2f}")
    print("reconstruction alone, efficiency: " + ", ".join(
        f"{r['name']} {serial['recon_s'] / (args.workers * r['recon_s']):.2f}" for r in results[1:]))
    print(f"per case, serial: {serial['recon_s'] / args.cases:.1f} s reconstruction, "
          f"{serial['features_s'] / serial['readings']:.2f} s features per reading (report included)")

    # Same results whichever way.
    from QSMReproducibilityLib.io import load_volume

    for case in cases[:3]:
        ref = load_volume(serial["dir"] / "cases" / case["case_id"] / "qsm.nii.gz")[0]
        for r in results[1:]:
            assert np.array_equal(ref, load_volume(r["dir"] / "cases" / case["case_id"] / "qsm.nii.gz")[0])
    first = [(r["dir"] / "report" / "features.csv").read_bytes() for r in results]
    print("feature tables identical across the three runs:", all(f == first[0] for f in first))

    # What a 10,000-case plan needs.
    local = results[1]
    print(f"peak RSS of a worker process (LocalCluster, {args.workers} workers): {local['peak_mb']:.0f} MB")
    print(f"the owner's time to record one reconstructed case in the study (copy, SHA-256, SQLite): "
          f"{1000 * np.median([r['owner_s'] for r in results]):.0f} ms")
    sizes = {}
    for case in cases:
        folder = serial["dir"] / "cases" / case["case_id"]
        for path in folder.rglob("*.nii*"):
            sizes.setdefault(path.relative_to(folder).as_posix(), []).append(path.stat().st_size)
        for path in (serial["dir"] / "readings" / case["case_id"]).glob("*.seg.nrrd"):
            sizes.setdefault("readings/*.seg.nrrd (each)", []).append(path.stat().st_size)
        for path in (serial["dir"] / "processing" / case["case_id"]).glob("features-*.json"):
            sizes.setdefault("processing/features-*.json (each)", []).append(path.stat().st_size)
    for name, values in sorted(sizes.items()):
        print(f"  {name:<40} {np.mean(values) / 2**20:8.2f} MiB mean")
    per_case = sum(np.mean(v) * (4 if "each" in k else 1) for k, v in sizes.items())
    print(f"  per case on disk: {per_case / 2**20:.0f} MiB")

    from QSMReproducibilityLib.process.tasks import ReconTask

    task = ReconTask(case_id="H001", key="0" * 64, magnitude=str(work / "x" / "magnitude.nii.gz"),
                     phase=str(work / "x" / "phase.nii.gz"), mask=None, te_s=(0.005,) * 7, b0_tesla=3.0, b0_dir=None,
                     phase_record={"PhaseUnits": "radians"}, params={"method": "star"}, out_dir=str(work / "x"))
    print(f"scheduler: {args.cases} reconstruction + {serial['readings']} feature tasks, no dependencies; "
          f"one task pickles to {len(pickle.dumps(task))} bytes")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
