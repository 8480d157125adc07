"""The progress of ``study process``: its owner writes ``processing/progress.json``, any front reads it.

The owner's :class:`ProgressTracker` sends the fraction, a message and the estimated time left to the
``progress(fraction, message)`` callback (the CLI's bar, the Slicer panel's progress bar) and, at most twice a
second, to the progress file, which another process (the browser reading station, a second terminal) polls
with :func:`read_progress` and shows with :func:`describe_progress`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from ..fileio import atomic_output
from ..progress import ProgressCallback, notify
from ..readings.timestamps import iso_utc, to_utc
from .tasks import TaskResult

__all__ = ["PROCESSING_DIR", "PROGRESS_FILE", "ProgressTracker", "read_progress", "describe_progress",
           "format_duration"]

log = logging.getLogger(__name__)

PROCESSING_DIR = "processing"
PROGRESS_FILE = "progress.json"
# Relative cost of the two kinds of task for the progress fraction and the time left: a reconstruction of
# the study's matrix takes about 5 s, the features of one reading about 0.05-0.2 s (README, speed table).
RECON_WEIGHT, FEATURE_WEIGHT = 1.0, 0.05
TASKS_SHARE = 0.9  # of the progress bar; the feature table and the report take the rest
_SNAPSHOT_INTERVAL_S = 0.5


def read_progress(study_dir) -> dict | None:
    """The latest progress of ``study process`` on a study, as its owner wrote it, or None.

    Keys: ``state`` (``running``, ``done``, ``failed``, ``cancelled``), ``fraction`` (0-1), ``message``,
    ``eta_s`` (seconds left, None until a first task finished), ``counts`` (``reconstruct``,
    ``reconstructed``, ``features``, ``features_done``, ``failed``), ``started_at``, ``updated_at``
    (ISO-8601 UTC), ``host`` and ``pid`` of the owner.
    """
    try:
        return json.loads((Path(study_dir) / PROCESSING_DIR / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def describe_progress(progress: dict | None, *, blinded: bool = False) -> str:
    """One line for a front that shows a study's processing: "" when none has run.

    ``blinded`` (the reading station) leaves out the readings' counts and the owner's host: a reader must not
    learn how far the other readings are.
    """
    if not progress:
        return ""
    counts = progress.get("counts") or {}
    done = f"{counts.get('reconstructed', 0)} of {counts.get('reconstruct', 0)} reconstructions"
    if not blinded:
        done += f", {counts.get('features_done', 0)} of {counts.get('features', 0)} readings' features"
    if counts.get("failed"):
        done += f", {counts['failed']} failed"
    if progress.get("state") == "running":
        where = "" if blinded else f" (on {progress.get('host', '?')})"
        return (f"Study processing: {round(100 * float(progress.get('fraction') or 0))} % ({done}); about "
                f"{format_duration(progress.get('eta_s'))} left{where}")
    return f"Study processing {progress.get('state', '?')} at {progress.get('updated_at', '?')} ({done})"


def format_duration(seconds: float | None) -> str:
    """``"1 h 02 min"``, ``"3 min 05 s"``, ``"42 s"``; ``"?"`` when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


class ProgressTracker:
    """Progress fraction, message and time left, to the callback and to ``processing/progress.json``."""

    def __init__(self, callback: ProgressCallback | None, snapshot: Path, n_recon: int, n_features: int):
        self._callback, self._snapshot = callback, snapshot
        self._now = lambda: iso_utc(to_utc(None))
        self.counts = {"reconstruct": n_recon, "reconstructed": 0, "features": n_features, "features_done": 0,
                       "failed": 0}
        self._total = n_recon * RECON_WEIGHT + n_features * FEATURE_WEIGHT
        self._done = 0.0
        self._start = time.perf_counter()
        self._started_at = self._now()
        self._written = 0.0
        self.eta_s: float | None = None
        self.fraction = 0.0

    def task_done(self, result: TaskResult) -> None:
        if result.kind == "reconstruction":
            self.counts["reconstructed"] += 1
            self._done += RECON_WEIGHT
        else:
            self.counts["features_done"] += 1
            self._done += FEATURE_WEIGHT
        if not result.ok:
            self.counts["failed"] += 1
        elapsed = time.perf_counter() - self._start
        self.eta_s = elapsed * (self._total - self._done) / self._done if self._done else None
        self.show(TASKS_SHARE * self._done / self._total if self._total else TASKS_SHARE, self.tasks_message())

    def tasks_message(self) -> str:
        c = self.counts
        parts = []
        if c["reconstruct"]:
            parts.append(f"recon {c['reconstructed']}/{c['reconstruct']}")
        if c["features"]:
            parts.append(f"features {c['features_done']}/{c['features']}")
        if c["failed"]:
            parts.append(f"{c['failed']} failed")
        return " · ".join(parts + [f"ETA {format_duration(self.eta_s)}"]) if parts else "nothing to compute"

    def span(self, start: float, stop: float) -> ProgressCallback:
        """A callback for a later stage (the report) that fills ``[start, stop]`` of the bar."""
        def callback(fraction: float, message: str) -> bool:
            self.show(start + (stop - start) * fraction, message)
            return True

        return callback

    def show(self, fraction: float, message: str, state: str = "running", *, force: bool = False) -> None:
        now = time.perf_counter()
        self.fraction = fraction
        if force or state != "running" or now - self._written >= _SNAPSHOT_INTERVAL_S:
            self._written = now
            self._write(fraction, message, state)
        notify(self._callback, fraction, message)

    def record(self, message: str, state: str) -> None:
        """Write the final state of a run that stopped (failed, cancelled) without calling the callback again."""
        self._write(self.fraction, message, state)

    def _write(self, fraction: float, message: str, state: str) -> None:
        snapshot = {"state": state, "fraction": round(float(fraction), 4), "message": message,
                    "eta_s": None if self.eta_s is None else round(self.eta_s, 1), "counts": dict(self.counts),
                    "started_at": self._started_at, "updated_at": self._now(), "host": socket.gethostname(),
                    "pid": os.getpid()}
        try:
            with atomic_output(self._snapshot) as tmp:
                tmp.write_text(json.dumps(snapshot, indent=2), encoding="utf-8")
        except OSError as exc:  # progress is a convenience: never the reason a run fails
            log.warning("could not write %s: %s", self._snapshot, exc)
