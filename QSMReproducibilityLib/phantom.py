"""A digital vertebral-artery phantom: one synthetic case of the study, written as BIDS MEGRE.

Geometry (mm, centred on the volume): an elliptic brain through a slab around the V4 segments, a skull
shell and air outside (the sources of the background field), the posterior horns of the lateral
ventricles (CSF, the reference region), and the two intracranial vertebral arteries running roughly along
B0 with a wall lesion: an eccentric intramural haematoma (paramagnetic) or a wall calcification
(diamagnetic). Susceptibilities are relative to CSF, in ppm. The signal follows
S_e = M0·exp(−TE_e/T2*)·exp(i(φ0 + 2π·γB0·Δb·TE_e)) + complex Gaussian noise, with Δb the dipole field of
χ (:func:`QSMReproducibilityLib.recon.inversion.forward_field`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .io import save_nifti
from .recon import hz_per_ppm
from .recon.inversion import forward_field

STUDY_TE_S = (0.00492, 0.00738, 0.00984, 0.01230, 0.01476, 0.01722, 0.01968)
STUDY_VOXEL_MM = (0.72, 0.72, 2.0)
SLAB_SHAPE = (128, 128, 32)
FULL_FOV_SHAPE = (320, 240, 70)

# Label values of the truth map.
AIR, BRAIN, CSF, LUMEN, WALL, LESION_RIGHT, LESION_LEFT, BONE = 0, 1, 2, 3, 4, 5, 6, 7
LESION_LABEL = {"right": LESION_RIGHT, "left": LESION_LEFT}

# χ relative to CSF (ppm), M0 (a.u.), T2* (s) per tissue.
TISSUE = {
    AIR: (9.2, 0.0, 0.001),
    BRAIN: (0.015, 1.0, 0.045),
    CSF: (0.0, 1.3, 0.20),
    LUMEN: (0.0, 1.1, 0.060),
    WALL: (0.01, 0.9, 0.040),
    BONE: (-2.0, 0.08, 0.003),
}
LESION_SIGNAL = {"hematoma": (0.85, 0.018), "calcification": (0.35, 0.010)}
LESION_CHI = {"hematoma": (0.31, 0.09, 0.10, 0.60), "calcification": (-0.21, 0.08, -0.50, -0.08)}
"""Mean, SD and limits (ppm) of a lesion's mean χ relative to CSF. Calibrated so that the simulated observers,
reading the reconstructed maps, reproduce the study's Table 1 (haematomas 0.277 ± 0.092 ppm, calcifications
−0.208 ± 0.078 ppm): the readers outline a haematoma's bright centre more than its faint margin, and the
reconstruction recovers about nine tenths of a small haematoma's χ, so the haematomas' χ is drawn a little
above the values the study measured. The limits keep every lesion visibly paramagnetic or diamagnetic, as
every lesion of the study was (Results: "consistently positive ... and negative")."""
LESION_TAPER = {"hematoma": 0.6, "calcification": 0.0}
"""How far χ falls from a lesion's centre to its margin, as a fraction of its peak: χ ∝ 1 − taper·ρ², with ρ
the lesion's normalised elliptic coordinate (0 at its centre, 1 at its margin). An intramural haematoma is a
crescent of blood in the wall that thins towards its ends and its outer margin, so that at 0.72 × 0.72 × 2 mm
its margin voxels hold less blood (partial volume) and the map shows a bright centre fading into the wall
(Park et al. 2023, Fig. 1); a calcification is dense and sharply bounded (Fig. 2). The lesion's χ in
:func:`draw_lesion` is the mean over its voxels, whatever the taper."""
UNILATERAL_FRACTION = {"hematoma": 32 / 36, "calcification": 16 / 25}
RIGHT_FRACTION = {"hematoma": 20 / 32, "calcification": 8 / 16}
"""Laterality in the study's proportions (Table 4)."""


@dataclass(frozen=True)
class PhantomCase:
    case_id: str
    lesion_type: str
    sides: tuple[str, ...]
    lesion_chi_ppm: dict
    anat_dir: Path
    chi_path: Path
    labels_path: Path
    affine: np.ndarray
    te_s: tuple[float, ...]
    b0_tesla: float
    extra: dict = field(default_factory=dict)


