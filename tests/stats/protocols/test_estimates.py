"""The shared interval formulas against scipy and hand formulas, and the power counter."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stats.protocols import estimates as est
from stats.protocols.schema import answers_equal, as_bool
from stats.schema import AnalysisInputError


def test_mean_ci_is_the_t_interval_and_test():
    x = np.array([0.2, 0.5, 0.4, 0.9, 0.6])
    e = est.mean_ci(x, null=0.25, alternative="greater")
    half = stats.t.ppf(0.975, 4) * x.std(ddof=1) / math.sqrt(5)
    assert (e.ci_low, e.ci_high) == pytest.approx((x.mean() - half, x.mean() + half))
    assert e.p_value == pytest.approx(stats.ttest_1samp(x, 0.25, alternative="greater").pvalue)
    assert e.null == 0.25 and e.n == 5
    assert math.isnan(est.mean_ci([np.nan, 1.0]).ci_low)  # one unit: no interval
    assert est.mean_ci([0.5, 0.5]).ci_low == 0.5  # no spread: degenerate interval


def test_welch_diff_matches_scipy():
    x, y = [3.0, 4, 5, 6, 9], [1.0, 2, 2, 3]
    e = est.welch_diff(x, y)
    assert e.estimate == pytest.approx(np.mean(x) - np.mean(y))
    assert e.p_value == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert (e.ci_low, e.ci_high) == pytest.approx((ci.low, ci.high))


def test_ratio_of_means_delta_method_by_hand():
    x, y = np.array([0.6, 0.7, 0.8, 0.9]), np.array([0.5, 0.5, 0.6, 0.6])
    e = est.ratio_of_means(x, y)
    se = math.sqrt(x.var(ddof=1) / (4 * x.mean() ** 2) + y.var(ddof=1) / (4 * y.mean() ** 2))
    r = x.mean() / y.mean()
    assert e.estimate == pytest.approx(r) and e.null == 1.0
    assert (e.ci_low, e.ci_high) == pytest.approx((r * math.exp(-1.959964 * se), r * math.exp(1.959964 * se)), rel=1e-6)


def test_wilson_and_proportion_difference():
    w = est.wilson(7, 20)
    z = 1.959964
    centre = (7 + z**2 / 2) / (20 + z**2)
    half = z * math.sqrt(20 * 0.35 * 0.65 + z**2 / 4) / (20 + z**2)
    assert (w.ci_low, w.ci_high) == pytest.approx((centre - half, centre + half), rel=1e-5)
    d = est.proportion_diff(30, 50, 15, 50)
    assert d.estimate == pytest.approx(0.3) and d.ci_low > 0 and d.p_value < 0.01
    # Newcombe's hybrid interval from the two Wilson intervals
    w1, w2 = est.wilson(30, 50), est.wilson(15, 50)
    low = 0.3 - math.sqrt((0.6 - w1.ci_low) ** 2 + (w2.ci_high - 0.3) ** 2)
    assert d.ci_low == pytest.approx(low, rel=1e-6)
    for k1, k2 in [(0, 0), (0, 80), (80, 80), (1, 79)]:  # the counts where the score interval failed
        e = est.proportion_diff(k1, 80, k2, 80)
        assert e.ci_low <= e.estimate <= e.ci_high


def test_power_counts_significant_estimates_on_the_planted_side_only():
    draws = iter([
        est.Estimate(0.3, 0.1, 0.5, 10, "m", 0.01),    # detected, covers 0.3
        est.Estimate(-0.3, -0.5, -0.1, 10, "m", 0.01),  # significant, wrong sign: not power
        est.Estimate(0.1, -0.1, 0.3, 10, "m", 0.40),   # not significant, covers
        est.Estimate(0.2, 0.05, 0.35, 10, "m", 0.03),  # detected, covers
    ])
    p = est.power_by_simulation(lambda rng: next(draws), planted=0.3, protocol="t", measure="m", design="d",
                                n_sims=4)
    assert p.power == 0.5 and p.coverage == 0.75 and p.mean_estimate == pytest.approx(0.075)


def test_schema_helpers():
    assert as_bool(pd.Series(["True", "false", 1, 0]), name="x").tolist() == [True, False, True, False]
    with pytest.raises(AnalysisInputError, match="non-boolean"):
        as_bool(pd.Series(["yes"]), name="x")
    a = pd.Series([1, "1", "cat", 2.0, None], dtype=object)
    b = pd.Series(["1.0", 1, "cat ", "3", None], dtype=object)
    assert answers_equal(a, b).tolist() == [True, True, True, False, False]
