"""`qsmrepro study process`: the same results serially, on a Dask LocalCluster of worker processes, and on a
scheduler and workers started as separate processes (`dask scheduler`, `dask worker`) on the loopback; a
worker killed mid-task loses and duplicates no case; reruns skip what is done; a failing case is reported and
does not stop the others.

The cohort: six phantom cases (96x96x24 slabs, 7 echoes) registered with their GRE only, and two simulated
observers' readings of each, imported once the cases have their QSM. The serial run in this process is the
reference every distributed run is compared with, file for file and value for value; the reconstruction
itself is checked against the phantom's true lesion χ (an independent forward simulation).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from QSMReproducibilityLib.io import load_volume
from QSMReproducibilityLib.observers import DEFAULT_OBSERVERS, simulate_reading
from QSMReproducibilityLib.phantom import simulate_case
from QSMReproducibilityLib.process import process_study, read_progress
from QSMReproducibilityLib.process.tasks import ReconTask, recon_key, run_recon
from QSMReproducibilityLib.readings import Study
from QSMReproducibilityLib.segio import write_seg_nrrd
from QSMReproducibilityLib.terminology import csf_segment, lesion_segment, reading_tags

from cli_driver import qsmrepro

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is a dependency: run `make venv`")
needs_radiomics = pytest.mark.skipif(
    importlib.util.find_spec("radiomics") is None,
    reason="feature extraction needs PyRadiomics (no build for Python >= 3.12; inside 3D Slicer it comes from "
           "SlicerRadiomics)")

CASES = [("H001", "hematoma"), ("H002", "hematoma"), ("H003", "hematoma"),
         ("C001", "calcification"), ("C002", "calcification"), ("C003", "calcification")]
FIRST = dt.datetime(2024, 1, 8, 9, 0, tzinfo=dt.timezone.utc)
DASK = Path(sys.executable).with_name("dask")


# ------------------------------------------------------------------------------------------------------
# The cohort: GRE, truth and readings, made once


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    cases = []
    for number, (case_id, lesion_type) in enumerate(CASES):
        case = simulate_case(case_id, lesion_type, seed=100 + number, out_dir=root / case_id, shape=(96, 96, 24))
        labels, affine = load_volume(case.labels_path)
        labels = labels.astype(np.int16)
        # The readers draw on the true χ here: these cases get their QSM only later, from `study process`.
        chi = load_volume(case.chi_path)[0]
        rng = np.random.default_rng(number)
        readings = []
        for profile in DEFAULT_OBSERVERS:
            for reading in (1, 2):
                masks = simulate_reading(chi, labels, lesion_type, case.sides, profile, (0.72, 0.72, 2.0), rng,
                                         reading=reading)
                tags = reading_tags(observer=profile.observer_id, reading=reading, case_id=case_id,
                                    session_uid=f"{case_id}{profile.observer_id}{reading}", status="finished")
                specs = [lesion_segment(side, lesion_type, tags) for side in case.sides] + [csf_segment(tags)]
                path = root / case_id / f"{profile.observer_id}_r{reading}.seg.nrrd"
                write_seg_nrrd(path, masks, affine, specs)
                started = FIRST + dt.timedelta(days=number + 70 * (reading - 1))
                readings.append((profile.observer_id, reading, path, started))
        cases.append(dict(case_id=case_id, lesion_type=lesion_type, anat=case.anat_dir, truth=case.lesion_chi_ppm,
                          sides=case.sides, labels=labels, readings=readings))
    templates = {}
    for name, chosen in (("all", cases), ("pair", [c for c in cases if c["case_id"] in ("H001", "C002")])):
        templates[name] = root / f"template-{name}"
        with Study.create(templates[name]) as study:
            for observer in ("O1", "O2"):
                study.add_observer(observer)
            for case in chosen:
                study.add_gre_case(case["case_id"], case["lesion_type"], case["anat"])
    return dict(cases=cases, templates=templates)


def fresh_study(cohort, where: Path, template: str = "all") -> Path:
    """A copy of the study with every case registered by its GRE (``pair``: only H001 and C002)."""
    shutil.copytree(cohort["templates"][template], where)
    return where


def import_readings(study_dir: Path, cohort) -> None:
    with Study.open(study_dir) as study:
        for case in cohort["cases"]:
            for observer, reading, path, started in case["readings"]:
                study.import_reading(case["case_id"], observer, reading, path, started_at=started,
                                     finished_at=started + dt.timedelta(minutes=12))


def qsm_bytes(study_dir: Path) -> dict:
    return {p.parent.name: p.read_bytes() for p in sorted((study_dir / "cases").glob("*/qsm.nii.gz"))}


def features(study_dir: Path) -> pd.DataFrame:
    return pd.read_csv(study_dir / "report" / "features.csv")


def audit(study_dir: Path, action: str) -> list:
    import sqlite3

    with sqlite3.connect(study_dir / "study.sqlite") as db:
        return [r[0] for r in db.execute("SELECT case_id FROM audit_log WHERE action = ? ORDER BY id", (action,))]


@pytest.fixture(scope="module")
def pair_serial(cohort, tmp_path_factory):
    """Two cases reconstructed in this process, no Dask (the reference without readings)."""
    study_dir = fresh_study(cohort, tmp_path_factory.mktemp("pair-serial") / "study", "pair")
    summary = process_study(study_dir, workers=0)
    assert sorted(summary.reconstructed) == ["C002", "H001"] and not summary.failed
    return study_dir


@pytest.fixture(scope="module")
def serial(cohort, tmp_path_factory):
    """The reference: every task in this process, no Dask; reconstruct, import the readings, then features."""
    study_dir = fresh_study(cohort, tmp_path_factory.mktemp("serial") / "study")
    first = process_study(study_dir, workers=0)
    import_readings(study_dir, cohort)
    second = process_study(study_dir, workers=0)
    return dict(dir=study_dir, first=first, second=second)


# ------------------------------------------------------------------------------------------------------
# Serial: what the work is, checked against the phantom


@needs_radiomics
def test_serial_run_reconstructs_every_case_then_extracts_every_reading(serial, cohort):
    first, second = serial["first"], serial["second"]
    assert sorted(first.reconstructed) == sorted(c for c, _ in CASES) and not first.failed
    assert first.readings == 0 and first.report is None
    assert first.task_processes == {(socket.gethostname(), os.getpid())}  # no Dask: every task in this process
    # The rerun reconstructs nothing (every case has its QSM) and computes the 24 readings' features.
    assert second.reconstructed == [] and second.reused == []
    assert (second.readings, second.features_computed, second.features_cached) == (24, 24, 0)
    assert second.ok and Path(second.report["report_html"]).is_file()
    with Study.open(serial["dir"]) as study:
        assert study.verify() == []
        assert study.pending_cases() == []
        assert len(study.cases()) == 6 and len(study.readings()) == 24
    assert sorted(audit(serial["dir"], "case_reconstructed")) == sorted(c for c, _ in CASES)

    # The lesions' CSF-referenced mean χ follows the phantom's truth (sign and size; the observers' ROIs take in
    # wall and lumen voxels, hence the loose bound).
    table = features(serial["dir"])
    means = table[table.feature == "qsm_mean"].groupby(["case_id", "lesion_id"]).value.mean()
    for case in cohort["cases"]:
        for side in case["sides"]:
            truth = case["truth"][side]
            assert np.sign(means[(case["case_id"], side)]) == np.sign(truth)
            assert abs(means[(case["case_id"], side)] - truth) < 0.6 * abs(truth) + 0.03, (case["case_id"], side)
    progress = read_progress(serial["dir"])
    assert progress["state"] == "done" and progress["fraction"] == 1.0
    assert progress["counts"]["features_done"] == progress["counts"]["features"] == 24


@needs_radiomics
def test_a_rerun_computes_nothing_and_rewrites_the_same_table(serial):
    before = (serial["dir"] / "report" / "features.csv").read_bytes()
    again = process_study(serial["dir"], workers=0)
    assert again.executor == "nothing to compute"
    assert (again.reconstructed, again.features_computed, again.features_cached) == ([], 0, 24)
    assert (serial["dir"] / "report" / "features.csv").read_bytes() == before


# ------------------------------------------------------------------------------------------------------
# Distributed: identical results


@needs_radiomics
def test_local_cluster_of_two_worker_processes_gives_the_serial_results(serial, cohort, tmp_path):
    from dask.distributed import Client, LocalCluster

    study_dir = fresh_study(cohort, tmp_path / "study")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids  # two real worker processes
        first = process_study(study_dir, client=client)
        import_readings(study_dir, cohort)
        second = process_study(study_dir, client=client)
    assert first.executor.startswith("Dask cluster at tcp://127.0.0.1:")
    assert {pid for _, pid in first.task_processes | second.task_processes} == pids  # both workers worked
    assert sorted(first.reconstructed) == sorted(serial["first"].reconstructed) and not first.failed
    assert second.features_computed == 24 and second.ok
    assert qsm_bytes(study_dir) == qsm_bytes(serial["dir"])
    pd.testing.assert_frame_equal(features(study_dir), features(serial["dir"]), check_exact=True)


def test_local_cluster_reconstructs_byte_for_byte_as_this_process(pair_serial, cohort, tmp_path):
    """Without readings (and without PyRadiomics): two worker processes of a LocalCluster made by `--workers 2`."""
    study_dir = fresh_study(cohort, tmp_path / "study", "pair")
    summary = process_study(study_dir, workers=2)
    assert summary.executor == "Dask LocalCluster (2 worker processes)"
    assert sorted(summary.reconstructed) == ["C002", "H001"] and summary.ok
    assert len(summary.task_processes) == 2 and os.getpid() not in {pid for _, pid in summary.task_processes}
    assert qsm_bytes(study_dir) == qsm_bytes(pair_serial)
    with Study.open(study_dir) as study:
        assert study.verify() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1 (random free ports)."""
    if not DASK.exists():
        pytest.skip(f"the dask command is not installed next to {sys.executable}")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w"), env=env)]
    for n in range(2):
        procs.append(subprocess.Popen(
            [str(DASK), "worker", address, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
             "--no-dashboard", "--local-directory", str(tmp_path / f"worker{n}"), "--name", f"w{n}"],
            stdout=subprocess.DEVNULL, stderr=open(logs / f"worker{n}.log", "w"), env=env))
    from dask.distributed import Client

    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@needs_radiomics
