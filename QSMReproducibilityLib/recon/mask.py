"""Candidate brain masks from the magnitude image.

The study generated nine masks with FSL BET at different fractional intensity thresholds and chose one
by eye. Here the candidates are intensity thresholds on the smoothed echo-combined magnitude at nine
fractions of its robust maximum, each kept to its largest connected component and hole-filled; the
person picks one (the default is the middle one) and the choice is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

STUDY_FRACTIONS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50)
"""Nine threshold fractions of the 99th-percentile magnitude, from permissive to strict."""


@dataclass(frozen=True)
class MaskCandidates:
    """Candidate masks, largest first; ``masks[i]`` was made at ``fractions[i]``."""

    fractions: tuple[float, ...]
    masks: tuple[np.ndarray, ...]
    default_index: int

    @property
    def default(self) -> np.ndarray:
        return self.masks[self.default_index]


def combined_magnitude(magnitude: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over echoes of an (X, Y, Z, E) magnitude; (X, Y, Z) input is returned as is."""
    if magnitude.ndim == 3:
        return magnitude.astype(np.float32)
    # One echo at a time: no 4-D temporaries (each echo is contiguous when stored echo-first).
    total = np.square(magnitude[..., 0], dtype=np.float32)
    square = np.empty_like(total)
    for e in range(1, magnitude.shape[-1]):
        np.square(magnitude[..., e], out=square, dtype=np.float32)
        total += square
    return np.sqrt(total, out=total)


def smoothed_magnitude(magnitude: np.ndarray, voxel_size_mm) -> np.ndarray:
    """Echo-combined magnitude smoothed by a ≈ 0.7 mm Gaussian (computed once for all candidates)."""
    sigma = [0.7 / float(v) for v in voxel_size_mm]
    return ndimage.gaussian_filter(combined_magnitude(magnitude), sigma)


def threshold_mask(smooth: np.ndarray, fraction: float) -> np.ndarray:
    """One candidate: smoothed magnitude > fraction × p99, largest component, holes filled in 3-D and per slice."""
    level = fraction * float(np.percentile(smooth[::2, ::2, :], 99.0))
    mask = smooth > level
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    del labels
    mask = fill_holes(mask)
    return fill_holes(mask, in_plane=True)


def fill_holes(mask: np.ndarray, in_plane: bool = False) -> np.ndarray:
    """Fill the holes of a 3-D mask, in 3-D or in every slice (third axis) separately.

    A hole is a background component that does not reach the border: the same result as
    ``scipy.ndimage.binary_fill_holes`` with face connectivity (per slice: applied to each 2-D slice),
    computed by labelling the background once rather than by iterated dilation.
    """
    structure = ndimage.generate_binary_structure(3, 1)
    if in_plane:
        structure[:, :, 0] = structure[:, :, 2] = False  # no connection between slices
    background, n = ndimage.label(~mask, structure)
    reaches_border = np.zeros(n + 1, bool)
    faces = [background[0], background[-1], background[:, 0], background[:, -1]]
    if not in_plane:
        faces += [background[:, :, 0], background[:, :, -1]]
    for face in faces:
        reaches_border[np.unique(face)] = True
    reaches_border[0] = True  # label 0 is the mask itself, kept below
    return ~reaches_border[background] | mask


def candidate_masks(magnitude: np.ndarray, voxel_size_mm, fractions=STUDY_FRACTIONS) -> MaskCandidates:
    """The study's nine candidate masks (see module docstring); ``magnitude`` is 3-D or 4-D (echoes last)."""
    smooth = smoothed_magnitude(magnitude, voxel_size_mm)
    masks = tuple(threshold_mask(smooth, f) for f in fractions)
    return MaskCandidates(tuple(float(f) for f in fractions), masks, default_index=default_index(fractions))


def default_index(fractions=STUDY_FRACTIONS) -> int:
    """The candidate used when nobody picks one: the middle threshold."""
    return len(fractions) // 2
