"""Phase unwrapping.

Two methods:

* :func:`unwrap_multi_echo` (default): temporal unwrapping. The field is first estimated from the phase
  *difference* of consecutive echoes, whose own wraps are few (|f| > 1/(2ΔTE), ≈ 203 Hz at ΔTE = 2.46 ms)
  and are removed spatially; each echo is then unwrapped to the integer multiple of 2π closest to the
  prediction φ0 + 2π f TE. The result is congruent (it differs from the measured phase only by multiples
  of 2π), hence exact wherever the prediction error stays below π.
* :func:`laplacian_unwrap`: the Laplacian method used by STI Suite (Schofield & Zhu 2003; Li et al. 2011),
  12-voxel zero pad, spectral |k|², DC set to 0. It is fast and robust to noise but NOT congruent: it
  returns a smoothed phase whose Laplacian matches, which changes the phase where local fields are strong
  (e.g. around a dense calcification or a haematoma). :func:`congruent` restores congruence.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..progress import ProgressCallback, notify
from . import kernels

STI_PAD_VOXELS = 12


def laplacian_unwrap(phase_rad: np.ndarray, voxel_size_mm, pad_voxels: int = STI_PAD_VOXELS) -> np.ndarray:
    """Laplacian-based phase unwrapping (Schofield & Zhu 2003, Opt Lett 28:1194, eq. 4).

    ∇²φ = cos φ · ∇² sin φ − sin φ · ∇² cos φ, then φ = ∇⁻²(∇²φ) with the spectral Laplacian
    −4π²|k|² and the DC term set to zero (the mean phase is undetermined).

    Parameters
    ----------
    phase_rad : (X, Y, Z) array, wrapped phase in radians.
    voxel_size_mm : three voxel sizes in mm.
    pad_voxels : zero padding on each side (STI Suite uses 12).

    Returns
    -------
    (X, Y, Z) float32 array: the (non-congruent) unwrapped phase in radians, zero mean offset.
    """
    shape = phase_rad.shape
    grid = kernels.fast_shape(shape, (pad_voxels,) * 3)
    lap = kernels.laplacian_k(grid, voxel_size_mm)
    # Ordered so that at most about four padded volumes are alive at once.
    sin_p = kernels.pad(np.sin(phase_rad, dtype=np.float32), grid)
    lap_phase = kernels.apply_k(sin_p, lap)  # ∇² sin φ
    cos_p = kernels.pad(np.cos(phase_rad, dtype=np.float32), grid)
    lap_phase *= cos_p  # cos φ · ∇² sin φ
    lap_cos = kernels.apply_k(cos_p, lap)
    del cos_p
    lap_cos *= sin_p
    del sin_p
    lap_phase -= lap_cos  # − sin φ · ∇² cos φ
    del lap_cos
    np.divide(1.0, lap, out=lap, where=lap != 0)  # the inverse Laplacian, in place; DC stays 0
    return np.ascontiguousarray(kernels.crop(kernels.apply_k(lap_phase, lap), shape))


def congruent(wrapped_rad: np.ndarray, estimate_rad: np.ndarray) -> np.ndarray:
    """The phase congruent with ``wrapped_rad`` closest to ``estimate_rad``: φ + 2π·round((ψ − φ)/2π)."""
    turns = np.subtract(estimate_rad, wrapped_rad, dtype=np.float32)
    turns *= np.float32(1 / (2 * np.pi))
    np.round(turns, out=turns)
    turns *= np.float32(2 * np.pi)
    turns += wrapped_rad
    return turns


def unwrap_spatial(phase_rad: np.ndarray, voxel_size_mm) -> np.ndarray:
    """Laplacian estimate made congruent with the measured phase (exact where the estimate is within π)."""
    estimate = laplacian_unwrap(phase_rad, voxel_size_mm)
    # The Laplacian solution has an arbitrary offset: align it to the data before rounding.
    difference = np.subtract(phase_rad, estimate, dtype=np.float32)
    offset = np.arctan2(np.sin(difference).mean(dtype=np.float64), np.cos(difference, out=difference).mean(dtype=np.float64))
    del difference
    estimate += np.float32(offset)
    return congruent(phase_rad, estimate)


def unwrap_multi_echo(
    phase_rad: np.ndarray,
    magnitude: np.ndarray,
    te_s,
    voxel_size_mm,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Temporal (echo-difference) unwrapping of multi-echo phase; exact (congruent) by construction.

    Parameters
    ----------
    phase_rad, magnitude : (X, Y, Z, E) arrays; wrapped phase in radians and magnitude.
    te_s : E echo times in seconds, increasing.
    voxel_size_mm : three voxel sizes in mm.

    Returns
    -------
    (X, Y, Z, E) float32 array of unwrapped phase in radians (see :func:`unwrap_echoes`, which yields
    the same echoes one at a time).
    """
    shape = phase_rad.shape
    out = np.empty((shape[-1],) + tuple(shape[:3]), np.float32)  # echo-first, exposed as (X, Y, Z, E)
    for e, echo in enumerate(unwrap_echoes(phase_rad, magnitude, te_s, voxel_size_mm, progress)):
        out[e] = echo
    return np.moveaxis(out, 0, -1)


