"""Agreement statistics for repeated readings and the design of the QSM reproducibility study.

Estimators (each returns a small frozen result object with ``.value``, ``.ci_low`` and ``.ci_high``):

- :func:`icc` -- intraclass correlation, the six forms of McGraw & Wong (1996) with their exact F-based
  confidence intervals (Satterthwaite degrees of freedom for the absolute-agreement forms).
- :func:`lin_ccc` -- Lin's (1989) concordance correlation coefficient with the Fisher-z interval of
  Lin (1989, 2000), as computed by ``epiR::epi.ccc`` and ``DescTools::CCC``.
- :func:`overall_ccc` -- Barnhart, Haber & Song's (2002) overall CCC for more than two readings, with a
  jackknife interval on Fisher's z scale.
- :func:`wcv` -- within-subject coefficient of variation in percent (root-mean-square or pooled definition)
  with a bias-corrected and accelerated (BCa) bootstrap interval over subjects.
- :func:`bland_altman` -- bias and 95 % limits of agreement with their confidence intervals (Bland &
  Altman 1986, 1999).

Study design (:func:`analyze_study`): a long feature table (columns ``case_id, lesion_id, lesion_type,
observer, reading, feature, value``) is turned into the five comparisons of the study per lesion type --
"O1 intra", "O2 intra", "1st inter", "2nd inter" and "Intra and inter" (all four readings) -- and into
Tables 1-3 of Park et al., Sci Rep 2023 ("Feasibility and intra- and interobserver reproducibility of
quantitative susceptibility mapping with radiomic features ...").

References
----------
- Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability. Psychol Bull
  1979;86:420-428.
- McGraw KO, Wong SP. Forming inferences about some intraclass correlation coefficients. Psychol Methods
  1996;1:30-46 (Tables 4 and 7; erratum 1996;1:390).
- Lin LI. A concordance correlation coefficient to evaluate reproducibility. Biometrics 1989;45:255-268;
  correction Biometrics 2000;56:324-325.
- Barnhart HX, Haber M, Song J. Overall concordance correlation coefficient for evaluating agreement among
  multiple observers. Biometrics 2002;58:1020-1027.
- Hyslop NP, White WH. Estimating precision using duplicate measurements. J Air Waste Manag Assoc
  2009;59:1032-1039 (root-mean-square CV).
- Shoukri MM, Elkum N, Walter SD. Interval estimation and optimal design for the within-subject coefficient
  of variation for continuous and binary variables. BMC Med Res Methodol 2006;6:24.
- Efron B. Better bootstrap confidence intervals. J Am Stat Assoc 1987;82:171-185. Efron B, Tibshirani RJ.
  An Introduction to the Bootstrap. Chapman & Hall 1993, section 14.3.
- Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of clinical
  measurement. Lancet 1986;i:307-310. Measuring agreement in method comparison studies. Stat Methods Med
  Res 1999;8:135-160.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import special

from .errors import AgreementError
from .progress import ProgressCallback, notify

__all__ = [
    "ICC_FORMS",
    "COMPARISONS",
    "REQUIRED_COLUMNS",
    "QSM_FEATURES",
    "ICCResult",
    "CCCResult",
    "WCVResult",
    "BlandAltmanResult",
    "Comparison",
    "StudyAgreement",
    "icc",
    "lin_ccc",
    "overall_ccc",
    "wcv",
    "WCV_BOOTSTRAP_RESAMPLES",
    "WCV_BOOTSTRAP_SEED",
    "shift_to_one_sign",
    "bland_altman",
    "feature_class",
    "validate_feature_table",
    "analyze_study",
]

ICC_FORMS = ("1,1", "A,1", "C,1", "1,k", "A,k", "C,k")

REQUIRED_COLUMNS = ("case_id", "lesion_id", "lesion_type", "observer", "reading", "feature", "value")

QSM_FEATURES = ("qsm_mean", "qsm_median")

# Order of lesion types in every table; other types found in a table follow alphabetically.
KNOWN_LESION_TYPES = ("hematoma", "calcification")

# PyRadiomics feature names are <image type>_<feature class>_<feature>, e.g. original_glcm_Contrast.
RADIOMICS_CLASSES = ("firstorder", "shape", "shape2D", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_RADIOMICS_NAME = re.compile(r"^(?P<image>[A-Za-z0-9-]+(?:-[A-Za-z0-9.]+)*)_(?P<cls>"
                             + "|".join(RADIOMICS_CLASSES) + r")_(?P<name>\w+)$")

_MIN_SUBJECTS = 3


# Quantiles straight from scipy.special: the same numbers as scipy.stats' ppf methods, without their
# per-call argument checking (the study runs a few thousand of them).
def _f_quantile(p: float, dfn: float, dfd: float) -> float:
    return float(special.fdtri(dfn, dfd, p))


def _t_quantile(p: float, df: float) -> float:
    return float(special.stdtrit(df, p))


def _z_quantile(p: float) -> float:
    return float(special.ndtri(p))


# ----------------------------------------------------------------------------------------------------------
# Result objects
# ----------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ICCResult:
    """An intraclass correlation coefficient with its confidence interval.

    Attributes
    ----------
    form : str
        McGraw & Wong form: ``"1,1" "A,1" "C,1" "1,k" "A,k" "C,k"``.
    value, ci_low, ci_high : float
        Estimate and (1 - alpha) confidence limits; NaN with ``reason`` when undefined.
    n, k : int
        Subjects and readings per subject.
    F, df1, df2 : float
        F statistic of the test of ICC = 0 (MSR/MSW for one-way forms, MSR/MSE otherwise) and its degrees
        of freedom.
    ms_rows, ms_columns, ms_error, ms_within : float
        Mean squares of the two-way ANOVA (subjects, readings, residual) and of the one-way ANOVA.
    alpha : float
    reason : str
        Why the estimate is NaN or degenerate; empty otherwise.
    """

    form: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    k: int
    F: float
    df1: float
    df2: float
    ms_rows: float
    ms_columns: float
    ms_error: float
    ms_within: float
    alpha: float = 0.05
    reason: str = ""


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


@dataclasses.dataclass(frozen=True)
class BlandAltmanResult:
    """Bias and limits of agreement of paired readings (Bland & Altman 1986, 1999).

    Differences are ``x - y``. ``value``/``ci_low``/``ci_high`` are the bias and its interval, so the object
    reads like the other results.
    """

    n: int
    bias: float
    bias_ci_low: float
    bias_ci_high: float
    sd: float
    loa_low: float
    loa_high: float
    loa_low_ci_low: float
    loa_low_ci_high: float
    loa_high_ci_low: float
    loa_high_ci_high: float
    multiplier: float
    alpha: float = 0.05

    @property
    def value(self) -> float:
        return self.bias

    @property
    def ci_low(self) -> float:
        return self.bias_ci_low

    @property
    def ci_high(self) -> float:
        return self.bias_ci_high


# ----------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------

def _check_alpha(alpha: float) -> float:
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise AgreementError(f"alpha must be a number between 0 and 1, got {alpha!r}") from None
    if not 0.0 < alpha < 1.0:
        raise AgreementError(f"alpha must be between 0 and 1 (0.05 gives 95 % intervals), got {alpha}")
    return alpha


def _as_matrix(ratings, *, min_k: int = 2, what: str = "ratings") -> np.ndarray:
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
    if n < _MIN_SUBJECTS:
        raise AgreementError(
            f"{what} have {n} subject(s); at least {_MIN_SUBJECTS} subjects with all readings are needed")
    if not np.all(np.isfinite(matrix)):
        bad_rows = np.flatnonzero(~np.all(np.isfinite(matrix), axis=1))
        raise AgreementError(
            f"{what} contain missing or non-finite values in {bad_rows.size} subject(s) (rows "
            f"{', '.join(str(r) for r in bad_rows[:5])}{'...' if bad_rows.size > 5 else ''}); "
            "drop subjects with a missing reading first")
    return matrix


def _as_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    try:
        x_arr = np.asarray(x, dtype=float).ravel()
        y_arr = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError):
        raise AgreementError("paired readings contain values that are not numbers") from None
    if x_arr.size != y_arr.size:
        raise AgreementError(f"paired readings differ in length: {x_arr.size} and {y_arr.size} subjects")
    matrix = _as_matrix(np.column_stack([x_arr, y_arr]), what="paired readings")
    return matrix[:, 0], matrix[:, 1]


# ----------------------------------------------------------------------------------------------------------
# Intraclass correlation (McGraw & Wong 1996)
# ----------------------------------------------------------------------------------------------------------

def _anova_mean_squares(matrix: np.ndarray) -> tuple[float, float, float, float]:
    """MSR (subjects), MSC (readings), MSE (residual) of the two-way ANOVA and MSW of the one-way ANOVA."""
    n, k = matrix.shape
    grand = matrix.mean()
    ss_total = float(((matrix - grand) ** 2).sum())
    ss_rows = float(k * ((matrix.mean(axis=1) - grand) ** 2).sum())
    ss_cols = float(n * ((matrix.mean(axis=0) - grand) ** 2).sum())
    ss_error = max(ss_total - ss_rows - ss_cols, 0.0)
    ss_within = max(ss_total - ss_rows, 0.0)
    # Exact zeros survive round-off only when computed directly; tiny residues of rounding become 0.
    scale = max(ss_total, 1e-300)
    if ss_error < 1e-13 * scale:
        ss_error = 0.0
    if ss_within < 1e-13 * scale:
        ss_within = 0.0
    if ss_cols < 1e-13 * scale:
        ss_cols = 0.0
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    msw = ss_within / (n * (k - 1))
    return msr, msc, mse, msw


def icc(ratings, form: str = "A,1", alpha: float = 0.05) -> ICCResult:
    """Intraclass correlation coefficient of an n_subjects x k table (McGraw & Wong 1996).

    Parameters
    ----------
    ratings : array_like, shape (n_subjects, k)
        One row per subject, one column per reading (observer or repeat); no missing values.
    form : {"1,1", "A,1", "C,1", "1,k", "A,k", "C,k"}
        McGraw & Wong's notation: "1" one-way random effects, "A" two-way absolute agreement, "C" two-way
        consistency; ",1" single measurement, ",k" mean of the k readings. Shrout & Fleiss (1979) call
        A,1 "ICC(2,1)" and C,1 "ICC(3,1)".
    alpha : float
        1 - confidence level of the interval.

    Returns
    -------
    ICCResult

    Notes
    -----
    With MSR, MSC, MSE the subject, reading and residual mean squares of the two-way ANOVA and MSW the
    within-subject mean square of the one-way ANOVA (McGraw & Wong 1996, Table 4):

    - ICC(1,1) = (MSR - MSW) / (MSR + (k-1) MSW); ICC(1,k) = (MSR - MSW) / MSR
    - ICC(C,1) = (MSR - MSE) / (MSR + (k-1) MSE); ICC(C,k) = (MSR - MSE) / MSR
    - ICC(A,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)
    - ICC(A,k) = (MSR - MSE) / (MSR + (MSC - MSE) / n)

    Intervals (McGraw & Wong 1996, Table 7): for the one-way and consistency forms the exact F interval
    with F0 = MSR/MSW on (n-1, n(k-1)) or F0 = MSR/MSE on (n-1, (n-1)(k-1)) degrees of freedom. For
    ICC(A,1) the approximate interval with Satterthwaite's degrees of freedom

        v = (a MSC + b MSE)^2 / [(a MSC)^2/(k-1) + (b MSE)^2/((n-1)(k-1))],
        a = k rho / (n (1-rho)),  b = 1 + k rho (n-1) / (n (1-rho)),

    L = n (MSR - F* MSE) / [F* (k MSC + (kn-k-n) MSE) + n MSR],
    U = n (F** MSR - MSE) / [k MSC + (kn-k-n) MSE + n F** MSR], F* = F_{1-alpha/2}(n-1, v),
    F** = F_{1-alpha/2}(v, n-1). For ICC(A,k) the limits are the Spearman-Brown step-up
    k L / (1 + (k-1) L) of the ICC(A,1) limits, as psych::ICC, pingouin and DescTools compute them.
    """
    if form not in ICC_FORMS:
        raise AgreementError(f"ICC form must be one of {', '.join(ICC_FORMS)}; got {form!r}")
    alpha = _check_alpha(alpha)
    matrix = _as_matrix(ratings)
    n, k = matrix.shape
    msr, msc, mse, msw = _anova_mean_squares(matrix)
    model, unit = form.split(",")
    base = dict(form=form, n=n, k=k, ms_rows=msr, ms_columns=msc, ms_error=mse, ms_within=msw, alpha=alpha)

    if model == "1":
        df1, df2 = n - 1, n * (k - 1)
        denominator_ms = msw
    else:
        df1, df2 = n - 1, (n - 1) * (k - 1)
        denominator_ms = mse
    f_value = msr / denominator_ms if denominator_ms > 0 else (math.inf if msr > 0 else math.nan)
    base.update(F=f_value, df1=float(df1), df2=float(df2))

    if msr == 0 and denominator_ms == 0:
        # No variance between subjects and none within: every subject reads the same value.
        if model == "A" and msc > 0:
            reason = "no variance between subjects; the readings differ only by a constant offset"
        else:
            reason = "no variance at all: every reading of every subject has the same value"
        return ICCResult(value=math.nan, ci_low=math.nan, ci_high=math.nan, reason=reason, **base)

    if model == "1":
        value = (msr - msw) / (msr + (k - 1) * msw) if unit == "1" else (msr - msw) / msr
    elif model == "C":
        value = (msr - mse) / (msr + (k - 1) * mse) if unit == "1" else (msr - mse) / msr
    else:
        if unit == "1":
            value = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        else:
            value = (msr - mse) / (msr + (msc - mse) / n)

    if model in ("1", "C"):
        if denominator_ms == 0:
            return ICCResult(value=1.0, ci_low=1.0, ci_high=1.0,
                             reason="no within-subject variance: readings agree exactly", **base)
        f_low = f_value / _f_quantile(1 - alpha / 2, df1, df2)
        f_high = f_value * _f_quantile(1 - alpha / 2, df2, df1)
        if unit == "1":
            low, high = (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)
        else:
            low, high = 1 - 1 / f_low, 1 - 1 / f_high
        return ICCResult(value=float(value), ci_low=float(low), ci_high=float(high), **base)

    # Absolute agreement: Satterthwaite interval for A,1 (McGraw & Wong 1996, Table 7).
    rho = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    if mse == 0 and msc == 0:
        return ICCResult(value=1.0, ci_low=1.0, ci_high=1.0,
                         reason="no within-subject variance: readings agree exactly", **base)
    low_1, high_1 = _icc_a1_interval(rho, msr, msc, mse, n, k, alpha)
    if unit == "k":
        low, high = k * low_1 / (1 + (k - 1) * low_1), k * high_1 / (1 + (k - 1) * high_1)
    else:
        low, high = low_1, high_1
    return ICCResult(value=float(value), ci_low=float(low), ci_high=float(high), **base)


def _icc_a1_interval(rho: float, msr: float, msc: float, mse: float, n: int, k: int,
                     alpha: float) -> tuple[float, float]:
    """McGraw & Wong (1996) interval of ICC(A,1) with Satterthwaite's degrees of freedom."""
    if rho >= 1.0:
        return 1.0, 1.0
    a = k * rho / (n * (1 - rho))
    b = 1 + k * rho * (n - 1) / (n * (1 - rho))
    numerator = (a * msc + b * mse) ** 2
    denominator = (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
    if not denominator > 0:
        return math.nan, math.nan
    v = numerator / denominator
    f_star = _f_quantile(1 - alpha / 2, n - 1, v)
    f_star2 = _f_quantile(1 - alpha / 2, v, n - 1)
    low = n * (msr - f_star * mse) / (f_star * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_star2 * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_star2 * msr)
    return float(low), float(high)


# ----------------------------------------------------------------------------------------------------------
# Concordance correlation (Lin 1989; Barnhart, Haber & Song 2002)
# ----------------------------------------------------------------------------------------------------------

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
    alpha = _check_alpha(alpha)
    x, y = _as_pair(x, y)
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
    half = _z_quantile(1 - alpha / 2) * se_z
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
    alpha = _check_alpha(alpha)
    matrix = _as_matrix(ratings)
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
    half = _t_quantile(1 - alpha / 2, n - 1) * se
    return CCCResult(value, math.tanh(z_full - half), math.tanh(z_full + half), n, k, ci_method=method,
                     alpha=alpha)


# ----------------------------------------------------------------------------------------------------------
# Within-subject coefficient of variation
# ----------------------------------------------------------------------------------------------------------

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
    z0 = _z_quantile(fraction)
    keep = ~np.eye(n, dtype=bool)
    leave_one_out = np.broadcast_to(np.arange(n), (n, n))[keep].reshape(n, n - 1)
    jackknife = statistic(leave_one_out)
    deviations = jackknife.mean() - jackknife
    spread = float(np.sum(deviations ** 2))
    acceleration = float(np.sum(deviations ** 3)) / (6.0 * spread ** 1.5) if spread > 0 else 0.0
    z_alpha = _z_quantile(alpha / 2)
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
    do) nor normal readings, and it stays finite and inside the range of the resampled wCVs when a few
    lesions with a mean near 0 dominate the RMS wCV -- there a studentized (bootstrap-t) interval gave upper
    limits of 10^5 %. Coverage measured by simulation (Testing/Python/test_agreement.py): 0.93 for 34-40
    subjects read twice with a common CV, 0.87-0.89 for 25-36 subjects with CVs that vary between subjects;
    the interval is somewhat too narrow with few subjects, as bootstrap intervals are.

    A subject with no spread (s_i = 0) contributes c_i = 0 even if its mean is 0; a subject with spread and
    a mean of exactly 0 makes the RMS wCV undefined (NaN with a reason).
    """
    if method not in ("rms", "pooled"):
        raise AgreementError(f"wCV method must be 'rms' or 'pooled', got {method!r}")
    if mixed_signs not in ("shift", "error"):
        raise AgreementError(f"mixed_signs must be 'shift' or 'error', got {mixed_signs!r}")
    alpha = _check_alpha(alpha)
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 100):
        raise AgreementError(f"n_resamples must be a whole number of at least 100, got {n_resamples!r}")
    matrix = _canonical_order(_as_matrix(ratings))
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


# ----------------------------------------------------------------------------------------------------------
# Bland-Altman
# ----------------------------------------------------------------------------------------------------------

def bland_altman(x, y, alpha: float = 0.05, multiplier: float | None = None) -> BlandAltmanResult:
    """Bias and limits of agreement of paired readings, with confidence intervals.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Paired readings; the differences are ``x - y``.
    alpha : float
        1 - confidence level of the intervals (and of the limits when ``multiplier`` is None).
    multiplier : float, optional
        Limits are bias +- multiplier * SD; default z_{1-alpha/2} (1.96). Bland & Altman (1986) used 2.

    Returns
    -------
    BlandAltmanResult

    Notes
    -----
    Bland & Altman (1986, 1999): bias d = mean(x - y), s = SD(x - y) (divisor n-1), limits d +- c s.
    se(d) = s / sqrt(n); se(limit) = s sqrt(1/n + c^2 / (2 (n-1))) (Bland & Altman 1999;
    about sqrt(3 s^2 / n) for c = 1.96, the 1986 approximation). Intervals use t_{n-1, 1-alpha/2}.
    """
    alpha = _check_alpha(alpha)
    x, y = _as_pair(x, y)
    n = x.size
    differences = x - y
    bias = float(differences.mean())
    sd = float(differences.std(ddof=1))
    c = float(_z_quantile(1 - alpha / 2)) if multiplier is None else float(multiplier)
    t = float(_t_quantile(1 - alpha / 2, n - 1))
    se_bias = sd / math.sqrt(n)
    se_limit = sd * math.sqrt(1.0 / n + c ** 2 / (2.0 * (n - 1)))
    low, high = bias - c * sd, bias + c * sd
    return BlandAltmanResult(
        n=n, bias=bias, bias_ci_low=bias - t * se_bias, bias_ci_high=bias + t * se_bias, sd=sd,
        loa_low=low, loa_high=high,
        loa_low_ci_low=low - t * se_limit, loa_low_ci_high=low + t * se_limit,
        loa_high_ci_low=high - t * se_limit, loa_high_ci_high=high + t * se_limit,
        multiplier=c, alpha=alpha)


# ----------------------------------------------------------------------------------------------------------
# Study design
# ----------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Comparison:
    """One comparison of the study: a name and the readings (observer slot, reading number) it uses."""

    name: str
    readings: tuple[tuple[int, int], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Column labels such as ``"O1R1"`` of the readings in this comparison."""
        return tuple(f"O{observer}R{reading}" for observer, reading in self.readings)

    @property
    def pairwise(self) -> bool:
        return len(self.readings) == 2


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("O1 intra", ((1, 1), (1, 2))),
    Comparison("O2 intra", ((2, 1), (2, 2))),
    Comparison("1st inter", ((1, 1), (2, 1))),
    Comparison("2nd inter", ((1, 2), (2, 2))),
    Comparison("Intra and inter", ((1, 1), (1, 2), (2, 1), (2, 2))),
)

