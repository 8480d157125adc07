"""Test and benchmark helpers around the head phantom: a case written as BIDS MEGRE with its truth, and the
deep-grey scoring of a reconstruction against that truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from QSMReproducibilityLib import phantom as slab_phantom
from QSMReproducibilityLib.head_phantom import (
    BRAIN_MASK_BELOW_FM_MM, DEFAULT_LESIONS, FORAMEN_MAGNUM_Z_MM, SLAB_CENTRE_Z_MM, STUDY_SHAPE, STUDY_TE_S,
    STUDY_VOXEL_MM, TISSUE, VERTEBROBASILAR_JUNCTION, HeadPhantom, make_head, simulate_head,
)
from QSMReproducibilityLib.io import save_nifti


@dataclass(frozen=True)
class HeadCase:
    """Paths and parameters of one written head case."""

    case_id: str
    anat_dir: Path
    truth_dir: Path
    chi_path: Path
    labels_path: Path
    brain_mask_path: Path
    affine: np.ndarray
    te_s: tuple
    b0_tesla: float
    lesions: tuple


def label_names() -> dict:
    """Label value → name, lesions excluded."""
    return {lab: tissue.name for lab, tissue in TISSUE.items()}


def write_head_case(out_dir, case_id: str, *, shape=STUDY_SHAPE, voxel_mm=STUDY_VOXEL_MM, lesions=DEFAULT_LESIONS,
                    z_offset_mm=SLAB_CENTRE_Z_MM, te_s=STUDY_TE_S, b0_tesla: float = 3.0, b0_dir=(0.0, 0.0, 1.0),
                    snr: float = 40.0, seed: int = 0, shim_order: int | None = 2, compress: bool = False,
                    phantom: HeadPhantom | None = None) -> HeadCase:
    """Simulate the head and write it as BIDS MEGRE with truth maps.

    ``out_dir/anat`` is laid out as :func:`QSMReproducibilityLib.phantom.simulate_case` writes it (one
    ``sub-<id>_echo-N_part-{mag,phase}_MEGRE.nii[.gz]`` per echo and part with JSON sidecars holding
    EchoTime and MagneticFieldStrength; a ``B0_dir`` entry, in the voxel frame, when B0 is tilted).
    ``out_dir/truth`` holds chi.nii.gz (ppm relative to CSF), labels.nii.gz, brain_mask.nii.gz,
    field_ppm.nii.gz (the total field of the phase), lesion-<label>_occupancy.nii.gz for each lesion, and
    phantom.json (label names, lesion truths, landmarks, parameters).

    Parameters
    ----------
    out_dir : folder to write into.
    case_id : case name; the BIDS subject is ``sub-`` and its letters and digits.
    shape, voxel_mm, lesions, z_offset_mm : as :func:`~QSMReproducibilityLib.head_phantom.make_head` (ignored
        when ``phantom`` is given).
    te_s, b0_tesla, b0_dir, snr, shim_order : as :func:`~QSMReproducibilityLib.head_phantom.simulate_head`.
    seed : seed of the texture and of the noise.
    compress : write .nii.gz instead of .nii in ``anat``.
    phantom : a prebuilt :class:`HeadPhantom` to simulate.

    Returns
    -------
    HeadCase
    """
    if phantom is None:
        phantom = make_head(shape, voxel_mm, lesions=lesions, z_offset_mm=z_offset_mm, seed=seed)
    magnitude, phase, field_ppm = simulate_head(phantom, te_s=te_s, b0_tesla=b0_tesla, b0_dir=b0_dir, snr=snr,
                                                seed=seed, shim_order=shim_order)
    out_dir = Path(out_dir)
    b0 = np.asarray(b0_dir, float) / np.linalg.norm(b0_dir)
    extra = {} if np.allclose(b0, (0.0, 0.0, 1.0)) else {"B0_dir": [float(v) for v in b0]}
    anat = slab_phantom.write_bids_megre(out_dir / "anat", slab_phantom.bids_subject(case_id), magnitude, phase,
                                          phantom.affine, te_s, b0_tesla, compress=compress, sidecar_extra=extra)
    del magnitude, phase
    truth = out_dir / "truth"
    affine = phantom.affine
    chi_path = save_nifti(truth / "chi.nii.gz", phantom.chi_ppm, affine, description="true chi ppm rel. CSF")
    labels_path = save_nifti(truth / "labels.nii.gz", phantom.labels, affine, description="head phantom labels")
    mask_path = save_nifti(truth / "brain_mask.nii.gz", phantom.brain_mask.astype(np.uint8), affine,
                           description="true intracranial mask")
    save_nifti(truth / "field_ppm.nii.gz", field_ppm, affine, description="total field ppm (shimmed)")
    for truth_lesion in phantom.lesions:
        save_nifti(truth / f"lesion-{truth_lesion.label}_occupancy.nii.gz", truth_lesion.occupancy, affine,
                   description="lesion voxel occupancy")
    info = {
        "case_id": case_id, "phantom": "head", "seed": seed, "snr": snr, "b0_tesla": b0_tesla,
        "b0_dir_voxel": [float(v) for v in b0], "te_s": [float(t) for t in te_s], "shim_order": shim_order,
        "voxel_mm": list(phantom.voxel_mm), "shape": list(phantom.shape),
        "labels": {name: lab for lab, name in label_names().items()},
        "lesions": [t.to_json() for t in phantom.lesions],
        "foramen_magnum_z_mm": FORAMEN_MAGNUM_Z_MM,
        "vertebrobasilar_junction_mm": list(VERTEBROBASILAR_JUNCTION),
        "brain_mask_below_foramen_magnum_mm": BRAIN_MASK_BELOW_FM_MM,
    }
    (truth / "phantom.json").write_text(json.dumps(info, indent=2))
    return HeadCase(case_id, anat, truth, chi_path, labels_path, mask_path, affine, tuple(te_s), b0_tesla,
                    tuple(t.to_json() for t in phantom.lesions))


DEEP_GREY_NUCLEI = ("caudate", "putamen", "globus_pallidus", "thalamus", "red_nucleus", "substantia_nigra",
                    "dentate")
"""Region names of the deep grey nuclei, as QSM challenges score them."""


def deep_grey_scores(phantom: HeadPhantom, chi_ppm: np.ndarray, mask: np.ndarray) -> dict:
    """Deep grey matter of a reconstruction against the truth, both referenced to the posterior horns (ppm).

    Returns the nuclear means (``reconstructed``, ``true``), the slope of reconstructed against true (the
    "deep grey matter slope" of Marques et al., Magn Reson Med 2021;86:526) and the mean absolute error
    relative to the mean true χ. Only voxels inside ``mask`` are read from ``chi_ppm``.
    """
    horns = phantom.regions["posterior_horns"]
    rec_ref = chi_ppm[horns & mask].mean()
    true_ref = phantom.chi_ppm[horns].mean()
    rec = np.array([chi_ppm[phantom.regions[n] & mask].mean() - rec_ref for n in DEEP_GREY_NUCLEI])
    true = np.array([phantom.chi_ppm[phantom.regions[n]].mean() - true_ref for n in DEEP_GREY_NUCLEI])
    return {"reconstructed": rec, "true": true, "slope": float(np.polyfit(true, rec, 1)[0]),
            "mean_error": float(np.abs(rec - true).mean() / true.mean())}
