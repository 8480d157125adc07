"""The work of ``qsmrepro study process`` that runs on workers: one task per case or per reading.

A task gets plain values (paths, parameters) and writes its outputs as files into the study's
``processing/<case_id>/`` folder, atomically, under a name that carries the hash of everything that
determines them (:func:`recon_key`, :func:`features_key`); it never opens the study's SQLite. An output
whose name exists is complete, so a rerun, a second worker given the same task after a crash, or a task
that finds its output already made, does no work twice and never leaves half a file:

    processing/<case_id>/recon-<key16>/            qsm.nii.gz, qsm.json (sidecar), mask.nii.gz, done.json;
                                                   written as a hidden temporary folder and renamed in one step
    processing/<case_id>/features-<O>-r<N>-<key16>.json  the long feature rows of one reading

Failures are returned as values (with the error's one-line message), not raised, so that one bad case
never stops the others; only a dead worker surfaces as a Dask error, which the owner reports the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from .. import __version__
from ..fileio import TEMP_SUFFIX, atomic_output, temp_name_prefix
from ..radiomics import ReadingFiles
from ..readings.fingerprint import sha256_file

__all__ = ["ReconTask", "FeatureTask", "TaskResult", "recon_key", "features_key", "run_recon", "run_features",
           "recon_output", "read_features"]

SOFTWARE = f"QSMReproducibilityLib {__version__}"
KEY_CHARS = 16  # of the SHA-256 in file names; the whole key is in done.json
_ACQUISITION_KEYS = ("EchoTime", "MagneticFieldStrength", "B0DirectionVoxel", "B0DirectionGiven")


def _sha256_text(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def recon_key(pending) -> str:
    """SHA-256 of what makes a case's QSM: the stored GRE files' SHA-256, the acquisition (TE in s, B0 in T,
    B0 direction), the reconstruction parameters and the library version that implements the methods."""
    return _sha256_text({
        "stage": "reconstruction", "gre": pending.gre_files,
        "acquisition": {k: pending.acquisition.get(k) for k in _ACQUISITION_KEYS},
        "params": pending.recon_params, "software": SOFTWARE,
    })


def features_key(*, qsm_sha256: str, segmentation_sha256: str, params_sha256: str, case_id: str,
                 lesion_type: str, observer: str, reading: int) -> str:
    """SHA-256 of what makes a reading's features: the QSM and segmentation files, the PyRadiomics
    parameter file, the reading's identity (it is in the rows), the PyRadiomics and library versions."""
    try:
        from importlib.metadata import version

        pyradiomics = version("pyradiomics")
    except Exception:  # not installed: the task reports that when it runs
        pyradiomics = "absent"
    return _sha256_text({
        "stage": "features", "qsm": qsm_sha256, "segmentation": segmentation_sha256, "params": params_sha256,
        "case_id": case_id, "lesion_type": lesion_type, "observer": observer, "reading": int(reading),
        "pyradiomics": pyradiomics, "software": SOFTWARE,
    })


@dataclasses.dataclass(frozen=True)
class ReconTask:
    """Reconstruct one case from its stored GRE into ``out_dir`` (``processing/<case>/recon-<key16>``)."""

    case_id: str
    key: str
    magnitude: str
    phase: str
    mask: str | None
    te_s: tuple
    b0_tesla: float
    b0_dir: tuple | None
    phase_record: dict
    params: dict
    out_dir: str
    workers_per_host: dict | None = None  # host → worker processes there: FFT threads = cores / workers


