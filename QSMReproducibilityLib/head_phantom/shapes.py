"""Signed-distance primitives (mm; negative inside) and centreline splines for the head's analytic anatomy."""

from __future__ import annotations

import functools
import math

import numpy as np


def ellipsoid(x, y, z, centre, semi):
    """Approximate signed distance to an ellipsoid, k0(k0 − 1)/k1 (exact on the axes and for spheres)."""
    px, py, pz = (x - centre[0]) / semi[0], (y - centre[1]) / semi[1], (z - centre[2]) / semi[2]
    k0 = np.sqrt(px * px + py * py + pz * pz)
    k1 = np.sqrt((px / semi[0]) ** 2 + (py / semi[1]) ** 2 + (pz / semi[2]) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


def rotated_ellipsoid(x, y, z, centre, semi, yaw_deg=0.0, pitch_deg=0.0):
    """Ellipsoid turned by ``yaw`` about z (from +y towards +x) then ``pitch`` about x (nose up)."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    u = dx * math.cos(a) - dy * math.sin(a)
    v = dx * math.sin(a) + dy * math.cos(a)
    v, w = v * math.cos(b) + dz * math.sin(b), -v * math.sin(b) + dz * math.cos(b)
    return ellipsoid(u, v, w, (0.0, 0.0, 0.0), semi)


def super_ellipsoid(x, y, z, centre, semi, power):
    """Approximate signed distance to |x/a|^p + |y/b|^p + |z/c|^p = 1 (ρ − 1)/|∇ρ|."""
    q = [np.abs((c - o) / s) + np.float32(1e-6) for c, o, s in zip((x, y, z), centre, semi)]
    qp = [v**power for v in q]
    rho = (qp[0] + qp[1] + qp[2]) ** (1.0 / power)
    grad = np.sqrt(sum((v ** (power - 1) / s) ** 2 for v, s in zip(q, semi))) * rho ** (1 - power)
    return (rho - 1) / np.maximum(grad, np.float32(1e-6))


def elliptic_cylinder(x, y, centre, semi):
    """Signed distance to an elliptic cylinder along z (approximate, as :func:`ellipsoid`)."""
    px, py = (x - centre[0]) / semi[0], (y - centre[1]) / semi[1]
    k0 = np.sqrt(px * px + py * py)
    k1 = np.sqrt((px / semi[0]) ** 2 + (py / semi[1]) ** 2)
    return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


def intersection(*values):
    """Elementwise maximum of broadcastable arrays (intersection of signed distances)."""
    return functools.reduce(np.maximum, values)


def smooth_union(a, b, k):
    """Smooth minimum (union) of two signed distances with blending width ``k`` mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def spline(points, radii=None, step_mm=1.0):
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


def arc_length(points):
    """Cumulative arc length (mm) along a polyline (N, 3), 0 at its first point."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
