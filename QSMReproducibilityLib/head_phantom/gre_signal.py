"""The head's field and multi-echo GRE signal: dipole field with the body outside the slab, shim, coil
sensitivity and noise (:func:`simulate_head`)."""

from __future__ import annotations

import math

import numpy as np

from ..recon import hz_per_ppm
from ..recon.inversion import forward_field
from .assembly import STUDY_TE_S, FieldSources, HeadPhantom, separable_interp
from .tissues import LESION_SIGNAL, TISSUE, WM

HEAD_CENTRE_MM = (0.0, -16.0, 6.0)
"""Centre of the cranial cavity: where the receive sensitivity is 1 and the SNR is defined."""
COIL_COUNT = 32
COIL_LOOP_RADIUS_MM = 50.0
_COIL_HELMET = ((0.0, -16.0, 4.0), (100.0, 120.0, 112.0))


IMAGE_CORRECTION_MM = (4.0, 8.0)
"""Block sizes (full-resolution part, coarse outer part) of the copies on which the field of the FFT
convolutions' periodic images is estimated."""


def _block_mean(volume, factors):
    """Mean over blocks of ``factors`` voxels (the volume zero-padded at the end to whole blocks)."""
    shape = [int(math.ceil(n / f)) * f for n, f in zip(volume.shape, factors)]
    padded = np.zeros(shape, np.float32)
    padded[tuple(slice(0, n) for n in volume.shape)] = volume
    c = [n // f for n, f in zip(shape, factors)]
    return padded.reshape(c[0], factors[0], c[1], factors[1], c[2], factors[2]).mean(axis=(1, 3, 5))


def _periodic_image_field(chi, voxel_mm, axes, b0_dir, block_mm):
    """Field that the periodic copies of the 2×-padded FFT convolution of ``chi`` add (ppm), on a coarse
    grid: returns (field, its axes). It is smooth over the object (the copies lie a padding width away),
    so blocks of ``block_mm`` estimate it well; it is subtracted from the convolution."""
    from ..recon import kernels

    factors = [max(1, int(round(block_mm / v))) for v in voxel_mm]
    coarse = _block_mean(chi, factors)
    cvox = [v * f for v, f in zip(voxel_mm, factors)]
    fine_grid = kernels.fast_shape(chi.shape, [n // 2 for n in chi.shape])
    period = [max(int(round(g * v / c)), n) for g, v, c, n in zip(fine_grid, voxel_mm, cvox, coarse.shape)]
    periodic = forward_field(kernels.pad(coarse, period), cvox, b0_dir, pad=False)
    periodic = kernels.crop(periodic, coarse.shape)
    isolated = kernels.crop(forward_field(kernels.pad(coarse, [2 * n for n in coarse.shape]), cvox, b0_dir),
                            coarse.shape)
    centres = []
    for a, f, n in zip(axes, factors, coarse.shape):
        a = np.asarray(a, float)
        step = a[1] - a[0] if len(a) > 1 else 1.0
        centres.append(a[0] + (np.arange(n) * f + (f - 1) / 2.0) * step)
    return periodic - isolated, tuple(centres)


def dipole_field_ppm(phantom: HeadPhantom, b0_dir=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Field perturbation of the whole body's χ on the slab, before shimming.

    The part of χ within :data:`TAPER_MM` of the slab (weighted by a raised-cosine taper in z) is
    convolved with the dipole kernel at full resolution (:func:`forward_field`, zero-padded to twice the
    size); the rest of the body (vertex, neck, shoulders, weighted by one minus the taper) on the coarse
    :data:`FAR_VOXEL_MM` grid, whose field is interpolated (trilinear) onto the slab. Both parts are
    χ − χ_air, so the zero padding is air. The field of each part's periodic copies (a few % of the field,
    smooth) is estimated on blocks of :data:`IMAGE_CORRECTION_MM` and removed.

    With an oblique B0 the FFT dipole kernel is discontinuous across the edge of k-space and sharp edges
    ring (qsm-forward's kernel does the same), so the field then depends on the grid by 1–3 %.

    Parameters
    ----------
    phantom : from :func:`make_head`.
    b0_dir : (3,) B0 direction in the voxel frame (need not be normalised).

    Returns
    -------
    (X, Y, Z) float32, ppm of B0.
    """
    src = phantom.sources
    near_axes = _near_axes(src)
    near = forward_field(src.near_chi, src.near_voxel_mm, b0_dir)
    images, image_axes = _periodic_image_field(src.near_chi, src.near_voxel_mm, near_axes, b0_dir,
                                               IMAGE_CORRECTION_MM[0])
    field = near[src.slab_in_near] - separable_interp(images, image_axes, src.slab_axes)
    far = forward_field(src.far_chi, src.far_voxel_mm, b0_dir)
    images, image_axes = _periodic_image_field(src.far_chi, src.far_voxel_mm, src.far_axes, b0_dir,
                                               IMAGE_CORRECTION_MM[1])
    field += separable_interp(far, src.far_axes, src.slab_axes) - separable_interp(images, image_axes, src.slab_axes)
    return field.astype(np.float32)


def _near_axes(src: FieldSources):
    """Axes (mm) of the full-resolution grid that holds the slab."""
    out = []
    for a, s, n, v in zip(src.slab_axes, src.slab_in_near, src.near_chi.shape, (-src.near_voxel_mm[0],
                                                                                src.near_voxel_mm[1],
                                                                                src.near_voxel_mm[2])):
        out.append(a[0] + (np.arange(n) - s.start) * v)
    return tuple(out)


def shim_fit(field_ppm: np.ndarray, mask: np.ndarray, axes_mm, order: int = 2) -> np.ndarray:
    """Least-squares fit of solid harmonics up to ``order`` over a mask, as a scanner's shim removes them.

    Parameters
    ----------
    field_ppm : (X, Y, Z) field (ppm).
    mask : (X, Y, Z) bool, the shim volume.
    axes_mm : RAS coordinates (mm) of the voxel centres along the three axes (y, x, z).
    order : 0 (frequency), 1 (linear) or 2 (the five second-order terms as well).

    Returns
    -------
    (X, Y, Z) float32, the fitted field (ppm) on the whole grid.
    """
    ay, ax, az = (np.asarray(v, float) / 100.0 for v in axes_mm)
    x, y, z = ax[None, :, None], ay[:, None, None], az[None, None, :]
    idx = np.nonzero(mask)
    sample = [np.broadcast_to(t, (idx[0].size,)) for t in _harmonics(x[0, idx[1], 0], y[idx[0], 0, 0],
                                                                     z[0, 0, idx[2]], order)]
    coef, *_ = np.linalg.lstsq(np.stack(sample, axis=1)[::7], field_ppm[idx][::7].astype(float), rcond=None)
    fit = np.zeros(mask.shape)
    for c, term in zip(coef, _harmonics(x, y, z, order)):
        fit += c * term
    return fit.astype(np.float32)


def _harmonics(x, y, z, order):
    """Solid harmonics up to second order (unnormalised) of broadcastable coordinates."""
    terms = [np.float64(1.0)]
    if order >= 1:
        terms += [x, y, z]
    if order >= 2:
        terms += [x * y, x * z, y * z, x * x - y * y, 2 * z * z - x * x - y * y]
    return terms


def _coil_centres():
    """Loop centres on a helmet around the head (a Fibonacci lattice on its cap above the neck)."""
    (c, a) = _COIL_HELMET
    k = np.arange(COIL_COUNT) + 0.5
    zc = 1.0 - k / COIL_COUNT * 1.6  # from the top down to 60 % below the equator
    r = np.sqrt(1 - zc**2)
    phi = np.pi * (1 + math.sqrt(5)) * k
    return np.stack([c[0] + a[0] * r * np.cos(phi), c[1] + a[1] * r * np.sin(phi), c[2] + a[2] * zc], axis=1)


def receive_sensitivity(axes_mm) -> np.ndarray:
    """Root-sum-of-squares receive sensitivity of a 32-loop head array.

    Each loop of radius a = :data:`COIL_LOOP_RADIUS_MM` at distance d contributes (a²/(a² + d²))^(3/2)
    (the on-axis field of a current loop); the loops sit on a helmet around the head. The combination
    is 1 at :data:`HEAD_CENTRE_MM` and about 2–2.5 at the scalp. It is evaluated on every fourth voxel
    in-plane and every second slice and interpolated.

    Parameters
    ----------
    axes_mm : RAS coordinates (mm) of the voxel centres along the three axes (y, x, z), as
        :attr:`HeadPhantom.axes_mm`.

    Returns
    -------
    (X, Y, Z) float32, relative sensitivity.
    """
    ay, ax, az = (np.asarray(a, float) for a in axes_mm)
    sub = [a[np.unique(np.r_[np.arange(0, len(a), step), len(a) - 1])] if len(a) > 2 else a
           for a, step in ((ay, 4), (ax, 4), (az, 2))]
    y, x, z = sub[0][:, None, None], sub[1][None, :, None], sub[2][None, None, :]
    a2 = COIL_LOOP_RADIUS_MM**2

    def rss(px, py, pz):
        total = 0.0
        for cx, cy, cz in _coil_centres():
            d2 = (px - cx) ** 2 + (py - cy) ** 2 + (pz - cz) ** 2
            total = total + (a2 / (a2 + d2)) ** 3
        return np.sqrt(total)

    coarse = rss(x, y, z) / rss(*HEAD_CENTRE_MM)
    return separable_interp(coarse, sub, (ay, ax, az))


def phase_offset(axes_mm) -> np.ndarray:
    """Smooth transmit/receive phase φ0 (radians, (X, Y, Z) float32) on the grid of ``axes_mm`` (mm)."""
    ay, ax, az = axes_mm
    x, y, z = ax[None, :, None], ay[:, None, None], az[None, None, :]
    return (0.6 + 0.004 * x - 0.003 * y + 0.002 * z + 2e-5 * (x**2 + y**2) - 1e-5 * z**2).astype(np.float32)


def simulate_head(phantom: HeadPhantom, *, te_s=STUDY_TE_S, b0_tesla: float = 3.0, b0_dir=(0.0, 0.0, 1.0),
                  snr: float = 40.0, seed: int = 0, shim_order: int | None = 2):
    """Multi-echo GRE magnitude and phase of the phantom.

    Parameters
    ----------
    phantom : from :func:`make_head`.
    te_s : echo times (s).
    b0_tesla : field strength (T).
    b0_dir : B0 direction in the voxel frame ((0, 0, 1) is along the slab normal, RAS z); tilt it for an
        oblique acquisition.
    snr : first-echo white-matter signal at :data:`HEAD_CENTRE_MM` (receive sensitivity 1) over the noise
        standard deviation of each of the real and imaginary channels.
    seed : noise seed.
    shim_order : solid harmonics up to this order (0, 1, 2) are fitted over the brain mask and removed from
        the field, as the scanner's shim does; None keeps the unshimmed field.

    Returns
    -------
    magnitude : (X, Y, Z, E) float32.
    phase : (X, Y, Z, E) float32, radians, wrapped to (−π, π].
    field_ppm : (X, Y, Z) float32, the total field (ppm of B0) that made the phase: the dipole field of χ
        after the shim, without the chemical shift of fat.
    """
    field_ppm = dipole_field_ppm(phantom, b0_dir)
    if shim_order is not None:
        field_ppm -= shim_fit(field_ppm, phantom.brain_mask, phantom.axes_mm, shim_order)
    te = np.asarray(te_s, float)
    hz = np.float32(hz_per_ppm(b0_tesla))
    freq_hz = (field_ppm + phantom.chemical_shift_ppm) * hz
    b1 = receive_sensitivity(phantom.axes_mm)
    phi0 = phase_offset(phantom.axes_mm)
    wm = TISSUE[WM]
    sigma = np.float32(wm.m0 * math.exp(-te[0] / wm.t2star_s) / snr)
    rng = np.random.default_rng(seed)
    shape = phantom.shape
    magnitude = np.empty(shape + (len(te),), np.float32)
    phase = np.empty(shape + (len(te),), np.float32)
    m0b1 = phantom.m0 * b1
    for e, t in enumerate(te):
        envelope = m0b1 * np.exp(np.float32(-t) / phantom.t2star_s)
        for truth in phantom.lesions:
            if not truth._background:
                continue
            idx, occ, m0_bg, t2_bg = truth._background
            m_les, t_les = LESION_SIGNAL[truth.lesion.kind]
            mix = (1 - occ) * m0_bg * np.exp(-t / t2_bg) + occ * m_les * math.exp(-t / t_les)
            envelope.ravel()[idx] = b1.ravel()[idx] * mix
        angle = phi0 + np.float32(2 * np.pi * t) * freq_hz
        re = envelope * np.cos(angle) + sigma * rng.standard_normal(shape, np.float32)
        im = envelope * np.sin(angle) + sigma * rng.standard_normal(shape, np.float32)
        magnitude[..., e] = np.hypot(re, im)
        phase[..., e] = np.arctan2(im, re)
    return magnitude, phase, field_ppm


def local_field_ppm(phantom: HeadPhantom, b0_dir=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Field of the χ inside the brain mask alone: what background-field removal should leave.

    Parameters
    ----------
    phantom : from :func:`make_head`.
    b0_dir : (3,) B0 direction in the voxel frame.

    Returns
    -------
    (X, Y, Z) float32, ppm of B0 (χ relative to CSF, so CSF carries no local field).
    """
    return forward_field(np.where(phantom.brain_mask, phantom.chi_ppm, 0).astype(np.float32), phantom.voxel_mm, b0_dir)
