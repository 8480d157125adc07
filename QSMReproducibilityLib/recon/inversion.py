"""Dipole inversion: local field (ppm) → susceptibility χ (ppm).

All methods share :func:`kernels.dipole_kernel` (physical k units, arbitrary B0 direction) and work on a
zero-padded fast-FFT grid so that the periodic convolution does not fold the field back onto the object.
"""

from __future__ import annotations

import functools

import numpy as np

from ..progress import ProgressCallback, notify
from . import differences, kernels

INVERSION_PAD_MM = 12.0
ITERATIVE_TIKHONOV_LAMBDA = 3e-3
ITERATIVE_TIKHONOV_TOLERANCE = 1e-2
"""Weight of the gradient penalty of :func:`iterative_tikhonov` (mm²), chosen on qsm-forward's cylinders."""


def _grid(shape, voxel_size_mm):
    pad_vox = [int(np.ceil(INVERSION_PAD_MM / float(v))) for v in voxel_size_mm]
    return kernels.fast_shape(shape, pad_vox)


def _on_mask_box(solver):
    """Run ``solver(local, mask, ...)`` on the mask's bounding box only and put the result back.

    Outside the mask the field carries no information and χ is set to zero, so solving on the box
    (padded by :data:`INVERSION_PAD_MM` on the FFT grid) gives the same problem on fewer voxels.
    """
    @functools.wraps(solver)
    def wrapped(local_ppm, mask, voxel_size_mm, *args, weight=None, **kwargs):
        box = kernels.mask_bounding_box(mask)
        if weight is not None:
            kwargs["weight"] = weight[box]
        chi = np.zeros(local_ppm.shape, np.float32)
        chi[box] = solver(local_ppm[box], mask[box], voxel_size_mm, *args, **kwargs)
        return chi

    return wrapped


def forward_field(chi_ppm: np.ndarray, voxel_size_mm, b0_dir=(0, 0, 1), pad: bool = True) -> np.ndarray:
    """Field perturbation (ppm of B0) of a susceptibility map, ifft(D·fft(χ)) (Marques & Bowtell 2005, eq. 2).

    With ``pad`` the volume is zero-padded to twice its size (rounded to fast FFT sizes) so the field is
    that of the object alone, not of its periodic copies.
    """
    shape = chi_ppm.shape
    grid = kernels.fast_shape(shape, [n // 2 for n in shape]) if pad else shape
    d = kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)
    field = kernels.apply_k(kernels.pad(chi_ppm, grid, dtype=np.float32), d)
    return kernels.crop(field, shape).astype(np.float32)


@_on_mask_box
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
    chi = kernels.apply_k(field, inv.astype(np.float32))
    return (kernels.crop(chi, shape) * mask).astype(np.float32)


@_on_mask_box
def tikhonov(local_ppm, mask, voxel_size_mm, b0_dir=(0, 0, 1), lambda_: float = 0.05) -> np.ndarray:
    """Closed-form Tikhonov (L2) inversion χ = F⁻¹[D·F(φ)/(D² + λ)] (Bilgic et al. 2014, MRM 72:1444, eq. 3)."""
    shape = local_ppm.shape
    grid = _grid(shape, voxel_size_mm)
    d = kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)
    field = kernels.pad(np.where(mask, local_ppm, 0).astype(np.float32), grid)
    chi = kernels.apply_k(field, d / (d * d + lambda_))
    return (kernels.crop(chi, shape) * mask).astype(np.float32)


