"""Sample size for a two-arm comparison: analytic (statsmodels) and by simulation.

Analytic: `sample_size` solves statsmodels ``TTestIndPower`` for the participants per arm
needed to detect a standardised difference (Cohen's d) with a given alpha and power.
`sample_size_from_pilot` takes d from pilot data (difference of means over the pooled SD).

The dissertation's "about 90 subjects per group" (CDeepEx vs GCAM, section 5.1) and what alpha
and power it implies: docs/DECISIONS.md, "Power".
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


# --------------------------------------------------------------------------- trial level


def _z_crit(alpha: float, alternative: str) -> float:
    _statsmodels_alternative(alternative)
    return float(stats.norm.isf(alpha / 2 if alternative == "two-sided" else alpha))


def _detected(z: np.ndarray, alpha: float, alternative: str) -> np.ndarray:
    """Rejections of a z-test for z signed so that positive favours arm1 > arm2."""
    crit = _z_crit(alpha, alternative)
    if alternative == "greater":
        return z >= crit
    if alternative == "less":
        return z <= -crit
    return np.abs(z) >= crit


def projected_n(mean_z: float, n_per_arm: int, *, alpha: float, power: float, alternative: str) -> float | None:
    """n per arm at which a test whose statistic has mean `mean_z` at `n_per_arm` reaches `power`.

    Assumes the statistic is roughly N(δ·sqrt(n), 1) (true for the Welch z and for a Wald z of a
    regular estimator): n = n_per_arm · ((z_crit + z_power) / mean_z)². None when the simulated
    effect is zero or points against a one-sided alternative.
    """
    if not math.isfinite(mean_z) or mean_z == 0:
        return None
    if (alternative == "greater" and mean_z < 0) or (alternative == "less" and mean_z > 0):
        return None
    target = _z_crit(alpha, alternative) + float(stats.norm.ppf(power))
    return float(n_per_arm * (target / abs(mean_z)) ** 2)


def _welch_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Welch t of x - y per row, turned into a z with the same one-sided p (positive: x > y)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = stats.ttest_ind(x, y, axis=1, equal_var=False, alternative="greater").pvalue
    return np.asarray(stats.norm.isf(np.nan_to_num(p, nan=0.5)))


def _chunk(n_participants: int, n_trials: int, budget_bytes: float = 8e7) -> int:
    return max(5, int(budget_bytes / (n_participants * n_trials * 4 * 8 * 3)))


@dataclass(frozen=True)
class TrialLevelPower:
    """Power of the Welch test on totals and of the trial-level model on the same simulated studies."""

    arm1: str
    arm2: str
    n_per_arm: int
    n_trials: int
    n_sims: int
    alpha: float
    alternative: str
    welch_power: float
    welch_ci: tuple[float, float]
    trial_power: float
    trial_ci: tuple[float, float]
    welch_mean_z: float
    trial_mean_z: float
    welch_n80: float | None
    trial_n80: float | None
    mean_total1: float
    mean_total2: float
    d: float
    assumptions: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_answers_pair(
    curves: Mapping[str, LearningCurve], arm1: str, arm2: str, n_per_arm: int, *, n_trials: int,
    n_sims: int, rng: np.random.Generator, stimulus_sd: float,
) -> np.ndarray:
    """(n_sims, 2 n_per_arm, n_trials) answers: arm2's participants first, then arm1's."""
    from stats.synthetic import simulate_answers

    effects = rng.normal(0.0, stimulus_sd, (n_sims, n_trials)) if stimulus_sd > 0 else None
    y2 = simulate_answers(curves[arm2], n_participants=n_per_arm, n_trials=n_trials, n_sims=n_sims,
                          rng=rng, stimulus_effects=effects)
    y1 = simulate_answers(curves[arm1], n_participants=n_per_arm, n_trials=n_trials, n_sims=n_sims,
                          rng=rng, stimulus_effects=effects)
    return np.concatenate([y2, y1], axis=1)


def simulate_power_trial_level(
    curves: Mapping[str, LearningCurve],
    arm1: str,
    arm2: str,
    n_per_arm: int,
    *,
    n_trials: int = 20,
    n_sims: int = 1000,
    alpha: float = 0.05,
    alternative: str = "greater",
    power_target: float = 0.8,
    stimulus_sd: float = 0.3,
    seed: int = 0,
) -> TrialLevelPower:
    """Power of both analyses by simulation, with the platform's synthetic participants.

    Each replication draws every answer (`synthetic.simulate_answers`: a learning rate per arm,
    participant rates around it, a difficulty per stimulus met in shuffled order), then tests
    arm1 against arm2 twice: scipy's Welch test on the totals and the common-start GEE's
    learning-rate contrast (`trial_model.gee_batch`, the estimator of `trial_model.fit_gee`).
    ``*_n80``: the n per arm each needs for `power_target`, projected from the mean z
    (`projected_n`).
    """
    from stats.trial_model import interaction_z

    _statsmodels_alternative(alternative)
    rng = np.random.default_rng(seed)
    arm = np.repeat([0.0, 1.0], n_per_arm)
    wz, tz, tot1, tot2, ds = [], [], [], [], []
    step = _chunk(2 * n_per_arm, n_trials)
    done = 0
    while done < n_sims:
        k = min(step, n_sims - done)
        y = simulate_answers_pair(curves, arm1, arm2, n_per_arm, n_trials=n_trials, n_sims=k, rng=rng,
                                  stimulus_sd=stimulus_sd)
        totals = y.sum(axis=2).astype(float)
        x2, x1 = totals[:, :n_per_arm], totals[:, n_per_arm:]
        wz.append(_welch_z(x1, x2))
        tz.append(interaction_z(y, arm)[1])
        tot1.append(x1.mean(axis=1))
        tot2.append(x2.mean(axis=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds.append((x1.mean(axis=1) - x2.mean(axis=1)) / np.sqrt((x1.var(axis=1, ddof=1) + x2.var(axis=1, ddof=1)) / 2))
        done += k
    w, t = np.concatenate(wz), np.concatenate(tz)
    hits_w, hits_t = int(_detected(w, alpha, alternative).sum()), int(_detected(t, alpha, alternative).sum())
    ci_w = tuple(float(v) for v in proportion_confint(hits_w, n_sims, alpha=0.05, method="wilson"))
    ci_t = tuple(float(v) for v in proportion_confint(hits_t, n_sims, alpha=0.05, method="wilson"))
    c1, c2 = curves[arm1], curves[arm2]
    assumptions = (
        f"{arm1}: p(t) = {c1.ceiling:g} - ({c1.ceiling:g} - {c1.start:g})·exp(-{c1.rate:.4g}·r·t); "
        f"{arm2}: the same with rate {c2.rate:.4g}; log r ~ N(0, {c1.rate_sd:g}²) per participant",
        f"a difficulty per stimulus, N(0, {stimulus_sd:g}²) on the log-odds scale, the same stimuli for "
        "both arms in a shuffled order",
        f"{n_trials} trials, no dropout or exclusions, {n_per_arm} per arm",
        f"Welch test on the totals and the GEE learning-rate contrast (common start), {alternative}, "
        f"alpha = {alpha:g}",
        f"{n_sims} replications, seed {seed}; n for {power_target:g} power projected from the mean z",
    )
    return TrialLevelPower(
        arm1=arm1, arm2=arm2, n_per_arm=n_per_arm, n_trials=n_trials, n_sims=n_sims, alpha=alpha,
        alternative=alternative, welch_power=hits_w / n_sims, welch_ci=(ci_w[0], ci_w[1]),
        trial_power=hits_t / n_sims, trial_ci=(ci_t[0], ci_t[1]),
        welch_mean_z=float(np.mean(w)), trial_mean_z=float(np.mean(t)),
        welch_n80=projected_n(float(np.mean(w)), n_per_arm, alpha=alpha, power=power_target, alternative=alternative),
        trial_n80=projected_n(float(np.mean(t)), n_per_arm, alpha=alpha, power=power_target, alternative=alternative),
        mean_total1=float(np.mean(np.concatenate(tot1))), mean_total2=float(np.mean(np.concatenate(tot2))),
        d=float(np.nanmean(np.concatenate(ds))), assumptions=assumptions,
    )


@dataclass(frozen=True)
class SequentialSimulation:
    """Operating characteristics of a sequential plan on simulated studies."""

    statistic: str
    n_sims: int
    rejection_rate: float
    rejection_ci: tuple[float, float]
    expected_n_per_arm: float
    stop_efficacy: float
    stop_futility: float
    max_n_per_arm: int


def simulate_sequential(
    curves: Mapping[str, LearningCurve],
    plan,
    *,
    statistic: str = "welch",
    n_trials: int = 20,
    n_sims: int = 1000,
    stimulus_sd: float = 0.3,
    seed: int = 0,
) -> SequentialSimulation:
    """Run a `sequential.SequentialPlan` on simulated studies of its planned comparison.

    Each replication enrols ``plan.max_n_per_arm`` per arm; look k uses the first n_k of each
    arm, with the Welch z on totals (``statistic="welch"``) or the trial model's rate-contrast z
    (``"trial"``). The rejection rate under equal curves is the procedure's type-I error.
    """
    from stats.sequential import run_on_z_paths
    from stats.trial_model import interaction_z

    if statistic not in ("welch", "trial"):
        raise ValueError("statistic must be 'welch' or 'trial'")
    arm1, arm2, _alt = plan.comparison
    sign = -1.0 if plan.comparison[2] == "less" else 1.0
    rng = np.random.default_rng(seed)
    m = plan.max_n_per_arm
    sizes = plan.look_sizes
    paths = []
    step = _chunk(2 * m, n_trials)
    done = 0
    while done < n_sims:
        k = min(step, n_sims - done)
        y = simulate_answers_pair(curves, arm1, arm2, m, n_trials=n_trials, n_sims=k, rng=rng, stimulus_sd=stimulus_sd)
        z = np.empty((k, len(sizes)))
        for j, n in enumerate(sizes):
            sub = np.concatenate([y[:, :n], y[:, m:m + n]], axis=1)
            if statistic == "welch":
                totals = sub.sum(axis=2).astype(float)
                z[:, j] = _welch_z(totals[:, n:], totals[:, :n])
            else:
                z[:, j] = interaction_z(sub, np.repeat([0.0, 1.0], n))[1]
        paths.append(sign * z)
        done += k
    z_paths = np.concatenate(paths)
    rejected, stop_look = run_on_z_paths(plan, z_paths)
    bounds = plan.boundaries()
    stat = np.abs(z_paths) if plan.sides == 2 else z_paths
    at_stop = stat[np.arange(n_sims), stop_look]
    interim = stop_look < len(sizes) - 1
    eff = interim & (at_stop >= bounds[stop_look])
    hits = int(rejected.sum())
    ci = proportion_confint(hits, n_sims, alpha=0.05, method="wilson")
    return SequentialSimulation(
        statistic=statistic, n_sims=n_sims, rejection_rate=hits / n_sims,
        rejection_ci=(float(ci[0]), float(ci[1])),
        expected_n_per_arm=float(np.asarray(sizes)[stop_look].mean()),
        stop_efficacy=float(eff.mean()), stop_futility=float((interim & ~eff).mean()), max_n_per_arm=m,
    )
