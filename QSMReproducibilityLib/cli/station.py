"""``qsmrepro station``: one observer's blinded reading station in a browser."""

from __future__ import annotations


_DESCRIPTION = ("Serve observer O's reading station on a study: a page with O's case list where O draws lesion and "
                "CSF with Slicer's Segment Editor effects. Prints the link with its secret token once; nothing "
                "opens without it. One station (one process, one port) per observer.")


def add_command(subparsers) -> None:
    """Register ``qsmrepro station STUDY_DIR --observer O [--host H] [--port P]``."""
    station = subparsers.add_parser(
        "station", help="serve one observer's blinded readings in a browser (needs the 'station' extra)",
        description=_DESCRIPTION)
    station.add_argument("study", metavar="STUDY_DIR", help="study folder (qsmrepro study init)")
    station.add_argument("--observer", required=True, metavar="O", help="the registered observer this station serves")
    station.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1: this machine only; see the README for a server)")
    station.add_argument("--port", type=int, default=0, metavar="P", help="port (default: a free one, printed)")
    station.set_defaults(handler=_run)


def _run(args) -> int:
    from ..station.server import serve

    return serve(args.study, args.observer, host=args.host, port=args.port,
                 announce=lambda line: print(line, flush=True))
