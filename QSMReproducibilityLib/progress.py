"""Progress reporting and cancellation shared by every long stage.

A stage takes ``progress: ProgressCallback | None``. It calls ``progress(fraction, message)`` with
``fraction`` in [0, 1]; the callback may return ``False`` to ask for cancellation, and the stage
then raises :class:`~QSMReproducibilityLib.errors.Cancelled` at its next check. The Slicer panel and
the CLI both pass callbacks of this one form.
"""

from __future__ import annotations

from typing import Callable, Optional

from .errors import Cancelled

ProgressCallback = Callable[[float, str], Optional[bool]]


def notify(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    """Send one progress update; raise :class:`Cancelled` if the callback asks to stop."""
    if progress is None:
        return
    if progress(min(max(float(fraction), 0.0), 1.0), message) is False:
        raise Cancelled(f"cancelled during: {message}")


def sub_progress(progress: ProgressCallback | None, start: float, stop: float) -> ProgressCallback | None:
    """A callback that maps a sub-stage's [0, 1] onto ``[start, stop]`` of the parent's range."""
    if progress is None:
        return None

    def _sub(fraction: float, message: str) -> Optional[bool]:
        return progress(start + (stop - start) * fraction, message)

    return _sub


class ConsoleProgress:
    """A progress bar on stderr (tqdm) that is a :data:`ProgressCallback`; use as a context manager."""

    def __init__(self, desc: str):
        import sys

        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=desc, file=sys.stderr, disable=None,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}")

    def __call__(self, fraction: float, message: str) -> bool:
        self._bar.n = int(round(fraction * 1000))
        self._bar.set_postfix_str(message[:50], refresh=False)
        self._bar.refresh()
        return True

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "ConsoleProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
