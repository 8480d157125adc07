"""``qsmrepro``: the command-line front of QSMReproducibilityLib, one module per sub-command.

Sub-commands: ``demo``, ``reconstruct``, ``extract``, ``agreement``, ``study``, ``station``. Every expected
problem is reported as one line ``qsmrepro: error: ...`` with exit code 2; nothing is written on failure.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