@dataclasses.dataclass(frozen=True)
class FeatureTask(ReadingFiles):
    """Features of one reading into ``out_path`` (``processing/<case>/features-<O>-r<N>-<key16>.json``)."""

    params_path: str | None
    key: str
    out_path: str


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """What a task sends back to the owner: where its output is, or why it failed."""

    kind: str  # "reconstruction" or "features"
    case_id: str
    label: str
    key: str
    ok: bool
    output: str | None = None
    error: str | None = None
    cached: bool = False
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    host: str = ""
    pid: int = 0


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (0 where the platform does not say: Windows)."""
    try:
        import resource
    except ImportError:
        return 0.0
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    from ..errors import QSMReproError

    return text if isinstance(exc, QSMReproError) else f"{type(exc).__name__}: {text}"


def _result(kind, task, label, started, **values) -> TaskResult:
    return TaskResult(kind=kind, case_id=task.case_id, label=label, key=task.key,
                      seconds=time.perf_counter() - started, peak_rss_mb=_peak_rss_mb(), host=socket.gethostname(),
                      pid=os.getpid(), **values)


def recon_output(out_dir) -> dict | None:
    """The manifest (``done.json``) of a finished reconstruction folder, or None when it is not finished."""
    try:
        return json.loads((Path(out_dir) / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fft_threads(workers_per_host: dict | None) -> int | None:
    """One FFT thread per core this worker process may use: the machine's cores over its worker processes."""
    if not workers_per_host:
        return None
    try:
        from dask.distributed import get_worker

        host = get_worker().address.rsplit("://", 1)[-1].rsplit(":", 1)[0]
    except (ImportError, ValueError):
        return None
    count = workers_per_host.get(host)
    return max(1, (os.cpu_count() or 1) // count) if count else None


def run_recon(task: ReconTask) -> TaskResult:
    """Reconstruct one case (:func:`~QSMReproducibilityLib.recon.pipeline.reconstruct_path`) into its keyed folder."""
    from ..recon import kernels
    from ..recon.pipeline import ReconParams, reconstruct_path, sidecar_path

    started = time.perf_counter()
    label = f"case {task.case_id}"
    out = Path(task.out_dir)
    if recon_output(out) is not None:
        return _result("reconstruction", task, label, started, ok=True, output=str(out), cached=True)
    threads = _fft_threads(task.workers_per_host)
    previous = kernels.FFT_WORKERS
    staging = None
    try:
        if threads:
            kernels.FFT_WORKERS = threads
        out.parent.mkdir(parents=True, exist_ok=True)
        # Hidden, named after this host and process, so that the owner can sweep what a killed worker left.
        staging = Path(tempfile.mkdtemp(prefix=temp_name_prefix(out), suffix=TEMP_SUFFIX, dir=out.parent))
        qsm = staging / "qsm.nii.gz"
        result = reconstruct_path(magnitude=[task.magnitude], phase=[task.phase], te_s=list(task.te_s),
                                  b0_tesla=task.b0_tesla, b0_dir=task.b0_dir, qsm_out=qsm,
                                  mask_out=staging / "mask.nii.gz", params=ReconParams.from_dict(task.params),
                                  user_mask_path=task.mask, phase_units="radians")
        # The sidecar tells how the original phase was scaled (the stored copy is in radians already).
        sidecar = sidecar_path(qsm)
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        info.update(task.phase_record)
        info["ReconstructionKey"] = task.key
        sidecar.write_text(json.dumps(info, indent=2), encoding="utf-8")
        files = {p.name: sha256_file(p) for p in sorted(staging.iterdir())}
        manifest = {"case_id": task.case_id, "key": task.key, "files": files, "software": SOFTWARE,
                    "seconds": {k: round(v, 3) for k, v in result.seconds.items()}, "host": socket.gethostname()}
        (staging / "done.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _fsync_tree(staging)
        try:
            os.rename(staging, out)
        except OSError:
            if recon_output(out) is None:  # not another worker that finished the same key first
                raise
            shutil.rmtree(staging, ignore_errors=True)
        staging = None
        return _result("reconstruction", task, label, started, ok=True, output=str(out))
    except Exception as exc:  # every failure of one case is reported, none stops the others
        return _result("reconstruction", task, label, started, ok=False, error=_error_text(exc))
    finally:
        kernels.FFT_WORKERS = previous
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


_EXTRACTORS: dict = {}


def _extractor(params_path):
    from ..radiomics import make_extractor

    key = str(params_path)
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = make_extractor(params_path)
    return _EXTRACTORS[key]


def run_features(task: FeatureTask) -> TaskResult:
    """One reading's features (:func:`~QSMReproducibilityLib.radiomics.features_for_reading`) into its keyed file."""
    from ..feature_table import FEATURE_COLUMNS
    from ..radiomics import features_for_reading

    started = time.perf_counter()
    label = f"case {task.case_id}, observer {task.observer}, reading {task.reading}"
    out = Path(task.out_path)
    if out.is_file():
        return _result("features", task, label, started, ok=True, output=str(out), cached=True)
    try:
        rows = features_for_reading(task, _extractor(task.params_path))
        # JSON keeps every float exactly (Python writes the shortest repr that reads back to the same double).
        payload = json.dumps({"columns": FEATURE_COLUMNS,
                              "rows": [[_plain(row[c]) for c in FEATURE_COLUMNS] for row in rows]})
        with atomic_output(out) as tmp:
            tmp.write_text(payload, encoding="utf-8")
        return _result("features", task, label, started, ok=True, output=str(out))
    except Exception as exc:
        return _result("features", task, label, started, ok=False, error=_error_text(exc))


def _plain(value):
    """numpy scalars as Python numbers, for JSON."""
    return value.item() if hasattr(value, "item") else value


def read_features(path):
    """A reading's cached feature rows (the long table's columns), values exactly as computed."""
    import pandas as pd

    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    table = pd.DataFrame(payload["rows"], columns=payload["columns"])
    table["value"] = table["value"].astype(float)
    table["reading"] = table["reading"].astype(int)
    return table
