"""A digital head phantom for multi-echo GRE at 3 T: scalp, skull, sinuses, brain and the V4 segments.

The elliptic slab of :mod:`.phantom` has no scalp, so brain masks by magnitude threshold work on it but
fail on real heads. This phantom has what real heads have around the brain: skin and bright subcutaneous
fat (brighter still under the receive coil's surface sensitivity), a dark skull with a skull base (clivus,
petrous bones, occipital bone around the foramen magnum), air in the paranasal sinuses, mastoid cells
and pharynx, neck muscles and a face. Inside: a CSF layer under the skull, cerebrum (cortical ribbon over
white matter), cerebellum with dentate nuclei, a tilted brainstem continuing as the spinal cord, the
ventricles (the posterior horns are the study's CSF reference), deep grey nuclei, the dural venous
sinuses, a choroid-plexus calcification, and the arteries of the study: both intracranial vertebral
arteries (V4) in the premedullary cistern joining into the basilar artery, with wall lesions
(intramural haematomas, calcifications) whose partial-volume truth is recorded.

Coordinates are millimetres in RAS (+x patient right, +y anterior, +z superior), origin near the
anterior commissure. The geometry is analytic (ellipsoids, super-ellipsoids, tubes along splines,
half-spaces), evaluated at voxel centres, so any grid can be used. The study grid is 320×240×70 voxels of
0.72×0.72×2 mm with the 230 mm axis along anterior–posterior: voxel axis 0 runs posterior (RAS −y),
axis 1 runs towards the patient's right (RAS +x), axis 2 runs superior (RAS +z), so B0 lies along voxel axis 2.

Susceptibilities are relative to CSF (ppm). The signal is
S_e = M0·B1(r)·exp(−TE_e/T2*)·exp(i(φ0(r) + 2π(γ̄B0·Δb(r) + f_cs)·TE_e)) + complex Gaussian noise, with
Δb the dipole field of χ and f_cs the chemical shift of fat. The head reaches beyond the slab (vertex
above, neck and shoulders below); the field of those parts is computed on a coarser grid and added
(see :func:`dipole_field_ppm`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import phantom as _slab_phantom
from .recon import hz_per_ppm
from .recon.inversion import forward_field

STUDY_SHAPE = (320, 240, 70)
STUDY_VOXEL_MM = (0.72, 0.72, 2.0)
STUDY_TE_S = _slab_phantom.STUDY_TE_S
SLAB_CENTRE_Z_MM = -15.0
"""Default slab centre: 140 mm from z = −85 (25 mm below the foramen magnum) to z = +55."""
FOV_CENTRE_MM = (0.0, -10.0)
"""In-plane centre (x, y) of the field of view; the head spans y −116…+100 and x −78…+78 (mm)."""

# ---------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------
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

# ---------------------------------------------------------------------------------------------------
# Landmarks (mm, RAS, origin near the anterior commissure)
# ---------------------------------------------------------------------------------------------------
FORAMEN_MAGNUM_Z_MM = -60.0
"""The foramen magnum plane (basion–opisthion), about 60 mm below the AC–PC plane."""
BASION = (0.0, -30.0, -60.0)
OPISTHION = (0.0, -66.0, -60.0)
DORSUM_SELLAE = (0.0, -10.0, -18.0)
FORAMEN_MAGNUM_CENTRE = (0.0, -48.0)
FORAMEN_MAGNUM_SEMI_MM = (15.0, 18.0)
"""Transverse and antero-posterior semi-axes of the foramen magnum (30 × 36 mm)."""
VERTEBROBASILAR_JUNCTION = (0.0, -27.0, -38.0)
"""Where the V4 segments join, at the pontomedullary junction, 22 mm above the foramen magnum."""
BRAIN_MASK_BELOW_FM_MM = 10.0
"""The true brain mask takes the spinal canal (cord and its CSF) this far below the foramen magnum, to
about the level of the atlas: V4 lesions next to the foramen magnum keep tissue around them, as a
brain extraction that follows the cord would."""

_CAVITY_SUP = ((0.0, -16.0, 7.0), (63.0, 82.0, 72.0))
_CAVITY_POST = ((0.0, -66.0, -36.0), (53.0, 38.0, 26.0))
SKULL_MM, SCALP_MM, SKIN_MM, CSF_LAYER_MM = 6.5, 5.5, 2.0, 2.0
"""Vault thickness (frontal and parietal; thinner over the temporal squama, thicker at the occiput, see
:func:`_vault_thickness`), scalp (skin + subcutaneous fat) over the vault, skin, subarachnoid CSF."""
BASE_PLATE_MM = (2.5, 3.0, 6.0)
"""Thickness of the fossae's floors: orbital roofs and cribriform plate, middle fossae, occipital bone."""
_CLIVUS_SLOPE = (DORSUM_SELLAE[2] - BASION[2]) / (DORSUM_SELLAE[1] - BASION[1])  # dz/dy along the clivus
_CLIVUS_NORMAL = np.array([0.0, -(DORSUM_SELLAE[2] - BASION[2]), DORSUM_SELLAE[1] - BASION[1]])
_CLIVUS_NORMAL /= np.linalg.norm(_CLIVUS_NORMAL)  # points posterior-superior, into the posterior fossa
CLIVUS_THICKNESS_MM = 11.0


@dataclass(frozen=True)
class Lesion:
    """A wall lesion of one V4 segment.

    side : 'right' or 'left'.
    fraction : position of its centre along the V4 centreline, 0 at the foramen magnum, 1 at the
        vertebrobasilar junction.
    kind : 'hematoma' (intramural haematoma, paramagnetic) or 'calcification' (diamagnetic).
    chi_ppm : its susceptibility relative to CSF.
    span_deg : angular span of the crescent around the vessel.
    thickness_mm : radial thickness from the lumen surface outwards (the wall is 0.8 mm; a haematoma of
        2–3 mm is a crescent thickening of the wall).
    length_mm : extent along the vessel.
    angle_deg : direction of the crescent's middle in the plane across the vessel, 0 = anterior,
        +90 = patient left, ±180 = posterior.
    """

    side: str
    fraction: float
    kind: str
    chi_ppm: float
    span_deg: float = 140.0
    thickness_mm: float = 2.5
    length_mm: float = 8.0
    angle_deg: float = 0.0


DEFAULT_LESIONS = (
    Lesion("right", 0.15, "hematoma", 0.28, span_deg=150.0, thickness_mm=2.5, length_mm=8.0, angle_deg=-60.0),
    Lesion("left", 0.50, "calcification", -0.80, span_deg=90.0, thickness_mm=2.0, length_mm=4.0, angle_deg=45.0),
    Lesion("left", 0.80, "hematoma", 0.28, span_deg=120.0, thickness_mm=2.2, length_mm=6.0, angle_deg=100.0),
)
"""Near the foramen magnum (right V4), mid-segment (left) and near the junction (left)."""

ARTERY_WALL_MM = 0.8
V4_LUMEN_RADIUS_MM = 1.75
BASILAR_LUMEN_RADIUS_MM = 1.7

# Structures (finer than labels) for the region masks; id = index + 1.
_STRUCTURES = (
    "skin", "scalp_fat", "soft_tissue", "orbital_fat", "eye", "skull", "skull_base", "clivus", "petrous",
    "mandible", "vertebra", "sinus_wall", "frontal_sinus", "ethmoid", "sphenoid_sinus", "maxillary_sinus",
    "nasal_cavity", "pharynx", "mastoid", "intracranial_csf", "cerebrum", "cerebellum", "medulla", "pons",
    "midbrain", "spinal_cord", "caudate", "putamen", "globus_pallidus", "thalamus", "red_nucleus",
    "substantia_nigra", "dentate", "lateral_ventricle", "posterior_horn_right", "posterior_horn_left",
    "third_ventricle", "fourth_ventricle", "choroid_calcification", "superior_sagittal_sinus",
    "straight_sinus", "transverse_sinus", "sigmoid_sinus", "jugular_vein", "deep_vein", "v4_right",
    "v4_left", "v3_right", "v3_left", "basilar", "internal_carotid", "glabella", "zygoma",
)
_SID = {name: i + 1 for i, name in enumerate(_STRUCTURES)}


