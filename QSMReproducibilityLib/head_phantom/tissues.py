"""Labels of the head phantom and the MR properties of each tissue (χ, M0, T2*, chemical shift)."""

from __future__ import annotations

from dataclasses import dataclass

OUTSIDE_AIR, SKIN, FAT, MUSCLE, BONE, SINUS_AIR, MASTOID_AIR, AIRWAY = 0, 1, 2, 3, 4, 5, 6, 7
CSF, GM, WM = 8, 9, 10
CAUDATE, PUTAMEN, GLOBUS_PALLIDUS, THALAMUS, RED_NUCLEUS, SUBSTANTIA_NIGRA, DENTATE = 11, 12, 13, 14, 15, 16, 17
BRAINSTEM, SPINAL_CORD, VENOUS_BLOOD, ARTERY_LUMEN, ARTERY_WALL, CALCIFICATION, EYE = 18, 19, 20, 21, 22, 23, 24
LESION_LABEL_BASE = 40
"""Lesion k (0-based, in the order given) has label ``LESION_LABEL_BASE + k``."""
AIR_LABELS = (OUTSIDE_AIR, SINUS_AIR, MASTOID_AIR, AIRWAY)
DEEP_GREY_LABELS = (CAUDATE, PUTAMEN, GLOBUS_PALLIDUS, THALAMUS, RED_NUCLEUS, SUBSTANTIA_NIGRA, DENTATE)
PARENCHYMA_LABELS = (GM, WM, BRAINSTEM, SPINAL_CORD) + DEEP_GREY_LABELS


@dataclass(frozen=True)
class Tissue:
    """Properties of one label: χ relative to CSF (ppm), proton density M0 (a.u.), T2* (s), chemical shift (ppm)."""

    name: str
    chi_ppm: float
    m0: float
    t2star_s: float
    chemical_shift_ppm: float = 0.0


# Sources. Air: χ_air − χ_water = 0.36 − (−9.05) ≈ +9.4 ppm (SI) after Schenck 1996, Med Phys 23:815; the
# slab phantom's +9.2 is kept so that both phantoms agree. Cortical bone about −2 ppm relative to water.
# Fat: its main methylene peak lies 3.4 ppm below water (Yu et al. 2008, MRM 60:1122),
# modelled as one peak; its χ of +0.6 ppm is a susceptibility, separate from that frequency.
# Deep grey matter: of the order of the values of Deistung et al. 2013 (NeuroImage 65:299) and
# Lim et al. 2013 (NeuroImage 82:449), relative to CSF. Venous blood: Hct·(1 − Y)·Δχ_do with
# Δχ_do = 3.39 ppm (SI; Spees et al. 2001, MRM 45:533), Hct 0.42, Y 0.75 → ≈ +0.35 ppm.
TISSUE = {
    OUTSIDE_AIR: Tissue("outside_air", 9.2, 0.0, 0.001),
    SKIN: Tissue("skin", 0.0, 0.65, 0.025),
    FAT: Tissue("fat", 0.6, 1.0, 0.020, -3.4),
    MUSCLE: Tissue("muscle", 0.0, 0.60, 0.028),
    BONE: Tissue("cortical_bone", -2.0, 0.05, 0.001),
    SINUS_AIR: Tissue("sinus_air", 9.2, 0.0, 0.001),
    MASTOID_AIR: Tissue("mastoid_air", 9.2, 0.0, 0.001),
    AIRWAY: Tissue("airway_air", 9.2, 0.0, 0.001),
    CSF: Tissue("csf", 0.0, 1.0, 0.200),
    GM: Tissue("grey_matter", 0.02, 0.85, 0.050),
    WM: Tissue("white_matter", -0.03, 0.70, 0.045),
    CAUDATE: Tissue("caudate", 0.08, 0.80, 0.040),
    PUTAMEN: Tissue("putamen", 0.09, 0.80, 0.033),
    GLOBUS_PALLIDUS: Tissue("globus_pallidus", 0.18, 0.75, 0.020),
    THALAMUS: Tissue("thalamus", 0.03, 0.78, 0.045),
    RED_NUCLEUS: Tissue("red_nucleus", 0.13, 0.75, 0.025),
    SUBSTANTIA_NIGRA: Tissue("substantia_nigra", 0.15, 0.75, 0.022),
    DENTATE: Tissue("dentate_nucleus", 0.10, 0.78, 0.028),
    BRAINSTEM: Tissue("brainstem", -0.02, 0.72, 0.045),
    SPINAL_CORD: Tissue("spinal_cord", -0.02, 0.72, 0.045),
    VENOUS_BLOOD: Tissue("venous_blood", 0.35, 0.50, 0.015),
    ARTERY_LUMEN: Tissue("artery_lumen", 0.0, 1.10, 0.060),
    ARTERY_WALL: Tissue("artery_wall", 0.01, 0.90, 0.040),
    CALCIFICATION: Tissue("calcification", -0.60, 0.30, 0.008),
    EYE: Tissue("vitreous", 0.0, 1.0, 0.150),
}
LESION_SIGNAL = {"hematoma": (0.85, 0.018), "calcification": (0.30, 0.008)}
"""M0 (a.u.) and T2* (s) of each lesion kind."""
TEXTURE_PPM = 0.01
"""Standard deviation of the smooth χ texture added to the parenchyma."""
