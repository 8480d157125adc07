"""``qsmrepro``: the command-line front of QSMReproducibilityLib.

Sub-commands: ``demo``, ``reconstruct``, ``extract``, ``agreement``, ``study``, ``station``. Every expected problem is
reported as one line ``qsmrepro: error: ...`` with exit code 2; nothing is written on failure.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from . import __version__
from .errors import Cancelled, QSMReproError
from .progress import ConsoleProgress


class ArgumentParser(argparse.ArgumentParser):
    """argparse with positionals allowed after options, as the usage lines show them.

    Plain argparse matches an optional positional (``nargs="?"``) at its first chance, so
    ``study add-case DIR --case-id C1 ... ANAT_DIR`` or ``reconstruct -o QSM.nii.gz ANAT_DIR`` would
    fail; a command without sub-commands is therefore parsed with ``parse_known_intermixed_args``.
    Sub-parsers inherit this class.
    """

    _parsing_intermixed = False

    def parse_known_args(self, args=None, namespace=None):
        nested = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        if nested or self._parsing_intermixed:
            return super().parse_known_args(args, namespace)
        self._parsing_intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing_intermixed = False

    def error(self, message):
        """A usage error as every other error: one line ``qsmrepro: error: …``, exit code 2."""
        command = self.prog.removeprefix("qsmrepro").strip()
        where, see = (f"{command}: ", f"qsmrepro {command} --help") if command else ("", "qsmrepro --help")
        self.exit(2, f"qsmrepro: error: {where}{message} (see {see})\n")


def _cmd_demo(args) -> int:
    from .demo import run_demo

    with ConsoleProgress("demo") as bar:
        outputs = run_demo(args.output, n_cases=args.cases, seed=args.seed, method=args.method,
                           background=args.background, workers=args.workers, full_fov=args.full_fov, progress=bar)
    print(f"Report: {Path(outputs['report_html']).resolve()}")
    print(f"Features: {Path(outputs['features']).resolve()}")
    print(f"Study store: {Path(outputs['study']).resolve()}")
    return 0


def _cmd_reconstruct(args) -> int:
    from .recon.pipeline import ReconParams, reconstruct_path

    params = ReconParams(method=args.method, unwrap=args.unwrap, background=args.background,
                         mask_method=args.mask_method, mask_index=args.mask_index)
    with ConsoleProgress("reconstruct") as bar:
        result = reconstruct_path(
            args.input, args.output, mask_out=args.save_mask, field_out=args.save_field,
            magnitude=args.magnitude, phase=args.phase, te_s=args.te, b0_tesla=args.b0, b0_dir=args.b0_dir,
            params=params, user_mask_path=args.mask, mask_preview_out=args.mask_preview,
            phase_units=args.phase_units, progress=bar,
        )
    for note in result.notes:
        print(note)
    print(f"QSM (ppm): {Path(args.output).resolve()}  [{result.seconds['total']:.1f} s]")
    return 0


def _cmd_extract(args) -> int:
    from .io import check_output_path
    from .radiomics import extract_files, write_feature_table

    check_output_path(args.output, "feature table (-o)", (".csv", ".xlsx"))
    table = extract_files(args.qsm, args.segmentations, params_path=args.params, resample=args.resample)
    out = write_feature_table(table, args.output)
    print(f"{table['feature'].nunique()} features x {len(table.groupby(['lesion_id', 'observer', 'reading']))} ROIs -> {out.resolve()}")
    return 0


def _cmd_station(args) -> int:
    from .station.server import serve

    return serve(args.study, args.observer, host=args.host, port=args.port,
                 announce=lambda line: print(line, flush=True))


def _keep_freed_memory() -> None:
    """Ask glibc to serve large arrays from the heap and keep freed memory for reuse.

    Reconstruction allocates and frees many volume-sized temporaries. By default glibc maps each one
    afresh and returns it on free, so every temporary pays first-touch page faults again; on virtual
    machines whose memory is backed lazily that made `qsmrepro reconstruct` of the study matrix about
    1.2 times slower (8.0–8.4 s against 6.7 s, three runs each), for a peak 6 % lower (0.55 against
    0.58 GB). No effect off glibc.
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


def add_phase_units_argument(parser) -> None:
    """``--phase-units``, shared by ``reconstruct`` and ``study add-case``."""
    from .io import PHASE_UNITS

    parser.add_argument("--phase-units", default="auto", choices=PHASE_UNITS,
                        help="how the stored phase values are read: auto (default: radians when their range spans "
                             "2 pi, Siemens -4096..4095 or 0..4095 by their factor, any other range rescaled onto "
                             "[-pi, pi) with a warning), radians (as stored), siemens (x pi/4096), rescale "
                             "(the range found onto [-pi, pi))")


