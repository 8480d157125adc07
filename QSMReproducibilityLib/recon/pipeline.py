"""The whole reconstruction: GRE → unwrapped phase → field → mask → local field → χ (ppm).

The study's chain (STI Suite) was Laplacian unwrapping → normalised phase → BET mask → V-SHARP →
STAR-QSM → CSF referencing. Here the default unwrapping is exact (temporal, congruent) and the echo fit
keeps the phase offset; the Laplacian path is available for comparison (``unwrap="laplacian"``). The default
background removal is the background part of a preconditioned total-field fit (``background="tfi"``),
which keeps vertebral-artery wall lesions at the skull base, where the brain mask ends, with their own
field; the study's V-SHARP (``background="vsharp"``) erodes and biases them, PDF and LBV are also
available. CSF referencing happens per reading (each observer draws CSF), so
:func:`reconstruct` returns un-referenced χ.

Memory: :func:`estimate_field` needs the GRE data, :func:`invert_field` does not; the echoes are unwrapped
one at a time as the field fit consumes them, and :func:`reconstruct_path` drops the GRE before the
inversion, which then reuses that memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileio import atomic_output
from ..io import GreSeries, check_output_path, load_gre, load_nifti_gre, load_volume, save_nifti
from ..progress import ProgressCallback, notify, sub_progress
from . import background, echoes, hz_per_ppm, inversion, kernels, mask as masks, unwrap
from .background import VSHARP_RADII_MM

log = logging.getLogger(__name__)

METHODS = ("star", "tv", "iterative-tikhonov", "tikhonov", "tkd")
UNWRAP_METHODS = ("temporal", "laplacian")
BACKGROUND_METHODS = ("tfi", "vsharp", "pdf", "lbv")
"""Background removals, the default first."""
STUDY_CHAIN = {"background": "vsharp", "method": "star"}
"""The study's own chain (STI Suite: V-SHARP, then STAR-QSM), for reproducing the paper."""


@dataclass(frozen=True)
class ReconParams:
    """Settings of one reconstruction (recorded with the result)."""

    method: str = METHODS[0]
    unwrap: str = "temporal"
    background: str = BACKGROUND_METHODS[0]
    mask_method: str = "bet"
    mask_index: int | None = None
    vsharp_radii_mm: tuple[float, ...] = VSHARP_RADII_MM
    vsharp_threshold: float = 0.05
    tkd_threshold: float = 0.19
    tikhonov_lambda: float = 0.05
    iterative_tikhonov_lambda: float = inversion.ITERATIVE_TIKHONOV_LAMBDA
    tv_alpha: float = 3e-4

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown inversion method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.background not in BACKGROUND_METHODS:
            raise InputError(f"unknown background removal {self.background!r}; choose one of {', '.join(BACKGROUND_METHODS)}")
        if self.mask_method not in masks.MASK_METHODS:
            raise InputError(f"unknown mask method {self.mask_method!r}; choose one of {', '.join(masks.MASK_METHODS)}")
        if self.mask_index is not None and not 0 <= self.mask_index < len(masks.candidate_fractions(self.mask_method)):
            raise InputError(f"mask index {self.mask_index} out of range "
                             f"0…{len(masks.candidate_fractions(self.mask_method)) - 1}")
        if self.unwrap not in UNWRAP_METHODS:
            raise InputError(f"unknown unwrapping method {self.unwrap!r}; choose one of {', '.join(UNWRAP_METHODS)}")

    def as_dict(self) -> dict:
        """The fields as JSON values (tuples as lists), as a study stores them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "ReconParams":
        """The parameters from their stored fields (:meth:`as_dict`; lists become tuples again)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"reconstruction parameters {', '.join(unknown)} are not known to this version")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class ReconResult:
    """χ in ppm on the input grid plus the intermediate maps a reader may want to inspect.

    brain_mask : the chosen brain mask (a candidate, or the user's), on which the field was fitted.
    local_field_mask : the voxels where the local field, and so χ, is valid: the brain mask less what the
        background removal gives up (V-SHARP's and LBV's erosion at the edge; none for PDF and TFI).
    """

    chi_ppm: np.ndarray
    local_field_mask: np.ndarray
    brain_mask: np.ndarray
    local_field_ppm: np.ndarray
    total_field_ppm: np.ndarray
    mask_fractions: tuple[float, ...]
    mask_index: int
    affine: np.ndarray
    params: ReconParams
    notes: tuple[str, ...] = ()
    seconds: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FieldMap:
    """The first half of :func:`reconstruct`, everything that needs the GRE data: mask and total field.

    total_field_ppm : the fitted field in ppm of B0 on the brain mask's bounding box ``box``.
    brain_mask : the chosen brain mask on the full grid ``shape``.
    """

    total_field_ppm: np.ndarray
    brain_mask: np.ndarray
    box: tuple[slice, slice, slice]
    shape: tuple[int, int, int]
    affine: np.ndarray
    voxel_size_mm: np.ndarray
    b0_dir: np.ndarray
    mask_fractions: tuple[float, ...]
    mask_index: int
    notes: tuple[str, ...] = ()
    seconds: dict = field(default_factory=dict)