def test_scheduler_and_workers_as_processes_a_worker_killed_mid_reconstruction_and_the_cli(serial, cohort, tmp_path,
                                                                                          dask_cluster):
    """`dask scheduler` + two `dask worker` processes: the reconstructions, with one worker SIGKILLed while it
    runs one, through the library; then the features and the report through `qsmrepro study process
    --scheduler`. Every case exactly once, and every file as the serial run made it."""
    from dask.distributed import Client

    study_dir = fresh_study(cohort, tmp_path / "study")
    killed = {}

    def kill_a_worker_in_a_reconstruction(client):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for address, running in client.call_stack().items():
                keys = [k for k in running if "qsmrepro-recon-" in str(k)]
                if keys:
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(address=address, pid=pid, key=str(keys[0]))
                    return
            time.sleep(0.05)

    with Client(dask_cluster, timeout="30s") as client:
        workers = client.run(os.getpid)
        assert len(workers) == 2 and os.getpid() not in workers.values()
        killer = threading.Thread(target=kill_a_worker_in_a_reconstruction, args=(client,), daemon=True)
        killer.start()
        summary = process_study(study_dir, client=client)
        killer.join(timeout=5)
    assert killed, "no reconstruction was seen running on a worker"
    killed_case = killed["key"].split("qsmrepro-recon-", 1)[1].split("-")[0]
    # The killed worker's case ran again on the other worker; every case is in the study exactly once.
    assert not summary.failed, summary.failed
    assert sorted(summary.reconstructed) == sorted(c for c, _ in CASES) and killed_case in summary.reconstructed
    assert sorted(audit(study_dir, "case_reconstructed")) == sorted(c for c, _ in CASES)
    with Study.open(study_dir) as study:
        assert sorted(c.case_id for c in study.cases()) == sorted(c for c, _ in CASES)
        assert study.verify() == []
    assert qsm_bytes(study_dir) == qsm_bytes(serial["dir"])
    leftovers = [p for p in (study_dir / "processing").rglob("*") if p.name not in ("owner.lock", "progress.json")
                 and p.is_file()]
    assert leftovers == []

    import_readings(study_dir, cohort)
    proc = qsmrepro("study", "process", study_dir, "--scheduler", dask_cluster, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "0 case(s) reconstructed; features of 24 reading(s): 24 computed, 0 cached" in proc.stdout
    assert f"Dask cluster at {dask_cluster}" in proc.stdout
    assert f"Report: {study_dir / 'report' / 'report.html'}" in proc.stdout
    # The report states the reconstruction the study's cases had (the library's default chain).
    html = (study_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert "total-field fit" in html and "Liu et al. 2017" in html and "STAR-QSM" in html
    assert (study_dir / "report" / "features.csv").read_bytes() == \
        (serial["dir"] / "report" / "features.csv").read_bytes()


# ------------------------------------------------------------------------------------------------------
# Resuming, failures, refusals


def test_an_interrupted_run_resumes_without_recomputing_and_sweeps_a_killed_task(cohort, pair_serial, tmp_path):
    study_dir = fresh_study(cohort, tmp_path / "study", "pair")
    with Study.open(study_dir) as study:
        pending = {p.case_id: p for p in study.pending_cases()}
    # A worker finished H001 before the owner died: its output exists under its key, not yet in the study.
    done = pending["H001"]
    key = recon_key(done)
    out = study_dir / "processing" / "H001" / f"recon-{key[:16]}"
    result = run_recon(ReconTask(case_id="H001", key=key, magnitude=str(done.magnitude_path),
                                 phase=str(done.phase_path), mask=None, te_s=tuple(done.acquisition["EchoTime"]),
                                 b0_tesla=done.acquisition["MagneticFieldStrength"], b0_dir=None,
                                 phase_record={}, params=done.recon_params, out_dir=str(out)))
    assert result.ok and json.loads((out / "done.json").read_text())["key"] == key
    # Another worker was killed while writing C002: a hidden temporary folder of a process that is gone.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from QSMReproducibilityLib.fileio import host_tag

    debris = study_dir / "processing" / "C002" / f".recon-0123.{host_tag()}.{dead.stdout.strip()}.abc.tmp"
    debris.mkdir(parents=True)
    (debris / "qsm.nii.gz").write_bytes(b"half a file")

    summary = process_study(study_dir, workers=0)
    assert summary.reused == ["H001"] and summary.reconstructed == ["C002"]
    assert not debris.exists()
    assert qsm_bytes(study_dir) == qsm_bytes(pair_serial)


def test_a_failing_case_is_reported_and_the_others_go_on(cohort, tmp_path, capsys):
    from QSMReproducibilityLib.cli import main

    study_dir = fresh_study(cohort, tmp_path / "study", "pair")
    # The stored phase of C002 is damaged after registration (e.g. a disk error): its reconstruction fails.
    phase = study_dir / "cases" / "C002" / "gre" / "phase.nii"
    phase.write_bytes(phase.read_bytes()[:5000])
    code = main(["study", "process", str(study_dir), "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "1 case(s) reconstructed" in out
    failures = [line for line in err.splitlines() if line.startswith("qsmrepro: error:")]
    assert len(failures) == 1 and failures[0].startswith("qsmrepro: error: case C002: ") and "phase.nii" in failures[0]
    assert "Traceback" not in err
    with Study.open(study_dir) as study:
        assert [p.case_id for p in study.pending_cases()] == ["C002"]
        assert "C002" in study.summary()["cases_failed"]
        assert [c.case_id for c in study.cases()] == ["H001"]
    assert audit(study_dir, "processing_failed") == ["C002"]
    assert main(["study", "status", str(study_dir)]) == 0
    assert "case C002: the last reconstruction failed" in capsys.readouterr().out


def test_progress_counts_down_to_done_and_a_cancel_keeps_what_finished(cohort, tmp_path):
    from QSMReproducibilityLib.errors import Cancelled

    study_dir = fresh_study(cohort, tmp_path / "study", "pair")
    seen = []

    def stop_after_the_first_case(fraction, message):
        seen.append((fraction, message))
        return "recon 1/2" not in message

    with pytest.raises(Cancelled):
        process_study(study_dir, workers=0, progress=stop_after_the_first_case)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
    # After one of two equal tasks the time left is the time the first took (elapsed x remaining / done).
    assert seen[-1][1].startswith("recon 1/2 · ETA ") and seen[-1][1] != "recon 1/2 · ETA ?"
    assert read_progress(study_dir)["state"] == "cancelled"
    with Study.open(study_dir) as study:
        assert len(study.cases()) == 1 and len(study.pending_cases()) == 1  # the finished case is kept
    rest = process_study(study_dir, workers=0)
    assert len(rest.reconstructed) == 1 and read_progress(study_dir)["state"] == "done"


def test_a_second_owner_is_refused_while_one_processes(cohort, tmp_path, capsys):
    from QSMReproducibilityLib.cli import main
    from QSMReproducibilityLib.process.run import _ownership

    study_dir = fresh_study(cohort, tmp_path / "study", "pair")
    with _ownership(study_dir / "processing"):
        code = main(["study", "process", str(study_dir), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is being processed by process" in err
    with Study.open(study_dir) as study:
        assert len(study.pending_cases()) == 2  # nothing was done


def test_add_case_later_checks_the_gre_now_and_refuses_what_it_cannot_reconstruct(cohort, tmp_path, capsys):
    from QSMReproducibilityLib.cli import main

    study_dir = fresh_study(cohort, tmp_path / "study", "pair")
    anat = cohort["cases"][0]["anat"]
    before = sorted(p.relative_to(study_dir) for p in study_dir.rglob("*"))
    refusals = [
        (["--qsm", str(anat / "x.nii.gz"), "--later"], "--later applies to INPUT"),
        ([str(anat), "--later", "--case-id", "H001"], "case H001 is already in the study"),
        ([str(anat), "--later", "--te", "0.005", "0.010"], "echo"),
        ([str(tmp_path / "missing"), "--later"], "missing"),
    ]
    for extra, words in refusals:
        argv = ["study", "add-case", str(study_dir), "--case-id", "H009", "--lesion-type", "hematoma", *extra]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("qsmrepro: error: ") and err.count("\n") == 1, (argv, err)
        assert words in err, (argv, err)
    assert sorted(p.relative_to(study_dir) for p in study_dir.rglob("*")) == before  # nothing written
    assert main(["study", "add-case", str(study_dir), "--case-id", "H009", "--lesion-type", "hematoma", str(anat),
                 "--later", "--method", "tkd"]) == 0
    assert "'qsmrepro study process' reconstructs it" in capsys.readouterr().out
    with Study.open(study_dir) as study:
        pending = study.case_input("H009")
        assert pending.recon_params["method"] == "tkd" and not pending.reconstructed
        assert pending.acquisition["EchoTime"] == pytest.approx([0.00492 + 0.00246 * e for e in range(7)])
        assert study.verify() == []


def test_an_unreachable_scheduler_is_one_error_line(cohort, tmp_path, capsys):
    from QSMReproducibilityLib.cli import main

    study_dir = fresh_study(cohort, tmp_path / "study", "pair")
    code = main(["study", "process", str(study_dir), "--scheduler", f"tcp://127.0.0.1:{_free_port()}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("qsmrepro: error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert err.count("\n") == 1
    assert not (study_dir / "processing" / "progress.json").exists()
    with Study.open(study_dir) as study:
        assert len(study.pending_cases()) == 2 and audit(study_dir, "processing_failed") == []


@needs_radiomics
def test_demo_study_is_processed_again_to_the_same_feature_table(tmp_path):
    out = tmp_path / "demo"
    proc = qsmrepro("demo", "-o", out, "--cases", "5", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = qsmrepro("study", "process", out / "study", "--workers", "0", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "features of 20 reading(s): 20 computed, 0 cached" in proc.stdout
    demo = pd.read_csv(out / "features.csv")
    again = pd.read_csv(out / "study" / "report" / "features.csv")
    key = ["case_id", "lesion_id", "observer", "reading", "feature"]
    pd.testing.assert_frame_equal(demo.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True), check_exact=True)