_SLOTS = ("O1R1", "O1R2", "O2R1", "O2R2")


def feature_class(feature: str) -> str:
    """Feature class of a feature name: a PyRadiomics class (``"glcm"``...), ``"qsm"`` or ``"other"``."""
    if feature in QSM_FEATURES:
        return "qsm"
    match = _RADIOMICS_NAME.match(feature)
    return match.group("cls") if match else "other"


@dataclasses.dataclass(frozen=True)
class StudyAgreement:
    """Everything :func:`analyze_study` computes, as tidy tables.

    Attributes
    ----------
    observers : tuple[str, str]
        Observer IDs; O1 is the first in sorted order, O2 the second.
    lesion_types : tuple[str, ...]
    threshold, icc_form, alpha :
        Settings of the analysis.
    cohort : DataFrame
        Per lesion type: cases, lesions (subjects) and bilateral cases.
    table1 : DataFrame
        Mean and SD of ``qsm_mean`` / ``qsm_median`` per lesion type x observer x reading.
    table2 : DataFrame
        ICC, RMS wCV, pooled wCV and CCC with intervals for ``qsm_mean`` / ``qsm_median`` per lesion type x
        comparison.
    table3 : DataFrame
        Counts and percentages of radiomic features with CCC, ICC and both above the threshold, medians of
        CCC and ICC, per comparison x lesion type (and ``"both types"``).
    feature_agreement : DataFrame
        CCC and ICC with intervals for every feature x lesion type x comparison (``stable`` column).
    bland_altman : DataFrame
        Bias and limits of agreement of ``qsm_mean`` / ``qsm_median`` per pairwise comparison.
    missing_readings : DataFrame
        Every subject x reading with missing feature values (count, example features, reasons).
    wide : DataFrame
        The readings, index (lesion_type, case_id, lesion_id, feature), columns O1R1, O1R2, O2R1, O2R2.
    """

    observers: tuple[str, str]
    lesion_types: tuple[str, ...]
    threshold: float
    icc_form: str
    alpha: float
    cohort: pd.DataFrame
    table1: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    feature_agreement: pd.DataFrame
    bland_altman: pd.DataFrame
    missing_readings: pd.DataFrame
    wide: pd.DataFrame

    @property
    def radiomics_features(self) -> list[str]:
        """PyRadiomics feature names in the table, in class order."""
        table = self.feature_agreement
        return list(dict.fromkeys(table.loc[table["feature_class"].isin(RADIOMICS_CLASSES), "feature"]))


