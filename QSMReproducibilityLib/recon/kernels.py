"""Fourier-domain kernels shared by every reconstruction step: dipole and spherical mean value (SMV).

All kernels are built on a grid in physical k units (cycles/mm), so anisotropic voxels and an oblique
B0 direction are handled exactly. Transforms use ``scipy.fft`` real-to-complex FFTs with worker threads;
grids are padded to fast FFT sizes. The grid handling the steps share lives here too: fast sizes,
zero-padding and cropping, and the mask's bounding box that each step solves on.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft

FFT_WORKERS = max(1, os.cpu_count() or 1)


def fast_shape(shape, pad_voxels=(0, 0, 0)) -> tuple[int, int, int]:
    """Smallest shape >= ``shape + 2*pad`` whose sizes are fast for ``scipy.fft`` (5-smooth, even)."""
    out = []
    for n, p in zip(shape, pad_voxels):
        m = sfft.next_fast_len(int(n) + 2 * int(p), real=True)
        while m % 2:
            m = sfft.next_fast_len(m + 1, real=True)
        out.append(m)
    return tuple(out)


def pad(volume: np.ndarray, shape, dtype=None) -> np.ndarray:
    """Zero-pad ``volume`` symmetrically to ``shape`` (see :func:`crop` for the inverse), as ``dtype``."""
    out = np.zeros(tuple(shape), volume.dtype if dtype is None else dtype)
    crop(out, volume.shape)[...] = volume
    return out


def crop(volume: np.ndarray, shape) -> np.ndarray:
    """Central crop of ``volume`` back to ``shape``."""
    before = [(n - s) // 2 for s, n in zip(shape, volume.shape)]
    return volume[tuple(slice(b, b + s) for b, s in zip(before, shape))]


def mask_bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """Slices of the smallest box holding every voxel of ``mask`` (the whole volume if it is empty)."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1) if hits.size else slice(None))
    return tuple(box)


def rfftn(volume: np.ndarray) -> np.ndarray:
    return sfft.rfftn(volume, workers=FFT_WORKERS)


def irfftn(spectrum: np.ndarray, shape, overwrite: bool = False) -> np.ndarray:
    """Inverse real FFT; with ``overwrite`` the spectrum may be destroyed (saves a copy of it)."""
    return sfft.irfftn(spectrum, s=shape, workers=FFT_WORKERS, overwrite_x=overwrite)


def apply_k(volume: np.ndarray, kernel_k: np.ndarray) -> np.ndarray:
    """Periodic convolution of a real volume by a kernel given on the real-FFT grid: F⁻¹[K̂ · F(volume)]."""
    spectrum = rfftn(volume)
    spectrum *= kernel_k
    return irfftn(spectrum, volume.shape, overwrite=True)


def k_grid(shape, voxel_size_mm, real: bool = True):
    """k-space coordinates in cycles/mm for an FFT of ``shape`` (last axis halved when ``real``)."""
    freqs = [sfft.fftfreq(n, d=float(d)) for n, d in zip(shape, voxel_size_mm)]
    if real:
        freqs[-1] = sfft.rfftfreq(shape[-1], d=float(voxel_size_mm[-1]))
    return np.meshgrid(*freqs, indexing="ij", sparse=True)


def dipole_kernel(shape, voxel_size_mm, b0_dir=(0.0, 0.0, 1.0), real: bool = True) -> np.ndarray:
    """Unit dipole response in k-space, D(k) = 1/3 − (k·b̂)²/|k|² with D(0) = 0.

    Salomir et al. 2003, Concepts Magn Reson B 19:26, eq. 9; Marques & Bowtell 2005, eq. 2.
    ``b0_dir`` is the B0 direction in the voxel frame (it need not be normalised). The field
    perturbation (in units of B0, i.e. ppm for χ in ppm) is ifft(D · fft(χ)).
    """
    b = np.asarray(b0_dir, dtype=np.float64)
    b = b / np.linalg.norm(b)
    kx, ky, kz = k_grid(shape, voxel_size_mm, real=real)
    k2 = kx**2 + ky**2 + kz**2
    kb = kx * b[0] + ky * b[1] + kz * b[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 / 3.0 - kb**2 / k2
    d[0, 0, 0] = 0.0
    return d.astype(np.float32)


def sphere_kernel(shape, voxel_size_mm, radius_mm: float) -> np.ndarray:
    """Normalised spherical mean value (SMV) kernel in image space, centred at index 0 (FFT origin).

    The ball is built in its own small box and placed with wrap-around indices, so the cost does not
    grow with the grid.
    """
    half = sphere_half_widths(shape, voxel_size_mm, radius_mm)
    offsets = [np.arange(-h, h + 1) for h in half]
    x, y, z = np.meshgrid(*[o * float(d) for o, d in zip(offsets, voxel_size_mm)], indexing="ij", sparse=True)
    ball = ((x**2 + y**2 + z**2) <= radius_mm**2).astype(np.float32)
    ball /= ball.sum()
    kernel = np.zeros(shape, np.float32)
    kernel[np.ix_(*[o % n for o, n in zip(offsets, shape)])] = ball
    return kernel


def sphere_half_widths(shape, voxel_size_mm, radius_mm: float) -> list[int]:
    """Voxels the SMV sphere reaches on each side of its centre along each axis (capped by the grid)."""
    return [min(int(np.floor(radius_mm / float(d))), (n - 1) // 2) for n, d in zip(shape, voxel_size_mm)]


def smv_kernel_k(shape, voxel_size_mm, radius_mm: float) -> np.ndarray:
    """Fourier transform of the SMV kernel (real, since the sphere is symmetric)."""
    return rfftn(sphere_kernel(shape, voxel_size_mm, radius_mm)).real.astype(np.float32)


def laplacian_k(shape, voxel_size_mm) -> np.ndarray:
    """−4π²|k|² (the continuous Laplacian's symbol, k in cycles/mm), float32 on the real-FFT grid."""
    kx, ky, kz = (np.float32(-4.0 * np.pi**2) * (k * k).astype(np.float32) for k in k_grid(shape, voxel_size_mm))
    return (kx + ky) + kz
