"""Brain extraction by a deformable surface: BET (Smith, Hum Brain Mapp 2002;17:143–155).

A tessellated sphere is placed inside the head and moved, vertex by vertex, by three forces: a tangential
term that keeps the vertices evenly spaced, a curvature-dependent smoothing term, and an intensity term
that pushes the surface outwards while the image under it looks like brain and pulls it in where it meets
the dark CSF–skull boundary. The fractional intensity threshold ``b_t`` (FSL's ``-f``, 0…1, default 0.5)
sets where that boundary lies: smaller values give larger brain outlines.

The study made nine candidate masks with BET at nine fractional thresholds and chose one by eye; all
thresholds are run here as one batch of surfaces, so the candidates cost little more than one.
Equation numbers refer to Smith 2002, section 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import sparse

from ..errors import ReconstructionError
from ..progress import ProgressCallback, notify, sub_progress

ITERATIONS = 1000
"""Surface updates (Smith 2002 used 1000)."""
ICOSPHERE_SUBDIVISIONS = 4
"""An icosahedron subdivided four times: 2562 vertices, about 5 mm apart on a brain-sized surface."""
R_MIN_MM, R_MAX_MM = 3.33, 10.0
"""Radii of curvature below which the surface is smoothed hard, and above which hardly (eq. 5)."""
D1_MM = 20.0
"""How far inside the surface the intensity minimum is searched for (d1; d2 = d1/2 for the maximum)."""
SAMPLE_STEP_MM = 1.0


@dataclass(frozen=True)
class BetThresholds:
    """The robust intensity landmarks of Smith 2002, section 2.1."""

    t2: float  # 2nd percentile: the robust minimum
    t98: float  # 98th percentile: the robust maximum
    t: float  # brain/background threshold, t2 + 10 % of the range
    tm: float  # median intensity inside the initial sphere: typical brain
    centre_mm: np.ndarray  # centre of gravity of the head
    radius_mm: float  # radius of a sphere of the head's volume


def robust_landmarks(image: np.ndarray, voxel_size_mm) -> BetThresholds:
    """t2, t98, t, the head's centre of gravity and radius, and tm (Smith 2002, section 2.1)."""
    vox = np.asarray(voxel_size_mm, float)
    sample = image[::2, ::2, :] if image.size > 4_000_000 else image
    t2, t98 = (float(v) for v in np.percentile(sample, [2.0, 98.0]))
    t = t2 + 0.1 * (t98 - t2)
    head = image > t
    weights = np.minimum(image, t98) * head
    total = float(weights.sum())
    if total <= 0:
        raise ReconstructionError("the magnitude image is empty: no voxel is above its background level")
    centre = np.array([float((weights.sum(axis=tuple(a for a in range(3) if a != ax)) * np.arange(n)).sum()) / total
                       for ax, n in enumerate(image.shape)]) * vox
    radius = (3.0 * float(head.sum()) * float(np.prod(vox)) / (4.0 * np.pi)) ** (1.0 / 3.0)
    grids = np.ogrid[tuple(slice(0, n) for n in image.shape)]
    distance_sq = sum(((g * v) - c) ** 2 for g, v, c in zip(grids, vox, centre))
    inside = (distance_sq <= radius**2) & (image > t) & (image <= t98)
    tm = float(np.median(image[inside])) if inside.any() else 0.5 * (t + t98)
    return BetThresholds(t2, t98, t, tm, centre, radius)


