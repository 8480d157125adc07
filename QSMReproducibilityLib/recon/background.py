"""Background field removal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ReconstructionError
from ..progress import ProgressCallback, notify
from . import kernels

VSHARP_RADII_MM = (12.0, 10.0, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0)
PDF_PAD_MM = 20.0
"""Room around the mask's box in which :func:`pdf` may place background sources."""
TFI_PAD_MM = 10.0
"""Room around the mask's box in which :func:`tfi` places background sources: more room leaves the lesion and
deep-grey figures of the realistic head unchanged, on a larger FFT grid."""
TFI_PRECONDITIONER = 10.0
"""P_B of :func:`tfi`: the scale of background χ against tissue χ (Liu et al. 2017 use 30 on their data);
measured on the realistic head (``Testing/benchmarks/bench_skull_base.py``)."""
TFI_ITERATIONS = 100
"""CG iterations of :func:`tfi`; stopping early is its regularisation."""


@dataclass(frozen=True)
class LocalField:
    """Local (tissue) field in the same unit as the input and the mask it is valid in."""

    field: np.ndarray
    mask: np.ndarray


def vsharp(
    total_field: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    radii_mm=VSHARP_RADII_MM,
    threshold: float = 0.05,
    progress: ProgressCallback | None = None,
) -> LocalField:
    """Variable-kernel SHARP (Wu et al. 2012, MRM 67:137; Li et al. 2011, NeuroImage 55:1645).

    Background fields are harmonic inside the mask, so the spherical-mean-value (SMV) filter leaves them
    unchanged: (δ − S_r) * f removes them (Schweser et al. 2011, NeuroImage 54:2789, eq. 6). Each voxel
    takes the largest radius whose sphere fits inside the mask; the result is deconvolved with the
    largest kernel, (δ − S_rmax)⁻¹, truncated where |1 − Ŝ_rmax| < ``threshold`` (TSVD, eq. 9).

    Parameters
    ----------
    total_field : (X, Y, Z) field (any unit; ppm or Hz), zero or arbitrary outside ``mask``.
    mask : (X, Y, Z) bool region of valid phase.
    voxel_size_mm : voxel sizes in mm.
    radii_mm : SMV radii, largest first (the study used up to 12 mm).
    threshold : TSVD threshold of the deconvolution (0.05 as in STI Suite).

    Returns
    -------
    LocalField with the local field and the eroded mask (voxels with at least the smallest sphere inside).
    """
    mask = mask.astype(bool)
    if not mask.any():
        raise ReconstructionError("the brain mask is empty; choose a lower mask threshold")
    # Only the mask's bounding box carries information. The spheres are tested and the high-pass taken
    # on the box itself (rounded up to a fast FFT size, no padding): a sphere that would wrap around
    # reaches outside the box, where the mask is empty, so such centres are excluded explicitly. Only
    # the deconvolution, which acts on the whole volume, runs on a grid padded by the largest radius.
    box = kernels.mask_bounding_box(mask)
    full_shape = total_field.shape
    total_field, mask = total_field[box], mask[box]
    radii = sorted((float(r) for r in radii_mm), reverse=True)
    shape = total_field.shape
    grid = kernels.fast_shape(shape)
    field_k = kernels.rfftn(kernels.pad(np.where(mask, total_field, np.float32(0)), grid, dtype=np.float32))
    mask_k = kernels.rfftn(kernels.pad(mask, grid, dtype=np.float32))
    local = np.zeros(shape, np.float32)
    done = np.zeros(shape, bool)
    for i, radius in enumerate(radii):
        notify(progress, i / (len(radii) + 1), f"V-SHARP radius {radius:g} mm")
        s_k = kernels.smv_kernel_k(grid, voxel_size_mm, radius)
        spectrum = mask_k * s_k
        new = kernels.crop(kernels.irfftn(spectrum, grid), shape) > 0.999
        for axis, half in enumerate(kernels.sphere_half_widths(grid, voxel_size_mm, radius)):
            edge = [slice(None)] * 3
            edge[axis] = np.r_[:half, shape[axis] - half:shape[axis]] if half else slice(0, 0)
            new[tuple(edge)] = False  # the sphere leaves the box: not inside the mask
        new &= ~done
        if new.any():
            np.multiply(field_k, 1.0 - s_k, out=spectrum)
            local[new] = kernels.crop(kernels.irfftn(spectrum, grid), shape)[new]
            done |= new
    if not done.any():
        raise ReconstructionError(
            f"the brain mask is too thin for V-SHARP: no voxel has a {radii[-1]:g} mm sphere inside it"
        )
    notify(progress, len(radii) / (len(radii) + 1), "V-SHARP deconvolution")
    padded = kernels.fast_shape(shape, [int(np.ceil(radii[0] / float(v))) + 1 for v in voxel_size_mm])
    kernel = 1.0 - kernels.smv_kernel_k(padded, voxel_size_mm, radii[0])
    inverse = np.where(np.abs(kernel) > threshold, 1.0 / np.where(kernel == 0, 1, kernel), 0.0).astype(np.float32)
    local = kernels.crop(kernels.apply_k(kernels.pad(local, padded), inverse), shape) * done
    notify(progress, 1.0, "V-SHARP done")
    local_full = np.zeros(full_shape, np.float32)
    done_full = np.zeros(full_shape, bool)
    local_full[box] = local
    done_full[box] = done
    return LocalField(local_full, done_full)


