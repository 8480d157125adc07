"""``qsmrepro``: the parser of every sub-command and the one place that turns errors into exit codes.

Every expected problem is reported as one line ``qsmrepro: error: ...`` with exit code 2; nothing is written
on failure.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import Cancelled, QSMReproError, one_line
from . import demo, extract, reconstruct, station
from .arguments import ArgumentParser


def _keep_freed_memory() -> None:
    """Ask glibc to serve large arrays from the heap and keep freed memory for reuse.

    Reconstruction allocates and frees many volume-sized temporaries. By default glibc maps each one
    afresh and returns it on free, so every temporary pays first-touch page faults again, which is slow on
    virtual machines whose memory is backed lazily (``Testing/benchmarks/bench_reconstruct.py`` measures
    it). No effect off glibc.
    """
    import ctypes
    import ctypes.util

    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 2**31 - 1)
    except (OSError, AttributeError):
        pass


def build_parser(*, with_study_commands: bool = True) -> argparse.ArgumentParser:
    """The ``qsmrepro`` parser; without the study commands it does not import the statistics (pandas)."""
    parser = ArgumentParser(
        prog="qsmrepro",
        description="QSM reconstruction, blinded repeat readings, radiomics and agreement for QSM reproducibility studies.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo.add_command(sub)
    reconstruct.add_command(sub)
    extract.add_command(sub)
    if with_study_commands:
        from . import agreement, study

        agreement.add_command(sub)
        study.add_command(sub)
    station.add_command(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `reconstruct` needs neither pandas nor the statistics: skip importing them (about 0.8 s).
    first = next((a for a in argv if not a.startswith("-")), None)
    if first != "station":
        # Not for the reading station, a long-running server: there, memory kept after each reading's
        # volume is freed would add up over a day of readings.
        _keep_freed_memory()
    parser = build_parser(with_study_commands=first != "reconstruct")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except Cancelled as exc:
        print(f"qsmrepro: cancelled: {exc}", file=sys.stderr)
        return 130
    except QSMReproError as exc:
        print(f"qsmrepro: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a file that vanished, no permission: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"qsmrepro: error: {where}{one_line(exc.strerror or exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qsmrepro: interrupted", file=sys.stderr)
        return 130