def reconstruct(
    gre: GreSeries,
    params: ReconParams = ReconParams(),
    *,
    user_mask: np.ndarray | None = None,
    mask_candidates: masks.MaskCandidates | None = None,
    progress: ProgressCallback | None = None,
) -> ReconResult:
    """Reconstruct QSM from a :class:`GreSeries`; see the module docstring for the chain.

    The same as :func:`estimate_field` followed by :func:`invert_field`; a caller that can drop the GRE
    data in between (as :func:`reconstruct_path` does) needs less memory.
    """
    fieldmap = estimate_field(gre, params, user_mask=user_mask, mask_candidates=mask_candidates,
                              progress=sub_progress(progress, 0.0, 0.45))
    return invert_field(fieldmap, params, progress=sub_progress(progress, 0.45, 1.0))


def estimate_field(
    gre: GreSeries,
    params: ReconParams = ReconParams(),
    *,
    user_mask: np.ndarray | None = None,
    mask_candidates: masks.MaskCandidates | None = None,
    progress: ProgressCallback | None = None,
) -> FieldMap:
    """Brain mask, unwrapping and the multi-echo fit: GRE → total field (ppm) on the mask's box.

    The brain mask is ``user_mask`` if given, else candidate ``params.mask_index`` (default: the
    method's documented default) of ``params.mask_method``, taken from ``mask_candidates`` when the
    caller has computed them already (the Slicer panel shows them before reconstructing).
    """
    vox = gre.voxel_size_mm
    seconds: dict[str, float] = {}
    notes = []
    t0 = time.perf_counter()

    notify(progress, 0.0, "computing the brain mask")
    fractions = masks.candidate_fractions(params.mask_method)
    if user_mask is not None:
        user_mask = np.asarray(user_mask, bool)
        if user_mask.shape != gre.shape:
            raise InputError(f"the mask grid {user_mask.shape} differs from the GRE grid {gre.shape}")
        if not user_mask.any():
            raise InputError("the supplied mask is empty")
        brain, index = user_mask, -1
        notes.append("user-supplied mask")
    else:
        index = masks.default_index(params.mask_method) if params.mask_index is None else params.mask_index
        if mask_candidates is not None and mask_candidates.method == params.mask_method \
                and mask_candidates.masks[index] is not None:
            brain = mask_candidates.masks[index]
            if brain.shape != gre.shape:
                raise InputError(f"the candidate masks' grid {brain.shape} differs from the GRE grid {gre.shape}")
        else:
            brain = masks.candidate_masks(gre.magnitude, vox, params.mask_method, indices=[index],
                                          progress=sub_progress(progress, 0.0, 0.1)).masks[index]
        notes.append(masks.describe_candidate(params.mask_method, fractions[index], index))
    seconds["mask"] = time.perf_counter() - t0

    # Everything after the mask works on its bounding box (one voxel of margin): outside it there is
    # no phase to use, and the box is often much smaller than the field of view.
    box = _grow(kernels.mask_bounding_box(brain), gre.shape, margin=1)
    magnitude, phase = gre.magnitude[box], gre.phase_rad[box]

    t = time.perf_counter()
    notify(progress, 0.1, "unwrapping phase")
    if gre.n_echoes == 1:
        notes.append("single echo: spatial unwrapping (Laplacian + congruence), field = φ/(2π·TE)")
    if params.unwrap == "laplacian":
        unwrapped = (unwrap.laplacian_unwrap(phase[..., e], vox) for e in range(gre.n_echoes))
        notes.append("Laplacian unwrapping (STI-compatible, not congruent)")
    else:
        unwrapped = unwrap.unwrap_echoes(phase, magnitude, gre.te_s, vox, progress=sub_progress(progress, 0.1, 0.9))
    # Echoes are unwrapped one at a time as the fit consumes them, so they are never all in memory.
    fit = echoes.fit_field(unwrapped, magnitude, gre.te_s)
    total_ppm = fit.field_hz
    total_ppm /= np.float32(hz_per_ppm(gre.b0_tesla))
    seconds["unwrap_fit"] = time.perf_counter() - t
    notify(progress, 1.0, "field map done")
    return FieldMap(total_ppm, brain, box, gre.shape, gre.affine, vox, gre.b0_dir, tuple(fractions), index,
                    tuple(notes), seconds)