# ---------------------------------------------------------------------------------------------------
# Signed-distance primitives (mm; negative inside). Arguments broadcast (x, y, z arrays).
# ---------------------------------------------------------------------------------------------------
def _ellipsoid(x, y, z, centre, semi):
    """Approximate signed distance to an ellipsoid, k0(k0 − 1)/k1 (exact on the axes and for spheres)."""
    px, py, pz = (x - centre[0]) / semi[0], (y - centre[1]) / semi[1], (z - centre[2]) / semi[2]
    k0 = np.sqrt(px * px + py * py + pz * pz)
    k1 = np.sqrt((px / semi[0]) ** 2 + (py / semi[1]) ** 2 + (pz / semi[2]) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


def _rotated_ellipsoid(x, y, z, centre, semi, yaw_deg=0.0, pitch_deg=0.0):
    """Ellipsoid turned by ``yaw`` about z (from +y towards +x) then ``pitch`` about x (nose up)."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    u = dx * math.cos(a) - dy * math.sin(a)
    v = dx * math.sin(a) + dy * math.cos(a)
    v, w = v * math.cos(b) + dz * math.sin(b), -v * math.sin(b) + dz * math.cos(b)
    return _ellipsoid(u, v, w, (0.0, 0.0, 0.0), semi)


def _super_ellipsoid(x, y, z, centre, semi, power):
    """Approximate signed distance to |x/a|^p + |y/b|^p + |z/c|^p = 1 (ρ − 1)/|∇ρ|."""
    q = [np.abs((c - o) / s) + np.float32(1e-6) for c, o, s in zip((x, y, z), centre, semi)]
    qp = [v**power for v in q]
    rho = (qp[0] + qp[1] + qp[2]) ** (1.0 / power)
    grad = np.sqrt(sum((v ** (power - 1) / s) ** 2 for v, s in zip(q, semi))) * rho ** (1 - power)
    return (rho - 1) / np.maximum(grad, np.float32(1e-6))


def _elliptic_cylinder(x, y, centre, semi):
    """Signed distance to an elliptic cylinder along z (approximate, as :func:`_ellipsoid`)."""
    px, py = (x - centre[0]) / semi[0], (y - centre[1]) / semi[1]
    k0 = np.sqrt(px * px + py * py)
    k1 = np.sqrt((px / semi[0]) ** 2 + (py / semi[1]) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


def _max(*values):
    """Elementwise maximum of broadcastable arrays (intersection of signed distances)."""
    return functools.reduce(np.maximum, values)


def _smin(a, b, k):
    """Smooth minimum (union) of two signed distances with blending width ``k`` mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _spline(points, radii=None, step_mm=1.0):
    """Catmull–Rom spline through ``points`` (N, 3), sampled about every ``step_mm``; radii interpolated."""
    p = np.asarray(points, float)
    r = np.zeros(len(p)) if radii is None else np.asarray(radii, float)
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out, rad = [p[0]], [r[0]]
    for i in range(len(p) - 1):
        p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
        n = max(2, int(math.ceil(np.linalg.norm(p2 - p1) / step_mm)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        seg = 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                     + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        out.extend(seg)
        rad.extend(r[i] + (r[i + 1] - r[i]) * t[:, 0])
    return np.array(out), np.array(rad)


def _arc_length(points):
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


# ---------------------------------------------------------------------------------------------------
# Analytic anatomy shared by every grid
# ---------------------------------------------------------------------------------------------------
def _petrous_ridge_y(x):
    """y of the petrous ridge (middle/posterior fossa border), running posterolaterally from the apex."""
    return -14.0 - 0.6 * np.maximum(np.abs(x) - 16.0, 0.0)


def _sphenoid_ridge_y(x):
    """y of the sphenoid ridge (anterior/middle fossa border)."""
    return 10.0 + 0.3 * np.abs(x)


def _clivus_z(y):
    """z of the clivus' dorsal surface at antero-posterior position y."""
    return BASION[2] + (y - BASION[1]) * _CLIVUS_SLOPE


def _floor_z(x, y):
    """Height of the cranial fossae's floors (anterior, middle, posterior) at (x, y)."""
    ant = -20.0 - 5.0 * np.exp(-((x / 12.0) ** 2))  # orbital roofs, the cribriform plate lower in the midline
    mid = -45.0 + 23.0 * np.exp(-((x / 17.0) ** 4))  # middle fossae; the sella region in the midline
    post = np.maximum(_clivus_z(y), FORAMEN_MAGNUM_Z_MM + 2.0)  # clivus, then occipital bone
    return ant, mid, post


def _quadrant(u, v):
    """Exact 2-D signed distance of the quadrant {u ≤ 0, v ≤ 0} (u, v signed distances to its two faces)."""
    return np.sqrt(np.maximum(u, 0.0) ** 2 + np.maximum(v, 0.0) ** 2) + np.minimum(np.maximum(u, v), 0.0)


def _above_floor(x, y, z):
    """Signed distance (approximate) of the space above the fossae's floors.

    The bone below each fossa is a quadrant (below its floor, on its side of the sphenoid or petrous ridge);
    the space above is outside all three, so the steps at the ridges are walls and no seam appears
    between fossae.
    """
    ant, mid, _ = _floor_z(x, y)
    y_sr, y_pr = _sphenoid_ridge_y(x), _petrous_ridge_y(x)
    in_ant = (y_sr - y) / np.float32(math.sqrt(1.09))
    behind_ridge = (y - y_pr) / np.where(np.abs(x) > 16.0, np.float32(math.sqrt(1.36)), np.float32(1.0))
    between = np.maximum(-in_ant, -behind_ridge)  # signed distance to the middle fossa's y-interval
    yc = np.minimum(y, y_pr)
    clivus = (z - _clivus_z(yc)) / np.float32(math.sqrt(1 + _CLIVUS_SLOPE**2))
    post = np.maximum(clivus, z - (FORAMEN_MAGNUM_Z_MM + 2.0))
    return _max(-_quadrant(z - ant, in_ant), -_quadrant(z - mid, between),
                -_quadrant(post, behind_ridge)).astype(np.float32)


_INCISURA_HALF_WIDTH_MM = 15.0
_INCISURA_FLOOR_Z_MM = -6.0


def _tentorium_z(x, y):
    """Height of the tentorium cerebelli: from its apex over the straight sinus down to the transverse
    sinuses behind and to the petrous ridges in front; the brainstem passes the incisura (|x| < 15 mm)."""
    ax = np.abs(x)
    back = 2.0 - 0.45 * np.maximum(-45.0 - y, 0.0) - 0.3 * ax
    ridge = _petrous_ridge_y(x)
    t = np.clip((y + 45.0) / np.maximum(ridge + 45.0, 1.0), 0.0, 1.0)
    front = (1 - t) * (2.0 - 0.3 * ax) + t * (-30.0)
    return np.where(y > -45.0, front, back).astype(np.float32)


def _in_incisura(x, y):
    return (np.abs(x) < _INCISURA_HALF_WIDTH_MM) & (y > -47.0)


def _vault_thickness(x, y, z):
    """Calvarial thickness (mm): :data:`SKULL_MM`, 3.5 mm over the temporal squama, 8 mm at the occiput."""
    lateral = np.clip((np.abs(x) - 35.0) / 20.0, 0.0, 1.0)
    temporal = lateral * np.exp(-(((y + 5.0) / 28.0) ** 2) - ((z + 15.0) / 20.0) ** 2)
    occipital = np.exp(-(((y + 100.0) / 20.0) ** 2) - ((z + 10.0) / 25.0) ** 2)
    return (SKULL_MM - 3.0 * temporal + 1.5 * occipital).astype(np.float32)


def _cavity_raw(x, y, z):
    """Inner table of the cranial vault: supratentorial ellipsoid joined smoothly to the posterior fossa."""
    return _smin(_ellipsoid(x, y, z, *_CAVITY_SUP), _ellipsoid(x, y, z, *_CAVITY_POST), 12.0)


_PETROUS = {s: ([(s * 17.0, -17.0, -37.0), (s * 34.0, -27.0, -39.0), (s * 52.0, -39.0, -42.0)], [5.5, 9.0, 12.0])
            for s in (-1, 1)}
_CANAL = ([(0.0, -47.0, -52.0), (0.0, -46.5, -62.0), (0.0, -46.0, -75.0), (0.0, -46.0, -120.0),
           (0.0, -48.0, -250.0), (0.0, -50.0, -450.0)], [11.5, 11.0, 9.0, 8.0, 7.5, 7.0])
_CORD = ([(0.0, -46.0, -62.0), (0.0, -46.0, -75.0), (0.0, -46.0, -120.0), (0.0, -48.0, -250.0),
          (0.0, -50.0, -450.0)], [6.0, 5.5, 5.0, 4.5, 4.0])
_MEDULLA = ([(0.0, -46.0, -70.0), (0.0, -45.0, -60.0), (0.0, -43.0, -50.0), (0.0, -41.0, -40.0),
             (0.0, -40.0, -34.0)], [5.5, 6.0, 7.2, 8.5, 9.0])


def _polyline_sd(x, y, z, tube: "Tube"):
    """Signed distance to a tube of varying radius, evaluated on broadcast arrays (all segments)."""
    pts, rad = tube.points, tube.radii
    out = None
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        ab = b - a
        t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab), 0.0, 1.0)
        d = (np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2)
             - (rad[i] + t * (rad[i + 1] - rad[i])))
        out = d if out is None else np.minimum(out, d)
    return out


def _brainstem_sd(x, y, z):
    """Signed distance of the brainstem: the tilted medulla, the pons, the midbrain and cerebral peduncles."""
    bs = _polyline_sd(x, y, z, Tube.through(*_MEDULLA, 2.0))
    bs = _smin(bs, _ellipsoid(x, y, z, (0.0, -38.5, -27.0), (17.0, 12.0, 12.5)), 4.0)
    bs = _smin(bs, _ellipsoid(x, y, z, (0.0, -30.0, -8.0), (14.0, 10.0, 9.0)), 4.0)
    for s in (-1, 1):
        peduncle = Tube.through([(s * 7.0, -22.0, -15.0), (s * 11.0, -14.0, -7.0), (s * 15.0, -8.0, 1.0)],
                                [5.0, 5.0, 4.5], 2.0)
        bs = _smin(bs, _polyline_sd(x, y, z, peduncle), 3.0)
    return bs


_BRAINSTEM_AXIS = ((-62.0, -45.0), (-40.0, -41.0), (-27.0, -38.5), (-8.0, -30.0))
"""(z, y) of the brainstem's axis: medulla, pons, midbrain centres (it tilts: lower is more posterior)."""


def _brainstem_axis_y(z):
    zs, ys = zip(*_BRAINSTEM_AXIS)
    return np.interp(z, zs, ys)


@dataclass(frozen=True)
class Tube:
    """A vessel or duct: dense centreline (N, 3) mm, radius per point (N,) mm, arc length (N,) mm."""

    points: np.ndarray
    radii: np.ndarray
    arc_mm: np.ndarray

    @classmethod
    def through(cls, control, radii, step_mm=1.0):
        pts, rad = _spline(control, radii, step_mm)
        return cls(pts, rad, _arc_length(pts))

    def at(self, s_mm: float):
        """Point and unit tangent at arc length ``s_mm``."""
        i = int(np.clip(np.searchsorted(self.arc_mm, s_mm) - 1, 0, len(self.points) - 2))
        seg = self.points[i + 1] - self.points[i]
        t = (s_mm - self.arc_mm[i]) / max(np.linalg.norm(seg), 1e-9)
        return self.points[i] + t * seg, seg / np.linalg.norm(seg)


@dataclass(frozen=True)
class LesionFrame:
    """A lesion placed on its artery: centre (mm), unit tangent, and the crescent's middle direction."""

    lesion: Lesion
    label: int
    centre_mm: np.ndarray
    tangent: np.ndarray
    direction: np.ndarray
    inner_radius_mm: float

    @property
    def volume_mm3(self) -> float:
        """Analytic volume: an annular sector of the given span, radii r…r+thickness, straight along the axis."""
        r0, r1 = self.inner_radius_mm, self.inner_radius_mm + self.lesion.thickness_mm
        return math.radians(self.lesion.span_deg) / 2 * (r1**2 - r0**2) * self.lesion.length_mm

    def inside(self, x, y, z):
        """Boolean: points (broadcast arrays, mm) inside the lesion."""
        d = (x - self.centre_mm[0], y - self.centre_mm[1], z - self.centre_mm[2])
        a = d[0] * self.tangent[0] + d[1] * self.tangent[1] + d[2] * self.tangent[2]
        w = [d[i] - a * self.tangent[i] for i in range(3)]
        r = np.sqrt(w[0] ** 2 + w[1] ** 2 + w[2] ** 2)
        cos = (w[0] * self.direction[0] + w[1] * self.direction[1] + w[2] * self.direction[2]) / np.maximum(r, 1e-9)
        return ((np.abs(a) <= self.lesion.length_mm / 2) & (r >= self.inner_radius_mm)
                & (r <= self.inner_radius_mm + self.lesion.thickness_mm)
                & (cos >= math.cos(math.radians(self.lesion.span_deg) / 2)))


@dataclass(frozen=True)
class HeadGeometry:
    """Grid-independent geometry: landmarks, vessel and ventricle centrelines, lesion placements.

    arteries/veins/ventricles map a name to a :class:`Tube`. ``v4_arc_mm[side]`` is the arc length of
    the vertebral artery tube at the foramen magnum and at the vertebrobasilar junction (fraction 0 and 1).
    """

    arteries: dict
    veins: dict
    ventricles: dict
    v4_arc_mm: dict
    lesions: tuple
    foramen_magnum_z_mm: float = FORAMEN_MAGNUM_Z_MM
    vertebrobasilar_junction_mm: tuple = VERTEBROBASILAR_JUNCTION

    def v4_point(self, side: str, fraction: float):
        """Point (mm) and unit tangent of the ``side`` V4 centreline at ``fraction`` (0 FM … 1 junction)."""
        s0, s1 = self.v4_arc_mm[side]
        return self.arteries[f"vertebral_{side}"].at(s0 + fraction * (s1 - s0))

    @property
    def lesion_labels(self) -> dict:
        return {f.label: f for f in self.lesions}


def _surface_point(origin, direction, inset_mm, sdf=_cavity_raw, far_mm=150.0):
    """Point ``inset_mm`` inside the surface sdf = 0 along the ray origin + t·direction (bisection)."""
    o, d = np.asarray(origin, float), np.asarray(direction, float) / np.linalg.norm(direction)
    lo, hi = 0.0, far_mm
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        p = o + mid * d
        if float(sdf(p[0], p[1], p[2])) < 0:
            lo = mid
        else:
            hi = mid
    return o + (lo - inset_mm) * d