def unwrap_echoes(
    phase_rad: np.ndarray,
    magnitude: np.ndarray,
    te_s,
    voxel_size_mm,
    progress: ProgressCallback | None = None,
) -> Iterator[np.ndarray]:
    """Temporal unwrapping that yields each echo's unwrapped phase (X, Y, Z), in echo order.

    Only one echo is held at a time, so a consumer that reduces over echoes (such as
    :func:`..echoes.fit_field`) never needs all of them in memory.

    The echo-difference field estimate follows the Hermitian-product approach of e.g. Robinson et al.
    2017 (NMR Biomed 30:e3601, §3.3) and Liu et al. 2013 (MRM 69:467, MEDI's multi-echo fit): the phase of
    Σ m_e m_{e+1} exp(i(φ_{e+1} − φ_e)) is the field times ΔTE, free of the echo-independent phase offset.
    It is unwrapped spatially (:func:`unwrap_spatial`) and every echo is then taken to the multiple of
    2π closest to the prediction φ_1 + ω(TE_e − TE_1). Every echo is therefore congruent with the
    measurement and consistent with the first echo, whose own multiple of 2π is left as measured (it
    shifts the fitted phase offset, never the field). A single echo is unwrapped spatially.
    """
    te_s = np.asarray(te_s, dtype=np.float64)
    n_echoes = phase_rad.shape[-1]
    if n_echoes == 1:
        notify(progress, 0.0, "unwrapping single-echo phase spatially (Laplacian + congruence)")
        yield unwrap_spatial(phase_rad[..., 0], voxel_size_mm)
        return

    notify(progress, 0.0, "estimating field from echo differences")
    spacing = np.diff(te_s)
    delta_te = float(spacing.min())
    uniform = np.allclose(spacing, delta_te, rtol=1e-3)
    pairs = range(n_echoes - 1) if uniform else [int(np.argmin(spacing))]
    re = np.zeros(phase_rad.shape[:3], np.float32)
    im = np.zeros(phase_rad.shape[:3], np.float32)
    step, weight, part = (np.empty(phase_rad.shape[:3], np.float32) for _ in range(3))
    for e in pairs:
        np.subtract(phase_rad[..., e + 1], phase_rad[..., e], out=step)
        np.multiply(magnitude[..., e], magnitude[..., e + 1], out=weight)
        re += np.multiply(weight, np.cos(step, out=part), out=part)
        im += np.multiply(weight, np.sin(step, out=part), out=part)
    del step, weight, part
    delta_phase = np.arctan2(im, re)
    del re, im
    notify(progress, 0.4, "unwrapping the echo-difference phase")
    omega_rad_per_s = unwrap_spatial(delta_phase, voxel_size_mm)
    omega_rad_per_s /= np.float32(delta_te)
    del delta_phase

    notify(progress, 0.7, "unwrapping each echo against the field estimate")
    # A wrap of φ_1 itself shifts all echoes of that voxel by the same 2π, which moves the fitted
    # intercept, never the field.
    first = np.array(phase_rad[..., 0], dtype=np.float32)
    yield first
    estimate = np.empty_like(first)
    for e in range(1, n_echoes):
        np.multiply(omega_rad_per_s, np.float32(te_s[e] - te_s[0]), out=estimate)
        estimate += first
        yield congruent(phase_rad[..., e], estimate)
    notify(progress, 1.0, "unwrapping done")