def _grid_mm(shape, voxel_mm):
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(shape, voxel_mm)]
    return np.meshgrid(*axes, indexing="ij")


def make_labels(shape, voxel_mm, rng: np.random.Generator, lesion_type: str, sides) -> tuple[np.ndarray, dict]:
    """Truth label map (see the label constants) and the geometry drawn for this case."""
    x, y, z = _grid_mm(shape, voxel_mm)
    half_x = shape[0] * voxel_mm[0] / 2
    half_y = shape[1] * voxel_mm[1] / 2
    a, b = 0.80 * half_x, 0.86 * half_y
    labels = np.full(shape, AIR, np.uint8)
    head = (x / (a + 4)) ** 2 + (y / (b + 4)) ** 2 <= 1
    labels[head] = BONE
    brain = (x / a) ** 2 + (y / b) ** 2 <= 1
    labels[brain] = BRAIN
    # Posterior horns of the lateral ventricles: CSF ellipsoids, posterior (+y is anterior in RAS).
    z_top = shape[2] * voxel_mm[2] / 2
    for sx in (-1, 1):
        horn = ((x - sx * 0.28 * a) / 5.0) ** 2 + ((y + 0.55 * b) / 9.0) ** 2 + ((z - 0.35 * z_top) / 14.0) ** 2 <= 1
        labels[horn & brain] = CSF
    geometry = {"arteries": {}}
    lumen_r = rng.uniform(1.5, 2.0)
    wall_t = 0.8
    for side, sx in (("right", 1), ("left", -1)):
        # RAS: +x is the patient's right, so the right artery sits at positive x.
        x0 = sx * rng.uniform(6.0, 8.0)
        y0 = 0.25 * b + rng.uniform(-2, 2)
        tilt_x = -sx * rng.uniform(0.10, 0.20)  # arteries converge towards the basilar artery upwards
        tilt_y = rng.uniform(-0.08, 0.08)
        cx = x0 + tilt_x * z
        cy = y0 + tilt_y * z
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        theta = np.arctan2(y - cy, x - cx)
        labels[(r <= lumen_r + wall_t) & brain] = WALL
        labels[(r <= lumen_r) & brain] = LUMEN
        geometry["arteries"][side] = dict(r=r, theta=theta, lumen_r=lumen_r, wall_t=wall_t)
    for side in sides:
        art = geometry["arteries"][side]
        if lesion_type == "hematoma":
            span, thick, length = rng.uniform(1.6, 2.8), rng.uniform(1.2, 2.4), rng.uniform(6.0, 12.0)
        else:
            span, thick, length = rng.uniform(1.0, 2.4), rng.uniform(1.0, 1.6), rng.uniform(3.0, 10.0)
        centre_angle = rng.uniform(-np.pi, np.pi)
        dtheta = np.angle(np.exp(1j * (art["theta"] - centre_angle)))
        z0 = rng.uniform(-0.25, 0.05) * z_top
        lesion = (
            (np.abs(dtheta) <= span / 2)
            & (art["r"] > art["lumen_r"] - 0.2)
            & (art["r"] <= art["lumen_r"] + thick)
            & (np.abs(z - z0) <= length / 2)
            & brain
        )
        labels[lesion] = LESION_LABEL[side]
        # Normalised elliptic coordinate of each lesion voxel: 0 at the lesion's centre, 1 at its margin.
        r_mid, r_half = art["lumen_r"] + (thick - 0.2) / 2, (thick + 0.2) / 2
        rho2 = ((dtheta[lesion] / (span / 2)) ** 2 + ((art["r"][lesion] - r_mid) / r_half) ** 2
                + ((z[lesion] - z0) / (length / 2)) ** 2)
        weight = 1.0 - LESION_TAPER[lesion_type] * np.clip(rho2, 0.0, 1.0)
        geometry.setdefault("lesion_weight", {})[side] = (lesion, weight)
    return labels, geometry