def _sinus_paths():
    """Superior sagittal, straight, transverse and sigmoid sinuses and internal jugular veins."""
    centre = np.array(_CAVITY_SUP[0])
    sss = []
    for theta in np.radians(np.arange(40.0, -150.0, -5.0)):  # from anterior-superior over the vertex backwards
        p = _surface_point(centre, (0.0, math.sin(theta), math.cos(theta)), 5.0)
        if p[2] <= _tentorium_z(0.0, p[1]) + 2.0 and p[1] < -60:
            break
        sss.append(p)
    torcula = sss[-1]
    veins = {"superior_sagittal_sinus": Tube.through(sss, np.linspace(2.0, 4.5, len(sss)), 2.0)}
    galen = (0.0, -44.0, _tentorium_z(0.0, -44.0))
    veins["straight_sinus"] = Tube.through([galen, tuple(0.5 * (np.array(galen) + torcula)), torcula], [2.5, 2.8, 3.0])
    veins["deep_vein"] = Tube.through([(0.0, -14.0, 12.0), (0.0, -30.0, 9.0), (0.0, -38.0, 5.0), galen],
                                      [1.2, 1.5, 2.2, 2.5])
    for s, side in ((1, "right"), (-1, "left")):
        pts = [torcula]
        z = float(torcula[2])
        for phi in np.radians(np.arange(8.0, 76.0, 8.0)):
            direction = (s * math.sin(phi), -math.cos(phi), 0.0)
            for _ in range(4):
                p = _surface_point((0.0, -55.0, z), direction, 4.0)
                z = float(_tentorium_z(p[0], p[1])) - 2.0
            pts.append(p)
            if abs(p[0]) >= 44.0:
                break
        veins[f"transverse_sinus_{side}"] = Tube.through(pts, np.linspace(3.0, 3.6, len(pts)), 2.0)
        last = pts[-1]
        sigmoid = [last, (s * 46.0, -56.0, -38.0), (s * 44.0, -49.0, -48.0), (s * 37.0, -43.0, -55.0),
                   (s * 29.0, -38.0, -61.0)]
        veins[f"sigmoid_sinus_{side}"] = Tube.through(sigmoid, [3.6, 4.0, 4.0, 4.2, 5.0], 1.5)
        veins[f"jugular_vein_{side}"] = Tube.through(
            [(s * 29.0, -38.0, -61.0), (s * 29.0, -35.0, -72.0), (s * 31.0, -28.0, -95.0), (s * 33.0, -22.0, -130.0),
             (s * 36.0, -20.0, -200.0), (s * 40.0, -20.0, -300.0), (s * 40.0, -20.0, -450.0)],
            [5.0, 5.5, 5.5, 6.0, 6.0, 6.0, 6.0], 2.0)
    return veins


def _artery_paths():
    arteries, v4_arc = {}, {}
    for s, side in ((1, "right"), (-1, "left")):
        control = [(s * 24.0, -36.0, -160.0), (s * 24.0, -36.0, -120.0), (s * 25.0, -38.0, -95.0),
                   (s * 27.0, -42.0, -77.0), (s * 27.0, -51.0, -69.0), (s * 19.0, -55.0, -65.0),
                   (s * 13.5, -47.0, -61.0), (s * 12.0, -43.0, -58.0), (s * 9.0, -38.5, -54.0),
                   (s * 6.5, -33.5, -49.0), (s * 3.5, -29.5, -43.5), (s * 1.2, -27.5, -40.0),
                   VERTEBROBASILAR_JUNCTION]
        radii = [2.0, 2.0, 2.0, 2.0, 2.0, 1.9, 1.8] + [V4_LUMEN_RADIUS_MM] * 6
        tube = Tube.through(control, radii, 0.5)
        arteries[f"vertebral_{side}"] = tube
        below = tube.points[:, 2] < FORAMEN_MAGNUM_Z_MM
        i = int(np.flatnonzero(below)[-1])  # last sample below the foramen magnum plane
        z0, z1 = tube.points[i, 2], tube.points[i + 1, 2]
        s_fm = tube.arc_mm[i] + (FORAMEN_MAGNUM_Z_MM - z0) / (z1 - z0) * (tube.arc_mm[i + 1] - tube.arc_mm[i])
        v4_arc[side] = (float(s_fm), float(tube.arc_mm[-1]))
        arteries[f"internal_carotid_{side}"] = Tube.through(
            [(s * 26.0, -14.0, -450.0), (s * 26.0, -14.0, -200.0), (s * 26.0, -18.0, -110.0),
             (s * 25.0, -22.0, -78.0), (s * 24.0, -24.0, -62.0), (s * 19.0, -14.0, -50.0), (s * 15.0, -7.0, -42.0),
             (s * 14.0, -4.0, -32.0), (s * 14.5, 6.0, -28.0), (s * 14.0, 10.0, -21.0), (s * 13.5, 5.0, -15.0),
             (s * 15.0, 2.0, -11.0)], [2.6, 2.5, 2.5, 2.4, 2.3, 2.3, 2.2, 2.2, 2.1, 2.0, 2.0, 1.9], 1.0)
    arteries["basilar"] = Tube.through(
        [VERTEBROBASILAR_JUNCTION, (0.0, -24.5, -32.0), (0.0, -22.0, -26.0), (0.0, -19.5, -20.0), (0.0, -17.5, -16.0)],
        [BASILAR_LUMEN_RADIUS_MM] * 5, 0.5)
    return arteries, v4_arc


def _ventricle_paths():
    vent = {}
    for s, side in ((1, "right"), (-1, "left")):
        main = [(s * 6.0, 30.0, 8.0), (s * 7.5, 18.0, 14.0), (s * 10.0, 0.0, 20.0), (s * 16.0, -18.0, 21.0),
                (s * 24.0, -36.0, 14.0), (s * 23.0, -50.0, 10.0), (s * 19.0, -66.0, 8.0)]
        vent[f"lateral_{side}"] = Tube.through(main, [3.0, 5.0, 5.0, 5.0, 7.5, 4.5, 1.8], 1.0)
        vent[f"temporal_horn_{side}"] = Tube.through(
            [(s * 25.0, -34.0, 11.0), (s * 31.0, -28.0, -5.0), (s * 33.0, -14.0, -17.0), (s * 31.0, -3.0, -23.0)],
            [6.0, 4.0, 3.0, 2.0], 1.0)
    return vent


def _lesion_frames(arteries, v4_arc, lesions):
    frames = []
    for k, lesion in enumerate(lesions):
        if lesion.side not in ("right", "left"):
            raise ValueError(f"lesion side must be 'right' or 'left', got {lesion.side!r}")
        if lesion.kind not in LESION_SIGNAL:
            raise ValueError(f"lesion kind must be one of {sorted(LESION_SIGNAL)}, got {lesion.kind!r}")
        if not 0.0 <= lesion.fraction <= 1.0:
            raise ValueError(f"lesion fraction must lie in 0…1, got {lesion.fraction}")
        tube = arteries[f"vertebral_{lesion.side}"]
        s0, s1 = v4_arc[lesion.side]
        centre, tangent = tube.at(s0 + lesion.fraction * (s1 - s0))
        ant = np.array([0.0, 1.0, 0.0]) - tangent[1] * tangent
        ant /= np.linalg.norm(ant)
        left = np.array([-1.0, 0.0, 0.0]) + tangent[0] * tangent + (ant[0]) * ant  # RAS −x: patient left
        left /= np.linalg.norm(left)
        a = math.radians(lesion.angle_deg)
        direction = math.cos(a) * ant + math.sin(a) * left
        frames.append(LesionFrame(lesion, LESION_LABEL_BASE + k, centre, tangent, direction, V4_LUMEN_RADIUS_MM))
    return tuple(frames)


def head_geometry(*, lesions=DEFAULT_LESIONS) -> HeadGeometry:
    """The grid-independent geometry of the head with the lesions placed on their V4 segments.

    Parameters
    ----------
    lesions : sequence of :class:`Lesion`.

    Returns
    -------
    HeadGeometry
        Vessel, sinus and ventricle centrelines (mm, RAS), the V4 arc lengths at the foramen magnum and
        the vertebrobasilar junction, and one :class:`LesionFrame` per lesion.

    Raises
    ------
    ValueError
        For a side other than 'right'/'left', an unknown kind, or a fraction outside 0…1.
    """
    arteries, v4_arc = _artery_paths()
    return HeadGeometry(arteries=arteries, veins=_sinus_paths(), ventricles=_ventricle_paths(), v4_arc_mm=v4_arc,
                        lesions=_lesion_frames(arteries, v4_arc, tuple(lesions)))


# ---------------------------------------------------------------------------------------------------
# Painting on a grid
# ---------------------------------------------------------------------------------------------------
class _Canvas:
    """Labels and structure ids on a grid given by its axes: axis 0 → RAS y, axis 1 → RAS x, axis 2 → RAS z."""

    def __init__(self, ax_y, ax_x, ax_z):
        self.ax = tuple(np.asarray(a, np.float32) for a in (ax_y, ax_x, ax_z))
        self.shape = tuple(len(a) for a in self.ax)
        self.labels = np.full(self.shape, OUTSIDE_AIR, np.uint8)
        self.struct = np.zeros(self.shape, np.uint8)

    def box(self, lo, hi):
        """Index slices of the voxels whose centres lie in the RAS box lo…hi (x, y, z), or None."""
        out = []
        for a, l, h in zip(self.ax, (lo[1], lo[0], lo[2]), (hi[1], hi[0], hi[2])):
            idx = np.flatnonzero((a >= l) & (a <= h))
            if idx.size == 0:
                return None
            out.append(slice(int(idx[0]), int(idx[-1]) + 1))
        return tuple(out)

    def coords(self, sl=(slice(None),) * 3):
        """Broadcastable RAS coordinates (x, y, z) of the voxels in ``sl``."""
        return (self.ax[1][sl[1]][None, :, None], self.ax[0][sl[0]][:, None, None], self.ax[2][sl[2]][None, None, :])

    def paint(self, label, mask, sl=(slice(None),) * 3, struct=None, where=None):
        region = self.labels[sl]
        mask = np.broadcast_to(mask, region.shape)
        if where is not None:
            mask = mask & where
        region[mask] = label
        if struct is not None:
            self.struct[sl][mask] = _SID[struct]

    def shape_sd(self, fn, lo, hi):
        """Evaluate ``fn(x, y, z)`` on the voxels of the box lo…hi: (slices, values) or (None, None)."""
        sl = self.box(lo, hi)
        if sl is None:
            return None, None
        return sl, np.broadcast_to(fn(*self.coords(sl)), tuple(s.stop - s.start for s in sl))

    def paint_shape(self, label, fn, lo, hi, struct=None, level=0.0, where_labels=None):
        sl, sd = self.shape_sd(fn, lo, hi)
        if sl is None:
            return None
        where = None if where_labels is None else np.isin(self.labels[sl], where_labels)
        self.paint(label, sd <= level, sl, struct, where)
        return sl

    def tube(self, tube: Tube, margin_mm: float):
        """Distance to the tube's surface (mm, negative inside) and arc length of the nearest point, on a box.

        Returns (slices, distance, arc) or None. Each centreline segment is evaluated on its own small box.
        """
        pts, rad, arc = tube.points, tube.radii, tube.arc_mm
        reach = rad.max() + margin_mm
        sl = self.box(pts.min(0) - reach, pts.max(0) + reach)
        if sl is None:
            return None
        shape = tuple(s.stop - s.start for s in sl)
        dist = np.full(shape, 1e4, np.float32)
        s_at = np.zeros(shape, np.float32)
        for i in range(len(pts) - 1):
            a, b = pts[i], pts[i + 1]
            r = max(rad[i], rad[i + 1]) + margin_mm
            sub = self.box(np.minimum(a, b) - r, np.maximum(a, b) + r)
            if sub is None:
                continue
            ab = b - a
            length2 = float(ab @ ab)
            if length2 == 0.0:
                continue
            x, y, z = self.coords(sub)
            t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / length2, 0.0, 1.0)
            d = (np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2)
                 - (rad[i] + t * (rad[i + 1] - rad[i])))
            loc = tuple(slice(u.start - v.start, u.stop - v.start) for u, v in zip(sub, sl))
            cur, cur_s = dist[loc], s_at[loc]
            better = d < cur
            cur[better] = d[better]
            cur_s[better] = np.broadcast_to(arc[i] + t * (arc[i + 1] - arc[i]), d.shape)[better]
        return sl, dist, s_at


