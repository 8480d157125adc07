"""Whole-study processing on Dask: ``qsmrepro study process`` (:mod:`.run`) and its worker tasks (:mod:`.tasks`)."""

from .run import PROCESSING_DIR, PROGRESS_FILE, ProcessSummary, format_duration, process_study, read_progress

__all__ = ["process_study", "ProcessSummary", "read_progress", "format_duration", "PROCESSING_DIR", "PROGRESS_FILE"]