def invert_field(
    fieldmap: FieldMap,
    params: ReconParams = ReconParams(),
    *,
    progress: ProgressCallback | None = None,
) -> ReconResult:
    """Background removal and dipole inversion: total field → χ (ppm) on the full grid."""
    vox, b0_dir, box, shape = fieldmap.voxel_size_mm, fieldmap.b0_dir, fieldmap.box, fieldmap.shape
    seconds = dict(fieldmap.seconds)
    t = time.perf_counter()
    if params.background == "tfi":
        local = background.tfi(fieldmap.total_field_ppm, fieldmap.brain_mask[box], vox, b0_dir,
                               progress=sub_progress(progress, 0.0, 0.2))
    elif params.background == "pdf":
        local = background.pdf(fieldmap.total_field_ppm, fieldmap.brain_mask[box], vox, b0_dir,
                               progress=sub_progress(progress, 0.0, 0.2))
    elif params.background == "lbv":
        local = background.lbv(fieldmap.total_field_ppm, fieldmap.brain_mask[box], vox,
                               progress=sub_progress(progress, 0.0, 0.2))
    else:
        local = background.vsharp(
            fieldmap.total_field_ppm, fieldmap.brain_mask[box], vox, params.vsharp_radii_mm, params.vsharp_threshold,
            progress=sub_progress(progress, 0.0, 0.2),
        )
    seconds["background"] = time.perf_counter() - t

    t = time.perf_counter()
    inv_progress = sub_progress(progress, 0.2, 0.99)
    if params.method == "tkd":
        chi = inversion.tkd(local.field, local.mask, vox, b0_dir, params.tkd_threshold)
    elif params.method == "tikhonov":
        chi = inversion.tikhonov(local.field, local.mask, vox, b0_dir, params.tikhonov_lambda)
    elif params.method == "iterative-tikhonov":
        chi = inversion.iterative_tikhonov(local.field, local.mask, vox, b0_dir, lambda_=params.iterative_tikhonov_lambda,
                                           progress=inv_progress)
    elif params.method == "tv":
        chi = inversion.admm_inversion(
            local.field, local.mask, vox, b0_dir, alpha=params.tv_alpha, progress=inv_progress
        )
    else:
        chi = inversion.star_qsm(local.field, local.mask, vox, b0_dir, alpha_tv=params.tv_alpha, progress=inv_progress)
    seconds["inversion"] = time.perf_counter() - t
    seconds["total"] = sum(seconds.values())
    notify(progress, 1.0, "reconstruction done")
    return ReconResult(_uncrop(chi, box, shape), _uncrop(local.mask, box, shape), fieldmap.brain_mask,
                       _uncrop(local.field, box, shape), _uncrop(fieldmap.total_field_ppm, box, shape),
                       fieldmap.mask_fractions, fieldmap.mask_index, fieldmap.affine, params, fieldmap.notes, seconds)


