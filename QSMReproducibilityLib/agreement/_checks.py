"""Input checks and distribution quantiles shared by the agreement estimators."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from ..errors import AgreementError

# Fewest subjects any estimator accepts (an interval needs n - 2 > 0 degrees of freedom for Lin's CCC).
MIN_SUBJECTS = 3


# Quantiles straight from scipy.special: the same numbers as scipy.stats' ppf methods, without their
# per-call argument checking (the study runs a few thousand of them).
def f_quantile(p: float, dfn: float, dfd: float) -> float:
    return float(special.fdtri(dfn, dfd, p))


def t_quantile(p: float, df: float) -> float:
    return float(special.stdtrit(df, p))


def z_quantile(p: float) -> float:
    return float(special.ndtri(p))


def check_alpha(alpha: float) -> float:
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise AgreementError(f"alpha must be a number between 0 and 1, got {alpha!r}") from None
    if not 0.0 < alpha < 1.0:
        raise AgreementError(f"alpha must be between 0 and 1 (0.05 gives 95 % intervals), got {alpha}")
    return alpha


def as_matrix(ratings, *, min_k: int = 2, what: str = "ratings") -> np.ndarray:
    """Numeric n_subjects x k matrix, or AgreementError saying what is wrong with it."""
    if isinstance(ratings, pd.DataFrame):
        ratings = ratings.to_numpy()
    array = np.asarray(ratings, dtype=object) if not isinstance(ratings, np.ndarray) else ratings
    try:
        matrix = np.asarray(array, dtype=float)
    except (TypeError, ValueError):
        flat = np.asarray(array, dtype=object).ravel()
        bad = []
        for item in flat:
            try:
                float(item)
            except (TypeError, ValueError):
                bad.append(item)
                if len(bad) == 3:
                    break
        raise AgreementError(
            f"{what} contain values that are not numbers (e.g. {', '.join(repr(b) for b in bad)}); "
            "every reading must be a number") from None
    if matrix.ndim != 2:
        raise AgreementError(f"{what} must be a table of subjects x readings (2-D), got shape {matrix.shape}")
    n, k = matrix.shape
    if k < min_k:
        raise AgreementError(f"{what} need at least {min_k} readings per subject, got {k}")
    if n < MIN_SUBJECTS:
        raise AgreementError(
            f"{what} have {n} subject(s); at least {MIN_SUBJECTS} subjects with all readings are needed")
    if not np.all(np.isfinite(matrix)):
        bad_rows = np.flatnonzero(~np.all(np.isfinite(matrix), axis=1))
        raise AgreementError(
            f"{what} contain missing or non-finite values in {bad_rows.size} subject(s) (rows "
            f"{', '.join(str(r) for r in bad_rows[:5])}{'...' if bad_rows.size > 5 else ''}); "
            "drop subjects with a missing reading first")
    return matrix


def as_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    try:
        x_arr = np.asarray(x, dtype=float).ravel()
        y_arr = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError):
        raise AgreementError("paired readings contain values that are not numbers") from None
    if x_arr.size != y_arr.size:
        raise AgreementError(f"paired readings differ in length: {x_arr.size} and {y_arr.size} subjects")
    matrix = as_matrix(np.column_stack([x_arr, y_arr]), what="paired readings")
    return matrix[:, 0], matrix[:, 1]