def _describe_rows(frame: pd.DataFrame, rows: Iterable, columns: Sequence[str], limit: int = 3) -> str:
    parts = []
    for index in list(rows)[:limit]:
        row = frame.loc[index]
        shown = ", ".join(f"{c}={row[c]!r}" if isinstance(row[c], str) else f"{c}={row[c]}" for c in columns)
        parts.append(f"row {int(index) + 2} ({shown})")
    return "; ".join(parts)


def validate_feature_table(features: pd.DataFrame, *, source: str = "feature table") -> pd.DataFrame:
    """Check a long feature table and return a clean copy.

    Parameters
    ----------
    features : pandas.DataFrame
        Columns ``case_id, lesion_id, lesion_type, observer, reading, feature, value`` (more allowed,
        e.g. ``reason``).
    source : str
        Name of the table (usually its file path) used in error messages.

    Returns
    -------
    pandas.DataFrame
        IDs as strings, ``reading`` as int, ``value`` as float (non-finite values become NaN with a
        reason), a ``reason`` column.

    Raises
    ------
    AgreementError
        Missing columns, text where numbers belong, duplicate rows, readings other than 1 and 2, a number
        of observers other than two, or a subject whose lesion type differs between readings. Row numbers
        in messages are CSV line numbers (header = line 1).
    """
    if not isinstance(features, pd.DataFrame):
        raise AgreementError(f"{source}: expected a table (pandas DataFrame), got {type(features).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in features.columns]
    if missing:
        raise AgreementError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}; a feature table needs the "
            f"columns {', '.join(REQUIRED_COLUMNS)}")
    if features.empty:
        raise AgreementError(f"{source}: the feature table has no rows")
    table = features.reset_index(drop=True).copy()
    for column in ("case_id", "lesion_id", "lesion_type", "observer", "feature"):
        empty = table[column].isna() | (table[column].astype(str).str.strip() == "")
        if empty.any():
            raise AgreementError(f"{source}: column {column!r} is empty in {int(empty.sum())} row(s): "
                                 + _describe_rows(table, np.flatnonzero(empty), REQUIRED_COLUMNS[:6]))
        table[column] = table[column].astype(str).str.strip()
    table["lesion_type"] = table["lesion_type"].str.lower()

    reading = pd.to_numeric(table["reading"], errors="coerce")
    bad = reading.isna() | (reading != np.round(reading))
    if bad.any():
        raise AgreementError(f"{source}: column 'reading' must hold whole numbers (1, 2); "
                             + _describe_rows(table, np.flatnonzero(bad), ("observer", "reading")))
    table["reading"] = reading.astype(int)
    other = ~table["reading"].isin((1, 2))
    if other.any():
        raise AgreementError(
            f"{source}: this study design compares readings 1 and 2 of each observer; found reading(s) "
            f"{sorted(set(table.loc[other, 'reading']))} ("
            + _describe_rows(table, np.flatnonzero(other), ("case_id", "observer", "reading")) + ")")

    raw = table["value"]
    value = pd.to_numeric(raw, errors="coerce")
    text = value.isna() & raw.notna() & ~raw.astype(str).str.strip().str.lower().isin(("", "nan", "na"))
    if text.any():
        raise AgreementError(
            f"{source}: column 'value' holds text where numbers belong in {int(text.sum())} row(s): "
            + _describe_rows(table, np.flatnonzero(text), ("case_id", "observer", "reading", "feature",
                                                              "value")))
    value = value.astype(float)
    if "reason" not in table.columns:
        table["reason"] = ""
    table["reason"] = table["reason"].fillna("").astype(str)
    infinite = np.isinf(value)
    table.loc[infinite & (table["reason"] == ""), "reason"] = "non-finite value"
    table["value"] = value.where(~infinite, np.nan)
    table.loc[table["value"].isna() & (table["reason"] == ""), "reason"] = "missing value"

    key = ["case_id", "lesion_id", "observer", "reading", "feature"]
    duplicated = table.duplicated(key, keep=False)
    if duplicated.any():
        raise AgreementError(
            f"{source}: {int(duplicated.sum())} rows repeat the same case, lesion, observer, reading and "
            "feature; each measurement must appear once: "
            + _describe_rows(table, np.flatnonzero(duplicated), key))

    types_per_subject = table.groupby(["case_id", "lesion_id"])["lesion_type"].nunique()
    mixed = types_per_subject[types_per_subject > 1]
    if not mixed.empty:
        case, lesion = mixed.index[0]
        found = sorted(set(table.loc[(table["case_id"] == case) & (table["lesion_id"] == lesion),
                                     "lesion_type"]))
        raise AgreementError(f"{source}: lesion {lesion!r} of case {case!r} has different lesion types in "
                             f"different rows ({', '.join(found)}); one lesion has one type")

    observers = sorted(set(table["observer"]))
    if len(observers) != 2:
        raise AgreementError(
            f"{source}: this study design needs exactly two observers; found {len(observers)} "
            f"({', '.join(observers)})")
    return table


