"""Concordance correlation: Lin's CCC of two readings and Barnhart's overall CCC of k readings.

References
----------
- Lin LI. A concordance correlation coefficient to evaluate reproducibility. Biometrics 1989;45:255-268;
  correction Biometrics 2000;56:324-325.
- Barnhart HX, Haber M, Song J. Overall concordance correlation coefficient for evaluating agreement among
  multiple observers. Biometrics 2002;58:1020-1027.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ._checks import as_matrix, as_pair, check_alpha, t_quantile, z_quantile


@dataclasses.dataclass(frozen=True)
class CCCResult:
    """A concordance correlation coefficient (Lin's, or Barnhart's overall CCC) with its interval.

    Attributes
    ----------
    value, ci_low, ci_high : float
        Estimate and (1 - alpha) confidence limits; NaN with ``reason`` when undefined.
    n, k : int
        Subjects and readings (k = 2 for Lin's CCC).
    pearson_r : float
        Pearson correlation (k = 2 only; NaN otherwise).
    bias_correction : float
        Lin's accuracy factor C_b = CCC / r (k = 2 only).
    ci_method : str
        How the interval was obtained.
    alpha : float
    reason : str
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    k: int
    pearson_r: float = math.nan
    bias_correction: float = math.nan
    ci_method: str = ""
    alpha: float = 0.05
    reason: str = ""



def lin_ccc(x, y, alpha: float = 0.05) -> CCCResult:
    """Lin's concordance correlation coefficient of two readings of the same subjects.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Paired readings; no missing values.
    alpha : float
        1 - confidence level.

    Returns
    -------
    CCCResult

    Notes
    -----
    Lin's (1989) estimator, with moments that divide by n:
    rho_c = 2 s_xy / (s_x^2 + s_y^2 + (xbar - ybar)^2).
    Interval: Fisher's z = atanh(rho_c) +- z_{1-alpha/2} se_z with the asymptotic variance of Lin (1989)
    as corrected in Lin (2000):

        var(rho_c) = [ (1-r^2) rho_c^2 (1-rho_c^2) / r^2 + 2 rho_c^3 (1-rho_c) u^2 / r
                       - rho_c^4 u^4 / (2 r^2) ] / (n - 2),
        se_z = sqrt(var(rho_c)) / (1 - rho_c^2),  u = (ybar - xbar) / (s_x^2 s_y^2)^(1/4),

    r the Pearson correlation -- the computation of ``epiR::epi.ccc(ci = "z-transform")`` and
    ``DescTools::CCC``.
    """
    alpha = check_alpha(alpha)
    x, y = as_pair(x, y)
    n = x.size
    method = "Fisher z, Lin (1989, 2000) asymptotic variance"
    mean_x, mean_y = x.mean(), y.mean()
    var_x = float(((x - mean_x) ** 2).mean())
    var_y = float(((y - mean_y) ** 2).mean())
    cov_xy = float(((x - mean_x) * (y - mean_y)).mean())
    denominator = var_x + var_y + (mean_x - mean_y) ** 2
    if denominator == 0:
        return CCCResult(math.nan, math.nan, math.nan, n, 2, ci_method=method, alpha=alpha,
                         reason="no variance at all: every reading of every subject has the same value")
    rho_c = 2 * cov_xy / denominator
    if var_x == 0 or var_y == 0:
        return CCCResult(float(rho_c), math.nan, math.nan, n, 2, ci_method=method, alpha=alpha,
                         reason="one of the readings has no variance; the interval is undefined")
    r = cov_xy / math.sqrt(var_x * var_y)
    c_b = rho_c / r if r != 0 else math.nan
    if rho_c >= 1.0 - 1e-15:
        return CCCResult(1.0, 1.0, 1.0, n, 2, pearson_r=float(r), bias_correction=1.0, ci_method=method,
                         alpha=alpha, reason="readings agree exactly")
    if r == 0:
        return CCCResult(float(rho_c), math.nan, math.nan, n, 2, pearson_r=0.0, ci_method=method,
                         alpha=alpha, reason="Pearson correlation is exactly 0; the interval is undefined")
    u = (mean_y - mean_x) / (var_x * var_y) ** 0.25
    var_rho = ((1 - r ** 2) * rho_c ** 2 * (1 - rho_c ** 2) / r ** 2
               + 2 * rho_c ** 3 * (1 - rho_c) * u ** 2 / r
               - 0.5 * rho_c ** 4 * u ** 4 / r ** 2) / (n - 2)
    se_z = math.sqrt(max(var_rho, 0.0)) / (1 - rho_c ** 2)
    z = math.atanh(rho_c)
    half = z_quantile(1 - alpha / 2) * se_z
    return CCCResult(float(rho_c), math.tanh(z - half), math.tanh(z + half), n, 2, pearson_r=float(r),
                     bias_correction=float(c_b), ci_method=method, alpha=alpha)


def _overall_ccc_values(matrices: np.ndarray) -> np.ndarray:
    """Barnhart's overall CCC of a stack of (m, n, k) tables at once (moments divide by n)."""
    means = matrices.mean(axis=1)                                   # (m, k)
    centred = matrices - means[:, None, :]
    cov = np.einsum("mij,mil->mjl", centred, centred) / matrices.shape[1]   # (m, k, k)
    k = matrices.shape[2]
    upper = np.triu_indices(k, 1)
    sum_cov = cov[:, upper[0], upper[1]].sum(axis=1)
    sum_var = np.trace(cov, axis1=1, axis2=2)
    sum_mean_diff = ((means[:, upper[0]] - means[:, upper[1]]) ** 2).sum(axis=1)
    denominator = (k - 1) * sum_var + sum_mean_diff
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * sum_cov / denominator, np.nan)