@lru_cache(maxsize=4)
def icosphere(subdivisions: int = ICOSPHERE_SUBDIVISIONS) -> tuple[np.ndarray, np.ndarray]:
    """Unit-sphere vertices (N, 3) and outward-wound triangles (F, 3) of a subdivided icosahedron."""
    p = (1.0 + 5.0**0.5) / 2.0
    vertices = [(-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0), (0, -1, p), (0, 1, p), (0, -1, -p), (0, 1, -p),
                (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(v, float) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        midpoint: dict[tuple[int, int], int] = {}

        def middle(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in midpoint:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                midpoint[key] = len(verts) - 1
            return midpoint[key]

        new_faces = []
        for a, b, c in faces:
            ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
            new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new_faces
    v = np.array(verts)
    f = np.array(faces, np.int64)
    # Wind every triangle outwards (normal along the position of its centre).
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    inward = np.einsum("ij,ij->i", normals, v[f].mean(axis=1)) < 0
    f[inward] = f[inward][:, ::-1]
    return v, f


def _neighbour_mean_operator(n_vertices: int, faces: np.ndarray) -> sparse.csr_matrix:
    """Sparse row-normalised adjacency: ``A @ V`` is each vertex's mean neighbour position."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_vertices, n_vertices))
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return sparse.diags(1.0 / degree) @ adjacency


def _vertex_face_operator(n_vertices: int, faces: np.ndarray) -> sparse.csr_matrix:
    """Sparse incidence: ``M @ face_normals`` sums the normals of the faces around each vertex."""
    rows = faces.ravel()
    cols = np.repeat(np.arange(len(faces)), 3)
    return sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_vertices, len(faces)))


def bet_surfaces(
    image: np.ndarray,
    voxel_size_mm,
    fractional_thresholds=(0.5,),
    *,
    iterations: int = ITERATIONS,
    subdivisions: int = ICOSPHERE_SUBDIVISIONS,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray, BetThresholds]:
    """Evolve one BET surface per fractional threshold; returns vertices (B, N, 3) in mm, faces, landmarks.

    ``image`` is a 3-D magnitude (X, Y, Z); positions are in mm from the centre of voxel (0, 0, 0)
    along the voxel axes. Vertices are kept inside the field of view, so a slab that cuts through the
    brain gives a surface that runs along the slab's first and last slices.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    vox = np.asarray(voxel_size_mm, float)
    shape = np.array(image.shape)
    landmarks = robust_landmarks(image, vox)
    t2, t, tm = landmarks.t2, landmarks.t, landmarks.tm
    bt = np.asarray(fractional_thresholds, float).reshape(-1, 1)  # (B, 1)
    unit, faces = icosphere(subdivisions)
    neighbour_mean = _neighbour_mean_operator(len(unit), faces)
    vertex_faces = _vertex_face_operator(len(unit), faces)
    n_batch, n_vert = len(bt), len(unit)
    # All surfaces stacked as one (B·N, 3) array, so each sparse product serves the whole batch.
    neighbour_mean = sparse.block_diag([neighbour_mean] * n_batch, format="csr")
    vertex_faces = sparse.block_diag([vertex_faces] * n_batch, format="csr")
    all_faces = (faces[None] + (np.arange(n_batch) * n_vert)[:, None, None]).reshape(-1, 3)
    v = np.tile(landmarks.centre_mm + 0.5 * landmarks.radius_mm * unit, (n_batch, 1))

    e_curv = 0.5 * (1.0 / R_MIN_MM + 1.0 / R_MAX_MM)  # eq. 6
    f_curv = 6.0 / (1.0 / R_MIN_MM - 1.0 / R_MAX_MM)
    # The inward search (d1 = 20 mm for a head) must not cross a small object and leave on its far side.
    d1 = min(D1_MM, 0.5 * landmarks.radius_mm)
    depths = np.arange(0.0, d1 + 0.5 * SAMPLE_STEP_MM, SAMPLE_STEP_MM, dtype=np.float32)  # inward samples
    half = depths <= d1 / 2
    # The image padded by the search depth with its edge values: samples need no bounds checks.
    margin = np.ceil(d1 / vox).astype(int) + 1
    padded = np.pad(image, [(m, m) for m in margin], mode="edge")
    flat = padded.ravel()
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1], np.int64)
    origin = int(margin @ strides)
    # Vertices may rest just beyond the outermost voxel centres, so a slab that cuts through the brain
    # keeps its first and last slices inside the surface.
    lower, upper = -0.49 * vox, (shape - 0.51) * vox
    inv_vox = (1.0 / vox).astype(np.float32)
    edge_a, edge_b = all_faces[:, 1], all_faces[:, 0]
    for it in range(iterations):
        if it % 50 == 0:
            notify(progress, it / iterations, "brain extraction (BET surface)")
        face_normals = np.cross(v[all_faces[:, 1]] - v[all_faces[:, 0]], v[all_faces[:, 2]] - v[all_faces[:, 0]])
        normals = vertex_faces @ face_normals
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        s = neighbour_mean @ v - v  # eq. 1: from the vertex to its neighbours' mean
        sn_len = np.einsum("ij,ij->i", s, normals)
        sn = sn_len[:, None] * normals
        st = s - sn
        # Mean edge length of each surface (l), over a third of the edges: every triangle's first edge.
        edge_len = np.linalg.norm(v[edge_a] - v[edge_b], axis=1).reshape(n_batch, -1).mean(axis=1)
        el = np.repeat(edge_len, n_vert)
        inv_r = 2.0 * np.abs(sn_len) / el**2  # local curvature, eq. 4
        f2 = 0.5 * (1.0 + np.tanh(f_curv * (inv_r - e_curv)))  # eq. 5
        # Intensity term: minimum and maximum along the inward normal (eqs. 7-9), nearest-voxel samples.
        position = (v * inv_vox).astype(np.float32)
        step = (normals * inv_vox).astype(np.float32)
        flat_index = np.full((len(v), len(depths)), origin, np.int64)
        for axis in range(3):
            coordinate = position[:, axis, None] - depths[None, :] * step[:, axis, None]
            flat_index += np.rint(coordinate).astype(np.int64) * strides[axis]
        samples = flat[flat_index]  # (B·N, depths)
        i_min = np.maximum(t2, np.minimum(tm, samples.min(axis=1)))
        i_max = np.minimum(tm, np.maximum(t, samples[:, half].max(axis=1)))
        i_min = i_min.reshape(n_batch, n_vert)
        i_max = i_max.reshape(n_batch, n_vert)
        t_local = (i_max - t2) * bt + t2
        f3 = (2.0 * (i_min - t_local) / np.maximum(i_max - t2, 1e-12)).ravel()
        v = v + 0.5 * st + f2[:, None] * sn + (0.05 * f3 * el)[:, None] * normals  # eq. 10
        np.clip(v, lower, upper, out=v)
    notify(progress, 1.0, "brain extraction done")
    return v.reshape(n_batch, n_vert, 3), faces, landmarks


def surface_to_mask(vertices_mm: np.ndarray, faces: np.ndarray, shape, voxel_size_mm) -> np.ndarray:
    """The voxels whose centres lie inside a closed triangulated surface (ray parity along the third axis).

    Each voxel column is a ray along axis 2; every triangle it crosses toggles inside/outside above the
    crossing. The rays pass a hair off the voxel centres in-plane, so that none runs exactly through an
    edge or vertex shared by two triangles.
    """
    vox = np.asarray(voxel_size_mm, float)
    shape = tuple(int(n) for n in shape)
    p = np.asarray(vertices_mm, float) / vox
    a, b, c = p[faces[:, 0]], p[faces[:, 1]], p[faces[:, 2]]
    # Twice the signed area of each triangle's projection on the (0, 1) plane; edge-on triangles are skipped.
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    keep = np.abs(area) > 1e-12
    a, b, c, area = a[keep], b[keep], c[keep], area[keep]
    offset = np.array([1.3e-5, 0.7e-5])  # the rays' in-plane offset from the voxel centres
    low = np.ceil(np.minimum(np.minimum(a, b), c)[:, :2] - offset).astype(np.int64)
    high = np.floor(np.maximum(np.maximum(a, b), c)[:, :2] - offset).astype(np.int64)
    span = np.maximum(high - low + 1, 0)
    crossings = np.zeros((shape[0], shape[1], shape[2] + 1), np.int32)
    for di in range(int(span[:, 0].max(initial=0))):
        for dj in range(int(span[:, 1].max(initial=0))):
            sel = (di < span[:, 0]) & (dj < span[:, 1])
            qi, qj = low[sel, 0] + di, low[sel, 1] + dj
            x, y = qi + offset[0], qj + offset[1]
            ta, tb, tc, ar = a[sel], b[sel], c[sel], area[sel]
            # Barycentric coordinates of the ray in the projected triangle.
            u = ((tb[:, 0] - x) * (tc[:, 1] - y) - (tc[:, 0] - x) * (tb[:, 1] - y)) / ar
            v = ((tc[:, 0] - x) * (ta[:, 1] - y) - (ta[:, 0] - x) * (tc[:, 1] - y)) / ar
            w = 1.0 - u - v
            hit = (u >= 0) & (v >= 0) & (w >= 0) & (qi >= 0) & (qi < shape[0]) & (qj >= 0) & (qj < shape[1])
            z = u[hit] * ta[hit, 2] + v[hit] * tb[hit, 2] + w[hit] * tc[hit, 2]
            first_above = np.clip(np.ceil(z), 0, shape[2]).astype(np.int64)
            np.add.at(crossings, (qi[hit], qj[hit], first_above), 1)
    inside = np.cumsum(crossings[:, :, : shape[2]], axis=2) % 2 == 1
    return inside


def bet_masks(
    image: np.ndarray,
    voxel_size_mm,
    fractional_thresholds=(0.5,),
    *,
    iterations: int = ITERATIONS,
    progress: ProgressCallback | None = None,
) -> list[np.ndarray]:
    """BET brain masks of a 3-D magnitude, one per fractional threshold (see :func:`bet_surfaces`)."""
    surfaces, faces, _ = bet_surfaces(image, voxel_size_mm, fractional_thresholds, iterations=iterations,
                                      progress=sub_progress(progress, 0.0, 0.9))
    masks = [surface_to_mask(s, faces, image.shape, voxel_size_mm) for s in surfaces]
    notify(progress, 1.0, "brain masks done")
    return masks
