"""Painting the labels and structure ids of the head on a grid (:class:`Canvas`, :func:`paint_head`)."""

from __future__ import annotations

import math

import numpy as np

from .geometry import (
    ARTERY_WALL_MM, BASE_PLATE_MM, BASION, CANAL, CLIVUS_NORMAL, CLIVUS_THICKNESS_MM, CORD, CSF_LAYER_MM,
    DORSUM_SELLAE, FORAMEN_MAGNUM_CENTRE, FORAMEN_MAGNUM_SEMI_MM, FORAMEN_MAGNUM_Z_MM, INCISURA_FLOOR_Z_MM, PETROUS,
    SCALP_MM, SKIN_MM, SKULL_MM, STRUCTURE_ID, HeadGeometry, Tube, above_floor_sd, brainstem_sd, in_incisura,
    petrous_ridge_y, sphenoid_ridge_y, tentorium_z, vault_cavity_sd, vault_thickness,
)
from .shapes import ellipsoid, elliptic_cylinder, intersection, rotated_ellipsoid, smooth_union, super_ellipsoid
from .tissues import (
    AIRWAY, ARTERY_LUMEN, ARTERY_WALL, BONE, BRAINSTEM, CALCIFICATION, CAUDATE, CSF, DENTATE, EYE, FAT,
    GLOBUS_PALLIDUS, GM, MASTOID_AIR, MUSCLE, OUTSIDE_AIR, PUTAMEN, RED_NUCLEUS, SINUS_AIR, SKIN, SPINAL_CORD,
    SUBSTANTIA_NIGRA, THALAMUS, VENOUS_BLOOD, WM,
)


class Canvas:
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
            self.struct[sl][mask] = STRUCTURE_ID[struct]

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


def waves(ax_y, ax_x, ax_z, seed, n_waves, wavelength_mm):
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
    h = smooth_union(cavity_raw - (SKULL_MM + SCALP_MM),
                     np.maximum(elliptic_cylinder(x, y, (0.0, -32.0), (56.0, 52.0)), z + 35.0), 18.0)
    h = smooth_union(h, super_ellipsoid(x, y, z, (0.0, 36.0, -66.0), (56.0, 52.0, 56.0), 2.6), 12.0)
    h = smooth_union(h, ellipsoid(x, y, z, (0.0, 88.0, -46.0), (11.0, 12.0, 22.0)), 6.0)
    h = smooth_union(h, ellipsoid(x, y, z, (0.0, 72.0, -8.0), (30.0, 10.0, 15.0)) - SCALP_MM, 10.0)
    for s in (-1, 1):
        h = smooth_union(h, ellipsoid(x, y, z, (s * 56.0, -6.0, -8.0), (22.0, 40.0, 30.0)), 10.0)
        h = smooth_union(h, ellipsoid(x, y, z, (s * 55.0, -48.0, -57.0), (9.0, 13.0, 14.0)) - 5.0, 6.0)
    if float(np.min(z)) < -150.0:
        h = smooth_union(h, np.maximum(elliptic_cylinder(x, y, (0.0, -35.0), (185.0, 105.0)), z + 200.0), 40.0)
    return np.maximum(h, -450.0 - z)


def _cavity(canvas, x, y, z, cavity_raw, above_floor):
    """Signed distance of the cranial cavity: raw vault above the fossae's floors, less the petrous bones,
    plus the foramen magnum and the spinal canal below it."""
    sd = np.maximum(cavity_raw, above_floor)
    fm = np.maximum(elliptic_cylinder(x, y, FORAMEN_MAGNUM_CENTRE, FORAMEN_MAGNUM_SEMI_MM),
                    np.abs(z - (FORAMEN_MAGNUM_Z_MM - 2.0)) - 4.5)
    sd = np.minimum(sd, fm)
    for s in (-1, 1):
        res = canvas.tube(Tube.through(*PETROUS[s], 1.0), 2.0)
        if res is not None:
            sl, d, _ = res
            sd[sl] = np.maximum(sd[sl], -d)
    res = canvas.tube(Tube.through(*CANAL, 2.0), 2.0)
    if res is not None:
        sl, d, _ = res
        sd[sl] = np.minimum(sd[sl], d)
    return sd


