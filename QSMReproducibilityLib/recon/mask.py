"""Candidate brain masks from the magnitude image.

The study made nine masks with FSL BET (Smith 2002) at nine fractional intensity thresholds and chose one
by eye, the one "containing the best ROI including target vessels" while excluding the noisy clivus and
occipital condyles. Here the nine candidates are BET surfaces (:mod:`.bet`) on the first-echo magnitude at
``f`` = 0.1 … 0.9; when nobody picks one, the default is f = 0.5, FSL's own default (the documented rule),
and the choice is recorded with the QSM.

Magnitude-threshold masks (the smoothed echo-combined magnitude above a fraction of its 99th percentile,
largest component, holes filled) remain as the named option ``method="threshold"``. They suit phantoms
without scalp, but on a real head they take in the bright scalp and fat, and background removal then
cannot remove the fields of air and bone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError, ReconstructionError
from ..progress import ProgressCallback, notify, sub_progress
from . import bet

MASK_METHODS = ("bet", "threshold")
BET_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Nine BET fractional intensity thresholds, from generous (0.1) to strict (0.9)."""
BET_DEFAULT_FRACTION = 0.5
"""FSL BET's default fractional intensity threshold: the candidate used when nobody picks one."""
THRESHOLD_FRACTIONS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50)
"""Nine threshold fractions of the 99th-percentile magnitude, from permissive to strict."""


@dataclass(frozen=True)
class MaskCandidates:
    """Candidate masks; ``masks[i]`` was made by ``method`` at ``fractions[i]``."""

    fractions: tuple[float, ...]
    masks: tuple[np.ndarray, ...]
    default_index: int
    method: str = "bet"

    @property
    def default(self) -> np.ndarray:
        return self.masks[self.default_index]

    def describe(self, index: int) -> str:
        """How candidate ``index`` was made, in words (for notes, labels and sidecars)."""
        return describe_candidate(self.method, self.fractions[index], index)


def candidate_fractions(method: str = "bet") -> tuple[float, ...]:
    """The nine fractions of a mask method (BET fractional thresholds or magnitude-threshold fractions)."""
    if method not in MASK_METHODS:
        raise InputError(f"unknown mask method {method!r}; choose one of {', '.join(MASK_METHODS)}")
    return BET_FRACTIONS if method == "bet" else THRESHOLD_FRACTIONS


def default_index(method: str = "bet") -> int:
    """The candidate used when nobody picks one: BET at f = 0.5; the middle threshold otherwise."""
    fractions = candidate_fractions(method)
    if method == "bet":
        return fractions.index(BET_DEFAULT_FRACTION)
    return len(fractions) // 2


def describe_candidate(method: str, fraction: float, index: int) -> str:
    if method == "bet":
        return f"mask candidate {index}: BET, fractional intensity threshold f = {fraction:.1f}"
    return f"mask candidate {index}: magnitude above {fraction:.2f} of its 99th percentile"


def bet_image(magnitude: np.ndarray) -> np.ndarray:
    """The image BET runs on: the first echo, the most proton-density weighted and least dephased."""
    return magnitude if magnitude.ndim == 3 else magnitude[..., 0]


SIGNAL_SNR = 3.0
"""First-echo signal, in units of the noise SD, below which a voxel carries no usable phase."""


SMALL_HOLE_MM3 = 100.0
"""Signal voids inside the BET outline up to this volume (a sphere of about 5.8 mm) stay in the mask: a
calcification or a haemorrhage core has no signal either, and its χ is what the study measures. Bone and
air pockets at the skull base are far larger."""


