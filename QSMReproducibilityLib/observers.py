"""Simulated observers: segmentations that differ from the truth and from each other as people's do.

A reading starts from the true lesion and is perturbed by (1) boundary voxels added or missed, with a
per-observer bias (one observer draws generously, the other tightly), (2) occasionally a slice more or
less at the lesion's ends, and (3) a CSF ROI placed anew in a posterior horn. Haematomas, whose wall
boundary is ill-defined, are perturbed more than calcifications — the study's finding (Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .phantom import CSF, LESION_LABEL


@dataclass(frozen=True)
class ObserverProfile:
    """How one observer deviates from the truth; probabilities per boundary voxel."""

    observer_id: str
    p_add: float      # chance of including an outer-boundary voxel
    p_miss: float     # chance of leaving out an inner-boundary voxel
    p_slice: float    # chance of adding or dropping an end slice
    csf_radius_mm: float


DEFAULT_OBSERVERS = (
    ObserverProfile("O1", p_add=0.20, p_miss=0.15, p_slice=0.30, csf_radius_mm=3.0),
    ObserverProfile("O2", p_add=0.10, p_miss=0.25, p_slice=0.30, csf_radius_mm=2.5),
)
# Scales the per-voxel probabilities. Calibrated on the 61-case phantom cohort so that the ICC of mean
# χ falls in the study's ranges (Table 2): 0.71-0.87 for haematomas, 0.89-0.97 for calcifications.
DIFFICULTY = {"hematoma": 2.5, "calcification": 0.3}


def _perturb_lesion(truth: np.ndarray, profile: ObserverProfile, difficulty: float, rng) -> np.ndarray:
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    drawn = truth.copy()
    outer = ndimage.binary_dilation(truth, in_plane) & ~truth
    inner = truth & ~ndimage.binary_erosion(truth, in_plane)
    reading_scale = difficulty * rng.uniform(0.6, 1.4)
    drawn |= outer & (rng.random(truth.shape) < min(0.95, profile.p_add * reading_scale))
    drawn &= ~(inner & (rng.random(truth.shape) < min(0.9, profile.p_miss * reading_scale)))
    slices = np.flatnonzero(truth.any(axis=(0, 1)))
    if slices.size and rng.random() < min(0.9, profile.p_slice * difficulty):
        if rng.random() < 0.5 or slices.size <= 2:
            end = slices[-1] if rng.random() < 0.5 else slices[0]
            step = 1 if end == slices[-1] else -1
            if 0 <= end + step < truth.shape[2]:
                drawn[..., end + step] |= drawn[..., end]
        else:
            drawn[..., slices[-1] if rng.random() < 0.5 else slices[0]] = False
    if not drawn.any():
        drawn = truth.copy()
    return drawn


def _csf_roi(labels: np.ndarray, voxel_mm, radius_mm: float, rng) -> np.ndarray:
    csf = labels == CSF
    # Centres whose sphere stays inside the ventricle, as a careful reader avoids parenchyma and plexus.
    ball = _ball(radius_mm, voxel_mm)
    safe = ndimage.binary_erosion(csf, ball)
    candidates = np.argwhere(safe if safe.any() else csf)
    centre = candidates[rng.integers(len(candidates))]
    roi = np.zeros(labels.shape, bool)
    roi[tuple(centre)] = True
    return ndimage.binary_dilation(roi, ball) & csf


def _ball(radius_mm, voxel_mm):
    half = [max(1, int(np.floor(radius_mm / v))) for v in voxel_mm]
    axes = [np.arange(-h, h + 1) * v for h, v in zip(half, voxel_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return x**2 + y**2 + z**2 <= radius_mm**2


def simulate_reading(labels: np.ndarray, lesion_type: str, sides, profile: ObserverProfile, voxel_mm,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Masks of one reading: ``lesion_<side>`` for each lesion and ``csf``."""
    masks = {}
    for side in sides:
        truth = labels == LESION_LABEL[side]
        masks[f"lesion_{side}"] = _perturb_lesion(truth, profile, DIFFICULTY[lesion_type], rng)
    masks["csf"] = _csf_roi(labels, voxel_mm, profile.csf_radius_mm, rng)
    return masks
