"""The browser reading station: one observer's blinded readings, served from one machine.

``qsmrepro station STUDY --observer O`` serves a page on which observer O sees their own case list,
opens a reading (the reading core's ``start_reading``), draws lesion and CSF with Slicer's Segment
Editor effects in slice views rendered on the server (Kitware's trame-slicer over Slicer's MRML), and
finishes it (``finish_reading``), which records it in the study store. The browser receives rendered
frames of the open reading and the observer's own case list, nothing else of the study; every request
needs the secret token of the printed link.

The packages come from the ``station`` extra; this module imports none of them, so the CLI works
without it and says how to install it.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from ..errors import InputError

STATION_PACKAGES = ("trame", "trame_slicer", "slicer", "aiohttp")
TRAME_SLICER_NEEDS = "slicer-core 5.11.0"
INSTALL_HINT = ("install the 'station' extra: pip install -e '.[station]' in the source folder "
                "(or run 'make station', which builds .venv-station and starts the demo study's station)")


def require_station_packages() -> None:
    """Raise :class:`InputError` in one line when the station's packages are missing or unusable."""
    missing = []
    for name in STATION_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise InputError(f"the browser reading station needs {', '.join(missing)}: {INSTALL_HINT}")
    try:
        importlib.import_module("trame_slicer.core")
    except ImportError as exc:
        try:
            found = importlib.metadata.version("slicer-core")
        except importlib.metadata.PackageNotFoundError:
            found = "none"
        raise InputError(f"trame-slicer cannot load Slicer's libraries ({exc}); it needs {TRAME_SLICER_NEEDS}, "
                         f"this environment has slicer-core {found}: {INSTALL_HINT}") from None


__all__ = ["INSTALL_HINT", "require_station_packages"]