def noise_sd(image: np.ndarray) -> float:
    """The noise SD σ of a magnitude image, from its background (Rayleigh-distributed where there is no signal).

    The background is what lies below BET's brain/background threshold t (Smith 2002); the median of a
    Rayleigh variable is σ·√(2 ln 2). Returns 0 where there is no such background to measure: a background
    zeroed by the exporter, a field of view without air (fewer than 2 % of the voxels below t), a
    background that is not Rayleigh-distributed (its coefficient of variation, √(4/π − 1) ≈ 0.52 for
    Rayleigh noise, outside 0.35–0.75: dark tissue, not noise), or an estimate that would put typical
    brain (tm) below 10 σ.
    """
    landmarks = bet.robust_landmarks(image, (1.0, 1.0, 1.0))
    sample = image[::2, ::2, :] if image.size > 4_000_000 else image
    background = sample[(sample <= landmarks.t) & (sample > 0)].astype(np.float64)
    if background.size < max(100, 0.02 * sample.size):
        return 0.0
    variation = background.std() / background.mean()
    if not 0.35 <= variation <= 0.75:
        return 0.0
    sigma = float(np.median(background)) / np.sqrt(2.0 * np.log(2.0))
    return sigma if sigma * 10.0 <= landmarks.tm else 0.0


def signal_mask(image: np.ndarray, snr: float = SIGNAL_SNR) -> np.ndarray:
    """Voxels whose first-echo magnitude rises above noise: the phase-quality part of the brain mask.

    Inside a BET outline, bone, sinus air and the dark clivus carry only noise phase, which V-SHARP and
    the inversion would spread into the brain around them. The consensus recommends combining a brain
    extraction with such phase-quality masking (ISMRM QSM consensus, Magn Reson Med 2024;91:1834).
    """
    return image > snr * noise_sd(image)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of ``mask`` (noise voxels stranded in a void are dropped)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def keep_small_voids(mask: np.ndarray, outline: np.ndarray, voxel_size_mm, max_mm3: float = SMALL_HOLE_MM3):
    """``mask`` with the enclosed voids of at most ``max_mm3`` inside ``outline`` given back (see SMALL_HOLE_MM3)."""
    voids = outline & ~mask & ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(voids)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel()) * float(np.prod(np.asarray(voxel_size_mm, float)))
    small = sizes <= max_mm3
    small[0] = False
    return mask | small[labels]


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
    mask = largest_component(smooth > level)
    if not mask.any():
        return mask
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


def candidate_masks(
    magnitude: np.ndarray,
    voxel_size_mm,
    method: str = "bet",
    *,
    indices=None,
    progress: ProgressCallback | None = None,
) -> MaskCandidates:
    """The study's nine candidate masks (see the module docstring); ``magnitude`` is 3-D or 4-D (echoes last).

    ``indices`` limits the work to those candidates (the others are left as ``None``): the pipeline
    computes only the one it uses, the Slicer panel and ``--mask-preview`` all nine, which BET evolves
    as one batch.
    """
    fractions = candidate_fractions(method)
    wanted = range(len(fractions)) if indices is None else sorted(set(int(i) for i in indices))
    for i in wanted:
        if not 0 <= i < len(fractions):
            raise InputError(f"mask index {i} out of range 0…{len(fractions) - 1}")
    masks: list = [None] * len(fractions)
    notify(progress, 0.0, "computing candidate brain masks")
    if method == "bet":
        image = bet_image(magnitude)
        signal = signal_mask(image)
        made = [keep_small_voids(largest_component(m & signal), m, voxel_size_mm)
                for m in bet.bet_masks(image, voxel_size_mm, [fractions[i] for i in wanted],
                                       progress=sub_progress(progress, 0.0, 1.0))]
    else:
        smooth = smoothed_magnitude(magnitude, voxel_size_mm)
        made = [threshold_mask(smooth, fractions[i]) for i in wanted]
    for i, m in zip(wanted, made):
        if not m.any():
            raise ReconstructionError(f"{describe_candidate(method, fractions[i], i)} is empty")
        masks[i] = m
    notify(progress, 1.0, "candidate brain masks done")
    return MaskCandidates(tuple(float(f) for f in fractions), tuple(masks), default_index(method), method)
