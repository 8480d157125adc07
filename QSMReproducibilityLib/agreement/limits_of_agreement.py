"""Bland-Altman bias and limits of agreement of paired readings, with their confidence intervals.

References
----------
- Bland JM, Altman DG. Statistical methods for assessing agreement between two methods of clinical
  measurement. Lancet 1986;i:307-310. Measuring agreement in method comparison studies. Stat Methods Med
  Res 1999;8:135-160.
"""

from __future__ import annotations

import dataclasses
import math

from ._checks import as_pair, check_alpha, t_quantile, z_quantile


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
    alpha = check_alpha(alpha)
    x, y = as_pair(x, y)
    n = x.size
    differences = x - y
    bias = float(differences.mean())
    sd = float(differences.std(ddof=1))
    c = float(z_quantile(1 - alpha / 2)) if multiplier is None else float(multiplier)
    t = float(t_quantile(1 - alpha / 2, n - 1))
    se_bias = sd / math.sqrt(n)
    se_limit = sd * math.sqrt(1.0 / n + c ** 2 / (2.0 * (n - 1)))
    low, high = bias - c * sd, bias + c * sd
    return BlandAltmanResult(
        n=n, bias=bias, bias_ci_low=bias - t * se_bias, bias_ci_high=bias + t * se_bias, sd=sd,
        loa_low=low, loa_high=high,
        loa_low_ci_low=low - t * se_limit, loa_low_ci_high=low + t * se_limit,
        loa_high_ci_low=high - t * se_limit, loa_high_ci_high=high + t * se_limit,
        multiplier=c, alpha=alpha)
