"""The study store: cases, observers and blinded repeat readings in one folder.

Layout of a study folder::

    study.sqlite                                  settings, cases, observers, readings,
                                                  reading_order, audit_log
    cases/<case_id>/qsm.nii.gz                    QSM map (ppm) every observer reads
    cases/<case_id>/mask.nii.gz                   the brain mask chosen for the case (optional)
    cases/<case_id>/gre/                          the GRE of a case registered to be reconstructed by
                                                  ``qsmrepro study process`` (:mod:`.inputs`)
    processing/                                   work of ``study process``, keyed by the hash of its
                                                  inputs (:mod:`QSMReproducibilityLib.process`)
    readings/<case_id>/<observer>_r<N>.seg.nrrd   one segmentation per observer x reading
    readings/<case_id>/<observer>_r<N>_amend<K>.seg.nrrd   corrections of a finished reading

The GRE input of a case is not copied (unless the case is registered to be reconstructed later, ``--later``):
``cases.gre_reference`` holds a reference to it (free text given by the site and, for a case reconstructed
here, the :func:`~.fingerprint.gre_fingerprint` of its files).

Rules enforced here (the study design of the paper: two observers, two readings each, at least two
months apart, blinded to the other readings):

* Reading N+1 of a case by an observer opens only ``washout_days`` (default 60) after that
  observer's reading N of the case was finished, unless the wash-out is overridden with a reason,
  which is recorded in the reading and the audit log. Imported historical readings obey the same
  rule on their own dates.
* A reading session only ever receives the QSM map of its case and the path its own segmentation is
  to be saved to (which does not exist yet); never another reading's segmentation.
* A finished reading is immutable: its file is stored with a SHA-256 checksum. A correction is a new
  reading that *amends* it, with a reason; the superseded one keeps its file and is marked
  ``amended``.
* Every file is written atomically (temporary file in the same folder, fsync, rename) before the row
  that refers to it is committed in an SQLite transaction, so an interrupted process leaves either
  the old or the new state; :meth:`Study.verify` reports any file no row refers to.
* Timestamps are ISO-8601 UTC (``2024-03-01T09:30:00Z``). No patient name is stored unless given
  explicitly, and it leaves the store only through :meth:`Study.identifiers`, which is audited.
  Source paths are not stored, and the free-text fields and extensions of a QSM or mask NIfTI
  header (where converters may leave names or a whole DICOM header) are dropped on the way in.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, ReadingError, one_line
from ..fileio import atomic_output, is_stale_temp_file, temp_file_owner
from ..terminology import LESION_TYPES
from .deidentify import copy_nifti_deidentified, copy_verbatim
from .fingerprint import gre_fingerprint, sha256_file
from .inputs import INPUTS_SCHEMA, CaseInputs
from .records import CaseRecord, CaseStatus, ReadingRecord, ReadingSession
from .schema import SCHEMA, SCHEMA_VERSION
from .sessions import ReadingSessions
from .timestamps import iso_utc, to_utc
from .validation import nifti_grid

__all__ = ["Study", "DB_NAME"]

log = logging.getLogger(__name__)

DB_NAME = "study.sqlite"
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GRID_TOLERANCE_MM = 1e-3


# --------------------------------------------------------------------------------------------
# Helpers


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_PATTERN.match(value):
        raise InputError(
            f"{what} {value!r} is not valid: use 1-64 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit), and no patient names"
        )
    return value


# --------------------------------------------------------------------------------------------
# The store


class Study(ReadingSessions, CaseInputs):
    """A study folder with its SQLite database. Use :meth:`create` or :meth:`open`.

    Several processes may use one study at the same time: every change runs in an ``IMMEDIATE``
    SQLite transaction (one writer at a time, others wait up to a minute).
    """

    def __init__(self, root: Path, connection: sqlite3.Connection):
        self.root = Path(root).resolve()
        self._db = connection
        settings = dict(self._db.execute("SELECT key, value FROM settings").fetchall())
        if int(settings.get("schema_version", "0")) != SCHEMA_VERSION:
            raise InputError(
                f"{self.root / DB_NAME} has schema version {settings.get('schema_version')}, "
                f"this version of QSMReproducibility reads version {SCHEMA_VERSION}"
            )
        self.washout_days = int(settings["washout_days"])
        self.seed = int(settings["seed"])
        self.readings_per_observer = int(settings["readings_per_observer"])
        self.created_at = settings["created_at"]

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def create(cls, path, *, washout_days: int = 60, seed: int = 0, readings_per_observer: int = 2) -> "Study":
        """Create a new, empty study in folder ``path`` (created if needed).

        Parameters
        ----------
        path : path-like
            Study folder; must not already hold a study.
        washout_days : int
            Minimum days between an observer's reading N and N+1 of the same case.
        seed : int
            Seed of the randomised reading orders (recorded, so orders are reproducible).
        readings_per_observer : int
            Readings of each case by each observer (2 in the paper).
        """
        root = Path(path)
        limits = ((washout_days, "washout_days", 0), (readings_per_observer, "readings_per_observer", 1))
        for value, name, low in limits:
            if isinstance(value, bool) or int(value) != value or int(value) < low:
                raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
        if isinstance(seed, bool) or int(seed) != seed:
            raise InputError(f"seed must be an integer, got {seed!r}")
        if (root / DB_NAME).exists():
            raise InputError(f"{root} already holds a study ({DB_NAME}); open it instead")
        root.mkdir(parents=True, exist_ok=True)
        (root / "cases").mkdir(exist_ok=True)
        (root / "readings").mkdir(exist_ok=True)
        now = iso_utc(to_utc(None))
        with atomic_output(root / DB_NAME) as tmp:
            connection = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                connection.executescript(SCHEMA + INPUTS_SCHEMA)
                settings = {
                    "schema_version": str(SCHEMA_VERSION),
                    "washout_days": str(int(washout_days)),
                    "seed": str(int(seed)),
                    "readings_per_observer": str(int(readings_per_observer)),
                    "created_at": now,
                }
                connection.execute("BEGIN")
                connection.executemany("INSERT INTO settings(key, value) VALUES (?, ?)", settings.items())
                connection.execute(
                    "INSERT INTO audit_log(at, action, details) VALUES (?, 'study_created', ?)",
                    (now, json.dumps(settings, sort_keys=True)),
                )
                connection.execute("COMMIT")
            finally:
                connection.close()
        return cls.open(root)

    @classmethod
    def open(cls, path) -> "Study":
        """Open an existing study folder; debris of interrupted writes on this machine is removed."""
        root = Path(path)
        db_path = root / DB_NAME
        if not db_path.is_file():
            raise InputError(f"{root} is not a study folder (no {DB_NAME}); create one with 'qsmrepro study init'")
        connection = sqlite3.connect(str(db_path), timeout=60.0, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA synchronous = FULL")
        try:
            study = cls(root, connection)
        except (sqlite3.DatabaseError, KeyError) as exc:
            connection.close()
            raise InputError(f"{db_path} is not a readable study database: {one_line(exc)}") from exc
        study._ensure_inputs_table()
        study._sweep_temporary_files()
        return study

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> "Study":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Study({str(self.root)!r})"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _audit(self, at: str, action: str, *, observer=None, case_id=None, reading=None, session_uid=None,
               reason=None, **details) -> None:
        self._db.execute(
            "INSERT INTO audit_log(at, action, observer_id, case_id, reading, session_uid, reason, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (at, action, observer, case_id, reading, session_uid, reason,
             json.dumps(details, sort_keys=True) if details else None),
        )

    def _sweep_temporary_files(self) -> list[Path]:
        removed = []
        for folder in (self.root, self.root / "cases", self.root / "readings"):
            if not folder.is_dir():
                continue
            candidates = folder.glob("*.tmp") if folder == self.root else folder.rglob("*.tmp")
            for path in candidates:
                if is_stale_temp_file(path):
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed.append(path)
                        log.info("removed %s left by an interrupted write", path)
        return removed

    # ---- observers and cases ---------------------------------------------------------------

    def add_observer(self, observer_id: str) -> bool:
        """Register an observer; returns False if already registered."""
        _check_id(observer_id, "observer ID")
        now = iso_utc(to_utc(None))
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM observers WHERE observer_id = ?", (observer_id,)).fetchone():
                return False
            db.execute("INSERT INTO observers(observer_id, added_at) VALUES (?, ?)", (observer_id, now))
            self._audit(now, "observer_added", observer=observer_id)
        return True

    def observers(self) -> list[str]:
        """Registered observer IDs, sorted."""
        return [r[0] for r in self._db.execute("SELECT observer_id FROM observers ORDER BY observer_id")]

    def check_new_case(self, case_id: str, lesion_type: str) -> None:
        """Raise unless ``case_id`` is a valid ID not yet in the study and ``lesion_type`` is known.

        Lets a caller refuse a case before spending minutes reconstructing it.
        """
        _check_id(case_id, "case ID")
        if lesion_type not in LESION_TYPES:
            raise InputError(
                f"case {case_id}: lesion type must be one of {', '.join(LESION_TYPES)}, got {lesion_type!r}"
            )
        if self._db.execute("SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone():
            raise ReadingError(f"case {case_id} is already in the study {self.root}")
        if self._has_inputs_table() and self._db.execute(
                "SELECT 1 FROM case_inputs WHERE case_id = ?", (case_id,)).fetchone():
            raise ReadingError(f"case {case_id} is already in the study {self.root}, waiting for its reconstruction "
                               "('qsmrepro study process')")

    def add_case(self, case_id: str, lesion_type: str, qsm_path, *, mask_path=None, gre_reference: str | None = None,
                 gre_input=None, reconstruction: dict | None = None, diagnosis: str | None = None,
                 patient_name: str | None = None) -> CaseRecord:
        """Copy a case's QSM map (and the brain mask chosen for it) into the study.

        Parameters
        ----------
        case_id : str
            Pseudonymous case identifier (letters, digits, ``.``, ``_``, ``-``).
        lesion_type : {"hematoma", "calcification"}
        qsm_path : path-like
            3-D NIfTI QSM map in ppm; stored as ``cases/<case_id>/qsm.nii.gz`` (voxels and geometry
            byte for byte, free-text header fields and header extensions dropped).
        mask_path : path-like, optional
            Brain mask on the same grid; stored as ``cases/<case_id>/mask.nii.gz``.
        gre_reference : str, optional
            Free text stored as given (e.g. where the GRE series is archived).
        gre_input : path-like, optional
            The GRE files the QSM map was reconstructed from; their :func:`gre_fingerprint` is
            recorded in ``gre_reference`` (never their path, which may name the patient).
        reconstruction : dict, optional
            Reconstruction settings (method, chosen mask...), recorded in the audit log.
        diagnosis : str, optional
            Free text stored as given.
        patient_name : str, optional
            Stored only when given explicitly; never shown by :meth:`summary` or in the readings,
            only by :meth:`identifiers`.
        """
        self.check_new_case(case_id, lesion_type)
        references = [text.strip() for text in (gre_reference,) if text and text.strip()]
        if gre_input is not None:
            references.append(f"GRE input {gre_fingerprint(gre_input)}")
        reference = "; ".join(one_line(text) for text in references) or None
        return self._add_case_row(case_id, lesion_type, qsm_path, mask_path=mask_path, reference=reference,
                                  reconstruction=reconstruction, diagnosis=diagnosis, patient_name=patient_name)

    def _add_case_row(self, case_id: str, lesion_type: str, qsm_path, *, mask_path, reference: str | None,
                      reconstruction: dict | None, diagnosis: str | None, patient_name: str | None,
                      pending: bool = False) -> CaseRecord:
        """Copy the QSM (and mask) into the case's folder and insert its row; ``pending``: a case registered
        with its GRE (:meth:`add_gre_case`) that now gets its QSM."""
        qsm_path = Path(qsm_path)
        shape, affine = nifti_grid(qsm_path, f"case {case_id}: QSM map")
        if mask_path is not None:
            mask_path = Path(mask_path)
            mask_shape, mask_affine = nifti_grid(mask_path, f"case {case_id}: mask")
            if mask_shape != shape or not np.allclose(mask_affine, affine, atol=_GRID_TOLERANCE_MM):
                raise InputError(f"case {case_id}: mask {mask_path} is not on the grid of the QSM map {qsm_path}")
        now = iso_utc(to_utc(None))
        qsm_rel = f"cases/{case_id}/qsm.nii.gz"
        mask_rel = f"cases/{case_id}/mask.nii.gz" if mask_path is not None else None
        with self._transaction() as db:
            if not pending:
                self.check_new_case(case_id, lesion_type)
            elif db.execute("SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone():
                raise ReadingError(f"case {case_id} already has its QSM in the study {self.root}")
            else:
                db.execute("UPDATE case_inputs SET last_error = NULL, failed_at = NULL WHERE case_id = ?", (case_id,))
            # A QSM this library reconstructed from the stored GRE has no identifying header text to drop: its
            # bytes are copied as they are (milliseconds, where re-compressing takes about a second per case).
            copy = copy_verbatim if pending else copy_nifti_deidentified
            copy(qsm_path, self.root / qsm_rel)
            qsm_sha = sha256_file(self.root / qsm_rel)
            mask_sha = None
            if mask_rel is not None:
                copy(mask_path, self.root / mask_rel)
                mask_sha = sha256_file(self.root / mask_rel)
            db.execute(
                "INSERT INTO cases(case_id, lesion_type, diagnosis, patient_name, qsm_file, qsm_sha256, mask_file, "
                "mask_sha256, gre_reference, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (case_id, lesion_type, diagnosis, patient_name, qsm_rel, qsm_sha, mask_rel, mask_sha, reference,
                 now),
            )
            details = {"lesion_type": lesion_type, "qsm_sha256": qsm_sha}
            if mask_sha:
                details["mask_sha256"] = mask_sha
            if reconstruction:
                details["reconstruction"] = reconstruction
            self._audit(now, "case_reconstructed" if pending else "case_added", case_id=case_id, **details)
        return self.case(case_id)

    def identifiers(self, *, purpose: str) -> dict[str, dict[str, str | None]]:
        """Patient names and GRE references per case, for a user who explicitly asks for them.

        The request is written to the audit log with its ``purpose``.
        """
        if not (purpose or "").strip():
            raise ReadingError("exporting identifiers needs a purpose (it is written to the audit log)")
        now = iso_utc(to_utc(None))
        with self._transaction() as db:
            rows = db.execute("SELECT case_id, patient_name, gre_reference FROM cases ORDER BY case_id").fetchall()
            self._audit(now, "identifiers_exported", reason=purpose.strip(), cases=len(rows))
        return {r["case_id"]: {"patient_name": r["patient_name"], "gre_reference": r["gre_reference"]} for r in rows}

    def _case_record(self, row: sqlite3.Row) -> CaseRecord:
        return CaseRecord(
            case_id=row["case_id"],
            lesion_type=row["lesion_type"],
            diagnosis=row["diagnosis"],
            qsm_path=self.root / row["qsm_file"],
            qsm_checksum=row["qsm_sha256"],
            mask_path=self.root / row["mask_file"] if row["mask_file"] else None,
            mask_checksum=row["mask_sha256"],
            gre_reference=row["gre_reference"],
            added_at=row["added_at"],
        )

    def cases(self) -> list[CaseRecord]:
        """All cases, sorted by ID."""
        return [self._case_record(r) for r in self._db.execute("SELECT * FROM cases ORDER BY case_id")]

    def case(self, case_id: str) -> CaseRecord:
        """One case (:class:`ReadingError` if unknown)."""
        row = self._db.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise ReadingError(f"case {case_id!r} is not in the study {self.root}")
        return self._case_record(row)

    def _require_observer(self, observer: str) -> None:
        if not self._db.execute("SELECT 1 FROM observers WHERE observer_id = ?", (observer,)).fetchone():
            raise ReadingError(
                f"observer {observer!r} is not registered in the study {self.root}; "
                "add them first (Study.add_observer or 'qsmrepro study add-observer')"
            )

    # ---- readings: queries -----------------------------------------------------------------

    def _record(self, row: sqlite3.Row) -> ReadingRecord:
        amends_uid = None
        if row["amends"] is not None:
            amends_uid = self._db.execute(
                "SELECT session_uid FROM readings WHERE id = ?", (row["amends"],)
            ).fetchone()[0]
        case = self.case(row["case_id"])
        return ReadingRecord(
            case_id=row["case_id"],
            lesion_type=case.lesion_type,
            observer=row["observer_id"],
            reading=int(row["reading"]),
            segmentation_path=self.root / row["segmentation_file"],
            qsm_path=case.qsm_path,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            checksum=row["checksum"],
            session_uid=row["session_uid"],
            status=row["status"],
            imported=bool(row["imported"]),
            amends=amends_uid,
            amend_reason=row["amend_reason"],
            washout_override=row["washout_override"],
        )

    def readings(self) -> list[ReadingRecord]:
        """The current finished readings (amended ones excluded), sorted by case, observer, reading."""
        rows = self._db.execute(
            "SELECT * FROM readings WHERE status = 'finished' ORDER BY case_id, observer_id, reading"
        ).fetchall()
        return [self._record(r) for r in rows]

    def history(self) -> list[ReadingRecord]:
        """Every reading row ever recorded (started, finished and amended), in order of creation."""
        return [self._record(r) for r in self._db.execute("SELECT * FROM readings ORDER BY id").fetchall()]

    def open_sessions(self, observer: str | None = None) -> list[ReadingSession]:
        """Readings started and not yet finished (optionally of one observer)."""
        query = "SELECT * FROM readings WHERE status = 'started'"
        params: tuple = ()
        if observer is not None:
            query += " AND observer_id = ?"
            params = (observer,)
        return [self._session(r) for r in self._db.execute(query + " ORDER BY id", params).fetchall()]

    def open_session(self, observer: str, case_id: str) -> ReadingSession:
        """The open reading session of ``observer`` on ``case_id``.

        Raises
        ------
        ReadingError
            Unknown observer or case, or no open session; when the observer's readings of the case
            are finished the message says so (a finished reading is amended, not finished again).
        """
        self._require_observer(observer)
        self.case(case_id)
        row = self._db.execute(
            "SELECT * FROM readings WHERE status = 'started' AND observer_id = ? AND case_id = ? ORDER BY id LIMIT 1",
            (observer, case_id),
        ).fetchone()
        if row is not None:
            return self._session(row)
        last = self._db.execute(
            "SELECT reading, finished_at FROM readings WHERE status = 'finished' AND observer_id = ? AND case_id = ? "
            "ORDER BY reading DESC, id DESC LIMIT 1",
            (observer, case_id),
        ).fetchone()
        if last is not None:
            raise ReadingError(
                f"case {case_id}, observer {observer}: reading {last['reading']} was already finished on "
                f"{last['finished_at']} and no reading is open; a finished reading cannot be changed "
                "(amend it with 'qsmrepro study amend-reading', or start the next one)"
            )
        raise ReadingError(f"observer {observer} has no open reading of case {case_id}; "
                           "start one with 'qsmrepro study start-reading'")

    def case_status(self, observer: str, *, now=None) -> list[CaseStatus]:
        """Every case with this observer's progress on it, in case order (the reading station's case list).

        Only the observer's own readings count; an unknown or empty observer sees every case ``ready``.
        """
        when = to_utc(now)
        finished: dict[str, int] = {}
        open_cases: set[str] = set()
        if observer:
            for row in self._db.execute(
                "SELECT case_id, COUNT(*) FROM readings WHERE observer_id = ? AND status = 'finished' GROUP BY case_id",
                (observer,),
            ):
                finished[row[0]] = int(row[1])
            open_cases = {session.case_id for session in self.open_sessions(observer)}
        total = self.readings_per_observer
        rows = []
        for case in self.cases():
            done = finished.get(case.case_id, 0)
            opens = None
            if case.case_id in open_cases:
                state = "in progress"
            elif done >= total:
                state = "done"
            else:
                opens = self.washout_opens(case.case_id, observer, done + 1) if done else None
                state = "wash-out" if opens is not None and when < opens else "ready"
                opens = opens if state == "wash-out" else None
            rows.append(CaseStatus(case.case_id, case.lesion_type, done, total, state, opens))
        return rows

    def qsm_volume(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """A case's QSM map (ppm) as an (i, j, k) float32 array and its voxel->RAS affine (mm)."""
        from ..io import load_volume

        case = self.case(case_id)
        try:
            return load_volume(case.qsm_path)
        except InputError as exc:
            raise ReadingError(f"case {case_id}: the QSM map cannot be read: {one_line(exc)}") from None

    def reconstruction_records(self) -> dict[str, dict | None]:
        """How each case's QSM was reconstructed, as recorded when it entered the study (None: not recorded)."""
        records: dict[str, dict | None] = {c.case_id: None for c in self.cases()}
        for row in self._db.execute("SELECT case_id, details FROM audit_log WHERE action IN "
                                    "('case_added', 'case_reconstructed') ORDER BY id"):
            if row["case_id"] in records:
                records[row["case_id"]] = json.loads(row["details"] or "{}").get("reconstruction")
        return records

    def audit_log(self) -> list[dict]:
        """The audit log, oldest first."""
        return [dict(r) for r in self._db.execute("SELECT * FROM audit_log ORDER BY id").fetchall()]

    def _session(self, row: sqlite3.Row) -> ReadingSession:
        case = self.case(row["case_id"])
        return ReadingSession(
            session_uid=row["session_uid"],
            case_id=row["case_id"],
            observer=row["observer_id"],
            reading=int(row["reading"]),
            qsm_path=case.qsm_path,
            segmentation_path=self.root / row["segmentation_file"],
            lesion_type=case.lesion_type,
            started_at=row["started_at"],
            amendment=row["amends"] is not None,
        )

    # ---- integrity -------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Check the database against the files; returns the problems found (empty when consistent).

        Checked: SQLite integrity and foreign keys; every case file and finished reading file
        exists with its recorded checksum; wash-outs were respected or overridden with a reason;
        every amended reading has a finished successor; no file under ``cases/`` or ``readings/``
        is unknown to the database (orphans). Temporary files left by interrupted writes on this
        machine are removed first.
        """
        self._sweep_temporary_files()
        problems: list[str] = []
        integrity = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            problems.append(f"database integrity: {integrity}")
        for row in self._db.execute("PRAGMA foreign_key_check").fetchall():
            problems.append(f"database: row {row[1]} of table {row[0]} refers to a missing {row[2]}")
        known: set[Path] = set()
        for case in self.cases():
            for path, checksum, what in ((case.qsm_path, case.qsm_checksum, "QSM map"),
                                         (case.mask_path, case.mask_checksum, "mask")):
                if path is None:
                    continue
                known.add(path.resolve())
                if not path.is_file():
                    problems.append(f"case {case.case_id}: {what} {path} is missing")
                elif sha256_file(path) != checksum:
                    problems.append(f"case {case.case_id}: {what} {path} was modified (checksum differs)")
        for case_id, path, checksum in self._input_files():
            known.add(path.resolve())
            if not path.is_file():
                problems.append(f"case {case_id}: GRE file {path} is missing")
            elif sha256_file(path) != checksum:
                problems.append(f"case {case_id}: GRE file {path} was modified (checksum differs)")
        rows = self._db.execute("SELECT * FROM readings ORDER BY id").fetchall()
        for row in rows:
            where = f"case {row['case_id']}, observer {row['observer_id']}, reading {row['reading']}"
            path = self.root / row["segmentation_file"]
            known.add(path.resolve())
            if row["status"] == "started":
                if row["checksum"] is not None or row["finished_at"] is not None:
                    problems.append(f"{where}: open session {row['session_uid']} has a finish record")
                continue
            if not path.is_file():
                problems.append(f"{where}: segmentation {path} is missing")
            elif sha256_file(path) != row["checksum"]:
                problems.append(f"{where}: segmentation {path} was modified after the reading was finished")
            if row["finished_at"] is None or row["finished_at"] < row["started_at"]:
                problems.append(f"{where}: finish time {row['finished_at']} is missing or before the start")
            if row["status"] == "amended" and not any(
                r["amends"] == row["id"] and r["status"] in ("finished", "amended") for r in rows
            ):
                problems.append(f"{where}: marked amended but no finished amendment refers to it")
            if row["amends"] is None and row["reading"] > 1 and not row["washout_override"]:
                earlier = [r["finished_at"] for r in rows
                           if r["case_id"] == row["case_id"] and r["observer_id"] == row["observer_id"]
                           and r["reading"] < row["reading"] and r["finished_at"] and r["id"] < row["id"]]
                if earlier:
                    opens = to_utc(max(earlier)) + dt.timedelta(days=self.washout_days)
                    if to_utc(row["started_at"]) < opens:
                        problems.append(f"{where}: started {row['started_at']}, before the wash-out ended "
                                        f"{iso_utc(opens)}, and no override is recorded")
        for folder in (self.root / "cases", self.root / "readings"):
            if not folder.is_dir():
                problems.append(f"folder {folder} is missing")
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.resolve() not in known:
                    if temp_file_owner(path) is not None:
                        continue  # a write in progress in another process
                    problems.append(f"orphan file {path}: no case or reading of the study refers to it")
        return problems

    # ---- summary ---------------------------------------------------------------------------

    def summary(self, *, now=None) -> dict:
        """Counts for ``qsmrepro study status``: cases, observers, readings per observer and round."""
        when = to_utc(now)
        cases = self.cases()
        pending = self.pending_cases()
        result = {
            "study": str(self.root),
            "washout_days": self.washout_days,
            "seed": self.seed,
            "readings_per_observer": self.readings_per_observer,
            "cases": len(cases),
            "cases_by_lesion_type": {t: sum(c.lesion_type == t for c in cases) for t in LESION_TYPES},
            "cases_waiting_for_reconstruction": [c.case_id for c in pending],
            "cases_failed": {c.case_id: c.last_error for c in pending if c.last_error},
            "observers": {},
        }
        for observer in self.observers():
            done = {r: 0 for r in range(1, self.readings_per_observer + 1)}
            for row in self._db.execute(
                "SELECT reading, COUNT(*) FROM readings WHERE observer_id = ? AND status = 'finished' GROUP BY reading",
                (observer,),
            ):
                done[int(row[0])] = int(row[1])
            waiting = []
            for case in cases:
                number = self._next_reading_number(case.case_id, observer)
                if 1 < number <= self.readings_per_observer:
                    opens = self.washout_opens(case.case_id, observer, number)
                    if opens is not None and opens > when:
                        waiting.append(opens)
            result["observers"][observer] = {
                "finished_by_reading": done,
                "open_sessions": len(self.open_sessions(observer)),
                "waiting_for_washout": len(waiting),
                "next_washout_ends": iso_utc(min(waiting)) if waiting else None,
            }
        return result