def _ordered_lesion_types(found: Iterable[str]) -> tuple[str, ...]:
    found = set(found)
    return tuple(t for t in KNOWN_LESION_TYPES if t in found) + tuple(sorted(found - set(KNOWN_LESION_TYPES)))


def _nan_icc(reason: str) -> dict:
    return {"icc": math.nan, "icc_ci_low": math.nan, "icc_ci_high": math.nan, "icc_reason": reason}


def _agreement_row(matrix: np.ndarray, comparison: Comparison, icc_form: str, alpha: float) -> dict:
    """CCC (Lin or overall) and ICC of one complete n x k matrix; NaN with reasons instead of errors."""
    row: dict = {}
    try:
        if comparison.pairwise:
            ccc_result = lin_ccc(matrix[:, 0], matrix[:, 1], alpha=alpha)
        else:
            ccc_result = overall_ccc(matrix, alpha=alpha)
        row.update(ccc=ccc_result.value, ccc_ci_low=ccc_result.ci_low, ccc_ci_high=ccc_result.ci_high,
                   ccc_reason=ccc_result.reason)
    except AgreementError as error:
        row.update(ccc=math.nan, ccc_ci_low=math.nan, ccc_ci_high=math.nan, ccc_reason=str(error))
    try:
        icc_result = icc(matrix, form=icc_form, alpha=alpha)
        row.update(icc=icc_result.value, icc_ci_low=icc_result.ci_low, icc_ci_high=icc_result.ci_high,
                   icc_reason=icc_result.reason)
    except AgreementError as error:
        row.update(_nan_icc(str(error)))
    return row


