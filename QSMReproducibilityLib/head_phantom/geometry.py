"""The head's analytic anatomy in RAS mm: landmarks, wall lesions, the skull base and the vessels, ventricles and
sinuses as tubes, shared by every grid (:func:`head_geometry`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shapes import arc_length, ellipsoid, intersection, smooth_union, spline
from .tissues import LESION_LABEL_BASE, LESION_SIGNAL

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
:func:`vault_thickness`), scalp (skin + subcutaneous fat) over the vault, skin, subarachnoid CSF."""
BASE_PLATE_MM = (2.5, 3.0, 6.0)
"""Thickness of the fossae's floors: orbital roofs and cribriform plate, middle fossae, occipital bone."""
_CLIVUS_SLOPE = (DORSUM_SELLAE[2] - BASION[2]) / (DORSUM_SELLAE[1] - BASION[1])  # dz/dy along the clivus
CLIVUS_NORMAL = np.array([0.0, -(DORSUM_SELLAE[2] - BASION[2]), DORSUM_SELLAE[1] - BASION[1]])
CLIVUS_NORMAL /= np.linalg.norm(CLIVUS_NORMAL)  # points posterior-superior, into the posterior fossa
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
STRUCTURES = (
    "skin", "scalp_fat", "soft_tissue", "orbital_fat", "eye", "skull", "skull_base", "clivus", "petrous",
    "mandible", "vertebra", "sinus_wall", "frontal_sinus", "ethmoid", "sphenoid_sinus", "maxillary_sinus",
    "nasal_cavity", "pharynx", "mastoid", "intracranial_csf", "cerebrum", "cerebellum", "medulla", "pons",
    "midbrain", "spinal_cord", "caudate", "putamen", "globus_pallidus", "thalamus", "red_nucleus",
    "substantia_nigra", "dentate", "lateral_ventricle", "posterior_horn_right", "posterior_horn_left",
    "third_ventricle", "fourth_ventricle", "choroid_calcification", "superior_sagittal_sinus",
    "straight_sinus", "transverse_sinus", "sigmoid_sinus", "jugular_vein", "deep_vein", "v4_right",
    "v4_left", "v3_right", "v3_left", "basilar", "internal_carotid", "glabella", "zygoma",
)
STRUCTURE_ID = {name: i + 1 for i, name in enumerate(STRUCTURES)}


# ---------------------------------------------------------------------------------------------------
# Analytic anatomy shared by every grid
# ---------------------------------------------------------------------------------------------------
def petrous_ridge_y(x):
    """y of the petrous ridge (middle/posterior fossa border), running posterolaterally from the apex."""
    return -14.0 - 0.6 * np.maximum(np.abs(x) - 16.0, 0.0)


def sphenoid_ridge_y(x):
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


def above_floor_sd(x, y, z):
    """Signed distance (approximate) of the space above the fossae's floors.

    The bone below each fossa is a quadrant (below its floor, on its side of the sphenoid or petrous ridge);
    the space above is outside all three, so the steps at the ridges are walls and no seam appears
    between fossae.
    """
    ant, mid, _ = _floor_z(x, y)
    y_sr, y_pr = sphenoid_ridge_y(x), petrous_ridge_y(x)
    in_ant = (y_sr - y) / np.float32(math.sqrt(1.09))
    behind_ridge = (y - y_pr) / np.where(np.abs(x) > 16.0, np.float32(math.sqrt(1.36)), np.float32(1.0))
    between = np.maximum(-in_ant, -behind_ridge)  # signed distance to the middle fossa's y-interval
    yc = np.minimum(y, y_pr)
    clivus = (z - _clivus_z(yc)) / np.float32(math.sqrt(1 + _CLIVUS_SLOPE**2))
    post = np.maximum(clivus, z - (FORAMEN_MAGNUM_Z_MM + 2.0))
    return intersection(-_quadrant(z - ant, in_ant), -_quadrant(z - mid, between),
                        -_quadrant(post, behind_ridge)).astype(np.float32)


_INCISURA_HALF_WIDTH_MM = 15.0
INCISURA_FLOOR_Z_MM = -6.0


