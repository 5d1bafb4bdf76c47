"""An estimate with its interval, the interval formulas the protocols share, power by simulation.

Every interval comes from statsmodels where it has one:

- a mean over participants: the t interval (``DescrStatsW.tconfint_mean``), with the one-sample
  t-test against a reference value;
- a difference of two arms' participant means: Welch's t interval and test
  (``CompareMeans.tconfint_diff`` / ``ttest_ind`` with ``usevar="unequal"``);
- a ratio of two arms' means: the delta method on the log ratio (normal quantile);
- a proportion: Wilson's score interval (``proportion_confint(method="wilson")``);
- a difference of two proportions: Newcombe's hybrid Wilson interval
  (``confint_proportions_2indep(method="newcomb")``) and the score test
  (``test_proportions_2indep(method="score")``). The score *interval* would match the test
  exactly, but statsmodels 0.15's inversion of it fails (brentq sign error) for about a fifth
  of all count pairs at n = 80 per arm, so the interval is Newcombe's, which agrees with the
  score test except at the margin.

Analyses average per participant first: answers of one person are not independent, and the
participant is the unit that was randomised to an arm.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    test_proportions_2indep,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A point estimate, its ``level`` interval, the units it rests on and, where tested, a p-value.

    ``p_value`` belongs to the test named in ``method`` (two-sided unless the method says
    otherwise) of the hypothesis that the true value is ``null``; NaN where nothing was tested
    or too few units were there to test.
    """

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    method: str
    p_value: float = NAN
    level: float = 0.95
    null: float = 0.0

    def covers(self, value: float) -> bool:
        """Whether `value` lies in the interval (False when the interval is undefined)."""
        return bool(self.ci_low <= value <= self.ci_high)

    def as_dict(self) -> dict:
        return asdict(self)


def _undefined(n: int, method: str, estimate: float = NAN, level: float = 0.95,
               null: float = 0.0) -> Estimate:
    return Estimate(estimate, NAN, NAN, n, method, NAN, level, null)


def mean_ci(values: np.ndarray | list[float], *, level: float = 0.95, null: float = 0.0,
            alternative: str = "two-sided") -> Estimate:
    """Mean of `values` (NaNs dropped) with its t interval and the one-sample t-test against `null`.

    >>> round(mean_ci([0.5, 0.7, 0.6]).estimate, 3)
    0.6
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    method = f"mean over units, t interval; one-sample t-test against {null:g} ({alternative})"
    if x.size < 2:
        return _undefined(int(x.size), method, float(x.mean()) if x.size else NAN, level, null)
    m = float(x.mean())
    if np.all(x == x[0]):  # no spread: the t interval is degenerate, no test
        return Estimate(m, m, m, int(x.size), method, NAN, level, null)
    d = DescrStatsW(x)
    low, high = d.tconfint_mean(alpha=1 - level)
    sm_alt = {"greater": "larger", "less": "smaller"}.get(alternative, alternative)
    _t, p, _df = d.ttest_mean(null, alternative=sm_alt)
    return Estimate(m, float(low), float(high), int(x.size), method, float(p), level, null)


def welch_diff(x: np.ndarray | list[float], y: np.ndarray | list[float], *, level: float = 0.95) -> Estimate:
    """mean(x) - mean(y) with Welch's t interval and two-sided Welch test (NaNs dropped)."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    method = "difference of means, Welch t interval and two-sided Welch test"
    n = int(a.size + b.size)
    if a.size < 2 or b.size < 2:
        est = float(a.mean() - b.mean()) if a.size and b.size else NAN
        return _undefined(n, method, est, level)
    diff = float(a.mean() - b.mean())
    if a.var() == 0 and b.var() == 0:
        return Estimate(diff, diff, diff, n, method, NAN, level)
    cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    low, high = cm.tconfint_diff(alpha=1 - level, usevar="unequal")
    _t, p, _df = cm.ttest_ind(usevar="unequal")
    return Estimate(diff, float(low), float(high), n, method, float(p), level)