def _reason(*parts: str) -> str:
    return "; ".join(dict.fromkeys(p for p in parts if p))


def analyze_study(features: pd.DataFrame, *, threshold: float = 0.85, icc_form: str = "A,1",
                  alpha: float = 0.05, progress: ProgressCallback | None = None,
                  source: str = "feature table") -> StudyAgreement:
    """Agreement analysis of a two-observer, two-reading study (Park et al. 2023, Tables 1-3, Figure 3).

    Parameters
    ----------
    features : pandas.DataFrame
        Long feature table (see :func:`validate_feature_table`).
    threshold : float
        A feature is stable in a comparison when CCC > threshold and ICC > threshold (study: 0.85).
    icc_form : str
        ICC form used everywhere (one of :data:`ICC_FORMS`); for "Intra and inter" it is applied to all
        four readings.
    alpha : float
        1 - confidence level of every interval.
    progress : callable, optional
        ``progress(fraction, message)``; returning False cancels.
    source : str
        Name of the table in error messages.

    Returns
    -------
    StudyAgreement

    Raises
    ------
    AgreementError
        The table is malformed (see :func:`validate_feature_table`), no lesion type has three lesions, or
        not one CCC or ICC can be computed (e.g. every value is the same). Single statistics that cannot be
        computed are NaN with a ``reason`` instead.

    Notes
    -----
    O1 and O2 are the two observer IDs in sorted order. A subject is (case_id, lesion_id). For each
    comparison, subjects lacking any of its readings are dropped and counted (``n_dropped``). Pairwise
    comparisons use Lin's CCC; "Intra and inter" uses Barnhart's overall CCC of the four readings and the
    chosen ICC form computed over all four readings (for A,1: single measurement, k = 4). Percentages in
    Table 3 are of the PyRadiomics features in the table; "both types" counts features above the threshold
    in every lesion type.
    """
    if icc_form not in ICC_FORMS:
        raise AgreementError(f"ICC form must be one of {', '.join(ICC_FORMS)}; got {icc_form!r}")
    alpha = _check_alpha(alpha)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise AgreementError(f"the stability threshold must be a number, got {threshold!r}") from None
    if not -1.0 < threshold < 1.0:
        raise AgreementError(f"the stability threshold must lie between -1 and 1, got {threshold}")

    notify(progress, 0.0, "checking the feature table")
    table = validate_feature_table(features, source=source)
    observers = tuple(sorted(set(table["observer"])))
    slot_of_observer = {observers[0]: 1, observers[1]: 2}
    table["slot"] = "O" + table["observer"].map(slot_of_observer).astype(str) + "R" + table["reading"].astype(str)
    lesion_types = _ordered_lesion_types(table["lesion_type"])

    index = ["lesion_type", "case_id", "lesion_id", "feature"]
    wide = table.pivot(index=index, columns="slot", values="value").reindex(columns=list(_SLOTS))
    wide.columns.name = None
    wide = wide.sort_index()

    cohort = _cohort(table, lesion_types)
    if (cohort["n_lesions"] < _MIN_SUBJECTS).all():
        counts = ", ".join(f"{row.lesion_type}: {row.n_lesions}" for row in cohort.itertuples(index=False))
        raise AgreementError(
            f"{source}: too few lesions to measure agreement ({counts}); every statistic needs at least "
            f"{_MIN_SUBJECTS} lesions of one type, each read twice by both observers")
    table1 = _table1(table, observers, lesion_types)
    missing_readings = _missing_readings(table, wide)

    features_in_order = sorted(set(table["feature"]), key=_feature_sort_key)
    rows = []
    groups = [(lt, f) for lt in lesion_types for f in features_in_order]
    wide_groups = {key: frame.to_numpy(dtype=float)
                   for key, frame in wide.groupby(level=["lesion_type", "feature"], sort=False)}
    slot_index = {slot: i for i, slot in enumerate(_SLOTS)}
    for number, (lesion_type, feature) in enumerate(groups):
        if number % 20 == 0:
            notify(progress, 0.05 + 0.85 * number / max(len(groups), 1),
                   f"agreement of {feature} ({lesion_type})")
        values = wide_groups.get((lesion_type, feature))
        if values is None:
            continue
        for comparison in COMPARISONS:
            matrix_all = values[:, [slot_index[c] for c in comparison.columns]]
            complete = np.all(np.isfinite(matrix_all), axis=1)
            matrix = matrix_all[complete]
            row = dict(lesion_type=lesion_type, comparison=comparison.name, feature=feature,
                       feature_class=feature_class(feature), n_subjects=int(matrix_all.shape[0]),
                       n=int(matrix.shape[0]), n_dropped=int((~complete).sum()))
            if matrix.shape[0] < _MIN_SUBJECTS:
                reason = (f"only {matrix.shape[0]} subject(s) with all readings of this comparison; at least "
                          f"{_MIN_SUBJECTS} are needed")
                row.update(ccc=math.nan, ccc_ci_low=math.nan, ccc_ci_high=math.nan, ccc_reason=reason,
                           **_nan_icc(reason))
            else:
                row.update(_agreement_row(matrix, comparison, icc_form, alpha))
            rows.append(row)
    feature_agreement = pd.DataFrame(rows, columns=[
        "lesion_type", "comparison", "feature", "feature_class", "n_subjects", "n", "n_dropped",
        "ccc", "ccc_ci_low", "ccc_ci_high", "icc", "icc_ci_low", "icc_ci_high", "ccc_reason", "icc_reason"])
    feature_agreement["stable"] = ((feature_agreement["ccc"] > threshold)
                                   & (feature_agreement["icc"] > threshold))
    feature_agreement["reason"] = [_reason(a, b) for a, b in
                                   zip(feature_agreement["ccc_reason"], feature_agreement["icc_reason"])]
    feature_agreement = feature_agreement.drop(columns=["ccc_reason", "icc_reason"])

    notify(progress, 0.92, "QSM agreement tables")
    table2 = _table2(wide, lesion_types, icc_form, alpha)
    bland = _bland_altman_table(wide, lesion_types, alpha)
    table3 = _table3(feature_agreement, lesion_types, threshold)
    computed = feature_agreement[["ccc", "icc"]].notna().to_numpy().any()
    if not computed:
        reasons = feature_agreement["reason"].value_counts()
        raise AgreementError(
            f"{source}: no agreement statistic could be computed for any feature; most common reason: "
            f"{reasons.index[0] if len(reasons) else 'unknown'}")
    notify(progress, 1.0, "agreement analysis done")
    return StudyAgreement(observers=observers, lesion_types=lesion_types, threshold=threshold,
                          icc_form=icc_form, alpha=alpha, cohort=cohort, table1=table1, table2=table2,
                          table3=table3, feature_agreement=feature_agreement, bland_altman=bland,
                          missing_readings=missing_readings, wide=wide)


