"""Intraclass correlation: the six forms of McGraw & Wong (1996) with their F-based confidence intervals.

References
----------
- Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability. Psychol Bull
  1979;86:420-428.
- McGraw KO, Wong SP. Forming inferences about some intraclass correlation coefficients. Psychol Methods
  1996;1:30-46 (Tables 4 and 7; erratum 1996;1:390).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import AgreementError
from ._checks import as_matrix, check_alpha, f_quantile

ICC_FORMS = ("1,1", "A,1", "C,1", "1,k", "A,k", "C,k")


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
    alpha = check_alpha(alpha)
    matrix = as_matrix(ratings)
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
        f_low = f_value / f_quantile(1 - alpha / 2, df1, df2)
        f_high = f_value * f_quantile(1 - alpha / 2, df2, df1)
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
    f_star = f_quantile(1 - alpha / 2, n - 1, v)
    f_star2 = f_quantile(1 - alpha / 2, v, n - 1)
    low = n * (msr - f_star * mse) / (f_star * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_star2 * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_star2 * msr)
    return float(low), float(high)