def _padded_dipole_problem(mask: np.ndarray, voxel_size_mm, b0_dir, pad_mm: float):
    """The mask's bounding box, the mask on it, the FFT grid padded by ``pad_mm`` and its dipole kernel."""
    if not mask.any():
        raise ReconstructionError("the brain mask is empty; choose another mask candidate")
    box = kernels.mask_bounding_box(mask)
    inside = mask[box]
    grid = kernels.fast_shape(inside.shape, [int(np.ceil(pad_mm / float(v))) for v in voxel_size_mm])
    return box, inside, grid, kernels.dipole_kernel(grid, voxel_size_mm, b0_dir)


def pdf(
    total_field: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    b0_dir=(0.0, 0.0, 1.0),
    *,
    weight: np.ndarray | None = None,
    pad_mm: float = PDF_PAD_MM,
    iterations: int = 50,
    tolerance: float = 1e-2,
    progress: ProgressCallback | None = None,
) -> LocalField:
    """Projection onto dipole fields (Liu et al. 2011, NMR Biomed 24:1129, eq. 2–3).

    The background field is taken to be the field of sources outside the mask M: the susceptibility
    χ_b on the complement of M (within the mask's box padded by ``pad_mm``) that best explains the
    field inside M, min ‖W M (f − F⁻¹D̂F(1−M)χ_b)‖², solved by conjugate gradients on the normal
    equations (four FFTs per iteration). The local field is M(f − F⁻¹D̂Fχ_b). Nothing is eroded, so the
    returned mask is ``mask`` itself. ``weight`` (e.g. the magnitude) defaults to 1 inside M.

    Parameters
    ----------
    total_field : (X, Y, Z) field in ppm of B0 (the dipole kernel is unitless, so any unit works).
    mask : (X, Y, Z) bool region of valid phase.
    b0_dir : B0 direction in the voxel frame.
    """
    from .solvers import conjugate_gradient

    mask = mask.astype(bool)
    box, inside, grid, d = _padded_dipole_problem(mask, voxel_size_mm, b0_dir, pad_mm)
    shape = inside.shape
    w = inside.astype(np.float32) if weight is None else (np.asarray(weight)[box] * inside).astype(np.float32)
    w2 = kernels.pad(w * w, grid)
    outside = ~kernels.pad(inside, grid)  # where background sources may be: everywhere but the mask

    def normal_operator(x):
        field = kernels.apply_k(np.where(outside, x, np.float32(0)), d)
        field *= w2
        out = kernels.apply_k(field, d)
        out[~outside] = 0
        return out

    field = kernels.pad(np.where(inside, total_field[box], np.float32(0)), grid, dtype=np.float32)
    rhs = kernels.apply_k(field * w2, d)
    rhs[~outside] = 0
    chi_b = conjugate_gradient(normal_operator, rhs, iterations=iterations, tolerance=tolerance,
                               progress=progress, label="PDF")
    local = kernels.crop(field - kernels.apply_k(chi_b, d), shape) * inside
    notify(progress, 1.0, "PDF done")
    local_full = np.zeros(total_field.shape, np.float32)
    local_full[box] = local
    return LocalField(local_full, mask.copy())


