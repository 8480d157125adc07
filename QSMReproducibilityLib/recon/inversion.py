"""Dipole inversion: local field (ppm) → susceptibility χ (ppm).

All methods share :func:`kernels.dipole_kernel` (physical k units, arbitrary B0 direction) and work on a
zero-padded fast-FFT grid so that the periodic convolution does not fold the field back onto the object.
"""

from __future__ import annotations

import numpy as np

from ..progress import ProgressCallback, report
from . import kernels

INVERSION_PAD_MM = 12.0


def _grid(shape, voxel_size_mm):
    pad_vox = [int(np.ceil(INVERSION_PAD_MM / float(v))) for v in voxel_size_mm]
    return kernels.fast_shape(shape, pad_vox)


def forward_field(chi_ppm: np.ndarray, voxel_size_mm, b0_dir=(0, 0, 1), pad: bool = True) -> np.ndarray:
    """Field perturbation (ppm of B0) of a susceptibility map, ifft(D·fft(χ)) (Marques & Bowtell 2005, eq. 2).

    With ``pad`` the volume is zero-padded to twice its size (rounded to fast FFT sizes) so the field is
    that of the object alone, not of its periodic copies.
    """
    shape = chi_ppm.shape
    grid = kernels.fast_shape(shape, [n // 2 for n in shape]) if pad else shape
    d = kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)
    field = kernels.irfftn(kernels.rfftn(kernels.pad(chi_ppm.astype(np.float32), grid)) * d, grid)
    return kernels.crop(field, shape).astype(np.float32)


def tkd(local_ppm, mask, voxel_size_mm, b0_dir=(0, 0, 1), threshold: float = 0.19) -> np.ndarray:
    """Thresholded k-space division (Shmueli et al. 2009, MRM 62:1510, eq. 5; Wharton et al. 2010).

    1/D is replaced by sign(D)/``threshold`` where |D| < ``threshold``.
    """
    shape = local_ppm.shape
    grid = _grid(shape, voxel_size_mm)
    d = kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)
    inv = np.where(np.abs(d) >= threshold, 1.0 / np.where(d == 0, 1, d), np.sign(d) / threshold)
    inv[0, 0, 0] = 0.0
    field = kernels.pad(np.where(mask, local_ppm, 0).astype(np.float32), grid)
    chi = kernels.irfftn(kernels.rfftn(field) * inv.astype(np.float32), grid)
    return (kernels.crop(chi, shape) * mask).astype(np.float32)


def tikhonov(local_ppm, mask, voxel_size_mm, b0_dir=(0, 0, 1), lambda_: float = 0.05) -> np.ndarray:
    """Closed-form Tikhonov (L2) inversion χ = F⁻¹[D·F(φ)/(D² + λ)] (Bilgic et al. 2014, MRM 72:1444, eq. 3)."""
    shape = local_ppm.shape
    grid = _grid(shape, voxel_size_mm)
    d = kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)
    field = kernels.pad(np.where(mask, local_ppm, 0).astype(np.float32), grid)
    chi = kernels.irfftn(kernels.rfftn(field) * (d / (d * d + lambda_)), grid)
    return (kernels.crop(chi, shape) * mask).astype(np.float32)


def _gradient(x, voxel_size_mm):
    """Forward differences with periodic boundary, per mm; shape (3, X, Y, Z)."""
    return np.stack([(np.roll(x, -1, axis=a) - x) / float(voxel_size_mm[a]) for a in range(3)])


def _gradient_adjoint(g, voxel_size_mm):
    """Adjoint of :func:`_gradient` (negative backward divergence)."""
    out = np.zeros(g.shape[1:], np.float32)
    for a in range(3):
        out += (np.roll(g[a], 1, axis=a) - g[a]) / float(voxel_size_mm[a])
    return out


def _gradient_symbol_sq(grid, voxel_size_mm):
    """|Ĝ(k)|² of the forward-difference gradient: Σ_a (2 − 2cos(2π k_a Δ_a))/Δ_a²."""
    ks = kernels.k_grid(grid, voxel_size_mm)
    total = 0
    for a in range(3):
        delta = float(voxel_size_mm[a])
        total = total + (2.0 - 2.0 * np.cos(2 * np.pi * ks[a] * delta)) / delta**2
    return np.asarray(total, dtype=np.float32)


