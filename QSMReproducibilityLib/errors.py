"""One exception family per kind of problem, each with a message a radiologist can act on.

The CLI turns every :class:`QSMReproError` into a one-line message and a non-zero exit code; nothing
derived from it ever reaches a user as a traceback.
"""


class QSMReproError(Exception):
    """Base class of every error the project raises on purpose."""


class InputError(QSMReproError):
    """An input file or argument is missing, unreadable or inconsistent."""


class ReconstructionError(QSMReproError):
    """QSM reconstruction cannot proceed with the given data or parameters."""


class ReadingError(QSMReproError):
    """A reading-session rule was violated (blinding, wash-out, immutability) or a reading is invalid."""


class RadiomicsError(QSMReproError):
    """Feature extraction cannot proceed (empty segment, grid mismatch, bad parameter file)."""


class AgreementError(QSMReproError):
    """The data cannot support the requested agreement statistic."""


class Cancelled(QSMReproError):
    """The user cancelled a long-running operation."""


def one_line(text) -> str:
    """A message on one line: messages quoting a library's error (YAML, nibabel, SQLite) may span lines, and
    the CLI prints every error as a single ``qsmrepro: error:`` line."""
    import re

    return re.sub(r"\s*[\r\n]+\s*", " ", str(text)).strip()