def build_parser(*, with_study_commands: bool = True) -> argparse.ArgumentParser:
    from .recon import pipeline

    parser = ArgumentParser(
        prog="qsmrepro",
        description="QSM reconstruction, blinded repeat readings, radiomics and agreement for QSM reproducibility studies.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the synthetic 61-case study end to end")
    demo.add_argument("-o", "--output", required=True, help="output folder (report.html, features.csv, agreement.xlsx, study/)")
    demo.add_argument("--cases", type=int, default=61, help="number of cases (default 61: 36 haematomas, 25 calcifications)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--method", default="star", choices=pipeline.METHODS)
    demo.add_argument("--background", default=pipeline.STUDY_CHAIN["background"], choices=pipeline.BACKGROUND_METHODS,
                      help="background field removal (default: V-SHARP, the study's chain, which the demo reproduces)")
    demo.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    demo.add_argument("--full-fov", action="store_true",
                      help="simulate the study's whole 320x240x70 matrix instead of a slab around V4 (slower)")
    demo.set_defaults(handler=_cmd_demo)

    rec = sub.add_parser("reconstruct", help="multi-echo GRE -> QSM (ppm)")
    rec.add_argument("input", nargs="?", help="BIDS anat folder or DICOM folder")
    rec.add_argument("--magnitude", nargs="+", help="magnitude NIfTI: one 4-D file or one 3-D file per echo")
    rec.add_argument("--phase", nargs="+", help="phase NIfTI: one 4-D file or one 3-D file per echo")
    rec.add_argument("--te", type=float, nargs="+", help="echo times in seconds (override or supply)")
    rec.add_argument("--b0", type=float, default=None, metavar="TESLA",
                     help="field strength in tesla, 0.1-21 (default: sidecar or DICOM, else 3 with a warning)")
    rec.add_argument("--b0-dir", type=float, nargs=3, metavar=("X", "Y", "Z"),
                     help="B0 direction in the voxel frame (default: from the sidecar's B0_dir, else the affine)")
    add_phase_units_argument(rec)
    rec.add_argument("-o", "--output", required=True, help="QSM NIfTI to write (chi in ppm)")
    rec.add_argument("--method", default="star", choices=pipeline.METHODS)
    rec.add_argument("--unwrap", default="temporal", choices=pipeline.UNWRAP_METHODS)
    rec.add_argument("--background", default=pipeline.BACKGROUND_METHODS[0], choices=pipeline.BACKGROUND_METHODS,
                     help="background field removal: the background part of a preconditioned total-field fit "
                          "(default; keeps lesions at the mask's edge), V-SHARP (the study's), projection onto "
                          "dipole fields, or Laplacian boundary value (loses one voxel at the mask's edge)")
    rec.add_argument("--mask-method", default="bet", choices=("bet", "threshold"),
                     help="how the nine candidate brain masks are made: BET at fractional thresholds 0.1-0.9 "
                          "(default, as the study did), or magnitude thresholds (phantoms without scalp only)")
    rec.add_argument("--mask-index", type=int, default=None,
                     help="candidate mask 0-8 (default: BET f = 0.5, candidate 4)")
    rec.add_argument("--mask", help="use this mask NIfTI instead of the candidates")
    rec.add_argument("--mask-preview", metavar="PNG",
                     help="also write all nine candidate masks over the magnitude as a PNG, to pick one by eye")
    rec.add_argument("--save-field", help="also write the local field (ppm)")
    rec.add_argument("--save-mask", help="also write the mask used")
    rec.set_defaults(handler=_cmd_reconstruct)

    ext = sub.add_parser("extract", help="radiomics (107 features + CSF-referenced mean/median) for segmentations")
    ext.add_argument("qsm", help="QSM image (NIfTI or NRRD)")
    ext.add_argument("segmentations", nargs="+", help=".seg.nrrd files or label maps (NIfTI/NRRD)")
    ext.add_argument("--params", help="PyRadiomics parameter file (default Resources/QSMRadiomics.yaml)")
    ext.add_argument("--resample", action="store_true", help="resample segmentations on another grid (nearest neighbour)")
    ext.add_argument("-o", "--output", required=True, help="FEATURES.csv or .xlsx")
    ext.set_defaults(handler=_cmd_extract)

    if with_study_commands:
        from .readings import add_cli as add_study_cli
        from .report import add_cli as add_agreement_cli

        add_agreement_cli(sub)
        add_study_cli(sub)

    station = sub.add_parser(
        "station", help="serve one observer's blinded readings in a browser (needs the 'station' extra)",
        description="Serve observer O's reading station on a study: a page with O's case list where O draws "
                    "lesion and CSF with Slicer's Segment Editor effects. Prints the link with its secret token "
                    "once; nothing opens without it. One station (one process, one port) per observer.")
    station.add_argument("study", metavar="STUDY_DIR", help="study folder (qsmrepro study init)")
    station.add_argument("--observer", required=True, metavar="O", help="the registered observer this station serves")
    station.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1: this machine only; see the README for a server)")
    station.add_argument("--port", type=int, default=0, metavar="P", help="port (default: a free one, printed)")
    station.set_defaults(handler=_cmd_station)
    return parser


def _one_line(text) -> str:
    """Messages quoting a library's error (YAML, nibabel) may span lines; the CLI prints one."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).strip()


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
        print(f"qsmrepro: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a file that vanished, no permission: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"qsmrepro: error: {where}{_one_line(exc.strerror or exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qsmrepro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
