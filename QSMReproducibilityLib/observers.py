"""Simulated observers: readers who segment a vessel-wall lesion on the QSM map they are shown.

The study's readers segmented each lesion "layer by layer using a 3D Slicer on QSM images" (Park et al.
2023, Methods, Segmentation): on every 2-mm slice they traced the bright (haematoma) or dark
(calcification) spot in the vessel wall, at the map's own 0.72-mm resolution. A simulated reader does the
same, per lesion and per slice:

1. **Where to look.** The reader knows roughly where the lesion is (in the study, from vessel-wall MRI and
   CTA): the true lesion widened by two voxels in-plane and one slice up and down. That is all the truth
   the reader uses; everything drawn comes from the reconstructed χ.
2. **The rim.** The lesion's contrast is c(x) = s·(χ(x) − b), with s = +1 for a haematoma and −1 for a
   calcification and b the median χ around the lesion; it is expressed as a fraction of the lesion's
   brightness (the 90th percentile of c over the lesion). The reader puts the rim where that fraction
   crosses an *edge level* e: a low e is a generous outline, a high one a tight outline. Each reader has
   their own e, which varies from reading to reading (``edge_level``, ``edge_level_sd``), and which may drift
   between the first and the second reading session (``second_reading_shift``).
3. **Boundary uncertainty of about a voxel.** The contour is drawn by hand on a small, noisy spot: every
   voxel within one in-plane voxel of the rim is judged with perceptual noise of SD ``boundary_sd`` (in
   units of the lesion's contrast), so that now and then the reader takes in a partial-volume voxel outside
   the lesion or leaves out one inside it. Voxels further from the rim are never in doubt.
4. **Where the lesion ends.** At each end of the lesion the reader may carry the outline one slice further
   or stop one slice short (``end_slice``).

The CSF reference is a sphere placed anew at each reading in a posterior horn of a lateral ventricle,
away from its wall (Methods, QSM reconstruction: "avoiding the surrounding brain tissue and choroid
plexus").

Calibration (``Testing/benchmarks/calibrate_observers.py`` prints paper against demo for every cell, for any
seeds): the parameters of :data:`DEFAULT_OBSERVERS` are set so that the 61-case demo reproduces the study's
Tables 1 and 2 and the direction of its Table 3, for the default seed and most others:

- ``edge_level`` (0.5 haematoma, 0.4 calcification) sets how much of a lesion's faint margin a reader takes in,
  and with the phantom's lesion χ (:data:`~QSMReproducibilityLib.phantom.LESION_CHI`) the level of Table 1.
  A calcification's dark spot is outlined to a lower level: on the low-signal, noisy map of a small
  calcification a reader takes in all of the spot.
- ``second_reading_shift`` (−0.15 O1, −0.10 O2, haematomas only): both observers drew haematomas more
  generously in the second session; mean χ fell from 0.304 to 0.247 ppm (O1) and from 0.297 to 0.260 ppm
  (O2), while calcifications stayed (−0.212/−0.217, −0.210/−0.194; Table 1). The drift is also why the
  study's intraobserver ICCs of haematomas (0.712, 0.785) are lower than its interobserver ones (0.832,
  0.865): ICC(A,1) counts a systematic difference between readings as disagreement.
- ``boundary_sd``, ``edge_level_sd`` and ``end_slice`` set the within-subject variation, Table 2's wCV: about
  15 % for haematomas, whose outer margin in the wall is ill-defined, and about 11 % for calcifications, which
  the study found more reproducible (ICC 0.885–0.969 against 0.712–0.865) and easier to identify
  (Discussion). O1 re-drew calcifications more consistently than O2 (intraobserver wCV 6.5 % against
  12.7 %), both observers haematomas about equally (18.7 % and 16.1 %): O1 never adds or drops an end slice
  of a calcification and judges its rim with less noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .phantom import CSF, LESION_LABEL

LESION_SIGN = {"hematoma": 1.0, "calcification": -1.0}
"""Sign of a lesion's χ relative to its surroundings: paramagnetic haematoma, diamagnetic calcification."""


@dataclass(frozen=True)
class ObserverProfile:
    """How one reader outlines lesions; levels in units of the lesion's contrast (0 = background, 1 = lesion).

    Attributes
    ----------
    observer_id : str
    edge_level : dict
        Per lesion type, the contrast fraction at which this reader puts the rim in the first session.
    edge_level_sd : dict
        Per lesion type, SD of that level from one reading of a lesion to the next.
    second_reading_shift : dict
        Per lesion type, change of the edge level in the second session (negative: more generous).
    boundary_sd : dict
        Per lesion type, SD of the perceptual noise with which each voxel next to the rim is judged.
    end_slice : dict
        Per lesion type, chance at each end of the lesion of carrying the outline one slice too far or
        stopping one slice short.
    csf_radius_mm : float
        Radius of the spherical CSF ROI.
    """

    observer_id: str
    edge_level: dict = field(default_factory=dict)
    edge_level_sd: dict = field(default_factory=dict)
    second_reading_shift: dict = field(default_factory=dict)
    boundary_sd: dict = field(default_factory=dict)
    end_slice: dict = field(default_factory=dict)
    csf_radius_mm: float = 3.0


