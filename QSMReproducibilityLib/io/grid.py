"""Masks drawn on one grid brought onto another (voxel→RAS affines in mm).

A segmentation on the image's own lattice (up to axis order, flips and a crop) is re-indexed exactly by
:meth:`~QSMReproducibilityLib.segio.SegmentationData.on_grid`; one on another grid is resampled here.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["resample_masks"]


def resample_masks(masks: Mapping, mask_affine: np.ndarray, shape: Sequence[int],
                   affine: np.ndarray) -> dict:
    """Masks on another grid resampled onto ``(shape, affine)`` by nearest neighbour (voxel->RAS affines)."""
    from scipy import ndimage

    # voxel of the target → RAS → voxel of the mask
    transform = np.linalg.inv(np.asarray(mask_affine, float)) @ np.asarray(affine, float)
    return {key: ndimage.affine_transform(np.asarray(mask).astype(np.uint8), transform[:3, :3], transform[:3, 3],
                                          output_shape=tuple(shape), order=0, mode="constant") > 0
            for key, mask in masks.items()}
