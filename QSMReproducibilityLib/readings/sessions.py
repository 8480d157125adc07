"""The ``Study`` methods of reading sessions: the blinded reading order, wash-out, start, amend, finish, import.

Mixed into :class:`~.store.Study`, which holds the database these methods work on; the rules they enforce
are listed in :mod:`.store`.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, ReadingError, one_line
from ..segio import write_seg_nrrd
from .fingerprint import sha256_file
from .timestamps import iso_utc, to_utc
from .validation import check_drawing, validated_segmentation

if TYPE_CHECKING:
    from .records import ReadingRecord, ReadingSession

__all__ = ["ReadingSessions"]


class ReadingSessions:
    """The ``Study`` methods for reading sessions (mixed into :class:`~.store.Study`)."""

    _db: sqlite3.Connection
    root: Path
    seed: int
    washout_days: int
    readings_per_observer: int

    # ---- readings: order and wash-out --------------------------------------------------------

    def _washout_anchor(self, case_id: str, observer: str, reading: int) -> dt.datetime | None:
        """Finish time of the observer's latest earlier reading of the case (None for reading 1)."""
        row = self._db.execute(
            "SELECT MAX(finished_at) FROM readings WHERE case_id = ? AND observer_id = ? AND reading < ? "
            "AND status IN ('finished', 'amended')",
            (case_id, observer, reading),
        ).fetchone()
        return to_utc(row[0]) if row and row[0] else None

    def washout_opens(self, case_id: str, observer: str, reading: int) -> dt.datetime | None:
        """When reading ``reading`` of ``case_id`` by ``observer`` may start (None: no wash-out applies)."""
        anchor = self._washout_anchor(case_id, observer, reading)
        return None if anchor is None else anchor + dt.timedelta(days=self.washout_days)

    def _next_reading_number(self, case_id: str, observer: str) -> int:
        row = self._db.execute(
            "SELECT MAX(reading) FROM readings WHERE case_id = ? AND observer_id = ?", (case_id, observer)
        ).fetchone()
        return int(row[0] or 0) + 1

    def _reading_order(self, observer: str, round_: int, now: str) -> list[str]:
        """The observer's randomised case order for one round, extended with cases added since."""
        ordered = self.reading_order(observer, round_)
        known = set(ordered)
        missing = sorted(r[0] for r in self._db.execute("SELECT case_id FROM cases") if r[0] not in known)
        if missing:
            # String seeds are hashed with SHA-512 by random.Random: stable across runs and platforms.
            random.Random(f"{self.seed}:{observer}:{round_}:{len(ordered)}").shuffle(missing)
            self._db.executemany(
                "INSERT INTO reading_order(observer_id, round, position, case_id, created_at) VALUES (?, ?, ?, ?, ?)",
                [(observer, round_, len(ordered) + i, case_id, now) for i, case_id in enumerate(missing)],
            )
            ordered += missing
        return ordered

    def reading_order(self, observer: str, round_: int) -> list[str]:
        """The recorded randomised order of cases for an observer's reading round (may be partial)."""
        return [r[0] for r in self._db.execute(
            "SELECT case_id FROM reading_order WHERE observer_id = ? AND round = ? ORDER BY position",
            (observer, round_),
        )]

    # ---- readings: sessions ----------------------------------------------------------------

    def start_reading(self, observer: str, case_id: str | None = None, *, now=None, override_washout: bool = False,
                      reason: str | None = None) -> ReadingSession:
        """Open a reading session for an observer.

        Parameters
        ----------
        observer : str
            A registered observer.
        case_id : str, optional
            The case to read; by default the next case of the observer's randomised order, lowest
            round first, among the cases whose wash-out has passed. An open session of the
            observer (on that case) is resumed rather than duplicated.
        now : datetime or ISO string, optional
            Start time (default: the current time).
        override_washout : bool
            Open the reading before the wash-out has passed (requires ``case_id`` and ``reason``).
        reason : str, optional
            Why the wash-out is overridden; stored in the reading and the audit log.

        Returns
        -------
        ReadingSession

        Raises
        ------
        ReadingError
            Unknown observer or case, wash-out not passed, all readings done.
        """
        when = to_utc(now)
        stamp = iso_utc(when)
        if override_washout and (case_id is None or not (reason or "").strip()):
            raise ReadingError("overriding the wash-out needs an explicit case and a reason")
        with self._transaction() as db:
            self._require_observer(observer)
            if case_id is not None:
                self.case(case_id)
            query = "SELECT * FROM readings WHERE status = 'started' AND observer_id = ?"
            params: tuple = (observer,)
            if case_id is not None:
                query += " AND case_id = ?"
                params += (case_id,)
            open_row = db.execute(query + " ORDER BY id LIMIT 1", params).fetchone()
            if open_row is not None:
                self._audit(stamp, "reading_resumed", observer=observer, case_id=open_row["case_id"],
                            reading=open_row["reading"], session_uid=open_row["session_uid"])
                return self._session(open_row)

            if case_id is None:
                case_id, number = self._pick_next_case(observer, when, stamp)
            else:
                number = self._next_reading_number(case_id, observer)
                if number > self.readings_per_observer:
                    raise ReadingError(
                        f"case {case_id}, observer {observer}: all {self.readings_per_observer} readings are done "
                        "(to correct one, amend it)"
                    )
            where = f"case {case_id}, observer {observer}, reading {number}"
            override_text, opens = self._check_washout(case_id, observer, number, when, override_washout, reason, where)
            row = self._insert_session(observer, case_id, number, stamp, override_text=override_text)
            if override_text:
                self._audit(stamp, "washout_overridden", observer=observer, case_id=case_id, reading=number,
                            session_uid=row["session_uid"], reason=override_text, washout_opens=iso_utc(opens))
            return self._session(row)

    def _check_washout(self, case_id: str, observer: str, number: int, start: dt.datetime, override: bool,
                       reason: str | None, where: str) -> tuple[str | None, dt.datetime | None]:
        """``(override reason or None, end of the wash-out)``; raises if the reading starts too early."""
        opens = self.washout_opens(case_id, observer, number)
        if opens is None or start >= opens:
            return None, opens
        if not override:
            raise ReadingError(
                f"{where}: starts {iso_utc(start)}, but the {self.washout_days}-day wash-out after reading "
                f"{number - 1} lasts until {iso_utc(opens)}; wait, or override the wash-out with a reason"
            )
        return reason.strip(), opens

    def _pick_next_case(self, observer: str, when: dt.datetime, stamp: str) -> tuple[str, int]:
        waiting: list[dt.datetime] = []
        for round_ in range(1, self.readings_per_observer + 1):
            for case_id in self._reading_order(observer, round_, stamp):
                if self._next_reading_number(case_id, observer) != round_:
                    continue
                opens = self.washout_opens(case_id, observer, round_)
                if opens is None or when >= opens:
                    return case_id, round_
                waiting.append(opens)
        if waiting:
            raise ReadingError(
                f"observer {observer}: no case is open now; {len(waiting)} reading(s) wait for the "
                f"{self.washout_days}-day wash-out, the first opens {iso_utc(min(waiting))}"
            )
        if not self._db.execute("SELECT 1 FROM cases LIMIT 1").fetchone():
            raise ReadingError(f"the study {self.root} has no cases yet")
        raise ReadingError(f"observer {observer}: all readings of all cases are done")

    def _insert_session(self, observer: str, case_id: str, number: int, stamp: str, *, override_text=None,
                        amends: int | None = None, amend_reason: str | None = None) -> sqlite3.Row:
        if amends is None:
            relative = f"readings/{case_id}/{observer}_r{number}.seg.nrrd"
        else:
            count = self._db.execute(
                "SELECT COUNT(*) FROM readings WHERE case_id = ? AND observer_id = ? AND reading = ?",
                (case_id, observer, number),
            ).fetchone()[0]
            relative = f"readings/{case_id}/{observer}_r{number}_amend{count}.seg.nrrd"
        if (self.root / relative).exists():
            raise ReadingError(
                f"case {case_id}, observer {observer}, reading {number}: {self.root / relative} already exists "
                "although no reading refers to it; run 'qsmrepro study verify' and move it away"
            )
        session_uid = uuid.uuid4().hex
        self._db.execute(
            "INSERT INTO readings(session_uid, case_id, observer_id, reading, status, started_at, segmentation_file, "
            "amends, amend_reason, washout_override) VALUES (?, ?, ?, ?, 'started', ?, ?, ?, ?, ?)",
            (session_uid, case_id, observer, number, stamp, relative, amends, amend_reason, override_text),
        )
        self._audit(stamp, "reading_started" if amends is None else "amendment_started", observer=observer,
                    case_id=case_id, reading=number, session_uid=session_uid, reason=amend_reason)
        return self._db.execute("SELECT * FROM readings WHERE session_uid = ?", (session_uid,)).fetchone()

    def amend_reading(self, case_id: str, observer: str, reading: int, *, reason: str, now=None) -> ReadingSession:
        """Open a session that will replace a finished reading, keeping the original on record.

        The finished reading stays untouched until the amendment is finished; it is then marked
        ``amended`` and the new one becomes the current reading ``reading``.
        """
        if not (reason or "").strip():
            raise ReadingError(f"case {case_id}, observer {observer}, reading {reading}: an amendment needs a reason")
        stamp = iso_utc(to_utc(now))
        with self._transaction() as db:
            self._require_observer(observer)
            self.case(case_id)
            current = db.execute(
                "SELECT * FROM readings WHERE case_id = ? AND observer_id = ? AND reading = ? AND status = 'finished'",
                (case_id, observer, int(reading)),
            ).fetchone()
            if current is None:
                raise ReadingError(
                    f"case {case_id}, observer {observer}, reading {reading}: no finished reading to amend"
                )
            if db.execute("SELECT 1 FROM readings WHERE case_id = ? AND observer_id = ? AND status = 'started'",
                          (case_id, observer)).fetchone():
                raise ReadingError(f"case {case_id}, observer {observer}: finish the open reading first")
            row = self._insert_session(observer, case_id, int(reading), stamp, amends=current["id"],
                                       amend_reason=reason.strip())
            return self._session(row)

    check_drawing = staticmethod(check_drawing)

    def finish_reading(self, session_uid: str, segmentation_file, *, now=None, labels=None,
                       resample: bool = False) -> ReadingRecord:
        """Validate a reading's segmentation, store it and close the session.

        The segmentation is a ``.seg.nrrd`` (saved by the reading session, or drawn in plain Slicer with
        segments named ``lesion_right``/``lesion_left``/``csf`` or an alias such as "CSF") or a label map
        (NIfTI or NRRD, e.g. from ITK-SNAP) whose values follow ``labels``
        (:func:`~QSMReproducibilityLib.io.label_maps.parse_label_mapping`; default lesion_right=1,
        lesion_left=2, csf=3). It must lie on the case's QSM grid (same voxels; axis order or direction
        may differ, as when Slicer reverses a NIfTI's slice axis, and it may be cropped), or be resampled
        onto it by nearest neighbour when ``resample``; contain a non-empty ``csf`` segment and one or
        more non-empty ``lesion_right``/``lesion_left`` segments; and the session tags it carries
        (``QSMReproducibility.CaseID``, ``Observer``, ``Reading``, ``SessionUID``, ``LesionType``,
        ``Side``) must match the session. A segment without session tags (drawn in another tool) is
        stamped with the session's. It is stored on the QSM grid as ``segmentation_path`` with its
        ``Status`` tag set to ``finished``.

        Raises
        ------
        ReadingError
            Naming case, observer and reading; nothing is changed.
        """
        when = to_utc(now)
        row = self._db.execute("SELECT * FROM readings WHERE session_uid = ?", (session_uid,)).fetchone()
        if row is None:
            raise ReadingError(f"no reading session {session_uid!r} in the study {self.root}")
        where = f"case {row['case_id']}, observer {row['observer_id']}, reading {row['reading']}"
        if row["status"] != "started":
            raise ReadingError(
                f"{where} was already finished on {row['finished_at']}; a finished reading cannot be changed "
                "(amend it instead)"
            )
        if when < to_utc(row["started_at"]):
            raise ReadingError(f"{where}: finish time {iso_utc(when)} is before the start {row['started_at']}")
        case = self.case(row["case_id"])
        masks, specs, affine = validated_segmentation(
            Path(segmentation_file), case, row["observer_id"], int(row["reading"]), where,
            expected_session_uid=session_uid, session_uid=session_uid, labels=labels, resample=resample,
        )
        stamp = iso_utc(when)
        with self._transaction() as db:
            current = db.execute("SELECT * FROM readings WHERE session_uid = ?", (session_uid,)).fetchone()
            if current["status"] != "started":
                raise ReadingError(f"{where} was finished meanwhile by another process; nothing changed")
            target = self.root / current["segmentation_file"]
            write_seg_nrrd(target, masks, affine, specs)
            checksum = sha256_file(target)
            if current["amends"] is not None:
                # First retire the superseded version: only one current version per reading number.
                db.execute("UPDATE readings SET status = 'amended' WHERE id = ?", (current["amends"],))
            db.execute(
                "UPDATE readings SET status = 'finished', finished_at = ?, checksum = ? WHERE id = ?",
                (stamp, checksum, current["id"]),
            )
            self._audit(stamp, "reading_finished", observer=current["observer_id"], case_id=current["case_id"],
                        reading=current["reading"], session_uid=session_uid, sha256=checksum)
            record_row = db.execute("SELECT * FROM readings WHERE id = ?", (current["id"],)).fetchone()
            return self._record(record_row)

    def import_reading(self, case_id: str, observer: str, reading: int, segmentation_file, *, started_at, finished_at,
                       override_washout: bool = False, reason: str | None = None, labels=None,
                       resample: bool = False) -> ReadingRecord:
        """Record a reading made before the study used this store, with its historical dates.

        The segmentation is validated as in :meth:`finish_reading`; readings must be imported in
        order (reading N needs reading N-1) and the wash-out is checked on the given dates.

        Parameters
        ----------
        case_id, observer : str
            A case and a registered observer of the study.
        reading : int
            Reading number.
        segmentation_file : path-like
            The reading's ``.seg.nrrd`` or label map (as for :meth:`finish_reading`).
        started_at, finished_at : datetime or ISO-8601 string
            When the reading was made (naive values count as UTC).
        override_washout : bool
            Accept a reading that started before the wash-out had passed (needs ``reason``).
        reason : str, optional
        labels : str or mapping, optional
            Label values of a label map (default lesion_right=1, lesion_left=2, csf=3).
        resample : bool
            Resample a segmentation on another grid onto the QSM (nearest neighbour).
        """
        if isinstance(reading, bool) or int(reading) != reading or int(reading) < 1:
            raise ReadingError(f"case {case_id}, observer {observer}: reading number must be >= 1, got {reading!r}")
        reading = int(reading)
        where = f"case {case_id}, observer {observer}, reading {reading}"
        times = []
        for value, what in ((started_at, "start time (--started)"), (finished_at, "finish time (--finished)")):
            try:
                times.append(to_utc(value))
            except InputError as exc:
                raise ReadingError(f"{where}: {what} {one_line(exc)}") from None
        started, finished = times
        if finished < started:
            raise ReadingError(f"{where}: finished {iso_utc(finished)} before it started {iso_utc(started)}")
        if finished > to_utc(None) + dt.timedelta(minutes=5):
            raise ReadingError(f"{where}: finish time {iso_utc(finished)} is in the future")
        if override_washout and not (reason or "").strip():
            raise ReadingError(f"{where}: overriding the wash-out needs a reason")
        if reading > self.readings_per_observer:
            raise ReadingError(f"{where}: the study records {self.readings_per_observer} readings per observer")
        self._require_observer(observer)
        case = self.case(case_id)
        self._check_import_order(case_id, observer, reading, where)
        session_uid = uuid.uuid4().hex
        masks, specs, affine = validated_segmentation(
            Path(segmentation_file), case, observer, reading, where, expected_session_uid=None, session_uid=session_uid,
            labels=labels, resample=resample,
        )
        now = iso_utc(to_utc(None))
        relative = f"readings/{case_id}/{observer}_r{reading}.seg.nrrd"
        with self._transaction() as db:
            self._check_import_order(case_id, observer, reading, where)
            override_text, opens = self._check_washout(case_id, observer, reading, started, override_washout, reason,
                                                       where)
            target = self.root / relative
            write_seg_nrrd(target, masks, affine, specs)
            checksum = sha256_file(target)
            db.execute(
                "INSERT INTO readings(session_uid, case_id, observer_id, reading, status, started_at, finished_at, "
                "segmentation_file, checksum, imported, washout_override) "
                "VALUES (?, ?, ?, ?, 'finished', ?, ?, ?, ?, 1, ?)",
                (session_uid, case_id, observer, reading, iso_utc(started), iso_utc(finished), relative, checksum,
                 override_text),
            )
            self._audit(now, "reading_imported", observer=observer, case_id=case_id, reading=reading,
                        session_uid=session_uid, started_at=iso_utc(started), finished_at=iso_utc(finished),
                        sha256=checksum)
            if override_text:
                self._audit(now, "washout_overridden", observer=observer, case_id=case_id, reading=reading,
                            session_uid=session_uid, reason=override_text, washout_opens=iso_utc(opens))
            return self._record(db.execute("SELECT * FROM readings WHERE session_uid = ?", (session_uid,)).fetchone())

    def _check_import_order(self, case_id: str, observer: str, reading: int, where: str) -> None:
        rows = self._db.execute(
            "SELECT reading, status FROM readings WHERE case_id = ? AND observer_id = ?", (case_id, observer)
        ).fetchall()
        if any(r["reading"] == reading for r in rows):
            raise ReadingError(f"{where} is already recorded")
        if any(r["status"] == "started" for r in rows):
            raise ReadingError(f"{where}: a reading of this case by this observer is open; finish it first")
        if reading > 1 and not any(r["reading"] == reading - 1 and r["status"] == "finished" for r in rows):
            raise ReadingError(f"{where}: import reading {reading - 1} first")