def _feature_sort_key(feature: str) -> tuple:
    order = ("qsm",) + RADIOMICS_CLASSES + ("other",)
    cls = feature_class(feature)
    return (order.index(cls), feature.lower())


def _cohort(table: pd.DataFrame, lesion_types: Sequence[str]) -> pd.DataFrame:
    rows = []
    for lesion_type in lesion_types:
        part = table[table["lesion_type"] == lesion_type]
        lesions = part[["case_id", "lesion_id"]].drop_duplicates()
        per_case = lesions.groupby("case_id").size()
        rows.append(dict(lesion_type=lesion_type, n_cases=int(per_case.size), n_lesions=int(len(lesions)),
                         n_bilateral_cases=int((per_case > 1).sum())))
    return pd.DataFrame(rows, columns=["lesion_type", "n_cases", "n_lesions", "n_bilateral_cases"])


def _table1(table: pd.DataFrame, observers: Sequence[str], lesion_types: Sequence[str]) -> pd.DataFrame:
    """Table 1 of the study: mean +- SD of qsm_mean and qsm_median per observer x reading x lesion type."""
    rows = []
    for feature in QSM_FEATURES:
        for lesion_type in lesion_types:
            for slot, observer in enumerate(observers, start=1):
                for reading in (1, 2):
                    values = table.loc[(table["feature"] == feature) & (table["lesion_type"] == lesion_type)
                                       & (table["observer"] == observer) & (table["reading"] == reading),
                                       "value"].dropna().to_numpy(dtype=float)
                    if values.size == 0:
                        continue
                    rows.append(dict(feature=feature, lesion_type=lesion_type, observer=f"O{slot}",
                                     observer_id=observer, reading=reading, n=int(values.size),
                                     mean_ppm=float(values.mean()),
                                     sd_ppm=float(values.std(ddof=1)) if values.size > 1 else math.nan))
    return pd.DataFrame(rows, columns=["feature", "lesion_type", "observer", "observer_id", "reading", "n",
                                       "mean_ppm", "sd_ppm"])