def susceptibility_map(labels, lesion_chi, rng: np.random.Generator, voxel_mm, lesion_weight=None) -> np.ndarray:
    """χ (ppm) from labels, with a smooth ±0.01 ppm texture in the parenchyma.

    ``lesion_weight`` (from :func:`make_labels`' geometry) gives each lesion its taper (:data:`LESION_TAPER`),
    scaled so that the lesion's mean χ is ``lesion_chi[side]``; without it a lesion is uniform.
    """
    chi = np.zeros(labels.shape, np.float32)
    for lab, (value, _, _) in TISSUE.items():
        chi[labels == lab] = value
    texture = ndimage.gaussian_filter(rng.standard_normal(labels.shape), [3.0 / v for v in voxel_mm])
    texture *= 0.01 / max(texture.std(), 1e-12)
    chi[labels == BRAIN] += texture[labels == BRAIN].astype(np.float32)
    for side, value in lesion_chi.items():
        if lesion_weight and side in lesion_weight:
            where, weight = lesion_weight[side]
            chi[where] = value * weight / weight.mean()
        else:
            chi[labels == LESION_LABEL[side]] = value
    return chi


def simulate_signal(labels, chi_ppm, lesion_type, affine, te_s, b0_tesla, snr, rng):
    """Complex multi-echo signal (X, Y, Z, E) from the truth maps; returns (magnitude, phase, field_ppm)."""
    from .io import b0_dir_from_affine, voxel_size_from_affine

    vox = voxel_size_from_affine(affine)
    field_ppm = forward_field(chi_ppm, vox, b0_dir_from_affine(affine))
    m0 = np.zeros(labels.shape, np.float32)
    t2s = np.full(labels.shape, 1e-3, np.float32)
    for lab, (_, m, t) in TISSUE.items():
        m0[labels == lab] = m
        t2s[labels == lab] = t
    lesion = (labels == LESION_RIGHT) | (labels == LESION_LEFT)
    m0[lesion], t2s[lesion] = LESION_SIGNAL[lesion_type]
    x, y, z = _grid_mm(labels.shape, vox)
    phase_offset = 0.6 + 0.004 * x - 0.003 * y + 2e-5 * (x**2 + y**2)
    freq_hz = field_ppm * hz_per_ppm(b0_tesla)
    sigma = 1.0 / snr
    n_echoes = len(te_s)
    magnitude = np.empty(labels.shape + (n_echoes,), np.float32)
    phase = np.empty(labels.shape + (n_echoes,), np.float32)
    for e, te in enumerate(te_s):
        signal = m0 * np.exp(-te / t2s) * np.exp(1j * (phase_offset + 2 * np.pi * freq_hz * te))
        noise = sigma * (rng.standard_normal(labels.shape) + 1j * rng.standard_normal(labels.shape))
        signal = signal + noise
        magnitude[..., e] = np.abs(signal)
        phase[..., e] = np.angle(signal)
    return magnitude, phase, field_ppm


def draw_lesion(lesion_type: str, rng: np.random.Generator) -> tuple[tuple[str, ...], dict]:
    """Sides and χ of the lesion(s), in the study's proportions."""
    if rng.random() < UNILATERAL_FRACTION[lesion_type]:
        sides = ("right",) if rng.random() < RIGHT_FRACTION[lesion_type] else ("left",)
    else:
        sides = ("right", "left")
    mean, sd, lo, hi = LESION_CHI[lesion_type]
    return sides, {s: _reflect_into(rng.normal(mean, sd), lo, hi) for s in sides}


def _reflect_into(value: float, lo: float, hi: float) -> float:
    """``value`` folded back into [lo, hi] at the limit it passed: a lesion χ beyond a limit becomes a plausible
    value inside it rather than a pile of lesions exactly at the limit (one draw per lesion either way)."""
    if value < lo:
        value = 2 * lo - value
    elif value > hi:
        value = 2 * hi - value
    return float(np.clip(value, lo, hi))


def bids_subject(case_id: str) -> str:
    return "sub-" + re.sub(r"[^A-Za-z0-9]", "", case_id)


