"""Agreement statistics against published values, closed forms and simulation truth.

Sources of the expected numbers:
- Shrout & Fleiss (1979), Table 2 (6 targets x 4 judges) and pingouin's ``icc.csv`` data set (8 wines x 4
  judges) with the ICCs and intervals printed by psych::ICC / pingouin (shared/reference/agreement_reference.md).
- Bland & Altman (1986), Lancet, Table 1: peak expiratory flow rate by Wright and mini Wright meters and the
  bias, SD, limits and intervals printed in the paper.
- Bland's duplicate packed-cell-volume example (10 cows) as worked at influentialpoints.com: RMS wCV 5.96 %,
  pooled wCV (sqrt(2.85) / 30.05) 5.62 %.
- Closed forms derived from the definitions (Lin 1989; Barnhart et al. 2002) and Monte Carlo coverage against
  the known true parameter of simulated data.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import pytest

from QSMReproducibilityLib import agreement as ag
from QSMReproducibilityLib.errors import AgreementError

SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
                         dtype=float)
# form: (ICC, CI low, CI high)
SHROUT_FLEISS_ICC = {
    "1,1": (0.16574, -0.13293, 0.72256),
    "A,1": (0.28976, 0.01879, 0.76108),
    "C,1": (0.71484, 0.34246, 0.94586),
    "1,k": (0.44280, -0.88444, 0.91242),
    "A,k": (0.62005, 0.07114, 0.92723),
    "C,k": (0.90932, 0.67567, 0.98589),
}

WINES = np.array([[1, 1, 3, 6, 6, 7, 8, 9],
                  [2, 3, 8, 4, 5, 5, 7, 9],
                  [0, 3, 1, 3, 5, 6, 7, 9],
                  [1, 2, 4, 3, 6, 2, 9, 8]], dtype=float).T
WINES_ICC = {
    "1,1": (0.72752, 0.43377, 0.92670),
    "A,1": (0.72769, 0.43449, 0.92671),
    "C,1": (0.72949, 0.42615, 0.92790),
    "1,k": (0.91438, None, None),
    "A,k": (0.91445, None, None),
    "C,k": (0.91516, None, None),
}

WRIGHT = np.array([494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427], float)
MINI_WRIGHT = np.array([512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451],
                       float)

COW_PCV = np.array([(33, 35), (26, 23), (29, 29), (32, 35), (31, 28), (31, 31), (31, 34), (31, 29), (35, 33),
                    (21, 24)], dtype=float)


# ------------------------------------------------------------------------------------------------ ICC

@pytest.mark.parametrize("form", ag.ICC_FORMS)
def test_icc_reproduces_shrout_fleiss_table_2(form):
    value, low, high = SHROUT_FLEISS_ICC[form]
    result = ag.icc(SHROUT_FLEISS, form)
    assert result.value == pytest.approx(value, abs=1e-4)
    assert result.ci_low == pytest.approx(low, abs=1e-4)
    assert result.ci_high == pytest.approx(high, abs=1e-4)
    assert (result.n, result.k, result.form) == (6, 4, form)


def test_icc_anova_and_f_tests_match_shrout_fleiss():
    result = ag.icc(SHROUT_FLEISS, "C,1")
    assert result.ms_rows == pytest.approx(11.24167, abs=1e-4)
    assert result.ms_columns == pytest.approx(32.48611, abs=1e-4)
    assert result.ms_error == pytest.approx(1.019444, abs=1e-5)
    assert result.ms_within == pytest.approx(6.263889, abs=1e-5)
    assert (result.F, result.df1, result.df2) == (pytest.approx(11.027, abs=1e-3), 5, 15)
    one_way = ag.icc(SHROUT_FLEISS, "1,1")
    assert (one_way.F, one_way.df1, one_way.df2) == (pytest.approx(1.7947, abs=1e-4), 5, 18)


@pytest.mark.parametrize("form", ag.ICC_FORMS)
def test_icc_reproduces_pingouin_wine_data(form):
    value, low, high = WINES_ICC[form]
    result = ag.icc(WINES, form)
    assert result.value == pytest.approx(value, abs=1e-4)
    if low is not None:
        assert result.ci_low == pytest.approx(low, abs=1e-4)
        assert result.ci_high == pytest.approx(high, abs=1e-4)


def test_icc_f_statistics_of_wine_data():
    assert ag.icc(WINES, "1,1").F == pytest.approx(11.680, abs=1e-3)
    assert (ag.icc(WINES, "1,1").df1, ag.icc(WINES, "1,1").df2) == (7, 24)
    assert ag.icc(WINES, "C,1").F == pytest.approx(11.787, abs=1e-3)
    assert (ag.icc(WINES, "C,1").df1, ag.icc(WINES, "C,1").df2) == (7, 21)


def test_icc_ak_interval_is_spearman_brown_of_a1_interval():
    single = ag.icc(SHROUT_FLEISS, "A,1")
    average = ag.icc(SHROUT_FLEISS, "A,k")
    k = 4
    assert average.ci_low == pytest.approx(k * single.ci_low / (1 + (k - 1) * single.ci_low), abs=1e-12)
    assert average.ci_high == pytest.approx(k * single.ci_high / (1 + (k - 1) * single.ci_high), abs=1e-12)


def test_icc_other_confidence_level_narrows_the_interval():
    wide = ag.icc(SHROUT_FLEISS, "A,1", alpha=0.05)
    narrow = ag.icc(SHROUT_FLEISS, "A,1", alpha=0.20)
    assert narrow.value == wide.value
    assert wide.ci_low < narrow.ci_low < narrow.value < narrow.ci_high < wide.ci_high


# ------------------------------------------------------------------------------------------------ CCC

def test_lin_ccc_closed_form_for_a_constant_offset():
    # y = x + d: s_xy = s_x^2 = s_y^2 = s^2 (divisor n), so Lin's (1989) rho_c = 2 s^2 / (2 s^2 + d^2).
    x = np.array([1.0, 2.5, 3.0, 4.5, 6.0, 7.5, 8.0])
    d = 0.7
    s2 = np.mean((x - x.mean()) ** 2)
    result = ag.lin_ccc(x, x + d)
    assert result.value == pytest.approx(2 * s2 / (2 * s2 + d ** 2), abs=1e-12)
    assert result.pearson_r == pytest.approx(1.0)
    assert result.bias_correction == pytest.approx(result.value, abs=1e-12)


def test_lin_ccc_closed_form_for_a_scale_change():
    # y = b x: rho_c = 2 b s^2 / (s^2 + b^2 s^2 + (1 - b)^2 xbar^2).
    x = np.array([2.0, 3.0, 5.0, 7.0, 11.0, 13.0])
    b = 1.3
    s2, xbar = np.mean((x - x.mean()) ** 2), x.mean()
    expected = 2 * b * s2 / (s2 + b ** 2 * s2 + (1 - b) ** 2 * xbar ** 2)
    assert ag.lin_ccc(x, b * x).value == pytest.approx(expected, abs=1e-12)


def test_lin_ccc_interval_equals_lin_1989_variance_of_z():
    # Lin (1989) gives the variance of Z = atanh(rho_c) directly (with the 2000 correction):
    # var Z = [ (1-r^2) rc^2 / ((1-rc^2) r^2) + 2 rc^3 (1-rc) u^2 / (r (1-rc^2)^2)
    #           - rc^4 u^4 / (2 r^2 (1-rc^2)^2) ] / (n - 2).
    x, y = WRIGHT, MINI_WRIGHT
    n = x.size
    sx2, sy2 = x.var(), y.var()
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    rc = 2 * sxy / (sx2 + sy2 + (x.mean() - y.mean()) ** 2)
    r = sxy / math.sqrt(sx2 * sy2)
    u = (y.mean() - x.mean()) / (sx2 * sy2) ** 0.25
    var_z = ((1 - r ** 2) * rc ** 2 / ((1 - rc ** 2) * r ** 2)
             + 2 * rc ** 3 * (1 - rc) * u ** 2 / (r * (1 - rc ** 2) ** 2)
             - rc ** 4 * u ** 4 / (2 * r ** 2 * (1 - rc ** 2) ** 2)) / (n - 2)
    z = math.atanh(rc)
    result = ag.lin_ccc(x, y)
    assert result.value == pytest.approx(0.942742, abs=1e-6)
    assert result.ci_low == pytest.approx(math.tanh(z - 1.959963985 * math.sqrt(var_z)), abs=1e-6)
    assert result.ci_high == pytest.approx(math.tanh(z + 1.959963985 * math.sqrt(var_z)), abs=1e-6)


def test_lin_ccc_fisher_z_interval_covers_the_true_value():
    # Bivariate normal with known moments: true rho_c = 2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2).
    rng = np.random.default_rng(20240611)
    mx, my, sx, sy, rho = 0.0, 0.3, 1.0, 1.2, 0.8
    true = 2 * rho * sx * sy / (sx ** 2 + sy ** 2 + (mx - my) ** 2)
    cov = [[sx ** 2, rho * sx * sy], [rho * sx * sy, sy ** 2]]
    repeats = 1500
    hits = 0
    for _ in range(repeats):
        data = rng.multivariate_normal([mx, my], cov, size=50)
        result = ag.lin_ccc(data[:, 0], data[:, 1])
        hits += result.ci_low <= true <= result.ci_high
    assert 0.93 <= hits / repeats <= 0.97


def test_overall_ccc_of_two_readings_is_lins_ccc():
    assert ag.overall_ccc(np.column_stack([WRIGHT, MINI_WRIGHT])).value == pytest.approx(
        ag.lin_ccc(WRIGHT, MINI_WRIGHT).value, abs=1e-12)


def test_overall_ccc_from_published_anova_mean_squares():
    # Barnhart's OCCC written through the two-way ANOVA (moments with divisor n):
    # OCCC = (n-1)(MSR-MSE) / [(n-1) MSR + (k-1)(n-1) MSE + k MSC], evaluated with Shrout & Fleiss'
    # published mean squares.
    n, k = 6, 4
    msr, msc, mse = 11.24167, 32.48611, 1.019444
    expected = (n - 1) * (msr - mse) / ((n - 1) * msr + (k - 1) * (n - 1) * mse + k * msc)
    assert ag.overall_ccc(SHROUT_FLEISS).value == pytest.approx(expected, abs=2e-6)


def test_overall_ccc_is_weighted_mean_of_pairwise_lin_ccc():
    # Barnhart et al. (2002): OCCC = sum xi_jl CCC_jl / sum xi_jl, xi_jl = s_j^2 + s_l^2 + (m_j - m_l)^2.
    data = WINES
    numerator = denominator = 0.0
    for j in range(4):
        for l in range(j + 1, 4):
            xi = data[:, j].var() + data[:, l].var() + (data[:, j].mean() - data[:, l].mean()) ** 2
            numerator += xi * ag.lin_ccc(data[:, j], data[:, l]).value
            denominator += xi
    assert ag.overall_ccc(data).value == pytest.approx(numerator / denominator, abs=1e-12)


def test_overall_ccc_jackknife_interval_covers_the_true_value():
    # Subject effect sd 1, reading offsets mus, error sd 0.6: true OCCC from the population moments.
    rng = np.random.default_rng(7)
    mus = np.array([0.0, 0.2, -0.1, 0.3])
    sb, se, n, k = 1.0, 0.6, 40, 4
    pairs = [(j, l) for j in range(k) for l in range(j + 1, k)]
    true = 2 * len(pairs) * sb ** 2 / ((k - 1) * k * (sb ** 2 + se ** 2) + sum((mus[j] - mus[l]) ** 2
                                                                                for j, l in pairs))
    repeats = 600
    hits = 0
    for _ in range(repeats):
        data = rng.normal(0, sb, (n, 1)) + mus + rng.normal(0, se, (n, k))
        result = ag.overall_ccc(data)
        hits += result.ci_low <= true <= result.ci_high
    assert 0.90 <= hits / repeats <= 0.98


def test_overall_ccc_jackknife_uses_pairwise_lin_ccc_pseudo_values():
    # Independent route: leave-one-out OCCC as Barnhart's weighted mean of pairwise Lin CCCs, pseudo-values
    # n z - (n-1) z_(i) on Fisher's z scale, interval z +- t_{n-1,0.975} sd(pseudo) / sqrt(n).
    from scipy import stats

    def occc(data):
        numerator = denominator = 0.0
        for j in range(data.shape[1]):
            for l in range(j + 1, data.shape[1]):
                xi = data[:, j].var() + data[:, l].var() + (data[:, j].mean() - data[:, l].mean()) ** 2
                numerator += xi * ag.lin_ccc(data[:, j], data[:, l]).value
                denominator += xi
        return numerator / denominator

    data, n = WINES, WINES.shape[0]
    z = math.atanh(occc(data))
    pseudo = np.array([n * z - (n - 1) * math.atanh(occc(np.delete(data, i, axis=0))) for i in range(n)])
    half = stats.t.ppf(0.975, n - 1) * pseudo.std(ddof=1) / math.sqrt(n)
    result = ag.overall_ccc(data)
    assert result.ci_low == pytest.approx(math.tanh(z - half), abs=1e-10)
    assert result.ci_high == pytest.approx(math.tanh(z + half), abs=1e-10)
    assert "jackknife" in result.ci_method and "Fisher z" in result.ci_method


def test_overall_ccc_jackknife_agrees_with_lins_asymptotic_interval_for_many_subjects():
    # For k = 2 and many subjects the jackknife standard error of z approaches Lin's (1989) asymptotic one.
    rng = np.random.default_rng(12)
    data = rng.multivariate_normal([0.0, 0.2], [[1.0, 0.8], [0.8, 1.1]], size=800)
    jack = ag.overall_ccc(data)
    lin = ag.lin_ccc(data[:, 0], data[:, 1])
    assert jack.value == pytest.approx(lin.value, abs=1e-12)
    width_jack = math.atanh(jack.ci_high) - math.atanh(jack.ci_low)
    width_lin = math.atanh(lin.ci_high) - math.atanh(lin.ci_low)
    assert width_jack == pytest.approx(width_lin, rel=0.05)        # measured ratio 0.995


# ------------------------------------------------------------------------------------------------ wCV

def test_wcv_rms_matches_medcalc_duplicate_formula():
    # MedCalc / Hyslop & White (2009) for duplicates: CV = 100 sqrt(sum (d/m)^2 / (2n)).
    d = WRIGHT - MINI_WRIGHT
    m = (WRIGHT + MINI_WRIGHT) / 2
    expected = 100 * math.sqrt(np.sum((d / m) ** 2) / (2 * d.size))
    assert ag.wcv(np.column_stack([WRIGHT, MINI_WRIGHT])).value == pytest.approx(expected, abs=1e-10)


def test_wcv_reproduces_bland_packed_cell_volume_example():
    rms = ag.wcv(COW_PCV, method="rms")
    pooled = ag.wcv(COW_PCV, method="pooled")
    assert rms.value == pytest.approx(5.96, abs=0.005)
    assert pooled.value == pytest.approx(100 * math.sqrt(2.85) / 30.05, abs=1e-4)
    assert rms.ci_low < rms.value < rms.ci_high
    assert pooled.ci_low < pooled.value < pooled.ci_high


def _cv_population_truth(cv, k, mu=10.0, sd=2.0, cv_spread=0.0, seed=99, size=1_000_000):
    """Population RMS and pooled wCV (percent) of readings t (1 + cv_i e), by a large Monte Carlo draw.

    RMS: 100 sqrt(E[s^2 / m^2]); pooled: 100 sqrt(E[s^2]) / E[m] (s, m: SD and mean of one subject's k
    readings). For one common CV the pooled value has the closed form 100 cv sqrt(mu^2 + sd^2) / mu.
    """
    rng = np.random.default_rng(seed)
    cvs = cv * np.exp(cv_spread * rng.normal(size=(size, 1)))
    data = rng.normal(mu, sd, (size, 1)) * (1 + cvs * rng.normal(size=(size, k)))
    means, variances = data.mean(axis=1), data.var(axis=1, ddof=1)
    return 100 * math.sqrt(np.mean(variances / means ** 2)), 100 * math.sqrt(variances.mean()) / means.mean()


def _wcv_coverage(n, k, cv, repeats, seed, cv_spread=0.0):
    rms_truth, pooled_truth = _cv_population_truth(cv, k, cv_spread=cv_spread)
    rng = np.random.default_rng(seed)
    hits = {"rms": 0, "pooled": 0}
    for _ in range(repeats):
        cvs = cv * np.exp(cv_spread * rng.normal(size=(n, 1)))
        data = rng.normal(10, 2, (n, 1)) * (1 + cvs * rng.normal(0, 1, (n, k)))
        for method, truth in (("rms", rms_truth), ("pooled", pooled_truth)):
            result = ag.wcv(data, method=method)
            hits[method] += result.ci_low <= truth <= result.ci_high
    return {method: count / repeats for method, count in hits.items()}


def test_population_truth_of_the_pooled_wcv_matches_its_closed_form():
    _rms, pooled = _cv_population_truth(0.08, 2)
    assert pooled == pytest.approx(100 * 0.08 * math.sqrt(10 ** 2 + 2 ** 2) / 10, rel=2e-3)


def test_wcv_bca_intervals_cover_the_population_wcv():
    # 40 lesions read twice with a common CV of 8 %: measured coverage 0.928 (RMS) and 0.934 (pooled) over
    # 1000 data sets; these 400 give 0.933 and 0.923 (standard error of a coverage about 0.012). Bootstrap
    # intervals run somewhat narrow with few subjects; the bounds say how narrow is tolerated.
    coverage = _wcv_coverage(40, 2, 0.08, 400, seed=3)
    assert 0.90 <= coverage["rms"] <= 0.975
    assert 0.90 <= coverage["pooled"] <= 0.975


def test_wcv_bca_intervals_cover_with_lesion_specific_cvs():
    # CVs that differ between lesions (log-normal around 10 %), 30 lesions: normal-theory intervals assume
    # one CV, the bootstrap does not. Measured 0.88-0.89 over 1000 data sets; these 300 give 0.900 (RMS)
    # and 0.907 (pooled).
    coverage = _wcv_coverage(30, 2, 0.10, 300, seed=8, cv_spread=0.3)
    assert 0.87 <= coverage["rms"] <= 0.975
    assert 0.87 <= coverage["pooled"] <= 0.975


def test_wcv_interval_stays_bounded_when_two_lesions_dominate():
    # Two lesions with a mean near 0 carry almost all of the RMS wCV (as the median QSM of some haematomas
    # in the demo). A resample of 40 lesions draws those two X ~ Binomial(40, 1/20) times. BCa limits are
    # quantiles of the resampled wCVs: the lower one lies above the wCV of the 38 others alone (P(X = 0) =
    # 0.129 > 0.025), the upper one below the wCV with 7 draws of the larger CV (P(X >= 7) < 0.025).
    from scipy import stats

    rng = np.random.default_rng(21)
    truth = rng.normal(0.3, 0.05, (38, 1))
    data = np.vstack([truth * (1 + 0.03 * rng.normal(size=(38, 2))), [[0.012, -0.008], [-0.006, 0.015]]])
    result = ag.wcv(data)
    shifted = data - data.min()
    ratios = shifted.var(axis=1, ddof=1) / shifted.mean(axis=1) ** 2
    assert result.shift == pytest.approx(-data.min())
    assert stats.binom.pmf(0, 40, 1 / 20) > 0.025 and stats.binom.sf(6, 40, 1 / 20) < 0.025
    assert 100 * math.sqrt(ratios[:38].mean()) < result.ci_low < result.value < result.ci_high
    assert result.ci_high < 100 * math.sqrt((7 * ratios[38:].max() + 33 * ratios[:38].max()) / 40)


def _sorted_rows(matrix):
    return matrix[np.lexsort(matrix.T[::-1])]


@pytest.mark.parametrize("method", ["rms", "pooled"])
def test_wcv_bca_interval_is_scipys_bca_bootstrap(method):
    from scipy import stats

    rng = np.random.default_rng(1)
    data = _sorted_rows(rng.normal(10, 2, (25, 1)) * (1 + 0.1 * rng.normal(0, 1, (25, 3))))

    def statistic(index, axis=-1):
        sample = data[index]
        means, variances = sample.mean(axis=-1), sample.var(axis=-1, ddof=1)
        if method == "rms":
            return 100 * np.sqrt((variances / means ** 2).mean(axis=axis))
        return 100 * np.sqrt(variances.mean(axis=axis)) / np.abs(means.mean(axis=axis))

    # The generator is `rng` from scipy 1.15 on; scipy 1.13 (3D Slicer 5.10's) has only `random_state`.
    keyword = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    reference = stats.bootstrap((np.arange(25),), statistic, vectorized=True, n_resamples=2000, method="BCa",
                                **{keyword: np.random.default_rng(ag.WCV_BOOTSTRAP_SEED)}).confidence_interval
    result = ag.wcv(data, method=method)
    assert result.ci_low == pytest.approx(reference.low, abs=1e-10)
    assert result.ci_high == pytest.approx(reference.high, abs=1e-10)
    assert "BCa" in result.ci_method


def test_wcv_interval_is_reproducible_and_seeded():
    first = ag.wcv(COW_PCV)
    assert (first.ci_low, first.ci_high) == (ag.wcv(COW_PCV).ci_low, ag.wcv(COW_PCV).ci_high)
    other = ag.wcv(COW_PCV, seed=1)
    assert other.value == first.value and other.ci_low != first.ci_low


def test_wcv_of_negative_values_uses_their_magnitude():
    positive = ag.wcv(COW_PCV)
    negative = ag.wcv(-COW_PCV)
    assert negative.value == pytest.approx(positive.value, abs=1e-12)
    assert negative.shift == 0.0


def test_shift_rule_moves_towards_the_side_that_needs_the_smaller_shift():
    shifted, shift = ag.shift_to_one_sign([-0.5, 0.1, 2.0])
    assert shift == 0.5
    np.testing.assert_allclose(shifted, [0.0, 0.6, 2.5])
    shifted, shift = ag.shift_to_one_sign([-2.0, -1.0, 0.3])
    assert shift == pytest.approx(-0.3)
    np.testing.assert_allclose(shifted, [-2.3, -1.3, 0.0])
    unchanged, shift = ag.shift_to_one_sign([0.0, 1.0, 2.0])
    assert shift == 0.0
    np.testing.assert_allclose(unchanged, [0.0, 1.0, 2.0])


def test_wcv_applies_the_shift_rule_to_sign_mixed_values():
    data = np.array([[-0.10, -0.12], [0.20, 0.25], [0.30, 0.28], [0.05, 0.02], [0.40, 0.45]])
    result = ag.wcv(data)
    assert result.shift == pytest.approx(0.12)
    assert result.value == pytest.approx(ag.wcv(data + 0.12).value, abs=1e-12)
    with pytest.raises(AgreementError, match="both positive and negative"):
        ag.wcv(data, mixed_signs="error")


# ------------------------------------------------------------------------------------------------ Bland-Altman

def test_bland_altman_reproduces_the_lancet_1986_example():
    # Paper: mean difference -2.1, SD 38.8, limits -79.7 and 75.5 (bias +- 2 SD), CI of the bias
    # -22.0 to 17.8. Limits' intervals -114.3 to -45.1 and 40.9 to 110.1 used se = sqrt(3 s^2 / n); the
    # Bland & Altman (1999) variance 1/n + c^2/(2(n-1)) used here differs from it by < 1 l/min.
    result = ag.bland_altman(WRIGHT, MINI_WRIGHT, multiplier=2.0)
    assert result.bias == pytest.approx(-2.1, abs=0.05)
    assert result.sd == pytest.approx(38.8, abs=0.05)
    # The paper computed the limits from the rounded -2.1 and 38.8, hence 0.1 here.
    assert result.loa_low == pytest.approx(-79.7, abs=0.1)
    assert result.loa_high == pytest.approx(75.5, abs=0.1)
    assert result.bias_ci_low == pytest.approx(-22.0, abs=0.05)
    assert result.bias_ci_high == pytest.approx(17.8, abs=0.05)
    assert result.loa_low_ci_low == pytest.approx(-114.3, abs=1.0)
    assert result.loa_low_ci_high == pytest.approx(-45.1, abs=1.0)
    assert result.loa_high_ci_low == pytest.approx(40.9, abs=1.0)
    assert result.loa_high_ci_high == pytest.approx(110.1, abs=1.0)
    assert (result.value, result.ci_low, result.ci_high) == (result.bias, result.bias_ci_low, result.bias_ci_high)


def test_bland_altman_default_limits_use_1_96():
    result = ag.bland_altman(WRIGHT, MINI_WRIGHT)
    assert result.multiplier == pytest.approx(1.959964, abs=1e-6)
    assert result.loa_high - result.loa_low == pytest.approx(2 * 1.959964 * result.sd, abs=1e-4)


# ------------------------------------------------------------------------------------------------ properties

def test_identical_readings_give_perfect_agreement():
    values = np.array([0.31, 0.22, 0.45, 0.18, 0.27, 0.39])
    data = np.column_stack([values] * 4)
    for form in ag.ICC_FORMS:
        result = ag.icc(data, form)
        assert (result.value, result.ci_low, result.ci_high) == (1.0, 1.0, 1.0)
    ccc = ag.lin_ccc(values, values)
    assert (ccc.value, ccc.ci_low, ccc.ci_high) == (1.0, 1.0, 1.0)
    assert ag.overall_ccc(data).value == 1.0
    assert ag.wcv(data).value == 0.0
    assert ag.wcv(data, method="pooled").value == 0.0


def test_subject_order_does_not_matter():
    rng = np.random.default_rng(11)
    order = rng.permutation(WINES.shape[0])
    for form in ag.ICC_FORMS:
        a, b = ag.icc(WINES, form), ag.icc(WINES[order], form)
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high), abs=1e-12)
    for function in (ag.overall_ccc, ag.wcv):
        a, b = function(WINES + 1), function(WINES[order] + 1)
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high), abs=1e-12)
    a, b = ag.lin_ccc(WRIGHT, MINI_WRIGHT), ag.lin_ccc(WRIGHT[::-1], MINI_WRIGHT[::-1])
    assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high), abs=1e-12)


def test_ccc_never_exceeds_pearson_correlation_in_magnitude():
    rng = np.random.default_rng(5)
    for _ in range(200):
        x = rng.normal(0, 1, 12)
        y = rng.normal(rng.normal(), rng.uniform(0.2, 3)) * x + rng.normal(0, rng.uniform(0.1, 2), 12)
        result = ag.lin_ccc(x, y)
        assert abs(result.value) <= abs(np.corrcoef(x, y)[0, 1]) + 1e-12


# ------------------------------------------------------------------------------------------------ bad input

def test_text_where_numbers_belong_is_an_agreement_error():
    with pytest.raises(AgreementError, match="not numbers"):
        ag.icc([[1, 2], [3, "abc"], [5, 6]])
    with pytest.raises(AgreementError, match="not numbers"):
        ag.lin_ccc([1, 2, 3], [1, "x", 3])


_ESTIMATORS = {
    "icc": lambda m: ag.icc(m, "A,1"),
    "lin_ccc": lambda m: ag.lin_ccc(np.asarray(m, dtype=object)[:, 0], np.asarray(m, dtype=object)[:, 1]),
    "overall_ccc": ag.overall_ccc,
    "wcv": ag.wcv,
    "bland_altman": lambda m: ag.bland_altman(np.asarray(m, dtype=object)[:, 0], np.asarray(m, dtype=object)[:, 1]),
}


@pytest.mark.parametrize("name", sorted(_ESTIMATORS))
@pytest.mark.parametrize("bad, message", [
    ([[1.0, 2.0], [3.0, "abc"], [5.0, 6.0], [7.0, 8.0]], "not numbers"),
    ([[1.0, 2.0], [3.0, 4.0]], "at least 3 subjects"),
    ([[1.0, 2.0], [3.0, None], [5.0, 6.0], [7.0, 8.0]], "missing or non-finite"),
])
def test_every_estimator_rejects_bad_input_with_an_agreement_error(name, bad, message):
    with pytest.raises(AgreementError, match=message):
        _ESTIMATORS[name](bad)


@pytest.mark.parametrize("name", sorted(_ESTIMATORS))
def test_every_estimator_gives_a_reason_or_a_defined_value_for_zero_variance(name):
    constant = np.full((6, 2), 0.25)
    result = _ESTIMATORS[name](constant)
    if name in ("icc", "lin_ccc", "overall_ccc"):
        assert math.isnan(result.value) and "same value" in result.reason
    elif name == "wcv":
        assert (result.value, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0) and result.reason
    else:
        assert (result.bias, result.sd, result.loa_low, result.loa_high) == (0.0, 0.0, 0.0, 0.0)


def test_too_few_subjects_missing_values_and_bad_shapes():
    with pytest.raises(AgreementError, match="at least 3 subjects"):
        ag.icc([[1, 2], [3, 4]])
    with pytest.raises(AgreementError, match="at least 3 subjects"):
        ag.lin_ccc([1, 2], [1, 2])
    with pytest.raises(AgreementError, match="missing"):
        ag.overall_ccc([[1, 2], [3, np.nan], [5, 6], [7, 8]])
    with pytest.raises(AgreementError, match="2-D"):
        ag.wcv([1, 2, 3])
    with pytest.raises(AgreementError, match="at least 2 readings"):
        ag.icc([[1], [2], [3]])
    with pytest.raises(AgreementError, match="differ in length"):
        ag.bland_altman([1, 2, 3], [1, 2])
    with pytest.raises(AgreementError, match="ICC form"):
        ag.icc(WINES, "2,1")
    with pytest.raises(AgreementError, match="alpha"):
        ag.icc(WINES, "A,1", alpha=1.5)


def test_zero_variance_gives_nan_with_a_reason():
    constant = np.full((5, 2), 0.25)
    result = ag.icc(constant, "A,1")
    assert math.isnan(result.value) and "same value" in result.reason
    ccc = ag.lin_ccc(constant[:, 0], constant[:, 1])
    assert math.isnan(ccc.value) and ccc.reason
    flat_x = ag.lin_ccc([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert flat_x.value == 0.0 and math.isnan(flat_x.ci_low) and "no variance" in flat_x.reason


# ------------------------------------------------------------------------------------------------ study design

def _long_table(rng, n_subjects=8, lesion_type="hematoma", prefix="h"):
    rows = []
    for i in range(n_subjects):
        truth = {"qsm_mean": 0.3 + 0.1 * rng.normal(), "original_firstorder_Exact": rng.normal(),
                 "original_glcm_Noise": 0.0, "original_shape_Constant": 2.0}
        for observer in ("zoe", "adam"):
            for reading in (1, 2):
                for feature, value in truth.items():
                    if feature == "original_glcm_Noise":
                        value = rng.normal()
                    elif feature == "qsm_mean":
                        value = value + 0.01 * rng.normal()
                    rows.append((f"{prefix}{i:02d}", "right", lesion_type, observer, reading, feature, value))
    return pd.DataFrame(rows, columns=list(ag.REQUIRED_COLUMNS))


def test_study_design_maps_observers_and_readings_to_the_five_comparisons():
    rng = np.random.default_rng(1)
    table = _long_table(rng)
    # Make the O1 (= "adam", first in sorted order) readings of one subject identifiable.
    mask = (table["case_id"] == "h00") & (table["feature"] == "qsm_mean")
    table.loc[mask & (table["observer"] == "adam") & (table["reading"] == 2), "value"] = np.nan
    study = ag.analyze_study(table)
    assert study.observers == ("adam", "zoe")
    wide = study.wide.xs(("hematoma", "qsm_mean"), level=("lesion_type", "feature"))
    assert np.isnan(wide.loc[("h00", "right"), "O1R2"])
    fa = study.feature_agreement.set_index(["feature", "comparison"])
    # The missing O1R2 value drops h00 from every comparison using O1R2 and from no other.
    for comparison, dropped in (("O1 intra", 1), ("O2 intra", 0), ("1st inter", 0), ("2nd inter", 1),
                                ("Intra and inter", 1)):
        assert fa.loc[("qsm_mean", comparison), "n_dropped"] == dropped
        assert fa.loc[("qsm_mean", comparison), "n"] == 8 - dropped
    # Identical readings: CCC = ICC = 1, stable; pure noise: not stable; constant: NaN with a reason.
    assert fa.loc[("original_firstorder_Exact", "Intra and inter"), "ccc"] == pytest.approx(1.0)
    assert fa.loc[("original_firstorder_Exact", "O1 intra"), "stable"]
    assert not fa.loc[("original_glcm_Noise", "O1 intra"), "stable"]
    assert math.isnan(fa.loc[("original_shape_Constant", "1st inter"), "icc"])
    assert "same value" in fa.loc[("original_shape_Constant", "1st inter"), "reason"]
    # The pairwise CCC is Lin's CCC of the two columns after dropping incomplete subjects.
    complete = wide[["O1R1", "O1R2"]].dropna()
    assert fa.loc[("qsm_mean", "O1 intra"), "ccc"] == pytest.approx(
        ag.lin_ccc(complete["O1R1"], complete["O1R2"]).value, abs=1e-12)
    t3 = study.table3.set_index(["comparison", "lesion_type"])
    assert t3.loc[("O1 intra", "hematoma"), "n_features"] == 3
    assert t3.loc[("O1 intra", "hematoma"), "n_stable"] == 1
    assert t3.loc[("All comparisons", "hematoma"), "n_stable"] == 1
    missing = study.missing_readings
    assert list(missing[["case_id", "observer", "observer_id", "reading", "n_missing"]].iloc[0]) == [
        "h00", "O1", "adam", 2, 1]


def test_study_table1_and_table2_use_the_readings_of_each_observer():
    rng = np.random.default_rng(2)
    table = pd.concat([_long_table(rng), _long_table(rng, 6, "calcification", "c")], ignore_index=True)
    study = ag.analyze_study(table)
    assert study.lesion_types == ("hematoma", "calcification")
    t1 = study.table1.set_index(["feature", "lesion_type", "observer", "reading"])
    values = table[(table["feature"] == "qsm_mean") & (table["lesion_type"] == "calcification")
                   & (table["observer"] == "zoe") & (table["reading"] == 1)]["value"]
    assert t1.loc[("qsm_mean", "calcification", "O2", 1), "mean_ppm"] == pytest.approx(values.mean())
    assert t1.loc[("qsm_mean", "calcification", "O2", 1), "sd_ppm"] == pytest.approx(values.std(ddof=1))
    t2 = study.table2.set_index(["feature", "comparison", "lesion_type"])
    wide = study.wide.xs(("hematoma", "qsm_mean"), level=("lesion_type", "feature"))
    expected = ag.icc(wide[["O1R1", "O1R2", "O2R1", "O2R2"]].to_numpy(), "A,1")
    assert t2.loc[("qsm_mean", "Intra and inter", "hematoma"), "icc"] == pytest.approx(expected.value)
    assert t2.loc[("qsm_mean", "Intra and inter", "hematoma"), "icc_ci_low"] == pytest.approx(expected.ci_low)
    assert set(study.table3["lesion_type"]) == {"hematoma", "calcification", "both types"}


def test_feature_table_validation_messages():
    table = _long_table(np.random.default_rng(0), 4)
    with pytest.raises(AgreementError, match=r"features\.csv: missing column\(s\) 'value'"):
        ag.validate_feature_table(table.drop(columns="value"), source="features.csv")
    text = table.astype({"value": object})
    text.loc[3, "value"] = "abc"
    with pytest.raises(AgreementError, match="text where numbers belong.*row 5"):
        ag.validate_feature_table(text)
    with pytest.raises(AgreementError, match="repeat the same case"):
        ag.validate_feature_table(pd.concat([table, table.iloc[[0]]], ignore_index=True))
    third = table.copy()
    third.loc[0, "observer"] = "carl"
    with pytest.raises(AgreementError, match="exactly two observers; found 3"):
        ag.validate_feature_table(third)
    reading = table.copy()
    reading.loc[0, "reading"] = 3
    with pytest.raises(AgreementError, match="readings 1 and 2"):
        ag.validate_feature_table(reading)
    mixed = table.copy()
    mixed.loc[0, "lesion_type"] = "calcification"
    with pytest.raises(AgreementError, match="different lesion types"):
        ag.validate_feature_table(mixed)
    with pytest.raises(AgreementError, match="threshold"):
        ag.analyze_study(table, threshold=1.5)


def test_too_few_lesions_in_the_whole_study_is_an_error():
    table = _long_table(np.random.default_rng(4), 2)
    with pytest.raises(AgreementError, match=r"too few lesions to measure agreement \(hematoma: 2\)"):
        ag.analyze_study(table)


def test_a_lesion_type_with_too_few_lesions_gives_nan_with_a_reason():
    rng = np.random.default_rng(4)
    table = pd.concat([_long_table(rng, 8), _long_table(rng, 2, "calcification", "c")], ignore_index=True)
    study = ag.analyze_study(table)
    fa = study.feature_agreement
    calcification = fa[fa["lesion_type"] == "calcification"]
    assert calcification["ccc"].isna().all() and calcification["reason"].str.contains("at least 3").all()
    assert fa.loc[fa["lesion_type"] == "hematoma", "ccc"].notna().any()
    assert study.table2.loc[study.table2["lesion_type"] == "calcification", "icc"].isna().all()


def test_a_table_without_any_variance_is_an_error():
    table = _long_table(np.random.default_rng(5), 6)
    table["value"] = 0.25
    with pytest.raises(AgreementError, match="no agreement statistic could be computed.*same value"):
        ag.analyze_study(table)


def test_row_order_of_the_feature_table_does_not_matter():
    rng = np.random.default_rng(6)
    table = pd.concat([_long_table(rng, 9), _long_table(rng, 7, "calcification", "c")], ignore_index=True)
    shuffled = table.sample(frac=1.0, random_state=3).reset_index(drop=True)
    first, second = ag.analyze_study(table), ag.analyze_study(shuffled)
    for name in ("feature_agreement", "table1", "table2", "table3", "bland_altman"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), check_exact=False, rtol=1e-12)
