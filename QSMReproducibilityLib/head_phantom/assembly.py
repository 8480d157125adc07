"""The head phantom on a slab grid: grid and affine, truth maps, lesion truth, region masks and the χ sources
of the field inside and outside the slab (:func:`make_head`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .. import phantom as _slab_phantom
from .geometry import (
    BASION, BRAIN_MASK_BELOW_FM_MM, CLIVUS_NORMAL, DEFAULT_LESIONS, FORAMEN_MAGNUM_Z_MM, STRUCTURES, STRUCTURE_ID,
    VERTEBROBASILAR_JUNCTION, HeadGeometry, Lesion, LesionFrame, brainstem_axis_y, head_geometry,
)
from .painting import Canvas, paint_head, waves
from .tissues import (
    ARTERY_LUMEN, ARTERY_WALL, BONE, CAUDATE, CSF, DENTATE, FAT, GLOBUS_PALLIDUS, LESION_LABEL_BASE, LESION_SIGNAL,
    MASTOID_AIR, OUTSIDE_AIR, PARENCHYMA_LABELS, PUTAMEN, RED_NUCLEUS, SINUS_AIR, SUBSTANTIA_NIGRA, TEXTURE_PPM,
    THALAMUS, TISSUE,
)

STUDY_SHAPE = (320, 240, 70)
STUDY_VOXEL_MM = (0.72, 0.72, 2.0)
STUDY_TE_S = _slab_phantom.STUDY_TE_S
SLAB_CENTRE_Z_MM = -15.0
"""Default slab centre: 140 mm from z = −85 (25 mm below the foramen magnum) to z = +55."""
FOV_CENTRE_MM = (0.0, -10.0)
"""In-plane centre (x, y) of the field of view; the head spans y −116…+100 and x −78…+78 (mm)."""
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


def separable_interp(values, src_axes, dst_axes):
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
        ids = [STRUCTURE_ID[n] for n in names]
        return lambda st, lab: np.isin(st, ids)

    makers = {name: sid(name) for name in STRUCTURES}
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
        makers[f"{name}_lumen"] = (lambda i: lambda st, lab: (st == i) & (lab == ARTERY_LUMEN))(STRUCTURE_ID[name])
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


def _lesion_occupancy(canvas: Canvas, frame: LesionFrame, voxel_mm, supersample_mm=0.2):
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
        canvas = Canvas(*sub)
        paint_head(canvas, geo, detail=False)
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

    canvas = Canvas(ny, nx, nz)
    cav = paint_head(canvas, geo, detail=True)
    labels = canvas.labels
    chi = _tissue_lookup(labels, 0)
    parenchyma = np.isin(labels, PARENCHYMA_LABELS)
    texture = waves(ny, nx, nz, seed, 32, (8.0, 20.0))
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
    dural = np.isin(canvas.struct, [STRUCTURE_ID[n] for n in ("superior_sagittal_sinus", "straight_sinus",
                                                              "transverse_sinus", "sigmoid_sinus", "deep_vein")])
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
    n = CLIVUS_NORMAL
    behind_clivus = (y - BASION[1]) * n[1] + (z - BASION[2]) * n[2] > 0
    ahead = y > brainstem_axis_y(z)
    near = np.abs(x) <= 18.0
    contents = (CSF, ARTERY_LUMEN, ARTERY_WALL)
    pmj = VERTEBROBASILAR_JUNCTION[2]

    def cistern(z_lo, z_hi):
        zone = behind_clivus & ahead & near & (z >= z_lo) & (z < z_hi)
        return lambda st, lab: zone & (np.isin(lab, contents) | (lab >= LESION_LABEL_BASE))

    return {"premedullary_cistern": cistern(FORAMEN_MAGNUM_Z_MM, pmj), "prepontine_cistern": cistern(pmj, -14.0)}
