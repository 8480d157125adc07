"""A picture of the candidate brain masks, so a reader can pick one by eye as the study did.

One column per candidate, one row per axial level (a quarter, half and three quarters up the volume):
the first-echo magnitude in grey with the candidate's outline in colour. The default candidate's
column title says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio import atomic_output
from .mask import MaskCandidates, bet_image

LEVELS = (0.25, 0.5, 0.75)
"""Axial levels shown, as fractions of the slice count."""


def write_mask_preview(path, magnitude: np.ndarray, candidates: MaskCandidates, affine) -> Path:
    """Write the mosaic of ``candidates`` over ``magnitude`` (3-D or 4-D, echoes last) as a PNG, atomically.

    Slices are axial in the scanner's frame and drawn as radiologists read them: anterior up, the
    patient's right on the left of the picture (``affine`` maps voxels to RAS).
    """
    import matplotlib
    import nibabel as nib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    orientation = nib.orientations.io_orientation(np.asarray(affine, float))

    def to_ras(volume):
        return nib.orientations.apply_orientation(volume, orientation)

    image = to_ras(bet_image(magnitude))
    voxel = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))[orientation[:, 0].astype(int).argsort()]
    columns = [i for i, m in enumerate(candidates.masks) if m is not None]
    slices = sorted({min(image.shape[2] - 1, int(round(level * (image.shape[2] - 1)))) for level in LEVELS})
    high = float(np.percentile(image[::2, ::2, :], 99.5)) or 1.0
    aspect = float(voxel[1]) / float(voxel[0])
    height = image.shape[1] * voxel[1] / (image.shape[0] * voxel[0])
    fig = Figure(figsize=(1.9 * len(columns), 1.9 * len(slices) * height + 0.6), dpi=110)
    axes = fig.subplots(len(slices), len(columns), squeeze=False)
    for col, index in enumerate(columns):
        mask = to_ras(candidates.masks[index])
        fraction = candidates.fractions[index]
        title = (f"{index}: f = {fraction:.1f}" if candidates.method == "bet" else f"{index}: {fraction:.2f}·p99")
        if index == candidates.default_index:
            title += " (default)"
        for row, k in enumerate(slices):
            ax = axes[row][col]
            # Rows of the picture run posterior → anterior (origin lower), columns the patient's right → left.
            ax.imshow(image[::-1, :, k].T, cmap="gray", vmin=0, vmax=high, origin="lower", aspect=aspect,
                      interpolation="nearest")
            ax.contour(mask[::-1, :, k].T.astype(np.float32), levels=[0.5], colors="#ff7f0e", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
            if col == 0:
                ax.set_ylabel(f"axial {k}", fontsize=7)
            if row == 0 and col == 0:
                ax.text(0.02, 0.02, "R", color="yellow", fontsize=7, transform=ax.transAxes)
    method = "BET fractional intensity threshold" if candidates.method == "bet" else "magnitude threshold"
    fig.suptitle(f"Candidate brain masks ({method}); pick one with --mask-index", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