def _waves(ax_y, ax_x, ax_z, seed, n_waves, wavelength_mm):
    """Smooth noise of unit standard deviation: a sum of products of cosines (resolution independent)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(n_waves, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    k = 2 * np.pi / rng.uniform(*wavelength_mm, size=(n_waves, 1)) * direction
    phase = rng.uniform(0, 2 * np.pi, size=(n_waves, 3))
    cy = np.cos(k[:, 1:2] * np.asarray(ax_y)[None] + phase[:, 1:2]).astype(np.float32)
    cx = np.cos(k[:, 0:1] * np.asarray(ax_x)[None] + phase[:, 0:1]).astype(np.float32)
    cz = np.cos(k[:, 2:3] * np.asarray(ax_z)[None] + phase[:, 2:3]).astype(np.float32)
    plane = cy[:, :, None] * cx[:, None, :]
    out = np.tensordot(plane, cz, axes=(0, 0))
    return (out / np.float32(math.sqrt(n_waves / 8.0))).astype(np.float32)


_ANATOMY_SEED = 20240611
"""Seed of the fixed anatomical patterns (sulci, mastoid and ethmoid cells)."""
CORTEX_MM = 3.0
"""Thickness of the cortical grey-matter ribbon."""
_GYRUS_WAVELENGTH_MM = (20.0, 34.0)
_GYRUS_GRADIENT = 2 * np.pi * math.sqrt(np.mean(1.0 / np.linspace(*_GYRUS_WAVELENGTH_MM, 101) ** 2))
_SULCUS_HALF_WIDTH_MM, _SULCUS_DEPTH_MM = 0.6, 12.0


def _head_outline(x, y, z, cavity_raw):
    """Outer skin surface: vault, neck, face, nose, brow, temporalis, mastoids and shoulders, joined smoothly."""
    h = _smin(cavity_raw - (SKULL_MM + SCALP_MM),
              np.maximum(_elliptic_cylinder(x, y, (0.0, -32.0), (56.0, 52.0)), z + 35.0), 18.0)
    h = _smin(h, _super_ellipsoid(x, y, z, (0.0, 36.0, -66.0), (56.0, 52.0, 56.0), 2.6), 12.0)
    h = _smin(h, _ellipsoid(x, y, z, (0.0, 88.0, -46.0), (11.0, 12.0, 22.0)), 6.0)
    h = _smin(h, _ellipsoid(x, y, z, (0.0, 72.0, -8.0), (30.0, 10.0, 15.0)) - SCALP_MM, 10.0)
    for s in (-1, 1):
        h = _smin(h, _ellipsoid(x, y, z, (s * 56.0, -6.0, -8.0), (22.0, 40.0, 30.0)), 10.0)
        h = _smin(h, _ellipsoid(x, y, z, (s * 55.0, -48.0, -57.0), (9.0, 13.0, 14.0)) - 5.0, 6.0)
    if float(np.min(z)) < -150.0:
        h = _smin(h, np.maximum(_elliptic_cylinder(x, y, (0.0, -35.0), (185.0, 105.0)), z + 200.0), 40.0)
    return np.maximum(h, -450.0 - z)


def _cavity(canvas, x, y, z, cavity_raw, above_floor):
    """Signed distance of the cranial cavity: raw vault above the fossae's floors, less the petrous bones,
    plus the foramen magnum and the spinal canal below it."""
    sd = np.maximum(cavity_raw, above_floor)
    fm = np.maximum(_elliptic_cylinder(x, y, FORAMEN_MAGNUM_CENTRE, FORAMEN_MAGNUM_SEMI_MM),
                    np.abs(z - (FORAMEN_MAGNUM_Z_MM - 2.0)) - 4.5)
    sd = np.minimum(sd, fm)
    for s in (-1, 1):
        res = canvas.tube(Tube.through(*_PETROUS[s], 1.0), 2.0)
        if res is not None:
            sl, d, _ = res
            sd[sl] = np.maximum(sd[sl], -d)
    res = canvas.tube(Tube.through(*_CANAL, 2.0), 2.0)
    if res is not None:
        sl, d, _ = res
        sd[sl] = np.minimum(sd[sl], d)
    return sd


def _paint_head(canvas: _Canvas, geo: HeadGeometry, detail: bool = True):
    """Paint every structure of the head on ``canvas``; returns the cavity's signed distance.

    ``detail`` False skips what only matters inside the brain (used for the coarse outer grid).
    """
    cv = canvas
    x, y, z = cv.coords()
    full = cv.shape
    raw = np.broadcast_to(_cavity_raw(x, y, z), full).astype(np.float32)

    # Skin, subcutaneous fat, and soft tissue (muscle) under them.
    outline = np.broadcast_to(_head_outline(x, y, z, raw), full)
    fat_mm = 3.5 + 2.5 * np.clip((-40.0 - z) / 50.0, 0.0, 1.0)
    cv.paint(MUSCLE, outline <= 0, struct="soft_tissue")
    cv.paint(FAT, (outline <= -SKIN_MM) & (outline > -SKIN_MM - fat_mm), struct="scalp_fat")
    cv.paint(SKIN, (outline <= 0) & (outline > -SKIN_MM), struct="skin")
    del outline

    # Orbits: fat cone behind each eye, and the eye (vitreous).
    for s in (-1, 1):
        cv.paint_shape(FAT, lambda x, y, z: _ellipsoid(x, y, z, (s * 30.0, 50.0, -38.0), (15.0, 22.0, 13.0)),
                       (s * 30 - 16, 27, -52), (s * 30 + 16, 73, -24), "orbital_fat")
        cv.paint_shape(EYE, lambda x, y, z: _ellipsoid(x, y, z, (s * 32.0, 64.0, -38.0), (12.0, 12.0, 12.0)),
                       (s * 32 - 13, 51, -51), (s * 32 + 13, 77, -25), "eye")

    # Skull: vault shell over the raw cavity down to the skull base, the fossa floors, sphenoid body,
    # clivus, petrous bones; brow (frontal sinus bone), zygomatic arches, mandible, palate, vertebrae.
    above = np.broadcast_to(_above_floor(x, y, z), full)
    cv.paint(BONE, (raw > 0) & (raw <= _vault_thickness(x, y, z)) & (above <= SKULL_MM), struct="skull")
    ant, mid, post = BASE_PLATE_MM
    plate = np.where(y <= _petrous_ridge_y(x), post, np.where(y > _sphenoid_ridge_y(x), ant, mid))
    cv.paint(BONE, (above > 0) & (above <= plate) & (raw <= SKULL_MM), struct="skull_base")
    del plate
    cv.paint_shape(BONE, lambda x, y, z: _max(np.abs(x) - 15.0, np.abs(y - 2.0) - 16.0, np.abs(z + 37.0) - 15.0),
                   (-15, -14, -52), (15, 18, -22), "skull_base")  # sphenoid body
    n = _CLIVUS_NORMAL

    def clivus(x, y, z):
        s = (y - BASION[1]) * n[1] + (z - BASION[2]) * n[2]
        half_width = 17.0 + 0.15 * (z - FORAMEN_MAGNUM_Z_MM)
        return _max(s, -CLIVUS_THICKNESS_MM - s, np.abs(x) - half_width, -66.0 - z, z - DORSUM_SELLAE[2])

    cv.paint_shape(BONE, clivus, (-25, -45, -66), (25, 10, -18), "clivus")
    for s in (-1, 1):
        res = cv.tube(Tube.through(*_PETROUS[s], 1.0), 0.0)
        if res is not None:
            sl, d, _ = res
            cv.paint(BONE, d <= 0, sl, "petrous")
    cv.paint_shape(BONE, lambda x, y, z: _ellipsoid(x, y, z, (0.0, 72.0, -8.0), (30.0, 10.0, 15.0)),
                   (-31, 61, -24), (31, 83, 8), "glabella", where_labels=(MUSCLE, FAT, SKIN, BONE))
    for s in (-1, 1):
        for tube, struct in ((Tube.through([(s * 54.0, -12.0, -42.0), (s * 59.0, 15.0, -40.0), (s * 50.0, 50.0, -44.0)],
                                           [3.5, 4.0, 4.5], 1.0), "zygoma"),
                             (Tube.through([(s * 46.0, -10.0, -40.0), (s * 47.0, -8.0, -88.0), (s * 33.0, 38.0, -108.0),
                                            (s * 0.0, 70.0, -112.0)], [5.0, 5.5, 6.5, 7.0], 1.0), "mandible")):
            res = cv.tube(tube, 0.0)
            if res is not None:
                sl, d, _ = res
                cv.paint(BONE, d <= 0, sl, struct)
    cv.paint_shape(BONE, lambda x, y, z: _super_ellipsoid(x, y, z, (0.0, 42.0, -71.0), (24.0, 30.0, 3.0), 4.0),
                   (-25, 11, -75), (25, 73, -67), "skull_base")
    _paint_spine(cv)

    # Air: sinuses with bony walls, nasal cavity, pharynx and airway, mastoid cells.
    def sinus(centre, semi, struct, wall=1.5, cells=None):
        lo = tuple(c - s - wall - 1 for c, s in zip(centre, semi))
        hi = tuple(c + s + wall + 1 for c, s in zip(centre, semi))
        sl, sd = cv.shape_sd(lambda x, y, z: _ellipsoid(x, y, z, centre, semi), lo, hi)
        if sl is None:
            return
        soft = np.isin(cv.labels[sl], (MUSCLE, FAT, BONE))
        cv.paint(BONE, (sd <= wall) & soft, sl, "sinus_wall")
        air = sd <= 0
        if cells is not None:
            noise = _waves(cv.ax[0][sl[0]], cv.ax[1][sl[1]], cv.ax[2][sl[2]], _ANATOMY_SEED + cells, 24, (5.0, 9.0))
            air = air & (noise > -0.2) & (sd <= -0.8)
        cv.paint(SINUS_AIR, air, sl, struct)

    sinus((0.0, 74.0, -6.0), (13.0, 4.0, 8.0), "frontal_sinus")
    for s in (-1, 1):
        sinus((s * 27.0, 52.0, -63.0), (12.0, 15.0, 10.0), "maxillary_sinus", 2.0)
    sinus((0.0, 50.0, -57.0), (11.0, 36.0, 12.0), "nasal_cavity", 0.0)
    sinus((0.0, 52.0, -38.0), (11.0, 18.0, 9.0), "ethmoid", 1.0, cells=1)
    sinus((0.0, 6.0, -38.0), (12.0, 10.0, 9.0), "sphenoid_sinus", 2.0)
    for s in (-1, 1):
        sl, sd = cv.shape_sd(lambda x, y, z: _ellipsoid(x, y, z, (s * 55.0, -48.0, -56.0), (8.0, 12.0, 13.0)),
                             (s * 55 - 9, -61, -70), (s * 55 + 9, -35, -42))
        if sl is not None:
            cv.paint(BONE, sd <= 0, sl, "mastoid")
            noise = _waves(cv.ax[0][sl[0]], cv.ax[1][sl[1]], cv.ax[2][sl[2]], _ANATOMY_SEED + 10 + s, 24, (4.0, 8.0))
            cv.paint(MASTOID_AIR, (sd <= -1.0) & (noise > -0.1), sl, "mastoid")
    cv.paint_shape(AIRWAY, lambda x, y, z: _ellipsoid(x, y, z, (0.0, 4.0, -62.0), (13.0, 9.0, 8.0)),
                   (-14, -6, -71), (14, 14, -53), "pharynx")
    res = cv.tube(Tube.through([(0.0, 2.0, -64.0), (0.0, -5.0, -85.0), (0.0, -6.0, -110.0), (0.0, -2.0, -140.0),
                                (0.0, 5.0, -200.0), (0.0, 0.0, -300.0), (0.0, 0.0, -420.0)],
                               [7.0, 7.0, 7.0, 6.5, 8.0, 8.0, 8.0], 2.0), 0.0)
    if res is not None:
        sl, d, _ = res
        cv.paint(AIRWAY, d <= 0, sl, "pharynx")

    # Cranial cavity: CSF everywhere inside, then the brain.
    cav = _cavity(cv, x, y, z, raw, above)
    del raw, above
    cv.paint(CSF, cav <= 0, struct="intracranial_csf")
    _paint_brain(cv, geo, cav, detail)

    # Vessels: dural sinuses, jugular veins, arteries (lumen and wall).
    for name, tube in geo.veins.items():
        struct = name.rsplit("_", 1)[0] if name.endswith(("_right", "_left")) else name
        res = cv.tube(tube, 0.0)
        if res is not None:
            sl, d, _ = res
            cv.paint(VENOUS_BLOOD, d <= 0, sl, struct)
    # Walls first, then lumens, so that lumens merge where arteries join (no wall across the junction).
    vessels = []
    for name, tube in geo.arteries.items():
        res = cv.tube(tube, ARTERY_WALL_MM)
        if res is None:
            continue
        sl, d, s_at = res
        if name.startswith("vertebral_"):
            side = name.split("_")[1]
            s_fm = geo.v4_arc_mm[side][0]
            vessels += [(sl, d, s_at >= s_fm, f"v4_{side}"), (sl, d, s_at < s_fm, f"v3_{side}")]
        else:
            vessels.append((sl, d, True, "basilar" if name == "basilar" else "internal_carotid"))
    for sl, d, part, struct in vessels:
        cv.paint(ARTERY_WALL, (d <= ARTERY_WALL_MM) & part, sl, struct)
    for sl, d, part, struct in vessels:
        cv.paint(ARTERY_LUMEN, (d <= 0) & part, sl, struct)
    return cav


def _paint_spine(cv):
    """Atlas ring and lateral masses, dens and axis body, lower cervical bodies with posterior arches."""
    def ring(x, y, z, zc, semi, tube_r, centre_y=-42.0):
        k = np.sqrt((x / semi[0]) ** 2 + ((y - centre_y) / semi[1]) ** 2)
        radial = (k - 1.0) * min(semi)
        return np.sqrt(radial**2 + (z - zc) ** 2) - tube_r

    cv.paint_shape(BONE, lambda x, y, z: ring(x, y, z, -68.0, (22.0, 22.0), 4.0), (-27, -69, -73), (27, -15, -63),
                   "vertebra")
    for s in (-1, 1):
        cv.paint_shape(BONE, lambda x, y, z: _ellipsoid(x, y, z, (s * 18.0, -34.0, -68.0), (7.0, 9.0, 7.0)),
                       (s * 18 - 8, -44, -76), (s * 18 + 8, -24, -60), "vertebra")
    cv.paint_shape(BONE, lambda x, y, z: np.maximum(np.sqrt(x**2 + (y + 30.0) ** 2) - 5.5, np.abs(z + 79.0) - 16.0),
                   (-6, -36, -96), (6, -24, -62), "vertebra")
    for zc in np.arange(-92.0, -450.0, -19.0):
        cv.paint_shape(BONE, lambda x, y, z: np.maximum(_elliptic_cylinder(x, y, (0.0, -30.0), (10.0, 8.5)),
                                                        np.abs(z - zc) - 7.0),
                       (-11, -39, zc - 8), (11, -21, zc + 8), "vertebra")
        cv.paint_shape(BONE, lambda x, y, z: np.maximum(ring(x, y, z, zc - 4.0, (14.0, 13.0), 3.5, -46.0),
                                                        y + 44.0),
                       (-18, -63, zc - 9), (18, -40, zc + 1), "vertebra")


def _paint_brain(cv, geo, cav, detail):
    x, y, z = cv.coords()
    full = cv.shape
    inside = cav <= 0
    post = y <= _petrous_ridge_y(x)
    tent = _tentorium_z(x, y)

    # Cerebrum: under 2 mm of CSF, above the tentorium behind the petrous ridges, either side of the falx.
    big = np.float32(1e3)
    floor_sup = np.where(_in_incisura(x, y), _INCISURA_FLOOR_Z_MM, tent + 1.5)
    sd = np.maximum(cav + CSF_LAYER_MM, np.where(post, floor_sup - z, -big))
    arch = np.clip(1.0 - ((y + 5.0) / 36.0) ** 2, 0.0, None)  # the corpus callosum under the falx
    fissure_floor = np.where(arch > 0, 19.0 + 9.0 * np.sqrt(arch), -big)
    sd = np.maximum(sd, np.where(z > fissure_floor, 1.2 - np.abs(x), -big))
    cerebrum = sd <= 0
    if detail:
        # Sulci: CSF clefts 1.2 mm wide and up to 12 mm deep along the zero set of a smooth random field
        # (gyri ~12 mm apart), lined like the surface by the 3 mm cortical ribbon.
        depth = -sd
        gyri = _waves(*cv.ax, _ANATOMY_SEED + 7, 32, _GYRUS_WAVELENGTH_MM)
        to_sulcus = np.abs(gyri) / np.float32(_GYRUS_GRADIENT)
        del gyri
        sulcus = cerebrum & (to_sulcus < _SULCUS_HALF_WIDTH_MM) & (depth < _SULCUS_DEPTH_MM)
        grey = cerebrum & ((depth < CORTEX_MM) | ((to_sulcus < _SULCUS_HALF_WIDTH_MM + CORTEX_MM)
                                                  & (depth < _SULCUS_DEPTH_MM + CORTEX_MM)))
        del to_sulcus, depth
    else:
        grey = cerebrum & (sd > -CORTEX_MM)
        sulcus = np.zeros((1, 1, 1), bool)
    cv.paint(WM, cerebrum, struct="cerebrum")
    cv.paint(GM, grey, struct="cerebrum")
    cv.paint(CSF, sulcus, struct="intracranial_csf")
    del sd, cerebrum, grey, sulcus

    del post, tent

    # Deep grey nuclei (painted before the ventricles, which indent the caudate).
    if detail:
        for s in (-1, 1):
            nuclei = (
                (THALAMUS, "thalamus", (s * 11.5, -21.0, 6.0), (9.0, 15.0, 11.5), 0.0, 0.0),
                (PUTAMEN, "putamen", (s * 26.5, 3.0, 1.0), (6.5, 16.0, 12.0), s * 8.0, 0.0),
                (GLOBUS_PALLIDUS, "globus_pallidus", (s * 18.5, 0.0, -1.0), (4.5, 9.0, 7.0), s * 8.0, 0.0),
                (CAUDATE, "caudate", (s * 13.5, 12.0, 9.0), (5.5, 11.0, 10.0), 0.0, 0.0),
            )
            for label, name, c, a, yaw, pitch in nuclei:
                r = max(a) + 1
                cv.paint_shape(label, lambda x, y, z, c=c, a=a, yaw=yaw, pitch=pitch:
                               _rotated_ellipsoid(x, y, z, c, a, yaw, pitch),
                               tuple(v - r for v in c), tuple(v + r for v in c), name)
            res = cv.tube(Tube.through([(s * 14.0, 8.0, 16.0), (s * 17.0, -6.0, 21.0), (s * 20.0, -22.0, 21.0),
                                        (s * 24.0, -32.0, 17.0)], [4.5, 3.8, 2.8, 1.8], 1.0), 0.0)
            if res is not None:
                sl, d, _ = res
                cv.paint(CAUDATE, d <= 0, sl, "caudate")

    # Brainstem (medulla, pons, midbrain with cerebral peduncles; the cord below the foramen magnum) and
    # cerebellum (hemispheres, vermis and tonsils under the tentorium, 1.5 mm of CSF from the brainstem;
    # cortex 4.5 mm over white matter), on one box.
    sl = cv.box((-60, -110, -75), (60, -2, 10))
    if sl is not None:
        xs, ys, zs = cv.coords(sl)
        bs = _brainstem_sd(xs, ys, zs)
        cb = _ellipsoid(xs, ys, zs, (0.0, -66.0, -30.0), (12.0, 28.0, 20.0))
        for s in (-1, 1):
            cb = _smin(cb, _ellipsoid(xs, ys, zs, (s * 25.0, -62.0, -35.0), (30.0, 40.0, 24.0)), 4.0)
            cb = _smin(cb, _ellipsoid(xs, ys, zs, (s * 6.0, -56.0, -54.0), (6.0, 8.0, 6.5)), 3.0)
        front = -30.0 + 0.8 * np.minimum(zs + 35.0, 0.0) + 0.012 * xs**2  # the fossa narrows towards the FM
        cb = _max(cb, cav[sl] + 1.5, zs - _tentorium_z(xs, ys) + 1.5, ys - _petrous_ridge_y(xs), ys - front, 1.5 - bs)
        cv.paint(GM, (cb <= 0) & (cb > -4.5), sl, "cerebellum")
        cv.paint(WM, cb <= -4.5, sl, "cerebellum")
        del cb, front
        stem = (bs <= 0) & (cav[sl] <= 0) & (zs < -2.0)  # the peduncles continue as cerebral white matter
        above = zs >= FORAMEN_MAGNUM_Z_MM
        cv.paint(BRAINSTEM, stem & above & (zs < -38.0), sl, "medulla")
        cv.paint(BRAINSTEM, stem & (zs >= -38.0) & (zs < -15.0), sl, "pons")
        cv.paint(BRAINSTEM, stem & (zs >= -15.0), sl, "midbrain")
        cv.paint(SPINAL_CORD, stem & ~above, sl, "spinal_cord")
        for s in (-1, 1):  # middle cerebellar peduncles into the cerebellar white matter
            cv.paint_shape(WM, lambda x, y, z: _rotated_ellipsoid(x, y, z, (s * 17.0, -48.0, -28.0), (6.0, 11.0, 7.0),
                                                                  s * 40.0),
                           (s * 17 - 12, -60, -36), (s * 17 + 12, -36, -20), "cerebellum", where_labels=(CSF, GM))
    if detail:
        for s in (-1, 1):
            cv.paint_shape(DENTATE,
                           lambda x, y, z: _rotated_ellipsoid(x, y, z, (s * 15.0, -58.0, -34.0), (5.0, 9.0, 5.5),
                                                              s * 30.0),
                           (s * 15 - 10, -68, -40), (s * 15 + 10, -48, -28), "dentate")
    res = cv.tube(Tube.through(*_CORD, 2.0), 0.0)
    if res is not None:
        sl, d, _ = res
        zs = cv.coords(sl)[2]
        cv.paint(SPINAL_CORD, (d <= 0) & (zs < FORAMEN_MAGNUM_Z_MM), sl, "spinal_cord")
    if detail:
        for s in (-1, 1):
            cv.paint_shape(RED_NUCLEUS, lambda x, y, z: _ellipsoid(x, y, z, (s * 4.5, -23.0, -8.0), (3.5, 4.5, 4.0)),
                           (s * 4.5 - 5, -28, -13), (s * 4.5 + 5, -18, -3), "red_nucleus")
            cv.paint_shape(SUBSTANTIA_NIGRA,
                           lambda x, y, z: _rotated_ellipsoid(x, y, z, (s * 10.0, -19.0, -11.0), (3.0, 9.0, 4.0),
                                                              s * 35.0),
                           (s * 10 - 10, -29, -16), (s * 10 + 10, -9, -6), "substantia_nigra")

    # Ventricles and cisterns' CSF; the aqueduct; the choroid plexus calcification.
    for name, tube in geo.ventricles.items():
        res = cv.tube(tube, 0.0)
        if res is None:
            continue
        sl, d, s_at = res
        cv.paint(CSF, d <= 0, sl, "lateral_ventricle")
        if name.startswith("lateral_"):
            side = name.split("_")[1]
            atrium = tube.arc_mm[np.argmin(np.abs(tube.points[:, 1] - (-38.0)))]  # nearest the atrium (y ≈ −38)
            cv.paint(CSF, (d <= 0) & (s_at > atrium) & (cv.coords(sl)[1] < -42.0), sl, f"posterior_horn_{side}")
    cv.paint_shape(CSF, lambda x, y, z: _ellipsoid(x, y, z, (0.0, -10.0, 3.0), (2.5, 14.0, 10.0)),
                   (-4, -25, -8), (4, 5, 14), "third_ventricle")
    cv.paint_shape(CSF, lambda x, y, z: _ellipsoid(x, y, z, (0.0, -53.0, -32.0), (7.0, 3.2, 9.0)),
                   (-8, -57, -42), (8, -49, -22), "fourth_ventricle")
    res = cv.tube(Tube.through([(0.0, -30.0, 1.0), (0.0, -36.0, -8.0), (0.0, -42.0, -18.0), (0.0, -50.0, -25.0)],
                               [1.0, 1.0, 1.0, 1.2], 1.0), 0.0)
    if res is not None:
        sl, d, _ = res
        cv.paint(CSF, d <= 0, sl, "fourth_ventricle")
    cv.paint_shape(CALCIFICATION, lambda x, y, z: _ellipsoid(x, y, z, (24.0, -37.0, 12.0), (1.75, 1.75, 1.75)),
                   (21, -40, 9), (27, -34, 15), "choroid_calcification")


# ---------------------------------------------------------------------------------------------------
# Grids, maps and the phantom
# ---------------------------------------------------------------------------------------------------
HEAD_BOUNDS_MM = ((-82.0, -122.0, -452.0), (82.0, 106.0, 100.0))
"""RAS box (x, y, z) holding the head and neck down to the grid's bottom; the shoulders are wider."""
BODY_BOUNDS_MM = ((-232.0, -150.0, -452.0), (232.0, 112.0, 112.0))
"""RAS box of the whole simulated body (head, neck, shoulders to z = −450) for the outer, coarse grid."""
TAPER_MM = 24.0
"""Width of the smooth hand-over in z from the full-resolution grid around the slab to the coarse grid."""
FAR_VOXEL_MM = (4.0, 4.0, 4.0)
"""Voxel of the coarse grid that carries χ outside the slab (sampled 2×2×2 per voxel above z = −250 mm)."""