DEFAULT_OBSERVERS = (
    ObserverProfile("O1",
                    edge_level={"hematoma": 0.50, "calcification": 0.40},
                    edge_level_sd={"hematoma": 0.10, "calcification": 0.12},
                    second_reading_shift={"hematoma": -0.15, "calcification": 0.0},
                    boundary_sd={"hematoma": 0.35, "calcification": 0.06},
                    end_slice={"hematoma": 0.10, "calcification": 0.0},
                    csf_radius_mm=3.0),
    ObserverProfile("O2",
                    edge_level={"hematoma": 0.50, "calcification": 0.40},
                    edge_level_sd={"hematoma": 0.10, "calcification": 0.10},
                    second_reading_shift={"hematoma": -0.10, "calcification": 0.0},
                    boundary_sd={"hematoma": 0.35, "calcification": 0.25},
                    end_slice={"hematoma": 0.10, "calcification": 0.05},
                    csf_radius_mm=2.5),
)

_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)
_SEARCH_IN_PLANE_VOXELS = 2


def lesion_contrast(qsm_ppm: np.ndarray, truth: np.ndarray, lesion_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Where a reader looks for the lesion and its contrast there, as a fraction of the lesion's brightness.

    Returns ``(region, contrast)``: the search region (the true lesion widened by two voxels in-plane and
    one slice up and down) and c(x) / c90 over the whole volume, with c(x) = s·(χ(x) − b), s the lesion's
    sign (:data:`LESION_SIGN`), b the median χ of the region outside the lesion and c90 the 90th
    percentile of c over the lesion.
    """
    region = ndimage.binary_dilation(truth, _IN_PLANE, iterations=_SEARCH_IN_PLANE_VOXELS)
    region = ndimage.binary_dilation(region, np.ones((1, 1, 3), bool))
    around = region & ~truth
    background = float(np.median(qsm_ppm[around])) if around.any() else 0.0
    contrast = LESION_SIGN[lesion_type] * (qsm_ppm - background)
    brightness = float(np.percentile(contrast[truth], 90))
    if brightness <= 0:  # a lesion the map does not show: the reader can only outline where it should be
        return region, truth.astype(float)
    return region, contrast / brightness


def _edge_level(profile: ObserverProfile, lesion_type: str, reading: int, rng) -> float:
    level = profile.edge_level[lesion_type] + (reading == 2) * profile.second_reading_shift[lesion_type]
    return float(np.clip(level + profile.edge_level_sd[lesion_type] * rng.standard_normal(), 0.1, 0.9))


def outline_lesion(qsm_ppm: np.ndarray, truth: np.ndarray, lesion_type: str, profile: ObserverProfile,
                   reading: int, rng: np.random.Generator) -> np.ndarray:
    """One reader's outline of one lesion on the QSM map (see the module's description)."""
    region, contrast = lesion_contrast(qsm_ppm, truth, lesion_type)
    edge = _edge_level(profile, lesion_type, reading, rng)
    noise_sd = profile.boundary_sd[lesion_type]
    core = region & (contrast >= edge)
    # Only what is connected to the lesion the reader is looking at.
    components, _ = ndimage.label(core, _IN_PLANE | ndimage.generate_binary_structure(3, 1))
    keep = np.unique(components[truth & core])
    core = np.isin(components, keep[keep > 0]) if keep.size else truth.copy()
    rim = region & (ndimage.binary_dilation(core, _IN_PLANE) & ~ndimage.binary_erosion(core, _IN_PLANE))
    perceived = contrast + noise_sd * rng.standard_normal(contrast.shape)
    drawn = (core & ~rim) | (rim & (perceived >= edge))
    drawn = _ends(drawn, core, region, profile.end_slice[lesion_type], rng)
    return drawn if drawn.any() else core


def _ends(drawn: np.ndarray, core: np.ndarray, region: np.ndarray, p_end: float, rng) -> np.ndarray:
    """Carry the outline one slice past an end of the lesion, or stop one slice short, each with ``p_end``."""
    slices = np.flatnonzero(drawn.any(axis=(0, 1)))
    if not slices.size:
        return drawn
    drawn = drawn.copy()
    for end, step in ((slices[0], -1), (slices[-1], 1)):
        if rng.random() >= p_end:
            continue
        if rng.random() < 0.5 and 0 <= end + step < drawn.shape[2] and region[..., end + step].any():
            drawn[..., end + step] |= drawn[..., end] & region[..., end + step]
        elif np.count_nonzero(drawn.any(axis=(0, 1))) > 1:
            drawn[..., end] = False
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


def simulate_reading(qsm_ppm: np.ndarray, labels: np.ndarray, lesion_type: str, sides, profile: ObserverProfile,
                     voxel_mm, rng: np.random.Generator, *, reading: int = 1) -> dict[str, np.ndarray]:
    """Masks of one reading: ``lesion_<side>`` for each lesion and ``csf``.

    Parameters
    ----------
    qsm_ppm : numpy.ndarray
        The reconstructed χ map the reader sees (ppm, any reference).
    labels : numpy.ndarray
        The phantom's truth labels: they tell the reader only where each lesion and the ventricles are.
    lesion_type : {"hematoma", "calcification"}
    sides : sequence of {"right", "left"}
    profile : ObserverProfile
    voxel_mm : sequence of 3 floats
    rng : numpy.random.Generator
    reading : {1, 2}
        The reading session (the second may be drawn with a shifted edge level).
    """
    masks = {}
    for side in sides:
        truth = labels == LESION_LABEL[side]
        masks[f"lesion_{side}"] = outline_lesion(qsm_ppm, truth, lesion_type, profile, reading, rng)
    masks["csf"] = _csf_roi(labels, voxel_mm, profile.csf_radius_mm, rng)
    return masks