def overall_ccc(ratings, alpha: float = 0.05) -> CCCResult:
    """Overall concordance correlation coefficient of k >= 2 readings (Barnhart, Haber & Song 2002).

    Parameters
    ----------
    ratings : array_like, shape (n_subjects, k)
        No missing values.
    alpha : float
        1 - confidence level.

    Returns
    -------
    CCCResult
        With ``k`` readings; equals :func:`lin_ccc` when k = 2.

    Notes
    -----
    Barnhart et al. (2002), with moments that divide by n:

        OCCC = 2 sum_{j<l} s_jl / [ (k-1) sum_j s_j^2 + sum_{j<l} (m_j - m_l)^2 ],

    a weighted mean of the pairwise Lin CCCs. Interval: delete-one jackknife on Fisher's z scale
    (Quenouille-Tukey pseudo-values; interval atanh(OCCC) +- t_{n-1, 1-alpha/2} se_jack, transformed
    back). Barnhart et al. obtained the variance by GEE; the jackknife needs no model of the fourth
    moments and is the interval of this function.
    """
    alpha = check_alpha(alpha)
    matrix = as_matrix(ratings)
    n, k = matrix.shape
    method = "jackknife on Fisher z (delete-one)"
    value = float(_overall_ccc_values(matrix[None])[0])
    if not np.isfinite(value):
        return CCCResult(math.nan, math.nan, math.nan, n, k, ci_method=method, alpha=alpha,
                         reason="no variance at all: every reading of every subject has the same value")
    if value >= 1.0 - 1e-15:
        return CCCResult(1.0, 1.0, 1.0, n, k, ci_method=method, alpha=alpha, reason="readings agree exactly")
    keep = ~np.eye(n, dtype=bool)
    leave_one_out = np.stack([matrix[keep[i]] for i in range(n)])       # (n, n-1, k)
    loo = _overall_ccc_values(leave_one_out)
    if not np.all(np.isfinite(loo)):
        return CCCResult(value, math.nan, math.nan, n, k, ci_method=method, alpha=alpha,
                         reason="a leave-one-out subset has no variance; the jackknife interval is undefined")
    bound = 1 - 1e-12
    z_full = math.atanh(min(max(value, -bound), bound))
    z_loo = np.arctanh(np.clip(loo, -bound, bound))
    pseudo = n * z_full - (n - 1) * z_loo
    se = float(pseudo.std(ddof=1) / math.sqrt(n))
    half = t_quantile(1 - alpha / 2, n - 1) * se
    return CCCResult(value, math.tanh(z_full - half), math.tanh(z_full + half), n, k, ci_method=method,
                     alpha=alpha)
