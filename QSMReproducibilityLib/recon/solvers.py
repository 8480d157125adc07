"""Iterative solvers shared by the background-removal and inversion steps."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..progress import ProgressCallback, notify


def conjugate_gradient(
    apply: Callable[[np.ndarray], np.ndarray],
    rhs: np.ndarray,
    *,
    iterations: int,
    tolerance: float,
    progress: ProgressCallback | None = None,
    label: str = "CG",
) -> np.ndarray:
    """Solve A x = b for a symmetric positive (semi-)definite A by conjugate gradients.

    Hestenes & Stiefel 1952, J Res Natl Bur Stand 49:409 (algorithm as in Shewchuk 1994, "An
    introduction to the conjugate gradient method without the agonizing pain", B2). ``apply(p)``
    returns A p and may allocate; the iterates are updated in place. Stops after ``iterations`` or when
    ‖r‖ <= ``tolerance``·‖b‖. Starts from x = 0.
    """
    x = np.zeros_like(rhs)
    residual = rhs.copy()
    direction = rhs.copy()
    rr = float(np.dot(residual.ravel(), residual.ravel()))
    stop = tolerance**2 * rr
    for it in range(iterations):
        if rr <= stop or rr == 0.0:
            break
        a_dir = apply(direction)
        step = rr / float(np.dot(direction.ravel(), a_dir.ravel()))
        x += np.float32(step) * direction
        a_dir *= np.float32(step)
        residual -= a_dir
        del a_dir
        rr_new = float(np.dot(residual.ravel(), residual.ravel()))
        notify(progress, (it + 1) / iterations, f"{label} iteration {it + 1}")
        direction *= np.float32(rr_new / rr)
        direction += residual
        rr = rr_new
    return x
