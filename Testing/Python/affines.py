"""Oblique voxel → RAS affines for tests: rotated, anisotropic and off-centre, so that a swapped, flipped or
misplaced axis anywhere changes the result."""

import numpy as np


def oblique_affine(voxel_mm=(-0.72, 0.9, 2.0), rotation_deg=(20.0, -15.0, 35.0),
                   origin_mm=(12.5, -30.25, 41.0)) -> np.ndarray:
    """4×4 affine R_z·R_y·R_x·diag(voxel_mm) with ``origin_mm`` as translation.

    ``rotation_deg`` holds the rotations about x, y and z (degrees); a negative voxel size gives a
    left-handed grid (negative determinant), as a radiological storage order does.
    """
    ax, ay, az = np.deg2rad(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag(voxel_mm)
    affine[:3, 3] = origin_mm
    return affine
