"""Start one observer's reading station: check the study and the observer, bind the port, print the link.

Everything that can be wrong with the command line (the study folder, the observer, the port) is
checked before anything is served, and reported as one :class:`QSMReproError` line.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
from pathlib import Path

from ..errors import InputError, ReadingError

logger = logging.getLogger(__name__)


def check_observer(study, observer: str) -> None:
    """The station serves a registered observer only: a mistyped ID must not start a new observer's readings."""
    if observer not in study.observers():
        raise ReadingError(
            f"observer {observer!r} is not registered in the study {study.root}; register them first with "
            f"'qsmrepro study add-observer {study.root} {observer}'")


def reserve_port(host: str, port: int) -> int:
    """Check that ``host:port`` can be bound (port 0: a free port) and return the port."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: a port is a number from 1 to 65535 (0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"--port {port}: port {port} on {host} is in use (another station?); "
                                 "choose another port") from None
            raise InputError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
        return probe.getsockname()[1]


def station_url(host: str, port: int, token: str) -> str:
    shown = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/index.html?token={token}"


def serve(study_dir, observer: str, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
          announce=print) -> int:
    """Serve observer ``observer``'s reading station on ``study_dir`` until interrupted.

    Parameters
    ----------
    study_dir : path
        A study folder (``qsmrepro study init``).
    observer : str
        A registered observer; only this observer's case list and readings are served.
    host, port : str, int
        Where to listen (port 0: a free port).
    token : str, optional
        The secret of the link (default: a new random token).
    announce : callable
        Receives the one line with the link (default: ``print``).

    Returns
    -------
    int
        0 when the server stopped (Ctrl-C or SIGTERM).
    """
    from . import require_station_packages
    from ..readings import Study
    from .access import new_token, token_middleware

    require_station_packages()
    # Rendering without a display: VTK's EGL window on Mesa (no X server, no Xvfb).
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    study = Study.open(Path(study_dir))
    try:
        check_observer(study, observer)
        port = reserve_port(host, port)
        token = token or new_token()

        from trame.app import get_server

        from .app import ReadingStation

        server = get_server(f"qsmrepro-station-{observer}", client_type="vue3")
        ReadingStation(study, observer, server=server)
        server.controller.on_server_bind.add(lambda wslink_server: wslink_server.app.middlewares.append(
            token_middleware(token, port)))
        server.controller.on_server_ready.add(
            lambda **_: announce(f"Reading station of observer {observer}: {station_url(host, port, token)}"))
        argv = sys.argv
        sys.argv = argv[:1]  # trame parses sys.argv for its own options; ours are not for it
        try:
            server.start(host=host, port=port, open_browser=False, show_connection_info=False,
                         disable_logging=True, timeout=0)
        finally:
            sys.argv = argv
    finally:
        study.close()
    return 0
