"""Within-subject coefficient of variation with a bias-corrected and accelerated bootstrap interval.

References
----------
- Hyslop NP, White WH. Estimating precision using duplicate measurements. J Air Waste Manag Assoc
  2009;59:1032-1039 (root-mean-square CV).
- Shoukri MM, Elkum N, Walter SD. Interval estimation and optimal design for the within-subject coefficient
  of variation for continuous and binary variables. BMC Med Res Methodol 2006;6:24.
- Efron B. Better bootstrap confidence intervals. J Am Stat Assoc 1987;82:171-185. Efron B, Tibshirani RJ.
  An Introduction to the Bootstrap. Chapman & Hall 1993, section 14.3.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import special

from ..errors import AgreementError
from ._checks import as_matrix, check_alpha, z_quantile


@dataclasses.dataclass(frozen=True)
class WCVResult:
    """A within-subject coefficient of variation, in percent.

    Attributes
    ----------
    value, ci_low, ci_high : float
        wCV and its (1 - alpha) confidence limits, in percent.
    method : str
        ``"rms"`` (root mean square of per-subject CVs) or ``"pooled"`` (sqrt(MSW) / |grand mean|).
    n, k : int
    shift : float
        Constant added to every value before the computation (the study's rule for sign-mixed values,
        see :func:`shift_to_one_sign`); 0 when the values all had one sign.
    alpha : float
    reason : str
        Why the estimate or its interval is NaN or degenerate; empty otherwise.
    ci_method : str
        How the interval was obtained.
    """

    value: float
    ci_low: float
    ci_high: float
    method: str
    n: int
    k: int
    shift: float = 0.0
    alpha: float = 0.05
    reason: str = ""
    ci_method: str = ""



def shift_to_one_sign(values) -> tuple[np.ndarray, float]:
    """Shift values of mixed sign to one side, towards the side that needs the smaller shift.

    This is the rule of the study's Table 2 footnote ("first-order features show both positive and
    negative values, and thus wCVs were calculated after shifting the values towards either positive or
    negative sides, towards where a smaller shift was required"). Made explicit here: if the values have
    both signs (min < 0 < max), the constant ``-min`` (moving everything to >= 0) or ``-max`` (moving
    everything to <= 0) is added, whichever has the smaller magnitude (``-min`` on a tie), so that the
    extreme value on the shifted side becomes exactly 0. Values of one sign are returned unchanged.

    Parameters
    ----------
    values : array_like
        All readings that enter one wCV (every subject and every reading of the comparison).

    Returns
    -------
    shifted : numpy.ndarray
        ``values + shift``.
    shift : float
        The constant added (0.0 when no shift was needed).
    """
    array = np.asarray(values, dtype=float)
    low, high = float(np.min(array)), float(np.max(array))
    if not (low < 0.0 < high):
        return array.copy(), 0.0
    shift = -low if abs(low) <= abs(high) else -high
    return array + shift, float(shift)


WCV_BOOTSTRAP_RESAMPLES = 2000
WCV_BOOTSTRAP_SEED = 20230101


def _bca_interval(statistic, n: int, alpha: float, n_resamples: int, seed: int) -> tuple[float, float, str]:
    """Bias-corrected and accelerated bootstrap interval over n subjects.

    ``statistic(index)`` maps an integer array of subject indices of shape (m, n') to m estimates. The
    resamples are ``numpy.random.default_rng(seed).integers(0, n, (n_resamples, n))``; the acceleration comes
    from the delete-one jackknife. Efron (1987), eqs. 2.3 and 6.6; Efron & Tibshirani (1993), section 14.3,
    eqs. 14.9-14.15: z0 = Phi^-1(#{theta*_b < theta_hat} / B) (ties counted half, as ``scipy.stats.bootstrap``
    does), a = sum d_i^3 / (6 (sum d_i^2)^(3/2)) with d_i = mean(theta_(.)) - theta_(i), and the limits are
    the alpha_1 and alpha_2 quantiles of the bootstrap distribution (linear interpolation), alpha_1,2 =
    Phi(z0 + (z0 +- z_{alpha/2}) / (1 - a (z0 +- z_{alpha/2}))). Returns (low, high, reason).
    """
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, (n_resamples, n))
    theta_hat = float(statistic(np.arange(n)[None, :])[0])
    replicates = np.concatenate([statistic(indices[start:start + 500])
                                 for start in range(0, n_resamples, 500)])
    if not np.all(np.isfinite(replicates)):
        return math.nan, math.nan, "the statistic is undefined in some bootstrap resamples; no interval"
    if np.all(replicates == theta_hat):
        return theta_hat, theta_hat, ""
    fraction = (np.count_nonzero(replicates < theta_hat) + np.count_nonzero(replicates <= theta_hat)) / (
        2.0 * n_resamples)
    if not 0.0 < fraction < 1.0:
        return math.nan, math.nan, "the bootstrap distribution lies on one side of the estimate; no BCa interval"
    z0 = z_quantile(fraction)
    keep = ~np.eye(n, dtype=bool)
    leave_one_out = np.broadcast_to(np.arange(n), (n, n))[keep].reshape(n, n - 1)
    jackknife = statistic(leave_one_out)
    deviations = jackknife.mean() - jackknife
    spread = float(np.sum(deviations ** 2))
    acceleration = float(np.sum(deviations ** 3)) / (6.0 * spread ** 1.5) if spread > 0 else 0.0
    z_alpha = z_quantile(alpha / 2)
    levels = []
    for z_level in (z_alpha, -z_alpha):
        shifted = z0 + z_level
        levels.append(float(special.ndtr(z0 + shifted / (1.0 - acceleration * shifted))))
    low, high = np.quantile(replicates, levels)
    return float(low), float(high), ""


def _canonical_order(matrix: np.ndarray) -> np.ndarray:
    """Rows sorted lexicographically, so that a seeded resampling does not depend on the subjects' order."""
    return matrix[np.lexsort(matrix.T[::-1])]


def wcv(ratings, method: str = "rms", alpha: float = 0.05, mixed_signs: str = "shift", *,
        n_resamples: int = WCV_BOOTSTRAP_RESAMPLES, seed: int = WCV_BOOTSTRAP_SEED) -> WCVResult:
    """Within-subject coefficient of variation in percent, with a BCa bootstrap confidence interval.

    Parameters
    ----------
    ratings : array_like, shape (n_subjects, k)
        Repeated readings; no missing values.
    method : {"rms", "pooled"}
        ``"rms"``: root mean square of the per-subject CVs, 100 sqrt(mean_i s_i^2 / m_i^2), with s_i the
        standard deviation (divisor k-1) and m_i the mean of subject i (Hyslop & White 2009; MedCalc's
        "root mean square method"; the definition of the study's Table 2).
        ``"pooled"``: 100 sqrt(MSW) / |grand mean|, MSW the within-subject mean square of the one-way
        ANOVA (the moment estimator of the within-subject CV theta = sigma_w / mu of Shoukri et al. 2006).
    alpha : float
        1 - confidence level.
    mixed_signs : {"shift", "error"}
        What to do when the values have both signs: apply :func:`shift_to_one_sign` (the study's rule)
        or raise :class:`AgreementError`.
    n_resamples : int
        Bootstrap resamples of the subjects (default 2000).
    seed : int
        Seed of the resampling; the same data give the same interval.

    Returns
    -------
    WCVResult
        With ``ci_method`` naming the interval.

    Notes
    -----
    Interval: bias-corrected and accelerated (BCa) bootstrap over subjects (Efron 1987; Efron & Tibshirani
    1993, section 14.3, eqs. 14.9-14.15), ``n_resamples`` resamples drawn with
    ``numpy.random.default_rng(seed)``, acceleration from the delete-one jackknife -- the interval of
    ``scipy.stats.bootstrap(method="BCa")`` with the same generator. Both wCVs are functions of per-subject
    quantities (c_i = s_i^2 / m_i^2 for the RMS wCV; s_i^2 and m_i for the pooled one, since in a balanced
    design MSW = mean_i s_i^2 and the grand mean is mean_i m_i), so subjects are resampled whole. The rows are
    put in a canonical (sorted) order first, so the interval does not depend on the order of the subjects.
    A shift made by the sign rule is found on the full data and held fixed in the resamples.

    Why this interval: it assumes neither one common CV (as normal-theory and Shoukri's asymptotic intervals
    do) nor normal readings, and, being a percentile interval, it stays finite and inside the range of the
    resampled wCVs when a few lesions with a mean near 0 dominate the RMS wCV. Its coverage is measured by
    simulation in Testing/Python/test_agreement.py; like bootstrap intervals in general it is somewhat too
    narrow with few subjects.

    A subject with no spread (s_i = 0) contributes c_i = 0 even if its mean is 0; a subject with spread and
    a mean of exactly 0 makes the RMS wCV undefined (NaN with a reason).
    """
    if method not in ("rms", "pooled"):
        raise AgreementError(f"wCV method must be 'rms' or 'pooled', got {method!r}")
    if mixed_signs not in ("shift", "error"):
        raise AgreementError(f"mixed_signs must be 'shift' or 'error', got {mixed_signs!r}")
    alpha = check_alpha(alpha)
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 100):
        raise AgreementError(f"n_resamples must be a whole number of at least 100, got {n_resamples!r}")
    matrix = _canonical_order(as_matrix(ratings))
    n, k = matrix.shape
    shifted, shift = shift_to_one_sign(matrix)
    if shift != 0.0 and mixed_signs == "error":
        raise AgreementError(
            "the readings have both positive and negative values, so a coefficient of variation is not "
            "defined; use mixed_signs='shift' for the study's shift rule")
    ci_method = f"BCa bootstrap, subjects resampled ({n_resamples} resamples, seed {seed})"
    base = dict(method=method, n=n, k=k, shift=shift, alpha=alpha, ci_method=ci_method)

    means = shifted.mean(axis=1)
    variances = shifted.var(axis=1, ddof=1)
    if method == "rms":
        spread = variances > 0
        if np.any(spread & (means == 0)):
            return WCVResult(math.nan, math.nan, math.nan, reason="a subject with differing readings has a "
                             "mean of exactly 0; its CV is undefined", **base)
        ratios = np.zeros(n)
        ratios[spread] = variances[spread] / means[spread] ** 2

        def estimate(index: np.ndarray) -> np.ndarray:
            return 100.0 * np.sqrt(ratios[index].mean(axis=-1))
    else:
        if float(means.mean()) == 0:
            return WCVResult(math.nan, math.nan, math.nan,
                             reason="the grand mean is exactly 0; the pooled CV is undefined", **base)

        def estimate(index: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                return 100.0 * np.sqrt(variances[index].mean(axis=-1)) / np.abs(means[index].mean(axis=-1))

    value = float(estimate(np.arange(n)[None, :])[0])
    if value == 0:
        return WCVResult(0.0, 0.0, 0.0, reason="no within-subject variance", **base)
    low, high, reason = _bca_interval(estimate, n, alpha, int(n_resamples), seed)
    return WCVResult(value, low, high, reason=reason, **base)
