"""Referencing χ to cerebrospinal fluid."""

from __future__ import annotations

import numpy as np

from ..errors import ReconstructionError


def csf_reference_ppm(chi_ppm: np.ndarray, csf_mask: np.ndarray) -> float:
    """Mean χ inside the CSF ROI (the study used the posterior horns of the lateral ventricles)."""
    csf_mask = np.asarray(csf_mask, bool)
    if csf_mask.shape != chi_ppm.shape:
        raise ReconstructionError(f"CSF ROI grid {csf_mask.shape} differs from the QSM grid {chi_ppm.shape}")
    if not csf_mask.any():
        raise ReconstructionError("the CSF ROI is empty: draw CSF in the posterior horns of the lateral ventricles")
    return float(chi_ppm[csf_mask].mean())


def reference_to_csf(chi_ppm: np.ndarray, csf_mask: np.ndarray) -> np.ndarray:
    """χ − mean(χ_CSF): susceptibility relative to CSF, in ppm."""
    return (chi_ppm - csf_reference_ppm(chi_ppm, csf_mask)).astype(np.float32)