def _table2(wide: pd.DataFrame, lesion_types: Sequence[str], icc_form: str, alpha: float) -> pd.DataFrame:
    """Table 2 of the study: ICC and wCV (with 95 % CIs) of qsm_mean / qsm_median per comparison."""
    rows = []
    features = set(wide.index.get_level_values("feature"))
    for feature in QSM_FEATURES:
        if feature not in features:
            continue
        for comparison in COMPARISONS:
            for lesion_type in lesion_types:
                try:
                    frame = wide.xs((lesion_type, feature), level=("lesion_type", "feature"))
                except KeyError:
                    continue
                matrix_all = frame[list(comparison.columns)].to_numpy(dtype=float)
                complete = np.all(np.isfinite(matrix_all), axis=1)
                matrix = matrix_all[complete]
                row = dict(feature=feature, comparison=comparison.name, lesion_type=lesion_type,
                           n=int(matrix.shape[0]), n_dropped=int((~complete).sum()))
                reasons = []
                for key, compute in (
                        ("icc", lambda m: icc(m, form=icc_form, alpha=alpha)),
                        ("wcv", lambda m: wcv(m, method="rms", alpha=alpha)),
                        ("wcv_pooled", lambda m: wcv(m, method="pooled", alpha=alpha)),
                        ("ccc", lambda m: (lin_ccc(m[:, 0], m[:, 1], alpha=alpha) if m.shape[1] == 2
                                           else overall_ccc(m, alpha=alpha)))):
                    try:
                        result = compute(matrix)
                        row.update({key: result.value, f"{key}_ci_low": result.ci_low,
                                    f"{key}_ci_high": result.ci_high})
                        if key == "wcv":
                            row["wcv_shift"] = result.shift
                            row["wcv_ci_method"] = result.ci_method
                        reasons.append(result.reason)
                    except AgreementError as error:
                        row.update({key: math.nan, f"{key}_ci_low": math.nan, f"{key}_ci_high": math.nan})
                        reasons.append(str(error))
                row["reason"] = _reason(*reasons)
                rows.append(row)
    columns = ["feature", "comparison", "lesion_type", "n", "n_dropped", "icc", "icc_ci_low", "icc_ci_high",
               "wcv", "wcv_ci_low", "wcv_ci_high", "wcv_shift", "wcv_pooled", "wcv_pooled_ci_low",
               "wcv_pooled_ci_high", "ccc", "ccc_ci_low", "ccc_ci_high", "wcv_ci_method", "reason"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["wcv_shift"] = frame["wcv_shift"].fillna(0.0)
    frame["wcv_ci_method"] = frame["wcv_ci_method"].fillna("")
    return frame


def _bland_altman_table(wide: pd.DataFrame, lesion_types: Sequence[str], alpha: float) -> pd.DataFrame:
    rows = []
    features = set(wide.index.get_level_values("feature"))
    for feature in QSM_FEATURES:
        if feature not in features:
            continue
        for lesion_type in lesion_types:
            try:
                frame = wide.xs((lesion_type, feature), level=("lesion_type", "feature"))
            except KeyError:
                continue
            for comparison in COMPARISONS:
                if not comparison.pairwise:
                    continue
                first, second = comparison.columns
                pair = frame[[first, second]].dropna()
                row = dict(feature=feature, lesion_type=lesion_type, comparison=comparison.name,
                           difference=f"{first} - {second}", n=int(len(pair)))
                try:
                    result = bland_altman(pair[first], pair[second], alpha=alpha)
                    row.update({f.name: getattr(result, f.name) for f in dataclasses.fields(result)
                                if f.name not in ("n", "alpha")})
                    row["reason"] = ""
                except AgreementError as error:
                    row["reason"] = str(error)
                rows.append(row)
    columns = ["feature", "lesion_type", "comparison", "difference", "n", "bias", "bias_ci_low",
               "bias_ci_high", "sd", "loa_low", "loa_high", "loa_low_ci_low", "loa_low_ci_high",
               "loa_high_ci_low", "loa_high_ci_high", "multiplier", "reason"]
    return pd.DataFrame(rows, columns=columns)


def _table3(agreement: pd.DataFrame, lesion_types: Sequence[str], threshold: float) -> pd.DataFrame:
    """Table 3 of the study: stable radiomic features per comparison x lesion type (and both types)."""
    radiomic = agreement[agreement["feature_class"].isin(RADIOMICS_CLASSES)]
    rows = []
    for comparison in COMPARISONS:
        part = radiomic[radiomic["comparison"] == comparison.name]
        above = {}
        for lesion_type in lesion_types:
            sub = part[part["lesion_type"] == lesion_type]
            n_features = int(sub["feature"].nunique())
            ccc_above = set(sub.loc[sub["ccc"] > threshold, "feature"])
            icc_above = set(sub.loc[sub["icc"] > threshold, "feature"])
            above[lesion_type] = (ccc_above, icc_above, n_features)
            rows.append(_table3_row(comparison.name, lesion_type, n_features, ccc_above, icc_above,
                                    float(sub["ccc"].median()) if sub["ccc"].notna().any() else math.nan,
                                    float(sub["icc"].median()) if sub["icc"].notna().any() else math.nan))
        if len(lesion_types) > 1:
            ccc_all = set.intersection(*(a[0] for a in above.values()))
            icc_all = set.intersection(*(a[1] for a in above.values()))
            n_features = int(part["feature"].nunique())
            rows.append(_table3_row(comparison.name, "both types", n_features, ccc_all, icc_all, math.nan,
                                    math.nan))
    # Features above the threshold in all five comparisons (the study's "9 and 19 reproducible features").
    every = {}
    for lesion_type in lesion_types:
        sub = radiomic[radiomic["lesion_type"] == lesion_type]
        n_features = int(sub["feature"].nunique())
        counts = sub.assign(ccc_ok=sub["ccc"] > threshold, icc_ok=sub["icc"] > threshold).groupby("feature")
        ccc_all = set(counts["ccc_ok"].sum()[lambda s: s == len(COMPARISONS)].index)
        icc_all = set(counts["icc_ok"].sum()[lambda s: s == len(COMPARISONS)].index)
        stable_all = set(counts["stable"].sum()[lambda s: s == len(COMPARISONS)].index)
        every[lesion_type] = (ccc_all, icc_all, stable_all)
        row = _table3_row("All comparisons", lesion_type, n_features, ccc_all, icc_all, math.nan, math.nan)
        row.update(n_stable=len(stable_all),
                   pct_stable=100.0 * len(stable_all) / n_features if n_features else math.nan)
        rows.append(row)
    if len(lesion_types) > 1:
        n_features = int(radiomic["feature"].nunique())
        ccc_all, icc_all, stable_all = (set.intersection(*(e[i] for e in every.values())) for i in range(3))
        row = _table3_row("All comparisons", "both types", n_features, ccc_all, icc_all, math.nan, math.nan)
        row.update(n_stable=len(stable_all),
                   pct_stable=100.0 * len(stable_all) / n_features if n_features else math.nan)
        rows.append(row)
    columns = ["comparison", "lesion_type", "n_features", "n_ccc_above", "pct_ccc_above", "n_icc_above",
               "pct_icc_above", "n_stable", "pct_stable", "median_ccc", "median_icc"]
    return pd.DataFrame(rows, columns=columns)


def _table3_row(comparison: str, lesion_type: str, n_features: int, ccc_above: set, icc_above: set,
                median_ccc: float, median_icc: float) -> dict:
    stable = ccc_above & icc_above

    def pct(count: int) -> float:
        return 100.0 * count / n_features if n_features else math.nan

    return dict(comparison=comparison, lesion_type=lesion_type, n_features=n_features,
                n_ccc_above=len(ccc_above), pct_ccc_above=pct(len(ccc_above)), n_icc_above=len(icc_above),
                pct_icc_above=pct(len(icc_above)), n_stable=len(stable), pct_stable=pct(len(stable)),
                median_ccc=median_ccc, median_icc=median_icc)


def _missing_readings(table: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """Every subject x reading with at least one missing feature value, with the recorded reasons."""
    columns = ["lesion_type", "case_id", "lesion_id", "observer", "observer_id", "reading", "n_missing",
               "n_features", "features", "reasons"]
    slot_to_observer = {}
    for observer, slot in table[["observer", "slot"]].drop_duplicates().itertuples(index=False):
        slot_to_observer[slot[:2]] = observer
    long = wide.reset_index().melt(id_vars=["lesion_type", "case_id", "lesion_id", "feature"],
                                   value_vars=list(_SLOTS), var_name="slot", value_name="value")
    n_features = long.groupby(["lesion_type", "case_id", "lesion_id", "slot"])["feature"].transform("nunique")
    long["n_features"] = n_features
    absent = long[long["value"].isna()]
    if absent.empty:
        return pd.DataFrame(columns=columns)
    reasons = table.set_index(["lesion_type", "case_id", "lesion_id", "feature", "slot"])["reason"]
    absent = absent.join(reasons, on=["lesion_type", "case_id", "lesion_id", "feature", "slot"])
    absent["reason"] = absent["reason"].fillna("no row in the feature table")
    rows = []
    for (lesion_type, case_id, lesion_id, slot), group in absent.groupby(
            ["lesion_type", "case_id", "lesion_id", "slot"], sort=True):
        names = list(group["feature"])
        rows.append(dict(lesion_type=lesion_type, case_id=case_id, lesion_id=lesion_id, observer=slot[:2],
                         observer_id=slot_to_observer.get(slot[:2], ""), reading=int(slot[3]),
                         n_missing=len(names), n_features=int(group["n_features"].iloc[0]),
                         features=", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5
                                                          else ""),
                         reasons="; ".join(sorted(set(group["reason"])))))
    return pd.DataFrame(rows, columns=columns)
