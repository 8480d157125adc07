"""Cases registered with their GRE only, reconstructed later by ``qsmrepro study process``.

``qsmrepro study add-case DIR ... INPUT --later`` copies the GRE into the study and records how it is to
be reconstructed; the case joins the reading lists once ``study process`` has made its QSM. Layout::

    cases/<case_id>/gre/magnitude.nii      magnitude, 4-D (i, j, k, echo), float32, the input's affine
    cases/<case_id>/gre/phase.nii          phase in radians, wrapped, 4-D, float32
    cases/<case_id>/gre/mask.nii.gz        a brain mask given with the case (optional)

The GRE is stored uncompressed: noisy float32 data shrink by little more than a tenth under gzip, and
compressing 300 MB per case at the study's matrix costs seconds of CPU when it is added and when it is read.

The study database holds one row of the table ``case_inputs`` per case: the SHA-256 of each of those files, the acquisition
(echo times in s, B0 in T, B0 direction, the phase units and scaling of the original files) and the
reconstruction parameters (:class:`~QSMReproducibilityLib.recon.pipeline.ReconParams`). The input is read
and validated once, when the case is added (a bad input is refused then, not at night on a cluster), and
stored in one format whatever it came as (BIDS, NIfTI, DICOM): no DICOM header, file name or path of the
source reaches the study, only the :func:`~.fingerprint.gre_fingerprint` of the original files.

The row stays after the case is reconstructed, so the study keeps the input of every QSM it made. Only
the process that owns the study writes these rows (:mod:`QSMReproducibilityLib.process`).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np

from ..errors import InputError, ReadingError, one_line
from ..fileio import atomic_output
from .fingerprint import gre_fingerprint, sha256_file
from .timestamps import iso_utc, to_utc

__all__ = ["PendingCase", "INPUTS_SCHEMA"]

INPUTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS case_inputs (
    case_id       TEXT PRIMARY KEY,
    lesion_type   TEXT NOT NULL CHECK (lesion_type IN ('hematoma', 'calcification')),
    diagnosis     TEXT,
    patient_name  TEXT,
    gre_reference TEXT,
    gre_files     TEXT NOT NULL,
    acquisition   TEXT NOT NULL,
    recon_params  TEXT NOT NULL,
    added_at      TEXT NOT NULL,
    last_error    TEXT,
    failed_at     TEXT
);
"""


@dataclasses.dataclass(frozen=True)
class PendingCase:
    """The stored GRE of a case and how to reconstruct it.

    ``gre_files``: file name in ``gre_folder`` → SHA-256; ``acquisition``: ``EchoTime`` (s),
    ``MagneticFieldStrength`` (T), ``B0DirectionVoxel``, ``B0DirectionGiven``, ``PhaseUnits`` and
    ``PhaseScaling`` of the original files; ``recon_params``: the fields of ``ReconParams``.
    ``reconstructed``: the case has its QSM; ``last_error``: why the last attempt failed, if it did.
    """

    case_id: str
    lesion_type: str
    gre_folder: Path
    gre_files: dict
    acquisition: dict
    recon_params: dict
    added_at: str
    reconstructed: bool = False
    last_error: str | None = None

    @property
    def magnitude_path(self) -> Path:
        return self.gre_folder / "magnitude.nii"

    @property
    def phase_path(self) -> Path:
        return self.gre_folder / "phase.nii"

    @property
    def mask_path(self) -> Path | None:
        return self.gre_folder / "mask.nii.gz" if "mask.nii.gz" in self.gre_files else None


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> str:
    """Write a NIfTI atomically (the study's temporary-file naming, so debris is swept); returns its SHA-256.

    ``.nii.gz`` is compressed (:func:`~QSMReproducibilityLib.io.write_gzip`), ``.nii`` is not.
    """
    import hashlib

    import nibabel as nib

    from ..io import write_gzip

    image = nib.Nifti1Image(np.asarray(data), np.asarray(affine, float))
    image.header.set_xyzt_units("mm", "sec")
    payload = image.to_bytes()
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        if path.name.endswith(".gz"):
            write_gzip(handle, payload)
        else:
            handle.write(payload)
    if not path.name.endswith(".gz"):
        return hashlib.sha256(payload).hexdigest()
    return sha256_file(path)


