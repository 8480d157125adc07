"""Periodic finite differences shared by the regularised steps: the gradient, its adjoint and its k-space symbol.

The gradient is the forward difference per mm with periodic boundary (the TV regulariser of Bilgic et al.
2014, MRM 72:1444, and of the ADMM/FANSI splitting, Milovic et al. 2018, MRM 80:814); periodic, so that
:func:`gradient_symbol_sq` diagonalises GᵀG on the FFT grid.
"""

from __future__ import annotations

import numpy as np

from . import kernels


def _first_last(axis: int):
    """Index tuples selecting the first and the last plane along ``axis``."""

    def plane(index):
        sel = [slice(None)] * 3
        sel[axis] = slice(index, index + 1) if index >= 0 else slice(index, None)
        return tuple(sel)

    return plane(0), plane(-1)


def _difference(x, axis: int, out, forward: bool):
    """Periodic first difference of C-contiguous ``x`` along ``axis``, into C-contiguous ``out``.

    Forward: out[i] = x[i + e] − x[i]; backward: out[i] = x[i] − x[i − e]. The bulk is one shifted
    subtraction on the flattened arrays (contiguous, fast for every axis); the planes where the flat
    neighbour is not the periodic one are then rewritten.
    """
    step = int(np.prod(x.shape[axis + 1:]))
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    first, last = _first_last(axis)
    if forward:
        np.subtract(flat_x[step:], flat_x[:-step], out=flat_out[:-step])
        np.subtract(x[first], x[last], out=out[last])
    else:
        np.subtract(flat_x[step:], flat_x[:-step], out=flat_out[step:])
        np.subtract(x[first], x[last], out=out[first])
    return out


def gradient(x, voxel_size_mm, out=None):
    """Forward differences with periodic boundary, per mm; shape (3, X, Y, Z), written into ``out``."""
    x = np.ascontiguousarray(x)
    if out is None:
        out = np.empty((3,) + x.shape, np.float32)
    for a in range(3):
        _difference(x, a, out[a], forward=True)
        out[a] *= np.float32(1.0 / float(voxel_size_mm[a]))
    return out


def gradient_adjoint(g, voxel_size_mm, out=None):
    """Adjoint of :func:`gradient`: −Σ_a (g_a[i] − g_a[i − e_a])/Δ_a (the negative divergence)."""
    g = np.ascontiguousarray(g)
    if out is None:
        out = np.empty(g.shape[1:], np.float32)
    work = np.empty(g.shape[1:], np.float32)  # transient: the FFT buffers it shares memory with are free now
    for a in range(3):
        _difference(g[a], a, work, forward=False)
        if a == 0:
            np.multiply(work, np.float32(-1.0 / float(voxel_size_mm[a])), out=out)
        else:
            work *= np.float32(-1.0 / float(voxel_size_mm[a]))
            out += work
    return out


def gradient_symbol_sq(grid, voxel_size_mm):
    """|Ĝ(k)|² of the forward-difference gradient: Σ_a (2 − 2cos(2π k_a Δ_a))/Δ_a², float32."""
    terms = [((2.0 - 2.0 * np.cos(2 * np.pi * k * float(delta))) / float(delta) ** 2).astype(np.float32)
             for k, delta in zip(kernels.k_grid(grid, voxel_size_mm), voxel_size_mm)]
    return (terms[0] + terms[1]) + terms[2]