@_on_mask_box
def iterative_tikhonov(
    local_ppm,
    mask,
    voxel_size_mm,
    b0_dir=(0, 0, 1),
    *,
    lambda_: float = ITERATIVE_TIKHONOV_LAMBDA,
    weight: np.ndarray | None = None,
    iterations: int = 40,
    tolerance: float = ITERATIVE_TIKHONOV_TOLERANCE,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Weighted Tikhonov inversion with a gradient penalty, solved iteratively by conjugate gradients.

    min_χ ‖W(F⁻¹DFχ − φ)‖² + λ‖Gχ‖² (Kressler et al. 2010, IEEE TMI 29:273, eq. 6, without their
    morphological prior; the weighted least-squares step that iLSQR solves with LSQR, Li et al. 2015,
    NeuroImage 108:111, eq. 4). The normal equations (F⁻¹D̂FW²F⁻¹D̂F + λGᵀG)χ = F⁻¹D̂FW²φ are symmetric
    positive definite; conjugate gradients solve them with four FFTs per iteration. Unlike the
    closed-form :func:`tikhonov`, the data term counts only voxels inside the mask (W = mask by default).

    ``lambda_`` is in mm² (G is per mm); see :data:`ITERATIVE_TIKHONOV_LAMBDA`.
    """
    from .solvers import conjugate_gradient

    grid, d, w2, phi = _padded_problem(local_ppm, mask, voxel_size_mm, b0_dir, weight)
    penalty = differences.gradient_symbol_sq(grid, voxel_size_mm)
    penalty *= np.float32(lambda_)

    def normal_operator(x):
        x_k = kernels.rfftn(x)
        spectrum = x_k * d
        data = kernels.irfftn(spectrum, grid)
        data *= w2
        spectrum = kernels.rfftn(data)
        del data
        spectrum *= d
        x_k *= penalty
        spectrum += x_k
        return kernels.irfftn(spectrum, grid)

    phi *= w2
    rhs = kernels.apply_k(phi, d)
    del phi
    chi = conjugate_gradient(normal_operator, rhs, iterations=iterations, tolerance=tolerance,
                             progress=progress, label="Tikhonov CG")
    return kernels.crop(chi, local_ppm.shape) * mask


def _admm_padded(phi, w2, d, grid, voxel_size_mm, *, regulariser, alpha, iterations, tolerance, progress):
    """ADMM iterations on the padded grid (see :func:`admm_inversion`); returns χ on the padded grid.

    Every step is closed-form (μ₂ = 1, μ₁ = 100α as in FANSI):

    * χ = F⁻¹[(μ₁ R̂ᴴ F(z − s₁) + D̂ F(v − s₂)) / (μ₁|R̂|² + D̂²)];
    * z = soft(Rχ + s₁, α/μ₁), and the new scaled dual s₁ = (Rχ + s₁) − z is the clipped part;
    * v = (F⁻¹D̂Fχ + s₂ + W²φ) / (W² + 1), s₂ ← s₂ + F⁻¹D̂Fχ − v.

    To save memory z is never stored: ``y`` holds Rχ + s₁, so z − s₁ = y − 2s₁; likewise ``v_s2`` holds
    v − s₂, and with unit weights (W = the mask, kept boolean) W²φ is φ itself. The iterates live in
    preallocated volumes; only the spectra and the FFTs' outputs are allocated, and freed, per iteration.
    """
    mu1 = np.float32(100.0 * alpha)
    threshold = np.float32(alpha / mu1)
    if regulariser == "tv":
        denom = differences.gradient_symbol_sq(grid, voxel_size_mm)
        denom *= mu1
        n_terms = 3
    elif regulariser == "l1":
        denom = np.full(d.shape, mu1, np.float32)
        n_terms = 1
    else:
        raise ValueError(f"unknown regulariser {regulariser!r}; use 'tv' or 'l1'")
    denom += d * d
    denom[denom == 0] = 1.0
    reg_filter = np.divide(mu1, denom, dtype=np.float32)
    data_filter = np.divide(d, denom, out=denom)
    del denom

    chi = np.zeros(grid, np.float32)
    y = np.zeros((n_terms,) + tuple(grid), np.float32)
    s1 = np.zeros_like(y)
    work = np.empty(grid, np.float32)
    v_s2 = phi.copy()  # v − s₂ with v = φ, s₂ = 0 to start
    s2 = np.zeros(grid, np.float32)
    unit_weights = w2.dtype == bool  # W = the mask: W²φ = φ (zero outside), 1/(W² + 1) = ½ inside, 1 outside
    if not unit_weights:
        w2_phi = w2 * phi
        inv_w2_plus = np.divide(np.float32(1.0), w2 + np.float32(1.0), dtype=np.float32)
    for it in range(iterations):
        y -= s1
        y -= s1  # z − s₁
        if regulariser == "tv":
            differences.gradient_adjoint(y, voxel_size_mm, out=work)
            chi_k = kernels.rfftn(work)
        else:
            chi_k = kernels.rfftn(y[0])
        chi_k *= reg_filter
        data_k = kernels.rfftn(v_s2)
        data_k *= data_filter
        chi_k += data_k
        del data_k
        dchi_k = chi_k * d
        chi_new = kernels.irfftn(chi_k, grid, overwrite=True)
        del chi_k
        dchi = kernels.irfftn(dchi_k, grid, overwrite=True)
        del dchi_k
        check = it > 4  # the stopping test is not applied to the first iterations: skip its cost there
        if check:
            np.subtract(chi_new, chi, out=work)
            change = float(np.linalg.norm(work.ravel()) / max(float(np.linalg.norm(chi_new.ravel())), 1e-12))
        chi = chi_new
        if regulariser == "tv":
            differences.gradient(chi, voxel_size_mm, out=y)
        else:
            y[0] = chi
        y += s1  # Rχ + s₁
        np.clip(y, -threshold, threshold, out=s1)  # the new scaled dual; z = y − s₁ is the soft threshold
        np.add(dchi, s2, out=work)
        if unit_weights:
            np.add(work, phi, out=v_s2)
            np.multiply(v_s2, np.float32(0.5), out=v_s2, where=w2)  # v
        else:
            np.add(work, w2_phi, out=v_s2)
            v_s2 *= inv_w2_plus  # v
        np.subtract(work, v_s2, out=s2)  # s₂ + F⁻¹D̂Fχ − v
        v_s2 -= s2
        del dchi
        notify(progress, (it + 1) / iterations, f"{regulariser.upper()} iteration {it + 1}")
        if check and change < tolerance:
            break
    return chi


def _padded_problem(local_ppm, mask, voxel_size_mm, b0_dir, weight):
    grid = _grid(local_ppm.shape, voxel_size_mm)
    d = kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)
    if weight is None:
        w2 = kernels.pad(mask.astype(bool), grid)  # unit weights: kept as the mask itself (less memory)
    else:
        w = (weight * mask).astype(np.float32)
        w2 = kernels.pad(w * w, grid)
    phi = kernels.pad(np.where(mask, local_ppm, np.float32(0)), grid, dtype=np.float32)
    return grid, d, w2, phi


@_on_mask_box
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
    grid, d, w2, phi = _padded_problem(local_ppm, mask, voxel_size_mm, b0_dir, weight)
    chi = _admm_padded(phi, w2, d, grid, voxel_size_mm, regulariser=regulariser, alpha=alpha,
                       iterations=iterations, tolerance=tolerance, progress=progress)
    return (kernels.crop(chi, local_ppm.shape) * mask).astype(np.float32)


@_on_mask_box
def star_qsm(
    local_ppm,
    mask,
    voxel_size_mm,
    b0_dir=(0, 0, 1),
    *,
    alpha_strong: float = 2e-3,
    alpha_tv: float = 3e-4,
    iterations: int = 10,
    weight: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Two-level inversion in the spirit of STAR-QSM (Wei et al. 2015, NMR Biomed 28:1294).

    Level 1 recovers the strong, sparse sources (haematoma, calcification, veins) with a heavily weighted
    L1 penalty on χ, so that their streaks are not spread into the surroundings; level 2 inverts the
    field that remains after removing level 1's field, with light TV regularisation, for the weak
    tissue contrast. χ = χ₁ + χ₂. This is this package's formulation, not STI Suite's code.
    """
    grid, d, w2, phi = _padded_problem(local_ppm, mask, voxel_size_mm, b0_dir, weight)
    half = None if progress is None else (lambda f, m: progress(0.5 * f, m))
    strong = _admm_padded(phi, w2, d, grid, voxel_size_mm, regulariser="l1", alpha=alpha_strong,
                          iterations=iterations, tolerance=1e-3, progress=half)
    residual = np.subtract(phi, kernels.apply_k(strong, d), out=phi)  # φ is not needed any more
    residual *= w2 != 0
    rest = None if progress is None else (lambda f, m: progress(0.5 + 0.5 * f, m))
    weak = _admm_padded(residual, w2, d, grid, voxel_size_mm, regulariser="tv",
                        alpha=alpha_tv, iterations=iterations, tolerance=1e-3, progress=rest)
    notify(progress, 1.0, "STAR-QSM done")
    weak += strong
    return kernels.crop(weak, local_ppm.shape) * mask