def _axes(shape, voxel_mm, centre_mm):
    """Voxel-centre coordinates of each array axis: axis 0 → RAS y (decreasing), 1 → x, 2 → z."""
    (n0, n1, n2), (v0, v1, v2) = shape, voxel_mm
    ay = centre_mm[1] - (np.arange(n0) - (n0 - 1) / 2.0) * v0
    ax = centre_mm[0] + (np.arange(n1) - (n1 - 1) / 2.0) * v1
    az = centre_mm[2] + (np.arange(n2) - (n2 - 1) / 2.0) * v2
    return ay, ax, az


def head_affine(shape=STUDY_SHAPE, voxel_mm=STUDY_VOXEL_MM, *, z_offset_mm=SLAB_CENTRE_Z_MM,
                fov_centre_mm=FOV_CENTRE_MM) -> np.ndarray:
    """Voxel→RAS affine of the slab grid, a permutation: voxel axis 0 → −y (A→P), 1 → +x (L→R), 2 → +z.

    Parameters
    ----------
    shape : (X, Y, Z) voxels.
    voxel_mm : voxel edge lengths (mm) along X, Y, Z.
    z_offset_mm : RAS z (mm) of the slab centre.
    fov_centre_mm : RAS (x, y) of the in-plane centre (mm).

    Returns
    -------
    (4, 4) float array, mm. B0 along RAS z is voxel axis 2 (``io.b0_dir_from_affine`` gives (0, 0, 1)).
    """
    centre = (fov_centre_mm[0], fov_centre_mm[1], z_offset_mm)
    ay, ax, az = _axes(shape, voxel_mm, centre)
    affine = np.zeros((4, 4))
    affine[1, 0] = -voxel_mm[0]
    affine[0, 1] = voxel_mm[1]
    affine[2, 2] = voxel_mm[2]
    affine[:3, 3] = (ax[0], ay[0], az[0])
    affine[3, 3] = 1.0
    return affine


