"""A picture of the candidate brain masks, so a reader can pick one by eye as the study did.

One column per candidate, one row per axial level (a quarter, half and three quarters up the volume):
the first-echo magnitude in grey with the candidate's outline in colour. The default candidate's
column title says so.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .mask import MaskCandidates, bet_image

LEVELS = (0.25, 0.5, 0.75)
"""Axial levels shown, as fractions of the slice count."""


def write_mask_preview(path, magnitude: np.ndarray, candidates: MaskCandidates, voxel_size_mm) -> Path:
    """Write the mosaic of ``candidates`` over ``magnitude`` (3-D or 4-D, echoes last) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    image = bet_image(magnitude)
    columns = [i for i, m in enumerate(candidates.masks) if m is not None]
    slices = sorted({min(image.shape[2] - 1, int(round(level * (image.shape[2] - 1)))) for level in LEVELS})
    high = float(np.percentile(image[::2, ::2, :], 99.5)) or 1.0
    # Pixels drawn with their true aspect ratio: rows of the picture are voxel axis 1, columns axis 0.
    aspect = float(voxel_size_mm[1]) / float(voxel_size_mm[0])
    fig = Figure(figsize=(1.9 * len(columns), 1.9 * len(slices) * aspect * image.shape[1] / image.shape[0] + 0.6),
                 dpi=110)
    axes = fig.subplots(len(slices), len(columns), squeeze=False)
    for col, index in enumerate(columns):
        mask = candidates.masks[index]
        fraction = candidates.fractions[index]
        title = (f"{index}: f = {fraction:.1f}" if candidates.method == "bet" else f"{index}: {fraction:.2f}·p99")
        if index == candidates.default_index:
            title += " (default)"
        for row, k in enumerate(slices):
            ax = axes[row][col]
            ax.imshow(image[:, :, k].T, cmap="gray", vmin=0, vmax=high, origin="lower", aspect=aspect,
                      interpolation="nearest")
            ax.contour(mask[:, :, k].T.astype(np.float32), levels=[0.5], colors="#ff7f0e", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
            if col == 0:
                ax.set_ylabel(f"slice {k}", fontsize=7)
    method = "BET fractional intensity threshold" if candidates.method == "bet" else "magnitude threshold"
    fig.suptitle(f"Candidate brain masks ({method}); pick one with --mask-index", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
