"""``qsmrepro study process``: every case and reading of a study, in parallel, resumable, with progress.

The process that calls :func:`process_study` owns the study: it alone opens the SQLite database and writes
it. It plans the work (a case registered with its GRE and no QSM yet → one reconstruction task; a finished
reading whose features are not cached → one feature task), hands the tasks to Dask — a
``dask.distributed.LocalCluster`` of worker processes on this machine by default, or the workers of an
existing Dask scheduler — and, as each task finishes, records its result: a reconstructed case gets its
QSM in the study (it then appears in the reading lists), a failure is written with its message to the
study's audit log and ``study status``. Workers only read inputs and write their outputs as files into
``processing/`` (:mod:`.tasks`), keyed by the hash of what determines them, so that

* a rerun skips what is done (the key's output exists) and redoes what changed (another key);
* a crash of the owner, or a worker killed mid-task, loses at most the tasks then running: Dask gives a
  lost worker's tasks to another worker, and the next run registers outputs finished before the crash
  without computing them again; a half-written output never has its final name;
* one failing case is reported with its error and the others go on.

Then the feature table of every current reading (from the keyed files) and the agreement report are
written into the output folder, atomically.

Progress goes to a ``progress(fraction, message)`` callback (the CLI's bar, the Slicer panel's progress
bar) with the estimated time left in the message, and to ``processing/progress.json``, which any other
process (the browser reading station, a second terminal) can poll with
:func:`~.progress_file.read_progress`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from ..errors import AgreementError, Cancelled, InputError, QSMReproError, ReadingError
from ..progress import ProgressCallback
from ..radiomics import ReadingFiles
from ..readings.fingerprint import sha256_file
from .executors import DaskExecutor, SerialExecutor
from .progress_file import PROCESSING_DIR, PROGRESS_FILE, TASKS_SHARE, ProgressTracker, format_duration
from .tasks import (KEY_CHARS, FeatureTask, ReconTask, TaskResult, features_key, recon_key,
                    recon_output, run_features, run_recon)

__all__ = ["process_study", "ProcessSummary"]

log = logging.getLogger(__name__)

LOCK_FILE = "owner.lock"


@dataclasses.dataclass
class ProcessSummary:
    """What one run of :func:`process_study` did.

    ``reconstructed``: cases whose QSM this run made and registered; ``reused``: cases whose QSM an earlier,
    interrupted run had made (registered now, not recomputed); ``failed``: task label → error message;
    ``features_computed`` / ``features_cached``: readings whose features this run computed / found cached;
    ``report_error``: why the report could not be written; ``report_skipped``: why the agreement statistics
    cannot be computed yet (too few readings: the feature table is written, the report is not).
    """

    study: Path
    executor: str
    reconstructed: list = dataclasses.field(default_factory=list)
    reused: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)
    readings: int = 0
    features_computed: int = 0
    features_cached: int = 0
    features_path: Path | None = None
    report: dict | None = None
    report_error: str | None = None
    report_skipped: str | None = None
    seconds: float = 0.0
    owner_seconds: float = 0.0  # spent recording results in the study (the part that does not scale out)
    peak_task_rss_mb: float = 0.0
    task_processes: set = dataclasses.field(default_factory=set)  # (host, pid) of the processes that ran tasks

    @property
    def ok(self) -> bool:
        return not self.failed and self.report_error is None


# ------------------------------------------------------------------------------------------------------
# The owner


@contextlib.contextmanager
def _ownership(folder: Path):
    """Only one process processes a study at a time (an advisory lock on ``processing/owner.lock``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")
    try:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; SQLite still serialises the writes
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ReadingError(f"the study {folder.parent} is being processed by {holder} (lock {path}); "
                                   "wait until it has finished") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


STALE_REMOTE_TEMP_S = 24 * 3600


def _sweep(processing: Path) -> None:
    """Remove the hidden temporary files and folders of killed tasks: those of processes of this machine that
    no longer run, and those of other machines older than a day (no task writes for that long)."""
    from ..fileio import host_tag, is_stale_temp_file, temp_file_owner

    for path in processing.glob("*/.*.tmp"):
        owner = temp_file_owner(path)
        try:
            old = owner is not None and owner[0] != host_tag() and \
                time.time() - path.stat().st_mtime > STALE_REMOTE_TEMP_S
        except OSError:
            continue
        if old or is_stale_temp_file(path):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            log.info("removed %s left by an interrupted task", path)


def _feature_file(processing: Path, reading, key: str) -> Path:
    return processing / reading.case_id / f"features-{reading.observer}-r{reading.reading}-{key[:KEY_CHARS]}.json"


def process_study(study_dir, *, workers: int | None = None, scheduler: str | None = None, client=None,
                  output_dir=None, params_path=None, write_report: bool = True,
                  progress: ProgressCallback | None = None) -> ProcessSummary:
    """Reconstruct every case that lacks a QSM, extract the features of every finished reading, write the
    feature table and the agreement report.

    Parameters
    ----------
    study_dir : path-like
        The study folder (``qsmrepro study init``).
    workers : int, optional
        Worker processes of a local Dask cluster (default: one per core); 0 runs every task in this
        process without Dask.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://HOST:PORT``), whose workers must see the study folder
        at the same path (a shared file system).
    client : dask.distributed.Client, optional
        An existing client to use instead (it is left open).
    output_dir : path-like, optional
        Where ``features.csv`` and the report go (default ``<study>/report``).
    params_path : path-like, optional
        PyRadiomics parameter file (default ``Resources/QSMRadiomics.yaml``).
    write_report : bool
        Write the feature table and the report after the tasks (default True).
    progress : callable, optional
        ``progress(fraction, message)``; returning False cancels (running tasks are cancelled, finished
        ones stay recorded).

    Returns
    -------
    ProcessSummary

    Raises
    ------
    InputError, ReadingError
        Not a study, another process is processing it, the scheduler cannot be reached, a bad parameter
        file. Failures of single cases or readings do not raise: they are in ``ProcessSummary.failed``.
    """
    from ..readings import Study

    if workers is not None and workers < 0:
        raise InputError(f"--workers {workers}: give 0 (this process) or more worker processes")
    if sum(x is not None for x in (scheduler, client)) > 1 or (workers is not None and (scheduler or client)):
        raise InputError("give either a number of local workers or a scheduler, not both")
    started = time.perf_counter()
    with Study.open(study_dir) as study:
        processing = study.root / PROCESSING_DIR
        with _ownership(processing):
            return _process(study, processing, started, workers=workers, scheduler=scheduler, client=client,
                            output_dir=output_dir, params_path=params_path, write_report=write_report,
                            progress=progress)


def _process(study, processing: Path, started: float, *, workers, scheduler, client, output_dir, params_path,
             write_report: bool, progress) -> ProcessSummary:
    from ..radiomics import default_params_path
    _sweep(processing)
    summary = ProcessSummary(study=study.root, executor="")

    # ---- plan
    recon_jobs = []
    for pending in study.pending_cases():
        key = recon_key(pending)
        out = processing / pending.case_id / f"recon-{key[:KEY_CHARS]}"
        if recon_output(out) is not None:  # made by an earlier run that stopped before registering it
            try:
                _register(study, pending.case_id, out, key)
                summary.reused.append(pending.case_id)
            except QSMReproError as exc:
                error = " ".join(str(exc).split())
                summary.failed[f"case {pending.case_id}"] = error
                study.record_case_failure(pending.case_id, "reconstruction", error)
            continue
        acquisition = pending.acquisition
        phase_record = {k: acquisition[k] for k in ("PhaseUnits", "PhaseScaling") if k in acquisition}
        recon_jobs.append(ReconTask(
            case_id=pending.case_id, key=key, magnitude=str(pending.magnitude_path), phase=str(pending.phase_path),
            mask=str(pending.mask_path) if pending.mask_path else None, te_s=tuple(acquisition["EchoTime"]),
            b0_tesla=float(acquisition["MagneticFieldStrength"]),
            b0_dir=tuple(acquisition["B0DirectionVoxel"]) if acquisition.get("B0DirectionGiven") else None,
            phase_record=phase_record, params=pending.recon_params, out_dir=str(out)))

    readings = study.readings()
    summary.readings = len(readings)
    feature_jobs, feature_files = [], {}
    if readings:
        params = Path(params_path) if params_path else default_params_path()
        if not params.is_file():
            raise InputError(f"{params}: the PyRadiomics parameter file does not exist")
        from ..radiomics import make_extractor

        make_extractor(params)  # a bad parameter file or a missing PyRadiomics: one error now, not per task
        params_sha = sha256_file(params)
        cases = {c.case_id: c for c in study.cases()}
        for reading in readings:
            key = features_key(qsm_sha256=cases[reading.case_id].qsm_checksum,
                               segmentation_sha256=reading.checksum, params_sha256=params_sha,
                               case_id=reading.case_id, lesion_type=reading.lesion_type, observer=reading.observer,
                               reading=reading.reading)
            out = _feature_file(processing, reading, key)
            feature_files[(reading.case_id, reading.observer, reading.reading)] = out
            if out.is_file():
                summary.features_cached += 1
                continue
            feature_jobs.append(FeatureTask(**dataclasses.asdict(ReadingFiles.of(reading)), params_path=str(params),
                                            key=key, out_path=str(out)))

    # Connected (or the cluster started) before anything is written: an unreachable scheduler changes nothing.
    executor = None
    if recon_jobs or feature_jobs:
        executor = SerialExecutor() if workers == 0 else DaskExecutor(study.root, workers=workers, scheduler=scheduler,
                                                        client=client)
    tracker = ProgressTracker(progress, processing / PROGRESS_FILE, len(recon_jobs), len(feature_jobs))
    state = "failed"
    try:
        tracker.show(0.0, f"{len(recon_jobs)} case(s) to reconstruct, features of {len(feature_jobs)} reading(s) "
                          f"to compute ({len(summary.reused)} + {summary.features_cached} done before)", force=True)
        # ---- run
        if executor is not None:
            summary.executor = executor.description
            per_host = executor.workers_per_host() if isinstance(executor, DaskExecutor) else None
            # Reconstructions first (higher priority): they are the long tasks.
            jobs = [(run_recon, dataclasses.replace(t, workers_per_host=per_host),
                     f"qsmrepro-recon-{t.case_id}-{t.key[:KEY_CHARS]}", 1) for t in recon_jobs]
            jobs += [(run_features, t, f"qsmrepro-features-{t.case_id}-{t.observer}-r{t.reading}-"
                      f"{t.key[:KEY_CHARS]}", 0) for t in feature_jobs]
            for task, result in executor.run(jobs):
                t = time.perf_counter()
                _record(study, summary, task, result)
                summary.owner_seconds += time.perf_counter() - t
                tracker.task_done(result)
            executor.close()
            executor = None
            _sweep(processing)  # what workers killed during this run left
        else:
            summary.executor = "nothing to compute"

        # ---- table and report
        if write_report and readings:
            _table_and_report(study, summary, readings, feature_files, output_dir, tracker)
        _prune(processing, study, feature_files)
        state = "done"
    except QSMReproError as exc:
        state = "cancelled" if isinstance(exc, Cancelled) else "failed"
        raise
    finally:
        if executor is not None:
            executor.close()
        summary.seconds = time.perf_counter() - started
        if state == "done":
            tracker.show(1.0, _final_message(summary), state=state)
        else:  # the caller knows already; other fronts learn it from the snapshot
            tracker.record(f"processing {state} ({tracker.tasks_message()})", state)
    return summary


def _register(study, case_id: str, out: Path, key: str) -> None:
    """Put a reconstructed QSM (and its mask) into the study: the owner's only write of a case."""
    from ..recon.pipeline import reconstruction_record

    qsm = out / "qsm.nii.gz"
    mask = out / "mask.nii.gz"
    study.complete_pending_case(case_id, qsm, mask if mask.is_file() else None,
                                reconstruction=reconstruction_record(qsm), key=key)
    shutil.rmtree(out, ignore_errors=True)  # the study holds the copy now


def _record(study, summary: ProcessSummary, task, result: TaskResult) -> None:
    summary.peak_task_rss_mb = max(summary.peak_task_rss_mb, result.peak_rss_mb)
    if result.pid:
        summary.task_processes.add((result.host, result.pid))
    if result.kind == "reconstruction":
        if result.ok:
            try:
                _register(study, task.case_id, Path(result.output), task.key)
                summary.reconstructed.append(task.case_id)
                return
            except QSMReproError as exc:
                result = dataclasses.replace(result, ok=False, error=" ".join(str(exc).split()))
        summary.failed[result.label] = result.error
        study.record_case_failure(task.case_id, "reconstruction", result.error)
        log.warning("%s: reconstruction failed: %s", result.label, result.error)
    elif result.ok:
        summary.features_computed += 1
    else:
        summary.failed[result.label] = result.error
        study.record_case_failure(task.case_id, "features", f"{result.label}: {result.error}")
        log.warning("%s: feature extraction failed: %s", result.label, result.error)


def _table_and_report(study, summary: ProcessSummary, readings, feature_files: dict, output_dir, tracker) -> None:
    import pandas as pd

    from ..feature_table import FEATURE_COLUMNS, complete_table, write_feature_table
    from ..report import write_report
    from .tasks import read_features

    out = Path(output_dir) if output_dir else study.root / "report"
    tracker.show(TASKS_SHARE, "feature table", force=True)
    parts = [read_features(path) for path in
             (feature_files[(r.case_id, r.observer, r.reading)] for r in readings) if path.is_file()]
    if not parts:
        summary.report_error = "no reading has features (every extraction failed)"
        return
    table = complete_table(pd.concat(parts, ignore_index=True)[FEATURE_COLUMNS])
    summary.features_path = write_feature_table(table, out / "features.csv")
    from ..recon.pipeline import methods_settings

    settings = {"study": str(study.root), "cases": str(len(study.cases())),
                **methods_settings(study.reconstruction_records().values()),
                "readings": f"{len(readings)} finished ({len(parts)} with features)"}
    try:
        summary.report = write_report(table, out, settings=settings,
                                      progress=tracker.span(TASKS_SHARE, 1.0),
                                      source=str(summary.features_path))
    except AgreementError as exc:  # too few readings yet for the statistics: a study in progress, not a failure
        summary.report_skipped = " ".join(str(exc).split())
    except QSMReproError as exc:
        if isinstance(exc, Cancelled):
            raise
        summary.report_error = " ".join(str(exc).split())


def _prune(processing: Path, study, feature_files: dict) -> None:
    """Drop cached outputs no current case or reading refers to (amended readings, changed parameters)."""
    current = {path.name for path in feature_files.values()}
    reconstructed = {c.case_id for c in study.cases()}
    for folder in processing.iterdir() if processing.is_dir() else ():
        if not folder.is_dir():
            continue
        for path in folder.glob("features-*.json"):
            if path.name not in current:
                path.unlink(missing_ok=True)
        if folder.name in reconstructed:
            for path in folder.glob("recon-*"):
                shutil.rmtree(path, ignore_errors=True)


def _final_message(summary: ProcessSummary) -> str:
    parts = [f"{len(summary.reconstructed) + len(summary.reused)} case(s) reconstructed",
             f"features of {summary.features_computed} reading(s) computed, {summary.features_cached} cached"]
    if summary.failed:
        parts.append(f"{len(summary.failed)} failed")
    return ", ".join(parts) + f" in {format_duration(summary.seconds)}"