def _extend_axis(axis, lo, hi):
    """Extend an evenly spaced axis by whole steps until it covers lo…hi; returns (axis, offset of the original)."""
    step = axis[1] - axis[0] if len(axis) > 1 else 1.0
    before = after = 0
    first, last = axis[0], axis[-1]
    while min(first - before * step, last + after * step) > lo:
        if step > 0:
            before += 1
        else:
            after += 1
    while max(first - before * step, last + after * step) < hi:
        if step > 0:
            after += 1
        else:
            before += 1
    full = first + (np.arange(-before, len(axis) + after)) * step
    return full, before


def _taper(z, z_lo, z_hi):
    """1 on the slab, a raised cosine to 0 over :data:`TAPER_MM` beyond it."""
    d = np.maximum(np.maximum(z_lo - z, z - z_hi), 0.0)
    return np.where(d >= TAPER_MM, 0.0, 0.5 * (1.0 + np.cos(np.pi * np.minimum(d, TAPER_MM) / TAPER_MM)))


def _interp_matrix(src, dst):
    """Dense (len(dst), len(src)) matrix of linear interpolation weights from axis ``src`` to ``dst``."""
    if len(src) == 1:
        return np.ones((len(dst), 1))
    order = np.argsort(src)
    s = np.asarray(src, float)[order]
    i = np.clip(np.searchsorted(s, dst) - 1, 0, len(s) - 2)
    t = np.clip((np.asarray(dst, float) - s[i]) / (s[i + 1] - s[i]), 0.0, 1.0)
    w = np.zeros((len(dst), len(src)))
    rows = np.arange(len(dst))
    w[rows, order[i]] = 1 - t
    w[rows, order[i + 1]] += t
    return w


def _separable_interp(values, src_axes, dst_axes):
    """Trilinear interpolation of a grid given by 1-D axes onto another such grid (float32)."""
    out = np.asarray(values, np.float64)
    for axis in (2, 1, 0):
        w = _interp_matrix(src_axes[axis], dst_axes[axis])
        out = np.moveaxis(np.tensordot(out, w, axes=([axis], [1])), -1, axis)
    return out.astype(np.float32)


@dataclass(frozen=True)
class LesionTruth:
    """Truth of one wall lesion on the slab grid.

    Attributes
    ----------
    lesion : its :class:`Lesion` parameters.
    label : its label value.
    centre_mm : RAS centre (mm) on the V4 centreline.
    volume_mm3 : analytic volume, span/2·((r + t)² − r²)·length with r the lumen radius.
    occupancy : (X, Y, Z) float32, the fraction of each voxel inside the lesion (supersampled about every
        0.2 mm, e.g. 4×4×10 samples in a 0.72×0.72×2 mm voxel).
    occupancy_volume_mm3 : Σ occupancy · voxel volume.
    pv_chi_ppm : the partial-volume χ truth: occupancy-weighted mean of the voxel χ (which mixes lesion and
        surroundings by occupancy) over the voxels the lesion touches, what a perfect reconstruction gives
        in an occupancy-weighted ROI.
    chi_core_ppm : mean voxel χ where the occupancy is at least 0.5 (NaN if none).
    n_voxels : voxels the lesion touches.
    """

    lesion: Lesion
    label: int
    centre_mm: tuple
    volume_mm3: float
    occupancy: np.ndarray
    occupancy_volume_mm3: float
    pv_chi_ppm: float
    chi_core_ppm: float
    n_voxels: int
    _background: tuple = field(default=(), repr=False)  # (flat index, occupancy, M0, T2*) of the other compartment

    def to_json(self) -> dict:
        les = self.lesion
        return {"label": self.label, "side": les.side, "fraction": les.fraction, "kind": les.kind,
                "chi_ppm": les.chi_ppm, "span_deg": les.span_deg, "thickness_mm": les.thickness_mm,
                "length_mm": les.length_mm, "angle_deg": les.angle_deg,
                "centre_mm": [round(float(v), 3) for v in self.centre_mm], "volume_mm3": round(self.volume_mm3, 3),
                "occupancy_volume_mm3": round(self.occupancy_volume_mm3, 3), "pv_chi_ppm": _finite(self.pv_chi_ppm),
                "chi_core_ppm": _finite(self.chi_core_ppm), "n_voxels": self.n_voxels}


def _finite(v):
    return None if not np.isfinite(v) else round(float(v), 6)


@dataclass(frozen=True)
class FieldSources:
    """χ − χ_air split for the field: ``near`` at full resolution on the slab extended by
    :data:`TAPER_MM` in z (weighted by the taper), ``far`` the rest of the body on a coarse grid."""

    near_chi: np.ndarray
    near_voxel_mm: tuple
    slab_in_near: tuple
    far_chi: np.ndarray
    far_voxel_mm: tuple
    far_axes: tuple
    slab_axes: tuple


class _Regions(Mapping):
    """Named boolean masks on the slab, computed on access from the structure and label maps."""

    def __init__(self, struct, labels, makers):
        self._struct, self._labels, self._makers = struct, labels, makers

    def __getitem__(self, name):
        return self._makers[name](self._struct, self._labels)

    def __iter__(self):
        return iter(self._makers)

    def __len__(self):
        return len(self._makers)


@dataclass(frozen=True)
class HeadPhantom:
    """Truth maps of the head on the slab grid, all (X, Y, Z) in the voxel frame of ``affine``.

    Attributes
    ----------
    labels : uint8, the label constants; lesion k has ``LESION_LABEL_BASE + k`` where at least half the
        voxel is lesion.
    chi_ppm : float32, χ relative to CSF (ppm); lesion voxels mix lesion and surroundings by occupancy;
        a smooth ±:data:`TEXTURE_PPM` texture in the parenchyma.
    m0 : float32, proton density (a.u.), mixed by occupancy in lesion voxels.
    t2star_s : float32, T2* (s).
    chemical_shift_ppm : float32, −3.4 in fat, 0 elsewhere (a frequency, not a susceptibility).
    brain_mask : bool, the intracranial space inside the inner table of the skull and the dura above the
        foramen magnum (parenchyma, CSF, intracranial arteries, dural venous sinuses, lesions) and the
        spinal canal (cord and CSF) to :data:`BRAIN_MASK_BELOW_FM_MM` below it; no bone, air, scalp,
        muscle, eye or sinus.
    affine : (4, 4) voxel→RAS (mm).
    voxel_mm : (3,) voxel edges (mm).
    regions : name → bool mask, computed on access (names in :func:`region_names`).
    lesions : one :class:`LesionTruth` per lesion, in the order given.
    geometry : the :class:`HeadGeometry` the maps were drawn from.
    sources : χ for the field (:class:`FieldSources`).
    axes_mm : RAS coordinates (mm) of the voxel centres along axes 0 (y), 1 (x), 2 (z).
    """

    labels: np.ndarray
    chi_ppm: np.ndarray
    m0: np.ndarray
    t2star_s: np.ndarray
    chemical_shift_ppm: np.ndarray
    brain_mask: np.ndarray
    affine: np.ndarray
    voxel_mm: tuple
    regions: Mapping
    lesions: tuple
    geometry: HeadGeometry
    sources: FieldSources
    axes_mm: tuple

    @property
    def shape(self):
        return self.labels.shape

    def coordinates_mm(self):
        """Broadcastable RAS coordinates (x, y, z) of the voxel centres."""
        ay, ax, az = self.axes_mm
        return ax[None, :, None], ay[:, None, None], az[None, None, :]


def _region_makers():
    def sid(*names):
        ids = [_SID[n] for n in names]
        return lambda st, lab: np.isin(st, ids)

    makers = {name: sid(name) for name in _STRUCTURES}
    makers["transverse_sinus"] = sid("transverse_sinus")
    makers["venous_sinuses"] = sid("superior_sagittal_sinus", "straight_sinus", "transverse_sinus", "sigmoid_sinus")
    makers["posterior_horns"] = sid("posterior_horn_right", "posterior_horn_left")
    makers["lateral_ventricles"] = sid("lateral_ventricle", "posterior_horn_right", "posterior_horn_left")
    makers["brainstem"] = sid("medulla", "pons", "midbrain")
    for label, name in ((CAUDATE, "caudate"), (PUTAMEN, "putamen"), (GLOBUS_PALLIDUS, "globus_pallidus"),
                        (THALAMUS, "thalamus"), (RED_NUCLEUS, "red_nucleus"), (SUBSTANTIA_NIGRA, "substantia_nigra"),
                        (DENTATE, "dentate")):
        makers[name] = (lambda lab_value: lambda st, lab: lab == lab_value)(label)
    for name in ("v4_right", "v4_left", "v3_right", "v3_left", "basilar", "internal_carotid"):
        makers[f"{name}_lumen"] = (lambda i: lambda st, lab: (st == i) & (lab == ARTERY_LUMEN))(_SID[name])
    makers["sinus_air"] = lambda st, lab: lab == SINUS_AIR
    makers["mastoid_air"] = lambda st, lab: lab == MASTOID_AIR
    makers["bone"] = lambda st, lab: lab == BONE
    makers["fat"] = lambda st, lab: lab == FAT
    makers["lesions"] = lambda st, lab: lab >= LESION_LABEL_BASE
    return makers


def region_names() -> tuple:
    """Names of the region masks of :attr:`HeadPhantom.regions` (plus 'premedullary_cistern' and
    'prepontine_cistern', added by :func:`make_head`)."""
    return tuple(_region_makers()) + ("premedullary_cistern", "prepontine_cistern")


