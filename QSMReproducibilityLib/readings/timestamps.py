"""Time stamps of the study store: ISO-8601 UTC, whole seconds (``2024-03-01T09:30:00Z``)."""

from __future__ import annotations

import datetime as dt

from ..errors import InputError

__all__ = ["to_utc", "iso_utc"]


def to_utc(value: dt.datetime | str | None) -> dt.datetime:
    """Aware UTC datetime, whole seconds. Naive values and strings without offset count as UTC."""
    if value is None:
        value = dt.datetime.now(dt.timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"{value!r} is not an ISO-8601 date/time (e.g. 2024-03-01T09:30:00Z)") from None
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise InputError(f"{value!r} is not a date/time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)


def iso_utc(value: dt.datetime) -> str:
    """``2024-03-01T09:30:00Z``: the form every time stamp of the store takes."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
