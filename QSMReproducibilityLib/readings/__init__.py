"""Study store for blinded repeat readings: cases, observers, reading sessions, wash-out, audit log.

See :mod:`QSMReproducibilityLib.readings.store` for the folder layout and the rules, and
:mod:`QSMReproducibilityLib.cli.study` for the ``qsmrepro study`` commands.
"""

from .fingerprint import gre_fingerprint
from .inputs import PendingCase
from .records import CaseRecord, CaseStatus, ReadingRecord, ReadingSession
from .store import DB_NAME, Study

__all__ = ["Study", "ReadingSession", "ReadingRecord", "CaseRecord", "CaseStatus", "PendingCase", "DB_NAME",
           "gre_fingerprint"]
