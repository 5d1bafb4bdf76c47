"""Sample size for a two-arm comparison: analytic (statsmodels) and by simulation.

Analytic: `sample_size` solves statsmodels ``TTestIndPower`` for the participants per arm
needed to detect a standardised difference (Cohen's d) with a given alpha and power.
`sample_size_from_pilot` takes d from pilot data (difference of means over the pooled SD).

The dissertation's "about 90 subjects per group" (CDeepEx vs GCAM, section 5.1). From
Table 5.2, d = (10.666667 - 10.333333) / sqrt((1.588650² + 1.759329²) / 2) = 0.199. The
thesis gives no alpha or power. Per arm:

=============================  =========  =========
one-sided alpha                power 0.5  power 0.8
=============================  =========  =========
0.10 (the thesis's threshold)  84         229
0.05                           138        314
=============================  =========  =========

Only alpha = 0.10 one-sided (equivalently 0.20 two-sided) with power 0.5 comes near 90. That
is the reading "if the same trend holds": the n at which the observed means and SDs would just
give p = 0.10. The Welch test on Table 5.2's numbers first reaches p <= 0.10 at n = 84 per arm
(`n_until_significant`). With d taken over GCAM's SD alone (0.189) the same rule gives 92.
Either way, "about 90" gives only a coin-flip chance (power 0.52 at n = 90) of p <= 0.10 if d
really is 0.199. The conventional 80% power needs about 229 per arm at one-sided alpha 0.10 and
314 at 0.05.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import proportion_confint
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from stats.learning import hedges_g
from stats.schema import AnalysisInputError, require_columns
from stats.synthetic import LearningCurve, simulate_totals

_TO_STATSMODELS = {"greater": "larger", "less": "smaller", "two-sided": "two-sided"}


def _statsmodels_alternative(alternative: str) -> str:
    if alternative not in _TO_STATSMODELS:
        raise ValueError(f"alternative must be one of {list(_TO_STATSMODELS)}, not {alternative!r}")
    return _TO_STATSMODELS[alternative]


@dataclass(frozen=True)
class SampleSize:
    """Participants per arm for one design; ``assumptions`` spells out what it rests on."""

    n_per_arm: int
    n_exact: float
    effect_size: float
    alpha: float
    power: float
    achieved_power: float
    alternative: str
    effect_source: str
    assumptions: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def sample_size(
    effect_size: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "greater",
    effect_source: str = "given",
) -> SampleSize:
    """Participants per arm to detect Cohen's d = `effect_size` (statsmodels ``TTestIndPower``).

    `alternative` uses scipy's names: "greater" is the one-sided H1 arm1 > arm2 (then d must
    be positive), "two-sided" splits alpha over both tails. ``n_per_arm`` is ``n_exact``
    rounded up; ``achieved_power`` is the power at that n.
    """
    if effect_size == 0:
        raise ValueError("a zero effect cannot be detected at any sample size")
    if alternative == "greater" and effect_size < 0 or alternative == "less" and effect_size > 0:
        raise ValueError(f"effect_size {effect_size} points against alternative {alternative!r}")
    analysis = TTestIndPower()
    sm_alt = _statsmodels_alternative(alternative)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        n_exact = float(
            analysis.solve_power(
                effect_size=effect_size,
                nobs1=None,
                alpha=alpha,
                power=power,
                ratio=1.0,
                alternative=sm_alt,
            )
        )
    if math.isfinite(n_exact) and n_exact >= 2:
        n = math.ceil(n_exact - 1e-9)
    else:
        # statsmodels' root finder gives up for very large effects (n < 2) or tiny ones:
        # search the smallest whole n (power increases with n).
        def power_at(k: int) -> float:
            return float(
                analysis.power(effect_size=effect_size, nobs1=k, alpha=alpha, alternative=sm_alt)
            )

        lo, hi = 2, 2
        while power_at(hi) < power:
            if hi > 10**8:
                raise ValueError(
                    f"power {power} needs more than 10^8 per arm for d = {effect_size}"
                )
            lo, hi = hi + 1, hi * 2
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if power_at(mid) >= power else (mid + 1, hi)
        n, n_exact = lo, float(lo)
    achieved = float(
        analysis.power(effect_size=effect_size, nobs1=n, alpha=alpha, ratio=1.0, alternative=sm_alt)
    )
    sidedness = "two-sided" if alternative == "two-sided" else f"one-sided ({alternative})"
    assumptions = (
        "two-sample t-test with pooled variance and n1 + n2 - 2 df (statsmodels TTestIndPower); "
        "the analysis uses Welch's test, whose power is nearly the same at equal n and similar SDs",
        "equal numbers of participants per arm",
        "outcome roughly normal with the same SD in both arms",
        f"true standardised difference d = {effect_size:.4g} ({effect_source})",
        f"{sidedness} test at alpha = {alpha:g}, target power {power:g}",
        "no multiplicity adjustment (if the test is one of several, use the adjusted alpha)",
        "no attrition: recruit more to cover exclusions",
    )
    return SampleSize(
        n_per_arm=n,
        n_exact=n_exact,
        effect_size=float(effect_size),
        alpha=alpha,
        power=power,
        achieved_power=achieved,
        alternative=alternative,
        effect_source=effect_source,
        assumptions=assumptions,
    )


@dataclass(frozen=True)
class PilotEffect:
    """Standardised difference of arm1 minus arm2 estimated from pilot data."""

    arm1: str
    arm2: str
    n1: int
    mean1: float
    sd1: float
    n2: int
    mean2: float
    sd2: float
    pooled_sd: float
    d: float
    hedges_g: float
    g_ci_low: float
    g_ci_high: float


def _summaries(pilot: pd.DataFrame, value: str) -> pd.DataFrame:
    if {"arm", "n", "mean", "sd"} <= set(pilot.columns):
        return pilot.set_index("arm")[["n", "mean", "sd"]]
    require_columns(pilot, ["arm", value], name="pilot")
    grouped = pilot.dropna(subset=[value]).groupby("arm")[value]
    return pd.DataFrame({"n": grouped.count(), "mean": grouped.mean(), "sd": grouped.std(ddof=1)})


def pilot_effect(
    pilot: pd.DataFrame, arm1: str, arm2: str, *, value: str = "total_correct"
) -> PilotEffect:
    """d = (mean1 - mean2) / pooled SD from a pilot.

    `pilot` is either a summary (columns ``arm, n, mean, sd``, SDs with ddof=1, e.g.
    Table 5.2 or `learning.final_counts`) or per-participant values (columns ``arm`` and
    `value`, e.g. `learning.participant_totals`). The pooled SD is
    sqrt(((n1-1) s1² + (n2-1) s2²) / (n1 + n2 - 2)). ``hedges_g`` with its 95% CI
    (noncentral t) shows how uncertain a pilot's d is.
    """
    summary = _summaries(pilot, value)
    for arm in (arm1, arm2):
        if arm not in summary.index:
            raise AnalysisInputError(f"pilot has no data for arm {arm!r}")
    a, b = summary.loc[arm1], summary.loc[arm2]
    n1, n2 = int(a["n"]), int(b["n"])
    if n1 < 2 or n2 < 2:
        raise AnalysisInputError("a pilot needs at least 2 participants per arm")
    pooled = math.sqrt(((n1 - 1) * a["sd"] ** 2 + (n2 - 1) * b["sd"] ** 2) / (n1 + n2 - 2))
    g, low, high = hedges_g(a["mean"], a["sd"], n1, b["mean"], b["sd"], n2)
    return PilotEffect(
        arm1=arm1,
        arm2=arm2,
        n1=n1,
        mean1=float(a["mean"]),
        sd1=float(a["sd"]),
        n2=n2,
        mean2=float(b["mean"]),
        sd2=float(b["sd"]),
        pooled_sd=pooled,
        d=float((a["mean"] - b["mean"]) / pooled),
        hedges_g=g,
        g_ci_low=low,
        g_ci_high=high,
    )


def sample_size_from_pilot(
    pilot: pd.DataFrame,
    arm1: str,
    arm2: str,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "greater",
    value: str = "total_correct",
    bias_corrected: bool = False,
) -> SampleSize:
    """`sample_size` with d estimated by `pilot_effect` (Hedges' g if `bias_corrected`).

    The pilot's d is treated as the true effect, which a small pilot does not justify: the
    assumptions list its confidence interval.
    """
    eff = pilot_effect(pilot, arm1, arm2, value=value)
    d = eff.hedges_g if bias_corrected else eff.d
    source = (
        f"pilot: {arm1} {eff.mean1:.4g} ± {eff.sd1:.4g} (n={eff.n1}) vs {arm2} {eff.mean2:.4g} ± "
        f"{eff.sd2:.4g} (n={eff.n2}), pooled SD {eff.pooled_sd:.4g}, "
        f"{'Hedges g' if bias_corrected else 'Cohen d'} = {d:.4g}; Hedges g 95% CI "
        f"[{eff.g_ci_low:.3g}, {eff.g_ci_high:.3g}], so the true effect is poorly known"
    )
    return sample_size(d, alpha=alpha, power=power, alternative=alternative, effect_source=source)


def power_curve(
    effect_size: float,
    n_per_arm: Sequence[int],
    *,
    alpha: float = 0.05,
    alternative: str = "greater",
) -> pd.DataFrame:
    """Analytic power at each n per arm; columns ``n_per_arm, power``."""
    sm_alt = _statsmodels_alternative(alternative)
    analysis = TTestIndPower()
    return pd.DataFrame(
        {
            "n_per_arm": list(n_per_arm),
            "power": [
                float(
                    analysis.power(
                        effect_size=effect_size, nobs1=n, alpha=alpha, alternative=sm_alt
                    )
                )
                for n in n_per_arm
            ],
        }
    )


def n_until_significant(
    mean1: float,
    sd1: float,
    mean2: float,
    sd2: float,
    *,
    alpha: float = 0.1,
    alternative: str = "greater",
    n_max: int = 100_000,
) -> int:
    """Smallest n per arm at which these exact means and SDs give a Welch p <= `alpha`.

    The "if the same trend holds" reading of a sample-size statement. It amounts to about 50%
    power, not the conventional 80%.
    """
    _statsmodels_alternative(alternative)

    def p_at(n: int) -> float:
        return float(
            stats.ttest_ind_from_stats(
                mean1, sd1, n, mean2, sd2, n, equal_var=False, alternative=alternative
            ).pvalue
        )

    if p_at(n_max) > alpha:
        raise ValueError(f"not significant even at n = {n_max} per arm")
    lo, hi = 2, n_max  # p decreases with n for a fixed difference: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        if p_at(mid) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class SimulatedPower:
    """Share of simulated studies in which the one-sided Welch test reached p <= alpha."""

    arm1: str
    arm2: str
    n_per_arm: int
    n_trials: int
    n_sims: int
    alpha: float
    alternative: str
    power: float
    ci_low: float
    ci_high: float
    mean_total1: float
    mean_total2: float
    mean_d: float
    assumptions: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_power(
    curves: Mapping[str, LearningCurve],
    arm1: str,
    arm2: str,
    n_per_arm: int,
    *,
    n_trials: int = 20,
    n_sims: int = 2000,
    alpha: float = 0.05,
    alternative: str = "greater",
    seed: int = 0,
    chunk: int = 250,
) -> SimulatedPower:
    """Power by simulation under the generative model of `synthetic.LearningCurve`.

    Each replication draws `n_per_arm` participants per arm, each answering `n_trials`
    trials correctly with their arm's probability curve, sums their correct answers and runs
    scipy's Welch ``ttest_ind(equal_var=False, alternative=...)`` of arm1 against arm2.
    ``power`` is the share of replications with p <= alpha, with a 95% Wilson interval
    (statsmodels ``proportion_confint``) for the Monte Carlo error.
    """
    _statsmodels_alternative(alternative)
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    sum1 = sum2 = sum_d = 0.0
    while done < n_sims:
        k = min(chunk, n_sims - done)
        x = simulate_totals(
            curves[arm1], n_participants=n_per_arm, n_trials=n_trials, n_sims=k, rng=rng
        )
        y = simulate_totals(
            curves[arm2], n_participants=n_per_arm, n_trials=n_trials, n_sims=k, rng=rng
        )
        with warnings.catch_warnings():  # identical totals in a replication give p = NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            p = stats.ttest_ind(x, y, axis=1, equal_var=False, alternative=alternative).pvalue
            pooled = np.sqrt((x.var(axis=1, ddof=1) + y.var(axis=1, ddof=1)) / 2)
            d = (x.mean(axis=1) - y.mean(axis=1)) / pooled
        hits += int(np.sum(p <= alpha))  # NaN compares False: counted as not detected
        sum1 += float(x.mean(axis=1).sum())
        sum2 += float(y.mean(axis=1).sum())
        sum_d += float(np.nansum(d))
        done += k
    low, high = proportion_confint(hits, n_sims, alpha=0.05, method="wilson")
    c1, c2 = curves[arm1], curves[arm2]
    assumptions = (
        f"{arm1}: p(t) = {c1.ceiling:g} - ({c1.ceiling:g} - {c1.start:g})·exp(-{c1.rate:g}·r·t), "
        f"log r ~ N(0, {c1.rate_sd:g}²)",
        f"{arm2}: p(t) = {c2.ceiling:g} - ({c2.ceiling:g} - {c2.start:g})·exp(-{c2.rate:g}·r·t), "
        f"log r ~ N(0, {c2.rate_sd:g}²)",
        "trials independent given the participant's curve; no dropout or exclusions",
        f"outcome: correct answers over {n_trials} trials; Welch t-test, {alternative}, "
        f"p <= {alpha:g}",
        f"{n_sims} replications, seed {seed}",
    )
    return SimulatedPower(
        arm1=arm1,
        arm2=arm2,
        n_per_arm=n_per_arm,
        n_trials=n_trials,
        n_sims=n_sims,
        alpha=alpha,
        alternative=alternative,
        power=hits / n_sims,
        ci_low=float(low),
        ci_high=float(high),
        mean_total1=sum1 / n_sims,
        mean_total2=sum2 / n_sims,
        mean_d=sum_d / n_sims,
        assumptions=assumptions,
    )