def _lesion_occupancy(canvas: _Canvas, frame: LesionFrame, voxel_mm, supersample_mm=0.2):
    """Occupancy (fraction of each voxel inside the lesion) on a box of the canvas: (slices, occupancy)."""
    r = frame.inner_radius_mm + frame.lesion.thickness_mm + frame.lesion.length_mm / 2 + max(voxel_mm)
    sl = canvas.box(frame.centre_mm - r, frame.centre_mm + r)
    if sl is None:
        return None, None
    n = [max(2, int(math.ceil(v / supersample_mm))) for v in voxel_mm]
    sub = []
    for a, s, k, v in zip(canvas.ax, sl, n, voxel_mm):
        offsets = ((np.arange(k) + 0.5) / k - 0.5) * v
        sub.append((a[s][:, None] + offsets[None, :]).ravel())
    y, x, z = sub
    inside = frame.inside(x[None, :, None], y[:, None, None], z[None, None, :])
    shape = tuple(s.stop - s.start for s in sl)
    occ = inside.reshape(shape[0], n[0], shape[1], n[1], shape[2], n[2]).mean(axis=(1, 3, 5))
    return sl, occ.astype(np.float32)


def _tissue_lookup(labels, index):
    table = np.zeros(256, np.float32)
    for lab, tissue in TISSUE.items():
        table[lab] = (tissue.chi_ppm, tissue.m0, tissue.t2star_s, tissue.chemical_shift_ppm)[index]
    return table[labels]


def _far_sources(slab_z_range, geo):
    """χ − χ_air outside the slab, tapered, block-averaged on the coarse grid covering the body."""
    lo, hi = np.array(BODY_BOUNDS_MM[0]), np.array(BODY_BOUNDS_MM[1])
    v = np.array(FAR_VOXEL_MM)
    n = np.ceil((hi - lo) / v).astype(int)
    centre = (lo + hi) / 2
    ay, ax, az = _axes((n[1], n[0], n[2]), (v[1], v[0], v[2]), centre)
    chi = np.zeros((len(ay), len(ax), len(az)), np.float32)
    z_lo, z_hi = slab_z_range
    air = TISSUE[OUTSIDE_AIR].chi_ppm
    chunk = 12
    for k0 in range(0, len(az), chunk):
        zs = az[k0:k0 + chunk]
        if np.all((zs - v[2] / 2 >= z_lo) & (zs + v[2] / 2 <= z_hi)):
            continue  # entirely inside the slab: carried at full resolution
        m = 2 if zs.min() > -250.0 else 1
        offs = [((np.arange(m) + 0.5) / m - 0.5) * vv for vv in (v[1], v[0], v[2])]
        sub = [(a[:, None] + o[None, :]).ravel() for a, o in zip((ay, ax, zs), offs)]
        canvas = _Canvas(*sub)
        _paint_head(canvas, geo, detail=False)
        weight = (1.0 - _taper(sub[2], z_lo, z_hi)).astype(np.float32)[None, None, :]
        values = (_tissue_lookup(canvas.labels, 0) - air) * weight
        chi[:, :, k0:k0 + chunk] = values.reshape(len(ay), m, len(ax), m, len(zs), m).mean(axis=(1, 3, 5))
    return chi, tuple(float(x) for x in (v[1], v[0], v[2])), (ay, ax, az)


def make_head(shape=STUDY_SHAPE, voxel_mm=STUDY_VOXEL_MM, *, lesions=DEFAULT_LESIONS, z_offset_mm=SLAB_CENTRE_Z_MM,
              fov_centre_mm=FOV_CENTRE_MM, seed: int = 0) -> HeadPhantom:
    """Build the head phantom on a slab grid.

    Parameters
    ----------
    shape : (X, Y, Z) voxels; X runs anterior→posterior, Y right→left, Z inferior→superior.
    voxel_mm : voxel edge lengths (mm) along X, Y, Z. Coarser grids (e.g. (1.44, 1.44, 4.0) with half the
        shape) give the same head for quick tests; the geometry is in mm.
    lesions : sequence of :class:`Lesion` on the V4 walls (labels ``LESION_LABEL_BASE + k``; they must
        not overlap).
    z_offset_mm : RAS z (mm) of the slab centre; the default slab runs from 25 mm below the foramen
        magnum (z = −85) to z = +55, above the posterior horns.
    fov_centre_mm : RAS (x, y) of the in-plane centre (mm).
    seed : seed of the smooth χ texture of the parenchyma (±:data:`TEXTURE_PPM`).

    Returns
    -------
    HeadPhantom
    """
    shape = tuple(int(n) for n in shape)
    voxel_mm = tuple(float(v) for v in voxel_mm)
    geo = head_geometry(lesions=lesions)
    centre = (fov_centre_mm[0], fov_centre_mm[1], z_offset_mm)
    ay, ax, az = _axes(shape, voxel_mm, centre)
    (lo, hi) = HEAD_BOUNDS_MM
    ny, oy = _extend_axis(ay, lo[1], hi[1])
    nx, ox = _extend_axis(ax, lo[0], hi[0])
    margin = int(math.ceil(TAPER_MM / voxel_mm[2]))
    nz = az[0] + np.arange(-margin, shape[2] + margin) * voxel_mm[2]
    slab = (slice(oy, oy + shape[0]), slice(ox, ox + shape[1]), slice(margin, margin + shape[2]))

    canvas = _Canvas(ny, nx, nz)
    cav = _paint_head(canvas, geo, detail=True)
    labels = canvas.labels
    chi = _tissue_lookup(labels, 0)
    parenchyma = np.isin(labels, PARENCHYMA_LABELS)
    texture = _waves(ny, nx, nz, seed, 32, (8.0, 20.0))
    chi[parenchyma] += TEXTURE_PPM * texture[parenchyma]
    del texture, parenchyma

    # Lesions: occupancy-weighted χ and M0; the label where a voxel is at least half lesion.
    lesion_boxes = []
    m0_mix = {}
    for frame in geo.lesions:
        sl, occ = _lesion_occupancy(canvas, frame, voxel_mm)
        lesion_boxes.append((frame, sl, occ))
    for frame, sl, occ in lesion_boxes:
        if sl is None:
            continue
        bg_labels = labels[sl].copy()
        chi[sl] = occ * frame.lesion.chi_ppm + (1 - occ) * chi[sl]
        m_les, _ = LESION_SIGNAL[frame.lesion.kind]
        m0_mix[frame.label] = (sl, occ, bg_labels, m_les)
        labels[sl][occ >= 0.5] = frame.label

    m0 = _tissue_lookup(labels, 1)
    t2s = _tissue_lookup(labels, 2)
    cs = _tissue_lookup(labels, 3)
    for frame in geo.lesions:
        m_les, t_les = LESION_SIGNAL[frame.lesion.kind]
        t2s[labels == frame.label] = t_les
        m0[labels == frame.label] = m_les
    for label, (sl, occ, bg_labels, m_les) in m0_mix.items():
        m0[sl] = occ * m_les + (1 - occ) * _tissue_lookup(bg_labels, 1)

    x, y, z = canvas.coords()
    dural = np.isin(canvas.struct, [_SID[n] for n in ("superior_sagittal_sinus", "straight_sinus", "transverse_sinus",
                                                      "sigmoid_sinus", "deep_vein")])
    brain = ((cav <= 0) | dural) & (z >= FORAMEN_MAGNUM_Z_MM - BRAIN_MASK_BELOW_FM_MM)
    del cav, dural

    # Field sources: near part tapered in z, far part on the coarse grid.
    vz = voxel_mm[2]
    z_range = (az[0] - vz / 2, az[-1] + vz / 2)
    air = TISSUE[OUTSIDE_AIR].chi_ppm
    near = (chi - np.float32(air)) * _taper(nz, *z_range).astype(np.float32)[None, None, :]
    far_chi, far_vox, far_axes = _far_sources(z_range, geo)
    sources = FieldSources(near.astype(np.float32), voxel_mm, slab, far_chi, far_vox, far_axes, (ay, ax, az))

    lab_s = np.ascontiguousarray(labels[slab])
    chi_s = np.ascontiguousarray(chi[slab])
    truths = []
    voxel_volume = float(np.prod(voxel_mm))
    flat_shape = lab_s.shape
    for frame, sl, occ in lesion_boxes:
        full = np.zeros(flat_shape, np.float32)
        background = ()
        if sl is not None:
            tmp = np.zeros(canvas.shape, np.float32)
            tmp[sl] = occ
            full = np.ascontiguousarray(tmp[slab])
            del tmp
            idx = np.flatnonzero(full)
            if idx.size:
                _, occ_b, bg_labels, _ = m0_mix[frame.label]
                bg = np.zeros(canvas.shape, np.uint8)
                bg[sl] = bg_labels
                bg_s = bg[slab].ravel()[idx]
                background = (idx, full.ravel()[idx], _tissue_lookup(bg_s, 1), _tissue_lookup(bg_s, 2))
        touched = full > 0
        weight = full[touched]
        pv = float(np.sum(weight * chi_s[touched]) / np.sum(weight)) if weight.size else float("nan")
        core = full >= 0.5
        truths.append(LesionTruth(frame.lesion, frame.label, tuple(frame.centre_mm), frame.volume_mm3, full,
                                  float(full.sum() * voxel_volume), pv,
                                  float(chi_s[core].mean()) if core.any() else float("nan"), int(touched.sum()),
                                  background))

    struct_s = np.ascontiguousarray(canvas.struct[slab])
    makers = _region_makers()
    xs, ys, zs = x[:, slab[1], :], y[slab[0]], z[:, :, slab[2]]
    makers.update(_cistern_makers(xs, ys, zs))
    affine = head_affine(shape, voxel_mm, z_offset_mm=z_offset_mm, fov_centre_mm=fov_centre_mm)
    return HeadPhantom(lab_s, chi_s, np.ascontiguousarray(m0[slab]), np.ascontiguousarray(t2s[slab]),
                       np.ascontiguousarray(cs[slab]), np.ascontiguousarray(brain[slab]), affine, voxel_mm,
                       _Regions(struct_s, lab_s, makers), tuple(truths), geo, sources, (ay, ax, az))


def _cistern_makers(x, y, z):
    """The premedullary (foramen magnum → pontomedullary junction) and prepontine cisterns: the CSF
    (with its vessels) between the clivus and the front of the brainstem, within 18 mm of the midline."""
    n = _CLIVUS_NORMAL
    behind_clivus = (y - BASION[1]) * n[1] + (z - BASION[2]) * n[2] > 0
    ahead = y > _brainstem_axis_y(z)
    near = np.abs(x) <= 18.0
    contents = (CSF, ARTERY_LUMEN, ARTERY_WALL)
    pmj = VERTEBROBASILAR_JUNCTION[2]

    def cistern(z_lo, z_hi):
        zone = behind_clivus & ahead & near & (z >= z_lo) & (z < z_hi)
        return lambda st, lab: zone & (np.isin(lab, contents) | (lab >= LESION_LABEL_BASE))

    return {"premedullary_cistern": cistern(FORAMEN_MAGNUM_Z_MM, pmj), "prepontine_cistern": cistern(pmj, -14.0)}


# ---------------------------------------------------------------------------------------------------
# Field, receive sensitivity, signal
# ---------------------------------------------------------------------------------------------------
HEAD_CENTRE_MM = (0.0, -16.0, 6.0)
"""Centre of the cranial cavity: where the receive sensitivity is 1 and the SNR is defined."""
COIL_COUNT = 32
COIL_LOOP_RADIUS_MM = 50.0
_COIL_HELMET = ((0.0, -16.0, 4.0), (100.0, 120.0, 112.0))


IMAGE_CORRECTION_MM = (4.0, 8.0)
"""Block sizes (full-resolution part, coarse outer part) of the copies on which the field of the FFT
convolutions' periodic images is estimated."""