def paint_head(canvas: Canvas, geo: HeadGeometry, detail: bool = True):
    """Paint every structure of the head on ``canvas``; returns the cavity's signed distance.

    ``detail`` False skips what only matters inside the brain (used for the coarse outer grid).
    """
    cv = canvas
    x, y, z = cv.coords()
    full = cv.shape
    raw = np.broadcast_to(vault_cavity_sd(x, y, z), full).astype(np.float32)

    # Skin, subcutaneous fat, and soft tissue (muscle) under them.
    outline = np.broadcast_to(_head_outline(x, y, z, raw), full)
    fat_mm = 3.5 + 2.5 * np.clip((-40.0 - z) / 50.0, 0.0, 1.0)
    cv.paint(MUSCLE, outline <= 0, struct="soft_tissue")
    cv.paint(FAT, (outline <= -SKIN_MM) & (outline > -SKIN_MM - fat_mm), struct="scalp_fat")
    cv.paint(SKIN, (outline <= 0) & (outline > -SKIN_MM), struct="skin")
    del outline

    # Orbits: fat cone behind each eye, and the eye (vitreous).
    for s in (-1, 1):
        cv.paint_shape(FAT, lambda x, y, z: ellipsoid(x, y, z, (s * 30.0, 50.0, -38.0), (15.0, 22.0, 13.0)),
                       (s * 30 - 16, 27, -52), (s * 30 + 16, 73, -24), "orbital_fat")
        cv.paint_shape(EYE, lambda x, y, z: ellipsoid(x, y, z, (s * 32.0, 64.0, -38.0), (12.0, 12.0, 12.0)),
                       (s * 32 - 13, 51, -51), (s * 32 + 13, 77, -25), "eye")

    # Skull: vault shell over the raw cavity down to the skull base, the fossa floors, sphenoid body,
    # clivus, petrous bones; brow (frontal sinus bone), zygomatic arches, mandible, palate, vertebrae.
    above = np.broadcast_to(above_floor_sd(x, y, z), full)
    cv.paint(BONE, (raw > 0) & (raw <= vault_thickness(x, y, z)) & (above <= SKULL_MM), struct="skull")
    ant, mid, post = BASE_PLATE_MM
    plate = np.where(y <= petrous_ridge_y(x), post, np.where(y > sphenoid_ridge_y(x), ant, mid))
    cv.paint(BONE, (above > 0) & (above <= plate) & (raw <= SKULL_MM), struct="skull_base")
    del plate
    cv.paint_shape(BONE,
                   lambda x, y, z: intersection(np.abs(x) - 15.0, np.abs(y - 2.0) - 16.0, np.abs(z + 37.0) - 15.0),
                   (-15, -14, -52), (15, 18, -22), "skull_base")  # sphenoid body
    n = CLIVUS_NORMAL

    def clivus(x, y, z):
        s = (y - BASION[1]) * n[1] + (z - BASION[2]) * n[2]
        half_width = 17.0 + 0.15 * (z - FORAMEN_MAGNUM_Z_MM)
        return intersection(s, -CLIVUS_THICKNESS_MM - s, np.abs(x) - half_width, -66.0 - z, z - DORSUM_SELLAE[2])

    cv.paint_shape(BONE, clivus, (-25, -45, -66), (25, 10, -18), "clivus")
    for s in (-1, 1):
        res = cv.tube(Tube.through(*PETROUS[s], 1.0), 0.0)
        if res is not None:
            sl, d, _ = res
            cv.paint(BONE, d <= 0, sl, "petrous")
    cv.paint_shape(BONE, lambda x, y, z: ellipsoid(x, y, z, (0.0, 72.0, -8.0), (30.0, 10.0, 15.0)),
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
    cv.paint_shape(BONE, lambda x, y, z: super_ellipsoid(x, y, z, (0.0, 42.0, -71.0), (24.0, 30.0, 3.0), 4.0),
                   (-25, 11, -75), (25, 73, -67), "skull_base")
    _paint_spine(cv)

    # Air: sinuses with bony walls, nasal cavity, pharynx and airway, mastoid cells.
    def sinus(centre, semi, struct, wall=1.5, cells=None):
        lo = tuple(c - s - wall - 1 for c, s in zip(centre, semi))
        hi = tuple(c + s + wall + 1 for c, s in zip(centre, semi))
        sl, sd = cv.shape_sd(lambda x, y, z: ellipsoid(x, y, z, centre, semi), lo, hi)
        if sl is None:
            return
        soft = np.isin(cv.labels[sl], (MUSCLE, FAT, BONE))
        cv.paint(BONE, (sd <= wall) & soft, sl, "sinus_wall")
        air = sd <= 0
        if cells is not None:
            noise = waves(cv.ax[0][sl[0]], cv.ax[1][sl[1]], cv.ax[2][sl[2]], _ANATOMY_SEED + cells, 24, (5.0, 9.0))
            air = air & (noise > -0.2) & (sd <= -0.8)
        cv.paint(SINUS_AIR, air, sl, struct)

    sinus((0.0, 74.0, -6.0), (13.0, 4.0, 8.0), "frontal_sinus")
    for s in (-1, 1):
        sinus((s * 27.0, 52.0, -63.0), (12.0, 15.0, 10.0), "maxillary_sinus", 2.0)
    sinus((0.0, 50.0, -57.0), (11.0, 36.0, 12.0), "nasal_cavity", 0.0)
    sinus((0.0, 52.0, -38.0), (11.0, 18.0, 9.0), "ethmoid", 1.0, cells=1)
    sinus((0.0, 6.0, -38.0), (12.0, 10.0, 9.0), "sphenoid_sinus", 2.0)
    for s in (-1, 1):
        sl, sd = cv.shape_sd(lambda x, y, z: ellipsoid(x, y, z, (s * 55.0, -48.0, -56.0), (8.0, 12.0, 13.0)),
                             (s * 55 - 9, -61, -70), (s * 55 + 9, -35, -42))
        if sl is not None:
            cv.paint(BONE, sd <= 0, sl, "mastoid")
            noise = waves(cv.ax[0][sl[0]], cv.ax[1][sl[1]], cv.ax[2][sl[2]], _ANATOMY_SEED + 10 + s, 24, (4.0, 8.0))
            cv.paint(MASTOID_AIR, (sd <= -1.0) & (noise > -0.1), sl, "mastoid")
    cv.paint_shape(AIRWAY, lambda x, y, z: ellipsoid(x, y, z, (0.0, 4.0, -62.0), (13.0, 9.0, 8.0)),
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
        cv.paint_shape(BONE, lambda x, y, z: ellipsoid(x, y, z, (s * 18.0, -34.0, -68.0), (7.0, 9.0, 7.0)),
                       (s * 18 - 8, -44, -76), (s * 18 + 8, -24, -60), "vertebra")
    cv.paint_shape(BONE, lambda x, y, z: np.maximum(np.sqrt(x**2 + (y + 30.0) ** 2) - 5.5, np.abs(z + 79.0) - 16.0),
                   (-6, -36, -96), (6, -24, -62), "vertebra")
    for zc in np.arange(-92.0, -450.0, -19.0):
        cv.paint_shape(BONE, lambda x, y, z: np.maximum(elliptic_cylinder(x, y, (0.0, -30.0), (10.0, 8.5)),
                                                        np.abs(z - zc) - 7.0),
                       (-11, -39, zc - 8), (11, -21, zc + 8), "vertebra")
        cv.paint_shape(BONE, lambda x, y, z: np.maximum(ring(x, y, z, zc - 4.0, (14.0, 13.0), 3.5, -46.0),
                                                        y + 44.0),
                       (-18, -63, zc - 9), (18, -40, zc + 1), "vertebra")


def _paint_brain(cv, geo, cav, detail):
    x, y, z = cv.coords()
    post = y <= petrous_ridge_y(x)
    tent = tentorium_z(x, y)

    # Cerebrum: under 2 mm of CSF, above the tentorium behind the petrous ridges, either side of the falx.
    big = np.float32(1e3)
    floor_sup = np.where(in_incisura(x, y), INCISURA_FLOOR_Z_MM, tent + 1.5)
    sd = np.maximum(cav + CSF_LAYER_MM, np.where(post, floor_sup - z, -big))
    arch = np.clip(1.0 - ((y + 5.0) / 36.0) ** 2, 0.0, None)  # the corpus callosum under the falx
    fissure_floor = np.where(arch > 0, 19.0 + 9.0 * np.sqrt(arch), -big)
    sd = np.maximum(sd, np.where(z > fissure_floor, 1.2 - np.abs(x), -big))
    cerebrum = sd <= 0
    if detail:
        # Sulci: CSF clefts 1.2 mm wide and up to 12 mm deep along the zero set of a smooth random field
        # (gyri ~12 mm apart), lined like the surface by the 3 mm cortical ribbon.
        depth = -sd
        gyri = waves(*cv.ax, _ANATOMY_SEED + 7, 32, _GYRUS_WAVELENGTH_MM)
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
                               rotated_ellipsoid(x, y, z, c, a, yaw, pitch),
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
        bs = brainstem_sd(xs, ys, zs)
        cb = ellipsoid(xs, ys, zs, (0.0, -66.0, -30.0), (12.0, 28.0, 20.0))
        for s in (-1, 1):
            cb = smooth_union(cb, ellipsoid(xs, ys, zs, (s * 25.0, -62.0, -35.0), (30.0, 40.0, 24.0)), 4.0)
            cb = smooth_union(cb, ellipsoid(xs, ys, zs, (s * 6.0, -56.0, -54.0), (6.0, 8.0, 6.5)), 3.0)
        front = -30.0 + 0.8 * np.minimum(zs + 35.0, 0.0) + 0.012 * xs**2  # the fossa narrows towards the FM
        cb = intersection(cb, cav[sl] + 1.5, zs - tentorium_z(xs, ys) + 1.5, ys - petrous_ridge_y(xs), ys - front,
                          1.5 - bs)
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
            cv.paint_shape(WM, lambda x, y, z: rotated_ellipsoid(x, y, z, (s * 17.0, -48.0, -28.0), (6.0, 11.0, 7.0),
                                                                 s * 40.0),
                           (s * 17 - 12, -60, -36), (s * 17 + 12, -36, -20), "cerebellum", where_labels=(CSF, GM))
    if detail:
        for s in (-1, 1):
            cv.paint_shape(DENTATE,
                           lambda x, y, z: rotated_ellipsoid(x, y, z, (s * 15.0, -58.0, -34.0), (5.0, 9.0, 5.5),
                                                             s * 30.0),
                           (s * 15 - 10, -68, -40), (s * 15 + 10, -48, -28), "dentate")
    res = cv.tube(Tube.through(*CORD, 2.0), 0.0)
    if res is not None:
        sl, d, _ = res
        zs = cv.coords(sl)[2]
        cv.paint(SPINAL_CORD, (d <= 0) & (zs < FORAMEN_MAGNUM_Z_MM), sl, "spinal_cord")
    if detail:
        for s in (-1, 1):
            cv.paint_shape(RED_NUCLEUS, lambda x, y, z: ellipsoid(x, y, z, (s * 4.5, -23.0, -8.0), (3.5, 4.5, 4.0)),
                           (s * 4.5 - 5, -28, -13), (s * 4.5 + 5, -18, -3), "red_nucleus")
            cv.paint_shape(SUBSTANTIA_NIGRA,
                           lambda x, y, z: rotated_ellipsoid(x, y, z, (s * 10.0, -19.0, -11.0), (3.0, 9.0, 4.0),
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
    cv.paint_shape(CSF, lambda x, y, z: ellipsoid(x, y, z, (0.0, -10.0, 3.0), (2.5, 14.0, 10.0)),
                   (-4, -25, -8), (4, 5, 14), "third_ventricle")
    cv.paint_shape(CSF, lambda x, y, z: ellipsoid(x, y, z, (0.0, -53.0, -32.0), (7.0, 3.2, 9.0)),
                   (-8, -57, -42), (8, -49, -22), "fourth_ventricle")
    res = cv.tube(Tube.through([(0.0, -30.0, 1.0), (0.0, -36.0, -8.0), (0.0, -42.0, -18.0), (0.0, -50.0, -25.0)],
                               [1.0, 1.0, 1.0, 1.2], 1.0), 0.0)
    if res is not None:
        sl, d, _ = res
        cv.paint(CSF, d <= 0, sl, "fourth_ventricle")
    cv.paint_shape(CALCIFICATION, lambda x, y, z: ellipsoid(x, y, z, (24.0, -37.0, 12.0), (1.75, 1.75, 1.75)),
                   (21, -40, 9), (27, -34, 15), "choroid_calcification")
