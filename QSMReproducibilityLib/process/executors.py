"""Where the tasks of ``study process`` run: tasks in, ``(task, result)`` pairs out as they finish.

:class:`SerialExecutor` runs them in this process, one after the other (``workers=0``; the benchmark's
baseline); :class:`DaskExecutor` on a ``dask.distributed`` cluster, a LocalCluster made here or the workers of
an existing scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from .tasks import ReconTask, TaskResult

__all__ = ["SerialExecutor", "DaskExecutor", "task_label"]



class SerialExecutor:
    """Every task in this process, one after the other (``workers=0``; the baseline of the benchmark)."""

    description = "serial (this process)"

    def run(self, jobs: list) -> Iterator[tuple[object, TaskResult]]:
        for function, task, _key, _priority in jobs:
            yield task, function(task)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Tasks on a Dask distributed cluster: a LocalCluster made here, or an existing scheduler's workers."""

    def __init__(self, study_root: Path, *, workers: int | None = None, scheduler: str | None = None, client=None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise InputError("dask[distributed] is not installed: run `make venv`, or "
                             "`python -m pip install \"dask[distributed]\"`") from None
        # Dask logs every worker's start and stop at INFO; a lost worker or task is worth a warning.
        logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
        self._cluster = None
        self._own_client = client is None
        if client is not None:
            self.client = client
            self.description = f"Dask cluster at {client.scheduler.address}"
        elif scheduler:
            _probe(scheduler)
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {' '.join(str(exc).split())}") \
                    from None
            self.description = f"Dask cluster at {scheduler}"
        else:
            n = workers or os.cpu_count() or 1
            # ":0": the scheduler's HTTP endpoints on a free port (the default 8787 may be another cluster's).
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                         silence_logs=logging.ERROR)
            self.client = Client(self._cluster)
            self.description = f"Dask LocalCluster ({n} worker process{'es' if n != 1 else ''})"
        try:
            self._check_workers(study_root)
        except BaseException:
            self.close()
            raise

    def _check_workers(self, study_root: Path) -> None:
        try:
            self.client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            raise InputError(f"no Dask worker is connected to the scheduler of the {self.description} "
                             "(start workers with `dask worker SCHEDULER_ADDRESS`)") from None
        seen = self.client.run(os.path.isdir, str(study_root))
        blind = sorted(address for address, ok in seen.items() if not ok)
        if blind:
            raise InputError(f"the Dask worker(s) {', '.join(blind)} cannot see the study folder {study_root}: "
                             "workers must mount it at the same path")

    def workers_per_host(self) -> dict:
        counts: dict = {}
        for address in self.client.scheduler_info().get("workers", {}):
            host = address.rsplit("://", 1)[-1].rsplit(":", 1)[0]
            counts[host] = counts.get(host, 0) + 1
        return counts

    def run(self, jobs: list) -> Iterator[tuple[object, TaskResult]]:
        from dask.distributed import as_completed

        tasks = {}
        futures = []
        for function, task, key, priority in jobs:
            future = self.client.submit(function, task, key=key, priority=priority)
            tasks[future.key] = task
            futures.append(future)
        try:
            for future in as_completed(futures):
                task = tasks[future.key]
                try:
                    result = future.result()
                except Exception as exc:  # the task's worker died too often (KilledWorker), or was lost
                    kind = "reconstruction" if isinstance(task, ReconTask) else "features"
                    result = TaskResult(kind=kind, case_id=task.case_id, label=task_label(task), key=task.key,
                                        ok=False, error=f"its Dask worker failed ({type(exc).__name__}: "
                                              f"{' '.join(str(exc).split())})")
                future.release()
                yield task, result
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._own_client:
                self.client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()


def _probe(scheduler: str) -> None:
    """Refuse at once an address where nothing listens (Dask's client would retry until its timeout)."""
    from urllib.parse import urlsplit

    parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
        raise InputError(f"--scheduler {scheduler}: give the scheduler's address as tcp://HOST:PORT")
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=10).close()
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc.strerror or exc}") from None


def task_label(task) -> str:
    if isinstance(task, ReconTask):
        return f"case {task.case_id}"
    return f"case {task.case_id}, observer {task.observer}, reading {task.reading}"
