"""What the study store hands out: a reading session to perform, recorded readings, cases, an observer's case list.

Plain immutable records; the store (:mod:`.store`) makes them from its rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from ..segio import SegmentSpec
from ..terminology import SIDES, csf_segment, lesion_segment, reading_tags

__all__ = ["ReadingSession", "ReadingRecord", "CaseRecord", "CaseStatus"]


@dataclasses.dataclass(frozen=True)
class ReadingSession:
    """What an observer receives to perform one reading: the QSM map and where to save.

    ``segmentation_path`` does not exist when the session starts; no other reading's file is
    ever part of a session.
    """

    session_uid: str
    case_id: str
    observer: str
    reading: int
    qsm_path: Path
    segmentation_path: Path
    lesion_type: str
    started_at: str
    amendment: bool = False

    def tags(self, status: str = "started") -> dict[str, str]:
        """The segment tags of this reading (:func:`~QSMReproducibilityLib.terminology.reading_tags`)."""
        return reading_tags(
            observer=self.observer,
            reading=self.reading,
            case_id=self.case_id,
            session_uid=self.session_uid,
            status=status,
        )

    def segments(self, status: str = "started") -> list[SegmentSpec]:
        """The empty segments a reading starts with: ``lesion_right``, ``lesion_left`` and ``csf``, tagged."""
        tags = self.tags(status)
        return [*(lesion_segment(side, self.lesion_type, tags) for side in SIDES), csf_segment(tags)]


@dataclasses.dataclass(frozen=True)
class ReadingRecord:
    """One recorded reading (``status`` is ``finished``, or ``amended`` once superseded)."""

    case_id: str
    lesion_type: str
    observer: str
    reading: int
    segmentation_path: Path
    qsm_path: Path
    started_at: str
    finished_at: str | None
    checksum: str | None
    session_uid: str
    status: str
    imported: bool = False
    amends: str | None = None
    amend_reason: str | None = None
    washout_override: str | None = None


@dataclasses.dataclass(frozen=True)
class CaseRecord:
    """One case of the study."""

    case_id: str
    lesion_type: str
    diagnosis: str | None
    qsm_path: Path
    qsm_checksum: str
    mask_path: Path | None
    mask_checksum: str | None
    gre_reference: str | None
    added_at: str


@dataclasses.dataclass(frozen=True)
class CaseStatus:
    """Where one observer stands on one case; nothing of another observer's readings is in it.

    ``state`` is ``in progress`` (a session is open), ``done`` (every reading finished), ``wash-out``
    (the next reading may start at ``washout_ends``) or ``ready``.
    """

    case_id: str
    lesion_type: str
    finished: int
    total: int
    state: str
    washout_ends: dt.datetime | None = None

    @property
    def label(self) -> str:
        """The state as the case list shows it."""
        if self.state == "wash-out" and self.washout_ends is not None:
            return f"wash-out until {self.washout_ends:%Y-%m-%d}"
        return self.state