def acquisition_record(gre: GreSeries) -> dict:
    """What the sidecar records of the acquisition: B0 (T) and its direction, echo times (s), phase units."""
    record = {"MagneticFieldStrength": gre.b0_tesla, "B0DirectionVoxel": [float(v) for v in gre.b0_dir],
              "EchoTime": [float(t) for t in gre.te_s]}
    if gre.phase_scaling is not None:
        record["PhaseUnits"] = gre.phase_scaling.units
        record["PhaseScaling"] = gre.phase_scaling.as_dict()
    return record


def write_sidecar(qsm_out, acquisition: dict, result: ReconResult) -> None:
    """BIDS-style JSON beside the QSM: how it was made (method, mask choice, B0, echoes, notes).

    Every front writes it: the CLI through :func:`reconstruct_path`, the Slicer panel after
    :func:`reconstruct` (``acquisition`` from :func:`acquisition_record`).
    """
    import json

    from .. import __version__

    sidecar = sidecar_path(qsm_out)
    user_mask = result.mask_index < 0
    fraction = None if user_mask else result.mask_fractions[result.mask_index]
    info = {
        "Units": "ppm", "Description": "magnetic susceptibility, not referenced (reference per reading to CSF)",
        "Method": result.params.method, "Unwrapping": result.params.unwrap,
        "MaskCandidate": "user-supplied" if user_mask else result.mask_index,
        "MaskMethod": "user-supplied" if user_mask else
        {"bet": "BET (Smith 2002)", "threshold": "magnitude threshold"}[result.params.mask_method],
        "MaskFractionalThreshold": fraction if result.params.mask_method == "bet" else None,
        "MaskThresholdFraction": fraction if result.params.mask_method == "threshold" else None,
        "MaskCandidateFractions": None if user_mask else list(result.mask_fractions),
        "BackgroundRemoval": _background_record(result.params),
        "DipoleInversion": INVERSIONS[result.params.method],
        **acquisition, "Notes": list(result.notes),
        "ProcessingSeconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "Software": f"QSMReproducibilityLib {__version__}",
    }
    with atomic_output(sidecar) as tmp:
        tmp.write_text(json.dumps(info, indent=2))


def sidecar_path(qsm_path) -> Path:
    """The JSON sidecar beside a QSM NIfTI (``qsm.nii.gz`` → ``qsm.json``)."""
    qsm_path = Path(qsm_path)
    return qsm_path.with_name(qsm_path.name.split(".nii")[0] + ".json")