def write_bids_megre(anat_dir, subject: str, magnitude, phase, affine, te_s, b0_tesla: float, *,
                     compress: bool = False, sidecar_extra: dict | None = None) -> Path:
    """Write multi-echo magnitude and phase (X, Y, Z, E) as BIDS MEGRE into ``anat_dir``.

    One ``{subject}_echo-N_part-{mag,phase}_MEGRE.nii[.gz]`` per echo and part, each with a JSON sidecar
    holding EchoTime (s), EchoNumber, MagneticFieldStrength (T), ImageType and ``sidecar_extra``.
    """
    anat_dir = Path(anat_dir)
    ext = ".nii.gz" if compress else ".nii"
    for e, te in enumerate(te_s, start=1):
        for part, data in (("mag", magnitude[..., e - 1]), ("phase", phase[..., e - 1])):
            stem = f"{subject}_echo-{e}_part-{part}_MEGRE"
            save_nifti(anat_dir / f"{stem}{ext}", data, affine)
            sidecar = {"EchoTime": float(te), "EchoNumber": e, "MagneticFieldStrength": float(b0_tesla),
                       "ImageType": ["ORIGINAL", "PRIMARY", "P" if part == "phase" else "M"]}
            sidecar.update(sidecar_extra or {})
            (anat_dir / f"{stem}.json").write_text(json.dumps(sidecar, indent=2))
    return anat_dir


def simulate_case(
    case_id: str,
    lesion_type: str,
    *,
    seed: int,
    out_dir,
    shape=SLAB_SHAPE,
    voxel_mm=STUDY_VOXEL_MM,
    te_s=STUDY_TE_S,
    b0_tesla: float = 3.0,
    snr: float = 40.0,
    full_fov: bool = False,
    compress: bool = False,
) -> PhantomCase:
    """Simulate one case and write it as BIDS MEGRE (``out_dir/anat``) with truth maps (``out_dir/truth``).

    ``snr`` is the first-echo parenchyma signal over the noise SD per channel. ``full_fov`` uses the
    study's whole 320×240×70 matrix instead of the slab around V4.
    """
    if lesion_type not in LESION_CHI:
        raise ValueError(f"lesion_type must be one of {sorted(LESION_CHI)}, got {lesion_type!r}")
    rng = np.random.default_rng(seed)
    shape = FULL_FOV_SHAPE if full_fov else tuple(shape)
    sides, lesion_chi = draw_lesion(lesion_type, rng)
    labels, geometry = make_labels(shape, voxel_mm, rng, lesion_type, sides)
    chi = susceptibility_map(labels, lesion_chi, rng, voxel_mm, geometry.get("lesion_weight"))
    affine = np.diag([*map(float, voxel_mm), 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2.0 * np.array(voxel_mm)
    magnitude, phase, field_ppm = simulate_signal(labels, chi, lesion_type, affine, te_s, b0_tesla, snr, rng)

    out_dir = Path(out_dir)
    anat = write_bids_megre(out_dir / "anat", bids_subject(case_id), magnitude, phase, affine, te_s, b0_tesla,
                            compress=compress)
    truth = out_dir / "truth"
    chi_path = save_nifti(truth / "chi.nii.gz", chi, affine, description="true chi ppm rel. CSF")
    labels_path = save_nifti(truth / "labels.nii.gz", labels, affine, description="phantom labels")
    info = {"case_id": case_id, "lesion_type": lesion_type, "sides": list(sides), "lesion_chi_ppm": lesion_chi,
            "seed": seed, "snr": snr, "labels": {"air": AIR, "brain": BRAIN, "csf": CSF, "lumen": LUMEN,
            "wall": WALL, "lesion_right": LESION_RIGHT, "lesion_left": LESION_LEFT, "bone": BONE}}
    (truth / "phantom.json").write_text(json.dumps(info, indent=2))
    return PhantomCase(case_id, lesion_type, tuple(sides), lesion_chi, anat, chi_path, labels_path, affine,
                       tuple(te_s), b0_tesla, extra={"field_ppm_max": float(np.abs(field_ppm).max())})
