"""Whole-study processing on Dask: ``qsmrepro study process`` (:mod:`.run`), its worker tasks (:mod:`.tasks`),
where they run (:mod:`.executors`) and its progress file (:mod:`.progress_file`)."""

from .progress_file import PROCESSING_DIR, PROGRESS_FILE, describe_progress, format_duration, read_progress
from .run import ProcessSummary, process_study

__all__ = ["process_study", "ProcessSummary", "read_progress", "describe_progress", "format_duration",
           "PROCESSING_DIR", "PROGRESS_FILE"]