def _block_mean(volume, factors):
    """Mean over blocks of ``factors`` voxels (the volume zero-padded at the end to whole blocks)."""
    shape = [int(math.ceil(n / f)) * f for n, f in zip(volume.shape, factors)]
    padded = np.zeros(shape, np.float32)
    padded[tuple(slice(0, n) for n in volume.shape)] = volume
    c = [n // f for n, f in zip(shape, factors)]
    return padded.reshape(c[0], factors[0], c[1], factors[1], c[2], factors[2]).mean(axis=(1, 3, 5))


def _periodic_image_field(chi, voxel_mm, axes, b0_dir, block_mm):
    """Field that the periodic copies of the 2×-padded FFT convolution of ``chi`` add (ppm), on a coarse
    grid: returns (field, its axes). It is smooth over the object (the copies lie a padding width away),
    so blocks of ``block_mm`` estimate it well; it is subtracted from the convolution."""
    from .recon import kernels

    factors = [max(1, int(round(block_mm / v))) for v in voxel_mm]
    coarse = _block_mean(chi, factors)
    cvox = [v * f for v, f in zip(voxel_mm, factors)]
    fine_grid = kernels.fast_shape(chi.shape, [n // 2 for n in chi.shape])
    period = [max(int(round(g * v / c)), n) for g, v, c, n in zip(fine_grid, voxel_mm, cvox, coarse.shape)]
    periodic = forward_field(kernels.pad(coarse, period), cvox, b0_dir, pad=False)
    periodic = kernels.crop(periodic, coarse.shape)
    isolated = kernels.crop(forward_field(kernels.pad(coarse, [2 * n for n in coarse.shape]), cvox, b0_dir),
                            coarse.shape)
    centres = []
    for a, f, n in zip(axes, factors, coarse.shape):
        a = np.asarray(a, float)
        step = a[1] - a[0] if len(a) > 1 else 1.0
        centres.append(a[0] + (np.arange(n) * f + (f - 1) / 2.0) * step)
    return periodic - isolated, tuple(centres)


def dipole_field_ppm(phantom: HeadPhantom, b0_dir=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Field perturbation of the whole body's χ on the slab, before shimming.

    The part of χ within :data:`TAPER_MM` of the slab (weighted by a raised-cosine taper in z) is
    convolved with the dipole kernel at full resolution (:func:`forward_field`, zero-padded to twice the
    size); the rest of the body (vertex, neck, shoulders, weighted by one minus the taper) on the coarse
    :data:`FAR_VOXEL_MM` grid, whose field is interpolated (trilinear) onto the slab. Both parts are
    χ − χ_air, so the zero padding is air. The field of each part's periodic copies (a few % of the field,
    smooth) is estimated on blocks of :data:`IMAGE_CORRECTION_MM` and removed.

    With an oblique B0 the FFT dipole kernel is discontinuous across the edge of k-space and sharp edges
    ring (qsm-forward's kernel does the same), so the field then depends on the grid by 1–3 %.

    Parameters
    ----------
    phantom : from :func:`make_head`.
    b0_dir : (3,) B0 direction in the voxel frame (need not be normalised).

    Returns
    -------
    (X, Y, Z) float32, ppm of B0.
    """
    src = phantom.sources
    near_axes = _near_axes(src)
    near = forward_field(src.near_chi, src.near_voxel_mm, b0_dir)
    images, image_axes = _periodic_image_field(src.near_chi, src.near_voxel_mm, near_axes, b0_dir,
                                               IMAGE_CORRECTION_MM[0])
    field = near[src.slab_in_near] - _separable_interp(images, image_axes, src.slab_axes)
    far = forward_field(src.far_chi, src.far_voxel_mm, b0_dir)
    images, image_axes = _periodic_image_field(src.far_chi, src.far_voxel_mm, src.far_axes, b0_dir,
                                               IMAGE_CORRECTION_MM[1])
    field += _separable_interp(far, src.far_axes, src.slab_axes) - _separable_interp(images, image_axes, src.slab_axes)
    return field.astype(np.float32)


def _near_axes(src: FieldSources):
    """Axes (mm) of the full-resolution grid that holds the slab."""
    out = []
    for a, s, n, v in zip(src.slab_axes, src.slab_in_near, src.near_chi.shape, (-src.near_voxel_mm[0],
                                                                                 src.near_voxel_mm[1],
                                                                                 src.near_voxel_mm[2])):
        out.append(a[0] + (np.arange(n) - s.start) * v)
    return tuple(out)


def shim_fit(field_ppm: np.ndarray, mask: np.ndarray, axes_mm, order: int = 2) -> np.ndarray:
    """Least-squares fit of solid harmonics up to ``order`` over a mask, as a scanner's shim removes them.

    Parameters
    ----------
    field_ppm : (X, Y, Z) field (ppm).
    mask : (X, Y, Z) bool, the shim volume.
    axes_mm : RAS coordinates (mm) of the voxel centres along the three axes (y, x, z).
    order : 0 (frequency), 1 (linear) or 2 (the five second-order terms as well).

    Returns
    -------
    (X, Y, Z) float32, the fitted field (ppm) on the whole grid.
    """
    ay, ax, az = (np.asarray(v, float) / 100.0 for v in axes_mm)
    x, y, z = ax[None, :, None], ay[:, None, None], az[None, None, :]
    idx = np.nonzero(mask)
    sample = [np.broadcast_to(t, (idx[0].size,)) for t in _harmonics(x[0, idx[1], 0], y[idx[0], 0, 0],
                                                                      z[0, 0, idx[2]], order)]
    coef, *_ = np.linalg.lstsq(np.stack(sample, axis=1)[::7], field_ppm[idx][::7].astype(float), rcond=None)
    fit = np.zeros(mask.shape)
    for c, term in zip(coef, _harmonics(x, y, z, order)):
        fit += c * term
    return fit.astype(np.float32)


def _harmonics(x, y, z, order):
    """Solid harmonics up to second order (unnormalised) of broadcastable coordinates."""
    terms = [np.float64(1.0)]
    if order >= 1:
        terms += [x, y, z]
    if order >= 2:
        terms += [x * y, x * z, y * z, x * x - y * y, 2 * z * z - x * x - y * y]
    return terms


def _coil_centres():
    """Loop centres on a helmet around the head (a Fibonacci lattice on its cap above the neck)."""
    (c, a) = _COIL_HELMET
    k = np.arange(COIL_COUNT) + 0.5
    zc = 1.0 - k / COIL_COUNT * 1.6  # from the top down to 60 % below the equator
    r = np.sqrt(1 - zc**2)
    phi = np.pi * (1 + math.sqrt(5)) * k
    return np.stack([c[0] + a[0] * r * np.cos(phi), c[1] + a[1] * r * np.sin(phi), c[2] + a[2] * zc], axis=1)


def receive_sensitivity(axes_mm) -> np.ndarray:
    """Root-sum-of-squares receive sensitivity of a 32-loop head array.

    Each loop of radius a = :data:`COIL_LOOP_RADIUS_MM` at distance d contributes (a²/(a² + d²))^(3/2)
    (the on-axis field of a current loop); the loops sit on a helmet around the head. The combination
    is 1 at :data:`HEAD_CENTRE_MM` and about 2–2.5 at the scalp. It is evaluated on every fourth voxel
    in-plane and every second slice and interpolated.

    Parameters
    ----------
    axes_mm : RAS coordinates (mm) of the voxel centres along the three axes (y, x, z), as
        :attr:`HeadPhantom.axes_mm`.

    Returns
    -------
    (X, Y, Z) float32, relative sensitivity.
    """
    ay, ax, az = (np.asarray(a, float) for a in axes_mm)
    sub = [a[np.unique(np.r_[np.arange(0, len(a), step), len(a) - 1])] if len(a) > 2 else a
           for a, step in ((ay, 4), (ax, 4), (az, 2))]
    y, x, z = sub[0][:, None, None], sub[1][None, :, None], sub[2][None, None, :]
    a2 = COIL_LOOP_RADIUS_MM**2

    def rss(px, py, pz):
        total = 0.0
        for cx, cy, cz in _coil_centres():
            d2 = (px - cx) ** 2 + (py - cy) ** 2 + (pz - cz) ** 2
            total = total + (a2 / (a2 + d2)) ** 3
        return np.sqrt(total)

    coarse = rss(x, y, z) / rss(*HEAD_CENTRE_MM)
    return _separable_interp(coarse, sub, (ay, ax, az))


def phase_offset(axes_mm) -> np.ndarray:
    """Smooth transmit/receive phase φ0 (radians, (X, Y, Z) float32) on the grid of ``axes_mm`` (mm)."""
    ay, ax, az = axes_mm
    x, y, z = ax[None, :, None], ay[:, None, None], az[None, None, :]
    return (0.6 + 0.004 * x - 0.003 * y + 0.002 * z + 2e-5 * (x**2 + y**2) - 1e-5 * z**2).astype(np.float32)


def simulate_head(phantom: HeadPhantom, *, te_s=STUDY_TE_S, b0_tesla: float = 3.0, b0_dir=(0.0, 0.0, 1.0),
                  snr: float = 40.0, seed: int = 0, shim_order: int | None = 2):
    """Multi-echo GRE magnitude and phase of the phantom.

    Parameters
    ----------
    phantom : from :func:`make_head`.
    te_s : echo times (s).
    b0_tesla : field strength (T).
    b0_dir : B0 direction in the voxel frame ((0, 0, 1) is along the slab normal, RAS z); tilt it for an
        oblique acquisition.
    snr : first-echo white-matter signal at :data:`HEAD_CENTRE_MM` (receive sensitivity 1) over the noise
        standard deviation of each of the real and imaginary channels.
    seed : noise seed.
    shim_order : solid harmonics up to this order (0, 1, 2) are fitted over the brain mask and removed from
        the field, as the scanner's shim does; None keeps the unshimmed field.

    Returns
    -------
    magnitude : (X, Y, Z, E) float32.
    phase : (X, Y, Z, E) float32, radians, wrapped to (−π, π].
    field_ppm : (X, Y, Z) float32, the total field (ppm of B0) that made the phase: the dipole field of χ
        after the shim, without the chemical shift of fat.
    """
    field_ppm = dipole_field_ppm(phantom, b0_dir)
    if shim_order is not None:
        field_ppm -= shim_fit(field_ppm, phantom.brain_mask, phantom.axes_mm, shim_order)
    te = np.asarray(te_s, float)
    hz = np.float32(hz_per_ppm(b0_tesla))
    freq_hz = (field_ppm + phantom.chemical_shift_ppm) * hz
    b1 = receive_sensitivity(phantom.axes_mm)
    phi0 = phase_offset(phantom.axes_mm)
    wm = TISSUE[WM]
    sigma = np.float32(wm.m0 * math.exp(-te[0] / wm.t2star_s) / snr)
    rng = np.random.default_rng(seed)
    shape = phantom.shape
    magnitude = np.empty(shape + (len(te),), np.float32)
    phase = np.empty(shape + (len(te),), np.float32)
    m0b1 = phantom.m0 * b1
    for e, t in enumerate(te):
        envelope = m0b1 * np.exp(np.float32(-t) / phantom.t2star_s)
        for truth in phantom.lesions:
            if not truth._background:
                continue
            idx, occ, m0_bg, t2_bg = truth._background
            m_les, t_les = LESION_SIGNAL[truth.lesion.kind]
            mix = (1 - occ) * m0_bg * np.exp(-t / t2_bg) + occ * m_les * math.exp(-t / t_les)
            envelope.ravel()[idx] = b1.ravel()[idx] * mix
        angle = phi0 + np.float32(2 * np.pi * t) * freq_hz
        re = envelope * np.cos(angle) + sigma * rng.standard_normal(shape, np.float32)
        im = envelope * np.sin(angle) + sigma * rng.standard_normal(shape, np.float32)
        magnitude[..., e] = np.hypot(re, im)
        phase[..., e] = np.arctan2(im, re)
    return magnitude, phase, field_ppm


def local_field_ppm(phantom: HeadPhantom, b0_dir=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Field of the χ inside the brain mask alone: what background-field removal should leave.

    Parameters
    ----------
    phantom : from :func:`make_head`.
    b0_dir : (3,) B0 direction in the voxel frame.

    Returns
    -------
    (X, Y, Z) float32, ppm of B0 (χ relative to CSF, so CSF carries no local field).
    """
    return forward_field(np.where(phantom.brain_mask, phantom.chi_ppm, 0).astype(np.float32), phantom.voxel_mm, b0_dir)