def admm_inversion(
    local_ppm,
    mask,
    voxel_size_mm,
    b0_dir=(0, 0, 1),
    *,
    regulariser: str = "tv",
    alpha: float = 3e-4,
    weight: np.ndarray | None = None,
    iterations: int = 60,
    tolerance: float = 1e-3,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Weighted-linear ADMM dipole inversion with TV or L1 regularisation.

    Solves min_χ ½‖W(F⁻¹DFχ − φ)‖² + α‖Rχ‖₁ with R the finite-difference gradient (``"tv"``; Bilgic et
    al. 2014, MRM 72:1444) or the identity (``"l1"``, sparsity of χ), by the variable splitting of the
    FANSI linear solver (Milovic et al. 2018, MRM 80:814, Appendix): z = Rχ, v = F⁻¹DFχ, so that every
    step is closed-form (a k-space division, a soft threshold, a voxel-wise weighted average).

    Parameters
    ----------
    local_ppm, mask : (X, Y, Z) local field in ppm and its validity mask.
    weight : optional (X, Y, Z) data weight W (e.g. normalised magnitude); defaults to the mask.
    alpha : regularisation weight (ppm·mm for TV).
    """
    shape = local_ppm.shape
    grid = _grid(shape, voxel_size_mm)
    d = kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)
    w = mask.astype(np.float32) if weight is None else (weight * mask).astype(np.float32)
    w2 = kernels.pad(w * w, grid)
    phi = kernels.pad(np.where(mask, local_ppm, 0).astype(np.float32), grid)
    mu1 = 100.0 * alpha
    mu2 = 1.0
    use_tv = regulariser == "tv"
    if use_tv:
        reg_sq = _gradient_symbol_sq(grid, voxel_size_mm)
        apply_r = lambda x: _gradient(x, voxel_size_mm)  # noqa: E731
        apply_rt = lambda g: _gradient_adjoint(g, voxel_size_mm)  # noqa: E731
    elif regulariser == "l1":
        reg_sq = np.float32(1.0)
        apply_r = lambda x: x[None]  # noqa: E731
        apply_rt = lambda g: g[0]  # noqa: E731
    else:
        raise ValueError(f"unknown regulariser {regulariser!r}; use 'tv' or 'l1'")
    denom = (mu1 * reg_sq + mu2 * d * d).astype(np.float32)
    denom[denom == 0] = 1.0

    chi = np.zeros(grid, np.float32)
    dchi = np.zeros(grid, np.float32)
    z = apply_r(chi)
    s1 = np.zeros_like(z)
    v = phi.copy()
    s2 = np.zeros(grid, np.float32)
    threshold = alpha / mu1
    for it in range(iterations):
        numerator = mu1 * kernels.rfftn(apply_rt(z - s1)) + mu2 * d * kernels.rfftn(v - s2)
        chi_k = numerator / denom
        chi_new = kernels.irfftn(chi_k, grid).astype(np.float32)
        dchi = kernels.irfftn(chi_k * d, grid).astype(np.float32)
        change = float(np.linalg.norm(chi_new - chi) / max(np.linalg.norm(chi_new), 1e-12))
        chi = chi_new
        rchi = apply_r(chi)
        y = rchi + s1
        z = np.sign(y) * np.maximum(np.abs(y) - threshold, 0.0)
        s1 = y - z
        v = (w2 * phi + mu2 * (dchi + s2)) / (w2 + mu2)
        s2 = s2 + dchi - v
        report(progress, (it + 1) / iterations, f"{regulariser.upper()} iteration {it + 1}")
        if it > 4 and change < tolerance:
            break
    return (kernels.crop(chi, shape) * mask).astype(np.float32)


def star_qsm(
    local_ppm,
    mask,
    voxel_size_mm,
    b0_dir=(0, 0, 1),
    *,
    alpha_strong: float = 2e-3,
    alpha_tv: float = 3e-4,
    iterations: int = 20,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Two-level inversion in the spirit of STAR-QSM (Wei et al. 2015, NMR Biomed 28:1294).

    Level 1 recovers the strong, sparse sources (haematoma, calcification, veins) with a heavily weighted
    L1 penalty on χ, so that their streaks are not spread into the surroundings; level 2 inverts the
    field that remains after removing level 1's field, with light TV regularisation, for the weak
    tissue contrast. χ = χ₁ + χ₂. This is this package's formulation, not STI Suite's code.
    """
    half = None if progress is None else (lambda f, m: progress(0.5 * f, m))
    strong = admm_inversion(
        local_ppm, mask, voxel_size_mm, b0_dir, regulariser="l1", alpha=alpha_strong,
        iterations=iterations, progress=half,
    )
    residual = np.where(mask, local_ppm - forward_field(strong, voxel_size_mm, b0_dir, pad=True), 0)
    rest = None if progress is None else (lambda f, m: progress(0.5 + 0.5 * f, m))
    weak = admm_inversion(
        residual, mask, voxel_size_mm, b0_dir, regulariser="tv", alpha=alpha_tv,
        iterations=iterations, progress=rest,
    )
    report(progress, 1.0, "STAR-QSM done")
    return (strong + weak).astype(np.float32)