def reconstruction_record(qsm_path) -> dict | None:
    """How a QSM was reconstructed, read from its sidecar, for the study's audit log (None without a sidecar).

    The CLI's ``study add-case`` and the Slicer panel's *Add case* both record this, so a case carries the
    same provenance whichever front reconstructed it.
    """
    import json

    try:
        info = json.loads(sidecar_path(qsm_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or "Method" not in info:
        return None
    notes = list(info.get("Notes") or [])
    mask = next((n for n in notes if n.startswith(("mask candidate", "user-supplied"))), info.get("MaskMethod"))
    background, inversion = info.get("BackgroundRemoval") or {}, info.get("DipoleInversion") or {}
    return {"method": info.get("Method"), "unwrap": info.get("Unwrapping"),
            "background": background.get("method"), "background_reference": background.get("reference"),
            "inversion": inversion.get("method"), "inversion_reference": inversion.get("reference"),
            "mask": mask, "notes": notes, "software": info.get("Software")}


INVERSIONS = {
    "star": {"method": "STAR-QSM (two-level: sparse strong sources, then TV)", "reference": "Wei et al. 2015, NMR Biomed 28:1294"},
    "tv": {"method": "TV-regularised inversion (ADMM)", "reference": "Bilgic et al. 2014, Magn Reson Med 72:1444"},
    "iterative-tikhonov": {"method": "iterative Tikhonov (gradient-weighted, CG)", "reference": "Kressler et al. 2010, IEEE Trans Med Imaging 29:273"},
    "tikhonov": {"method": "closed-form Tikhonov", "reference": "Bilgic et al. 2014, Magn Reson Med 72:1444"},
    "tkd": {"method": "thresholded k-space division", "reference": "Shmueli et al. 2009, Magn Reson Med 62:1510"},
}
"""The dipole inversions as a study's Methods section states them (sidecar ``DipoleInversion``)."""


def methods_settings(records) -> dict[str, str]:
    """The reconstruction as a report's Settings state it, from the cases' :func:`reconstruction_record`.

    Returns ``{"Brain mask": ..., "Background removal": ..., "Dipole inversion": ...}``; where cases differ,
    each value lists the variants with their numbers of cases. A case without a record counts as such.
    """
    from collections import Counter

    rows = {"Brain mask": Counter(), "Background removal": Counter(), "Dipole inversion": Counter()}
    for record in records:
        record = record or {}
        rows["Brain mask"][record.get("mask") or "not recorded"] += 1
        rows["Background removal"][_with_reference(record.get("background"), record.get("background_reference"))] += 1
        rows["Dipole inversion"][_with_reference(record.get("inversion") or record.get("method"),
                                                 record.get("inversion_reference"))] += 1
    return {key: "; ".join(text if len(counter) == 1 else f"{text}: {n} cases" for text, n in counter.most_common())
            for key, counter in rows.items() if counter}


def _with_reference(method, reference) -> str:
    return "not recorded" if not method else f"{method} ({reference})" if reference else str(method)


def _background_record(params: ReconParams) -> dict:
    """The background removal as a study's Methods section states it."""
    if params.background == "tfi":
        return {"method": "total-field fit, background part (preconditioned as in TFI)",
                "reference": "Liu et al. 2017, Magn Reson Med 78:303", "preconditioner": background.TFI_PRECONDITIONER,
                "iterations": background.TFI_ITERATIONS, "pad_mm": background.TFI_PAD_MM}
    if params.background == "pdf":
        return {"method": "PDF", "reference": "Liu et al. 2011, NMR Biomed 24:1129", "pad_mm": background.PDF_PAD_MM}
    if params.background == "lbv":
        return {"method": "LBV", "reference": "Zhou et al. 2014, NMR Biomed 27:312", "eroded_voxels": 1}
    return {"method": "V-SHARP", "reference": "Wu et al. 2012, Magn Reson Med 67:137",
            "radii_mm": list(params.vsharp_radii_mm), "threshold": params.vsharp_threshold}


def _grow(box, shape, margin: int):
    return tuple(slice(max(0, b.start - margin), min(n, b.stop + margin)) for b, n in zip(box, shape))


def _uncrop(values: np.ndarray, box, shape) -> np.ndarray:
    out = np.zeros(shape, values.dtype)
    out[box] = values
    return out


def reconstruct_path(
    input_path=None,
    qsm_out=None,
    *,
    mask_out=None,
    field_out=None,
    magnitude=None,
    phase=None,
    te_s=None,
    b0_tesla: float | None = None,
    b0_dir=None,
    method: str = METHODS[0],
    background_method: str = BACKGROUND_METHODS[0],
    params: ReconParams | None = None,
    user_mask_path=None,
    mask_preview_out=None,
    phase_units: str = "auto",
    progress: ProgressCallback | None = None,
) -> ReconResult:
    """Files in, χ (ppm NIfTI on the input grid) out; nothing is written unless reconstruction succeeds.

    ``input_path`` is a BIDS anat folder or a DICOM folder; alternatively ``magnitude``/``phase`` are lists
    of NIfTI paths (one 4-D file or one 3-D file per echo) with ``te_s``. ``mask_preview_out`` (PNG) asks
    for all nine candidate masks over the magnitude, for a reader to choose from. ``phase_units`` is one
    of :data:`~QSMReproducibilityLib.io.PHASE_UNITS` (``auto`` decides from the phase's range).
    """
    if qsm_out is None:
        raise InputError("no output path for the QSM (-o QSM.nii.gz)")
    # Refused before minutes of work: outputs that cannot be written, a B0 direction that is no direction.
    check_output_path(qsm_out, "QSM output (-o)", (".nii", ".nii.gz"))
    for path, what in ((mask_out, "mask output (--save-mask)"), (field_out, "field output (--save-field)")):
        if path is not None:
            check_output_path(path, what, (".nii", ".nii.gz"))
    if mask_preview_out is not None:
        check_output_path(mask_preview_out, "mask preview (--mask-preview)", (".png",))
    if b0_dir is not None and (len(b0_dir) != 3 or not np.all(np.isfinite(b0_dir)) or not np.linalg.norm(b0_dir) > 0):
        raise InputError(f"--b0-dir {' '.join(map(str, b0_dir))}: the B0 direction must be three finite numbers, "
                         "not all zero")
    if input_path is not None:
        gre = load_gre(input_path, te_s=te_s, b0_tesla=b0_tesla, phase_units=phase_units)
    elif magnitude and phase:
        if te_s is None:
            raise InputError("echo times are required with --magnitude/--phase NIfTI input: give --te in seconds")
        gre = load_nifti_gre(magnitude, phase, te_s, b0_tesla, phase_units=phase_units)
    else:
        raise InputError("give an input folder (BIDS anat or DICOM) or --magnitude and --phase NIfTI files")
    if b0_dir is not None:
        gre = dataclasses.replace(gre, b0_dir_given=tuple(float(v) for v in b0_dir))
    user_mask = None
    if user_mask_path is not None:
        user_mask, mask_affine = load_volume(user_mask_path)
        if user_mask.shape != gre.shape:
            raise InputError(f"{user_mask_path}: the mask is not on the GRE grid (grid {user_mask.shape}, the GRE's "
                             f"{gre.shape})")
        if not np.allclose(mask_affine, gre.affine, atol=1e-3):
            raise InputError(f"{user_mask_path}: the mask is not on the GRE grid (same size, but another position or "
                             "orientation in its header)")
        user_mask = user_mask > 0.5
        if not user_mask.any():
            raise InputError(f"{user_mask_path}: the mask is empty (no voxel above 0.5)")
    params = params or ReconParams(method=method, background=background_method)
    candidates = preview = None
    if mask_preview_out is not None:
        from .mask_preview import write_mask_preview

        candidates = masks.candidate_masks(gre.magnitude, gre.voxel_size_mm, params.mask_method,
                                           progress=sub_progress(progress, 0.0, 0.2))
        # Drawn now, while the magnitude is in memory; put in place only when the QSM is.
        preview = Path(mask_preview_out).with_name(f".{Path(mask_preview_out).name}.pending.png")
        write_mask_preview(preview, gre.magnitude, candidates, gre.affine)
        progress = sub_progress(progress, 0.2, 1.0)
    try:
        fieldmap = estimate_field(gre, params, user_mask=user_mask, mask_candidates=candidates,
                                  progress=sub_progress(progress, 0.0, 0.45))
    except BaseException:
        if preview is not None:
            preview.unlink(missing_ok=True)
        raise
    del candidates
    acquisition = acquisition_record(gre)
    affine = gre.affine
    del gre, user_mask  # the GRE data are not needed for the inversion: let it reuse their memory
    try:
        result = invert_field(fieldmap, params, progress=sub_progress(progress, 0.45, 1.0))
    except BaseException:
        if preview is not None:
            preview.unlink(missing_ok=True)
        raise
    del fieldmap
    for note in result.notes:
        log.info("%s", note)
    save_nifti(qsm_out, result.chi_ppm, affine, description=f"QSM chi ppm ({params.method})")
    write_sidecar(qsm_out, acquisition, result)
    if mask_out is not None:
        save_nifti(mask_out, result.brain_mask.astype(np.uint8), affine, description="QSM brain mask")
    if field_out is not None:
        save_nifti(field_out, result.local_field_ppm, affine, description="local field ppm")
    if preview is not None:
        os.replace(preview, mask_preview_out)
    return result
