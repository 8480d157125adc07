"""Combining the unwrapped echoes into one field map."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FieldFit:
    """Result of the multi-echo fit.

    field_hz : (X, Y, Z) frequency offset in Hz (the slope of phase against TE divided by 2π).
    phase_offset_rad : (X, Y, Z) echo-independent phase φ0 (the intercept), radians.
    """

    field_hz: np.ndarray
    phase_offset_rad: np.ndarray


def fit_field(unwrapped_rad, magnitude: np.ndarray, te_s) -> FieldFit:
    """Magnitude-weighted linear least-squares fit φ_e = φ0 + 2π f TE_e, per voxel.

    Weights are m_e², the inverse variance of the phase for Gaussian noise (σ_φ ≈ σ/m; Wu et al. 2012,
    MRM 67:137, eq. 3; Li et al. 2015, NeuroImage 108:111). With the intercept, the phase offset of the
    receive chain does not bias the field. A single echo gives f = φ/(2π TE) with φ0 = 0.

    Parameters
    ----------
    unwrapped_rad : (X, Y, Z, E) array, or an iterable of the E echo volumes in order (such as
        :func:`.unwrap.unwrap_echoes`, so that the echoes are never all held at once).
    magnitude : (X, Y, Z, E) array.
    te_s : E echo times in seconds.
    """
    te_s = np.asarray(te_s, dtype=np.float64)
    echoes = (unwrapped_rad[..., e] for e in range(unwrapped_rad.shape[-1])) \
        if isinstance(unwrapped_rad, np.ndarray) else iter(unwrapped_rad)
    if len(te_s) == 1:
        field = next(echoes) / np.float32(2 * np.pi * te_s[0])
        return FieldFit(field.astype(np.float32), np.zeros(field.shape, np.float32))
    # Weighted sums over echoes, one echo volume at a time (contiguous when stored echo-first). The
    # first echo is taken before the sums are allocated: a lazy producer frees its own work first.
    first = next(echoes)
    sw, st, stt, sp, stp = (np.zeros(magnitude.shape[:3], np.float32) for _ in range(5))
    weight = np.empty(magnitude.shape[:3], np.float32)
    n_seen = 0
    for e, (phase, te) in enumerate(zip(itertools.chain([first], echoes), te_s.astype(np.float32))):
        np.square(magnitude[..., e], out=weight)
        sw += weight
        st += te * weight
        stt += (te * te) * weight
        weight *= phase
        sp += weight
        stp += te * weight
        n_seen += 1
    if n_seen != len(te_s):
        raise ValueError(f"{n_seen} unwrapped echoes for {len(te_s)} echo times")
    del weight
    np.copyto(sw, np.float32(1.0), where=sw <= 0)
    denom = sw * stt
    denom -= st * st
    np.copyto(denom, np.float32(np.inf), where=denom == 0)
    slope = sw * stp
    slope -= st * sp
    slope /= denom  # rad/s
    intercept = sp - slope * st
    intercept /= sw
    slope *= np.float32(1 / (2 * np.pi))
    return FieldFit(slope, intercept)