class CaseInputs:
    """The ``Study`` methods for cases registered with their GRE (mixed into :class:`~.store.Study`)."""

    _db: sqlite3.Connection
    root: Path

    def _ensure_inputs_table(self) -> None:
        """Create ``case_inputs`` in a study made before it existed (no-op on a read-only study)."""
        try:
            self._db.executescript(INPUTS_SCHEMA)
        except sqlite3.OperationalError:
            pass

    def _has_inputs_table(self) -> bool:
        return self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'case_inputs'").fetchone() is not None

    def add_gre_case(self, case_id: str, lesion_type: str, gre_input=None, *, magnitude=None, phase=None,
                     te_s=None, b0_tesla: float | None = None, b0_dir=None, phase_units: str = "auto",
                     recon_params=None, mask_path=None, gre_reference: str | None = None,
                     diagnosis: str | None = None, patient_name: str | None = None) -> PendingCase:
        """Register a case by its GRE; ``qsmrepro study process`` reconstructs it later.

        Parameters
        ----------
        case_id, lesion_type, gre_reference, diagnosis, patient_name
            As for :meth:`~.store.Study.add_case`.
        gre_input : path-like, optional
            BIDS ``anat`` folder or DICOM folder; or ``magnitude`` and ``phase`` NIfTI paths with ``te_s``.
        te_s : sequence of float, optional
            Echo times in seconds (override or supply).
        b0_tesla : float, optional
            Field strength in tesla (default: sidecar or DICOM, else 3 T with a warning).
        b0_dir : sequence of 3 float, optional
            B0 direction in the voxel frame (default: sidecar's ``B0_dir``, else the affine).
        phase_units : str
            As for :func:`~QSMReproducibilityLib.io.load_gre`; the stored phase is in radians.
        recon_params : ReconParams, optional
            How to reconstruct (default: the pipeline's defaults, STAR-QSM with the BET f = 0.5 mask).
        mask_path : path-like, optional
            A brain mask on the GRE grid, used instead of the candidate masks.

        Raises
        ------
        InputError
            The GRE cannot be read or is inconsistent, the case ID is taken, the mask is not on the grid.
        """
        from ..io import load_gre, load_nifti_gre, load_volume
        from ..recon.pipeline import ReconParams, acquisition_record

        self.check_new_case(case_id, lesion_type)
        params = recon_params if recon_params is not None else ReconParams()
        if gre_input is not None:
            gre = load_gre(gre_input, te_s=te_s, b0_tesla=b0_tesla, phase_units=phase_units)
            sources = [gre_input]
        elif magnitude and phase:
            if te_s is None:
                raise InputError("echo times are required with magnitude/phase NIfTI input: give --te in seconds")
            gre = load_nifti_gre(magnitude, phase, te_s, b0_tesla, phase_units=phase_units)
            sources = [*magnitude, *phase]
        else:
            raise InputError(f"case {case_id}: give the GRE input (a BIDS anat or DICOM folder, or NIfTI files)")
        if b0_dir is not None:
            if len(b0_dir) != 3 or not np.all(np.isfinite(b0_dir)) or not np.linalg.norm(b0_dir) > 0:
                raise InputError(f"case {case_id}: the B0 direction must be three finite numbers, not all zero")
            gre = dataclasses.replace(gre, b0_dir_given=tuple(float(v) for v in b0_dir))
        mask = None
        if mask_path is not None:
            mask, mask_affine = load_volume(mask_path)
            if mask.shape != gre.shape or not np.allclose(mask_affine, gre.affine, atol=1e-3):
                raise InputError(f"case {case_id}: mask {mask_path} is not on the grid of the GRE")
            if not (mask > 0.5).any():
                raise InputError(f"case {case_id}: mask {mask_path} is empty (no voxel above 0.5)")
        acquisition = acquisition_record(gre)
        acquisition["B0DirectionGiven"] = gre.b0_dir_given is not None
        fingerprints = "; ".join(f"GRE input {gre_fingerprint(p)}" for p in sources)
        reference = "; ".join(one_line(t) for t in (gre_reference, fingerprints) if t and t.strip()) or None

        folder = self.root / "cases" / case_id / "gre"
        files = {"magnitude.nii": _write_nifti(folder / "magnitude.nii", gre.magnitude, gre.affine),
                 "phase.nii": _write_nifti(folder / "phase.nii", gre.phase_rad, gre.affine)}
        if mask is not None:
            files["mask.nii.gz"] = _write_nifti(folder / "mask.nii.gz", (mask > 0.5).astype(np.uint8), gre.affine)
        del gre
        now = iso_utc(to_utc(None))
        params_json = json.dumps(params.as_dict(), sort_keys=True)
        with self._transaction() as db:
            self.check_new_case(case_id, lesion_type)
            db.execute(
                "INSERT INTO case_inputs(case_id, lesion_type, diagnosis, patient_name, gre_reference, gre_files, "
                "acquisition, recon_params, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (case_id, lesion_type, diagnosis, patient_name, reference, json.dumps(files, sort_keys=True),
                 json.dumps(acquisition, sort_keys=True), params_json, now),
            )
            self._audit(now, "case_registered_for_reconstruction", case_id=case_id, lesion_type=lesion_type,
                        gre_sha256=files, reconstruction=json.loads(params_json))
        return self.case_input(case_id)

    def _pending(self, row: sqlite3.Row) -> PendingCase:
        reconstructed = self._db.execute("SELECT 1 FROM cases WHERE case_id = ?", (row["case_id"],)).fetchone()
        return PendingCase(
            case_id=row["case_id"], lesion_type=row["lesion_type"],
            gre_folder=self.root / "cases" / row["case_id"] / "gre", gre_files=json.loads(row["gre_files"]),
            acquisition=json.loads(row["acquisition"]), recon_params=json.loads(row["recon_params"]),
            added_at=row["added_at"], reconstructed=reconstructed is not None, last_error=row["last_error"],
        )

    def case_inputs(self) -> list[PendingCase]:
        """Every case registered with its GRE, reconstructed or not, sorted by ID."""
        if not self._has_inputs_table():
            return []
        return [self._pending(r) for r in self._db.execute("SELECT * FROM case_inputs ORDER BY case_id")]

    def case_input(self, case_id: str) -> PendingCase:
        """The stored GRE of one case (:class:`ReadingError` if the case was not registered with it)."""
        row = self._db.execute("SELECT * FROM case_inputs WHERE case_id = ?", (case_id,)).fetchone() \
            if self._has_inputs_table() else None
        if row is None:
            raise ReadingError(f"case {case_id!r} was not registered with its GRE in the study {self.root}")
        return self._pending(row)

    def pending_cases(self) -> list[PendingCase]:
        """Cases registered with their GRE that have no QSM yet, sorted by ID."""
        return [c for c in self.case_inputs() if not c.reconstructed]

    def complete_pending_case(self, case_id: str, qsm_path, mask_path, *, reconstruction: dict | None = None,
                              key: str | None = None):
        """Add the QSM reconstructed from a case's stored GRE; the case joins the reading lists.

        ``key`` (the hash of the inputs and parameters that made the QSM) is written to the audit log.
        """
        pending = self.case_input(case_id)
        if pending.reconstructed:
            raise ReadingError(f"case {case_id} already has its QSM in the study {self.root}")
        record = dict(reconstruction or {})
        if key:
            record["key"] = key
        row = self._db.execute("SELECT * FROM case_inputs WHERE case_id = ?", (case_id,)).fetchone()
        return self._add_case_row(case_id, row["lesion_type"], qsm_path, mask_path=mask_path,
                                  reference=row["gre_reference"], reconstruction=record, diagnosis=row["diagnosis"],
                                  patient_name=row["patient_name"], pending=True)

    def record_case_failure(self, case_id: str, stage: str, message: str) -> None:
        """Record why processing a case failed (shown by ``study status``; cleared when it succeeds)."""
        now = iso_utc(to_utc(None))
        text = one_line(message)
        with self._transaction() as db:
            if stage == "reconstruction" and self._has_inputs_table():
                db.execute("UPDATE case_inputs SET last_error = ?, failed_at = ? WHERE case_id = ?",
                           (text, now, case_id))
            self._audit(now, "processing_failed", case_id=case_id, stage=stage, error=text)

    def _input_files(self) -> list[tuple[str, Path, str]]:
        """(case ID, path, SHA-256) of every stored GRE file, for :meth:`verify`."""
        return [(c.case_id, c.gre_folder / name, sha) for c in self.case_inputs() for name, sha in c.gre_files.items()]