def ratio_of_means(x: np.ndarray | list[float], y: np.ndarray | list[float], *, level: float = 0.95) -> Estimate:
    """mean(x) / mean(y), independent samples, delta-method interval on the log ratio.

    Var(log r) ≈ s_x²/(n_x m_x²) + s_y²/(n_y m_y²). The p-value tests log r = 0 (ratio 1).
    """
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    method = "ratio of means, delta-method interval on log ratio; two-sided z-test of ratio 1"
    n = int(a.size + b.size)
    if a.size < 2 or b.size < 2 or a.mean() <= 0 or b.mean() <= 0:
        est = float(a.mean() / b.mean()) if a.size and b.size and b.mean() > 0 else NAN
        return _undefined(n, method, est, level, 1.0)
    ma, mb = float(a.mean()), float(b.mean())
    se = math.sqrt(a.var(ddof=1) / (a.size * ma**2) + b.var(ddof=1) / (b.size * mb**2))
    log_r = math.log(ma / mb)
    if se == 0:
        return Estimate(ma / mb, ma / mb, ma / mb, n, method, NAN, level, 1.0)
    z = float(stats.norm.isf((1 - level) / 2))
    p = float(2 * stats.norm.sf(abs(log_r) / se))
    return Estimate(ma / mb, math.exp(log_r - z * se), math.exp(log_r + z * se), n, method, p,
                    level, 1.0)


def wilson(count: int, nobs: int, *, level: float = 0.95) -> Estimate:
    """count / nobs with Wilson's score interval (statsmodels ``proportion_confint``)."""
    method = "proportion, Wilson score interval"
    if nobs <= 0:
        return _undefined(0, method, level=level)
    low, high = proportion_confint(count, nobs, alpha=1 - level, method="wilson")
    return Estimate(count / nobs, float(low), float(high), int(nobs), method, NAN, level)


def proportion_diff(count1: int, nobs1: int, count2: int, nobs2: int, *, level: float = 0.95) -> Estimate:
    """p1 - p2 with Newcombe's interval and the two-sided score test (NaN p where both shares are 0 or 1)."""
    method = "difference of proportions, Newcombe interval and two-sided score test"
    if nobs1 <= 0 or nobs2 <= 0:
        return _undefined(max(nobs1, 0) + max(nobs2, 0), method, level=level)
    diff = count1 / nobs1 - count2 / nobs2
    low, high = confint_proportions_2indep(count1, nobs1, count2, nobs2, method="newcomb",
                                           compare="diff", alpha=1 - level)
    with warnings.catch_warnings():  # statsmodels also computes ratios, which divide by 0 at p = 0
        warnings.simplefilter("ignore", RuntimeWarning)
        res = test_proportions_2indep(count1, nobs1, count2, nobs2, method="score", compare="diff",
                                      alternative="two-sided")
    p = float(res.pvalue)
    return Estimate(float(diff), float(low), float(high), int(nobs1 + nobs2), method,
                    p if math.isfinite(p) else NAN, level)


@dataclass(frozen=True)
class ProtocolPower:
    """Power by simulation of one protocol's main test, with what the simulated studies estimated.

    ``power``: the share of simulated studies whose test reached p <= ``alpha`` with the effect
    in the planted direction (with a 95% Wilson interval for the Monte Carlo error);
    ``coverage``: the share whose interval covered ``planted``; ``mean_estimate``: the mean
    estimate over the simulated studies (close to ``planted`` when the estimator is unbiased).
    """

    protocol: str
    measure: str
    design: str
    planted: float
    n_sims: int
    alpha: float
    power: float
    power_ci: tuple[float, float]
    coverage: float
    mean_estimate: float
    seed: int

    def as_dict(self) -> dict:
        return asdict(self)


def power_by_simulation(
    simulate_one: Callable[[np.random.Generator], Estimate],
    *,
    planted: float,
    protocol: str,
    measure: str,
    design: str,
    n_sims: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> ProtocolPower:
    """Run `simulate_one` (draw one synthetic study, analyse it, return the main estimate) `n_sims`
    times from one seeded generator and count the studies whose test detected the effect.

    A study counts as a detection when its p-value is <= `alpha` and its estimate lies on the
    same side of the null as `planted` (a significant effect of the wrong sign is not power).
    Used by every protocol's ``power_at_paper_n``; `stats.power` holds the learning-study
    equivalents, whose generative model (learning curves) does not fit these protocols.
    """
    if n_sims < 1:
        raise ValueError("n_sims must be at least 1")
    rng = np.random.default_rng(seed)
    hits = covered = 0
    total = 0.0
    finite = 0
    for _ in range(n_sims):
        est = simulate_one(rng)
        same_side = (est.estimate - est.null) * (planted - est.null) > 0
        if math.isfinite(est.p_value) and est.p_value <= alpha and same_side:
            hits += 1
        covered += est.covers(planted)
        if math.isfinite(est.estimate):
            total += est.estimate
            finite += 1
    low, high = proportion_confint(hits, n_sims, alpha=0.05, method="wilson")
    return ProtocolPower(
        protocol=protocol, measure=measure, design=design, planted=planted, n_sims=n_sims,
        alpha=alpha, power=hits / n_sims, power_ci=(float(low), float(high)),
        coverage=covered / n_sims, mean_estimate=total / finite if finite else NAN, seed=seed,
    )