def tfi(
    total_field: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    b0_dir=(0.0, 0.0, 1.0),
    *,
    preconditioner: float = TFI_PRECONDITIONER,
    pad_mm: float = TFI_PAD_MM,
    iterations: int = TFI_ITERATIONS,
    progress: ProgressCallback | None = None,
) -> LocalField:
    """Background field from a preconditioned fit of the total field (the model of total field inversion).

    Total field inversion (Liu et al. 2017, Magn Reson Med 78:303, eqs. 4–8) explains the total field f
    by one susceptibility map over tissue and background alike, f = D χ, with χ = P y and the
    preconditioner P = 1 in the mask M and P_B outside it, so that the large background sources (bone,
    air, fat) and the weak tissue contrast are reached in the same number of iterations. Here that fit is
    used for the background alone: y minimises ‖M (f − D P y)‖² by conjugate gradients on the normal
    equations from y = 0, stopped after ``iterations`` (early stopping regularises, as in TFI's inner
    solver), and the local field is M (f − D (1 − M) P y). Unlike PDF (Liu et al. 2011), the sources
    inside M are fitted at the same time, so the field of a lesion at the mask's edge stays with the
    lesion instead of being explained by sources just outside; nothing is eroded. The local field is then
    inverted by the chosen method (TFI's own regularised χ inside M is not used).

    Parameters
    ----------
    total_field : (X, Y, Z) field in ppm of B0.
    mask : (X, Y, Z) bool region of valid phase.
    b0_dir : B0 direction in the voxel frame.
    preconditioner : P_B, the weight of background χ (1 in the mask).
    pad_mm : room around the mask's bounding box for background sources.
    iterations : conjugate-gradient iterations.
    """
    from .solvers import conjugate_gradient

    mask = mask.astype(bool)
    box, inside, grid, d = _padded_dipole_problem(mask, voxel_size_mm, b0_dir, pad_mm)
    shape = inside.shape
    measured = kernels.pad(inside, grid)
    p = np.where(measured, np.float32(1), np.float32(preconditioner))

    def normal_operator(y):
        field = kernels.apply_k(p * y, d)
        field *= measured
        out = kernels.apply_k(field, d)
        out *= p
        return out

    field = kernels.pad(np.where(inside, total_field[box], np.float32(0)), grid, dtype=np.float32)
    rhs = kernels.apply_k(field, d)
    rhs *= p
    y = conjugate_gradient(normal_operator, rhs, iterations=iterations, tolerance=0.0, progress=progress,
                           label="total-field fit")
    del rhs
    y *= p
    y[measured] = 0  # keep the background sources only
    local = kernels.crop(field - kernels.apply_k(y, d), shape) * inside
    notify(progress, 1.0, "background from the total-field fit done")
    local_full = np.zeros(total_field.shape, np.float32)
    local_full[box] = local
    return LocalField(local_full, mask.copy())


def _negative_laplacian(x: np.ndarray, inv_h2, interior: np.ndarray) -> np.ndarray:
    """−∇²x by the 7-point stencil with spacings h (``inv_h2`` = 1/h²), kept on ``interior`` only."""
    out = np.multiply(x, np.float32(2.0 * sum(inv_h2)), dtype=np.float32)
    for axis, w in enumerate(inv_h2):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        w = np.float32(w)
        out[lo] -= w * x[hi]
        out[hi] -= w * x[lo]
    out[~interior] = 0
    return out


def lbv(
    total_field: np.ndarray,
    mask: np.ndarray,
    voxel_size_mm,
    *,
    iterations: int = 2000,
    tolerance: float = 1e-4,
    progress: ProgressCallback | None = None,
) -> LocalField:
    """Laplacian boundary value background removal (Zhou et al. 2014, NMR Biomed 27:312, eqs. 3–5).

    The background field is harmonic inside the mask, so it solves Laplace's equation ∇²f_B = 0 there with
    the measured field as its value on the mask's boundary; the local field is f − f_B, zero on the
    boundary. Only the one-voxel boundary layer is lost. Solved by conjugate gradients on the 7-point
    Laplacian, first on a grid coarsened by two in-plane, whose solution starts the full-resolution one.
    """
    from scipy import ndimage

    from .solvers import conjugate_gradient

    mask = mask.astype(bool)
    if not mask.any():
        raise ReconstructionError("the brain mask is empty; choose another mask candidate")
    box = kernels.mask_bounding_box(mask)
    inside = np.pad(mask[box], 1)
    field = np.pad(np.where(mask[box], total_field[box], np.float32(0)).astype(np.float32), 1)
    interior = ndimage.binary_erosion(inside, ndimage.generate_binary_structure(3, 1))
    if not interior.any():
        raise ReconstructionError("the brain mask is too thin for LBV: no voxel lies inside its boundary")
    boundary_values = np.where(inside & ~interior, field, np.float32(0))
    inv_h2 = [1.0 / float(v) ** 2 for v in voxel_size_mm]
    # −∇²x = ∇²g on the interior, g = the field on the boundary; then f_B = x + g.
    rhs = -_negative_laplacian(boundary_values, inv_h2, interior)
    rhs[~interior] = 0
    notify(progress, 0.0, "LBV")
    background = conjugate_gradient(lambda p: _negative_laplacian(p, inv_h2, interior), rhs,
                                    iterations=iterations, tolerance=tolerance, progress=progress, label="LBV")
    background += boundary_values
    local = np.where(interior, field - background, np.float32(0))[1:-1, 1:-1, 1:-1]
    notify(progress, 1.0, "LBV done")
    local_full = np.zeros(total_field.shape, np.float32)
    mask_full = np.zeros(total_field.shape, bool)
    local_full[box] = local
    mask_full[box] = interior[1:-1, 1:-1, 1:-1]
    return LocalField(local_full, mask_full)