def tentorium_z(x, y):
    """Height of the tentorium cerebelli: from its apex over the straight sinus down to the transverse
    sinuses behind and to the petrous ridges in front; the brainstem passes the incisura (|x| < 15 mm)."""
    ax = np.abs(x)
    back = 2.0 - 0.45 * np.maximum(-45.0 - y, 0.0) - 0.3 * ax
    ridge = petrous_ridge_y(x)
    t = np.clip((y + 45.0) / np.maximum(ridge + 45.0, 1.0), 0.0, 1.0)
    front = (1 - t) * (2.0 - 0.3 * ax) + t * (-30.0)
    return np.where(y > -45.0, front, back).astype(np.float32)


def in_incisura(x, y):
    """Whether (x, y) lies in the tentorial incisura, the notch through which the brainstem passes."""
    return (np.abs(x) < _INCISURA_HALF_WIDTH_MM) & (y > -47.0)


def vault_thickness(x, y, z):
    """Calvarial thickness (mm): :data:`SKULL_MM`, 3.5 mm over the temporal squama, 8 mm at the occiput."""
    lateral = np.clip((np.abs(x) - 35.0) / 20.0, 0.0, 1.0)
    temporal = lateral * np.exp(-(((y + 5.0) / 28.0) ** 2) - ((z + 15.0) / 20.0) ** 2)
    occipital = np.exp(-(((y + 100.0) / 20.0) ** 2) - ((z + 10.0) / 25.0) ** 2)
    return (SKULL_MM - 3.0 * temporal + 1.5 * occipital).astype(np.float32)


def vault_cavity_sd(x, y, z):
    """Inner table of the cranial vault: supratentorial ellipsoid joined smoothly to the posterior fossa."""
    return smooth_union(ellipsoid(x, y, z, *_CAVITY_SUP), ellipsoid(x, y, z, *_CAVITY_POST), 12.0)


PETROUS = {s: ([(s * 17.0, -17.0, -37.0), (s * 34.0, -27.0, -39.0), (s * 52.0, -39.0, -42.0)], [5.5, 9.0, 12.0])
           for s in (-1, 1)}
CANAL = ([(0.0, -47.0, -52.0), (0.0, -46.5, -62.0), (0.0, -46.0, -75.0), (0.0, -46.0, -120.0),
          (0.0, -48.0, -250.0), (0.0, -50.0, -450.0)], [11.5, 11.0, 9.0, 8.0, 7.5, 7.0])
CORD = ([(0.0, -46.0, -62.0), (0.0, -46.0, -75.0), (0.0, -46.0, -120.0), (0.0, -48.0, -250.0),
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


def brainstem_sd(x, y, z):
    """Signed distance of the brainstem: the tilted medulla, the pons, the midbrain and cerebral peduncles."""
    bs = _polyline_sd(x, y, z, Tube.through(*_MEDULLA, 2.0))
    bs = smooth_union(bs, ellipsoid(x, y, z, (0.0, -38.5, -27.0), (17.0, 12.0, 12.5)), 4.0)
    bs = smooth_union(bs, ellipsoid(x, y, z, (0.0, -30.0, -8.0), (14.0, 10.0, 9.0)), 4.0)
    for s in (-1, 1):
        peduncle = Tube.through([(s * 7.0, -22.0, -15.0), (s * 11.0, -14.0, -7.0), (s * 15.0, -8.0, 1.0)],
                                [5.0, 5.0, 4.5], 2.0)
        bs = smooth_union(bs, _polyline_sd(x, y, z, peduncle), 3.0)
    return bs


_BRAINSTEM_AXIS = ((-62.0, -45.0), (-40.0, -41.0), (-27.0, -38.5), (-8.0, -30.0))
"""(z, y) of the brainstem's axis: medulla, pons, midbrain centres (it tilts: lower is more posterior)."""


def brainstem_axis_y(z):
    """RAS y (mm) of the brainstem's axis at height ``z`` (mm), interpolated along :data:`_BRAINSTEM_AXIS`."""
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
        pts, rad = spline(control, radii, step_mm)
        return cls(pts, rad, arc_length(pts))

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


def _surface_point(origin, direction, inset_mm, sdf=vault_cavity_sd, far_mm=150.0):
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
        if p[2] <= tentorium_z(0.0, p[1]) + 2.0 and p[1] < -60:
            break
        sss.append(p)
    torcula = sss[-1]
    veins = {"superior_sagittal_sinus": Tube.through(sss, np.linspace(2.0, 4.5, len(sss)), 2.0)}
    galen = (0.0, -44.0, tentorium_z(0.0, -44.0))
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
                z = float(tentorium_z(p[0], p[1])) - 2.0
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
