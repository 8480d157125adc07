"""Reading multi-echo GRE and writing volumes.

Inputs: a BIDS ``anat`` folder with ``*_echo-N_part-{mag,phase}_MEGRE.nii[.gz]`` and JSON sidecars (as
dcm2niix and qsm-forward write it, :mod:`.bids`), explicit NIfTI (one 4-D file or one 3-D file per echo)
with echo times (:mod:`.nifti`), or a DICOM folder (magnitude and phase series told apart by ImageType,
:mod:`.dicom`). Everything ends in a :class:`GreSeries` (:mod:`.series`) whose arrays are indexed
(i, j, k, echo) with a voxel→RAS affine in mm.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .bids import BIDS_MAGNITUDE_NAME, load_bids_anat
from .nifti import check_output_path, load_nifti_gre, load_volume, save_nifti, write_gzip
from .series import (ASSUMED_B0_TESLA, B0_RANGE_TESLA, PHASE_UNITS, SIEMENS_PHASE_RANGE, GreSeries, PhaseScaling,
                     apply_phase_scaling, assumed_b0, b0_dir_from_affine, check_b0, phase_scaling, phase_to_radians,
                     validate_gre, voxel_size_from_affine)

__all__ = [
    "GreSeries", "PhaseScaling", "PHASE_UNITS", "B0_RANGE_TESLA", "ASSUMED_B0_TESLA", "SIEMENS_PHASE_RANGE",
    "load_gre", "load_bids_anat", "load_nifti_gre", "load_volume", "save_nifti", "write_gzip",
    "check_output_path", "phase_scaling", "apply_phase_scaling", "phase_to_radians", "check_b0",
    "assumed_b0", "validate_gre", "voxel_size_from_affine", "b0_dir_from_affine",
]


def load_gre(input_path, te_s=None, b0_tesla: float | None = None, *, phase_units: str = "auto") -> GreSeries:
    """Dispatch on the input: a BIDS anat folder (or a folder containing ``anat/``) or a DICOM folder.

    ``phase_units`` is one of :data:`PHASE_UNITS` (see :func:`phase_scaling`).
    """
    path = Path(input_path)
    if phase_units not in PHASE_UNITS:
        raise InputError(f"unknown phase units {phase_units!r}; choose one of {', '.join(PHASE_UNITS)}")
    if not path.exists():
        raise InputError(f"{path}: not found")
    if path.is_dir():
        if (path / "anat").is_dir() and not any(BIDS_MAGNITUDE_NAME.match(f.name) for f in path.iterdir()):
            path = path / "anat"
        if any(BIDS_MAGNITUDE_NAME.match(f.name) for f in path.iterdir()):
            return load_bids_anat(path, te_s=te_s, b0_tesla=b0_tesla, phase_units=phase_units)
        from .dicom import load_dicom_gre  # SimpleITK is loaded only for DICOM input

        return load_dicom_gre(path, te_s=te_s, b0_tesla=b0_tesla, phase_units=phase_units)
    raise InputError(f"{path}: give a BIDS anat folder, a DICOM folder, or --magnitude/--phase NIfTI files")
