"""The argument parser every ``qsmrepro`` command uses, and the arguments several commands share."""

from __future__ import annotations

import argparse


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


def add_phase_units_argument(parser) -> None:
    """``--phase-units``, shared by ``reconstruct`` and ``study add-case``."""
    from ..io import PHASE_UNITS

    parser.add_argument("--phase-units", default="auto", choices=PHASE_UNITS,
                        help="how the stored phase values are read: auto (default: radians when their range spans "
                             "2 pi, Siemens -4096..4095 or 0..4095 by their factor, any other range rescaled onto "
                             "[-pi, pi) with a warning), radians (as stored), siemens (x pi/4096), rescale "
                             "(the range found onto [-pi, pi))")
