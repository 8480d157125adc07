"""Study store for blinded repeat readings: cases, observers, reading sessions, wash-out, audit log.

See :mod:`QSMReproducibilityLib.readings.store` for the folder layout and the rules, and
:mod:`QSMReproducibilityLib.cli.study` for the ``qsmrepro study`` commands.
"""

from .inputs import PendingCase
from .fingerprint import gre_fingerprint
from .store import DB_NAME, CaseRecord, CaseStatus, ReadingRecord, ReadingSession, Study

__all__ = ["Study", "ReadingSession", "ReadingRecord", "CaseRecord", "CaseStatus", "PendingCase", "DB_NAME",
           "gre_fingerprint"]
