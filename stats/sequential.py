"""Pre-registered group-sequential stopping: Lan–DeMets alpha spending, looks, decisions.

No well-kept Python implementation exists on the package registry (the R packages ``ldbounds``
and ``gsDesign`` are the reference ones; the Python A/B-testing packages that mention
"sequential testing" are young single-author projects), so the boundaries are computed here from
the formulas, and tests/stats/test_sequential.py checks them against published tables:

- Jennison & Turnbull (2000), Tables 2.1 and 2.3: the classic Pocock and O'Brien–Fleming
  constants for K = 5 equally spaced looks, two-sided alpha 0.05: C_P = 2.413, C_B = 2.040
  (O'Brien–Fleming z = 4.562, 3.226, 2.634, 2.281, 2.040).
- Reboussin et al. (2000) / ``ldbounds``: Lan–DeMets O'Brien–Fleming-type spending, K = 5,
  two-sided 0.05: z = 4.877, 3.357, 2.680, 2.290, 2.031.

The model (Jennison & Turnbull ch. 3): at look k with information fraction t_k the standardised
statistic Z_k is N(θ·sqrt(I_k), 1) and (Z_1, ..., Z_K) has the canonical joint distribution
Cov(Z_j, Z_k) = sqrt(t_j / t_k) for j <= k. Crossing probabilities come from the usual recursive
numerical integration of the score process S_k = Z_k sqrt(t_k) on a fine grid (Armitage,
McPherson & Rowe 1969), accurate to about 1e-6 here.

Spending functions, for a one-sided level α (Lan & DeMets 1983); a two-sided test at α spends
α/2 on each tail by the same function at α/2, as ``ldbounds`` and ``gsDesign`` do:

- ``"obrien_fleming"``: α(t) = 2 - 2Φ(z_{α/2} / sqrt(t));
- ``"pocock"``: α(t) = α log(1 + (e - 1) t).

Futility is **non-binding**: the efficacy boundaries are computed as if the trial never stops for
futility, so stopping early for futility (at an interim look, when the one-sided Z is below
``futility_z``) can only lower the type-I error. The final analysis reports the stage-wise
ordering p-value (Armitage 1957; Jennison & Turnbull §8.4) and the repeated confidence interval
estimate ± c_k · SE (Jennison & Turnbull ch. 9), both valid whatever the stopping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize, stats

SPENDING_RULES: tuple[str, ...] = ("obrien_fleming", "pocock")
SPENDING_LABELS = {
    "obrien_fleming": "O'Brien–Fleming-type (Lan–DeMets)",
    "pocock": "Pocock-type (Lan–DeMets)",
}
DECISION_TEXT = {
    "continue": "continue",
    "stop_efficacy": "stop for efficacy",
    "stop_futility": "stop for futility",
    "final_reject": "final look: reject H0",
    "final_accept": "final look: do not reject H0",
}

_GRID_STEP = 0.01  # in units of the score's SD at a look; error ~1e-6 with Simpson weights
_Z_MAX = 9.0


def spending(rule: str, t: float | np.ndarray, alpha: float) -> np.ndarray:
    """Cumulative alpha spent by information fraction `t` (0 < t <= 1) for `rule`."""
    tt = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if rule == "obrien_fleming":
        z = stats.norm.isf(alpha / 2)
        with np.errstate(divide="ignore"):
            out = 2 - 2 * stats.norm.cdf(z / np.sqrt(np.where(tt > 0, tt, np.nan)))
        return np.where(tt > 0, out, 0.0)
    if rule == "pocock":
        return alpha * np.log1p((math.e - 1) * tt)
    raise ValueError(f"spending rule must be one of {SPENDING_RULES}, not {rule!r}")


def _simpson_grid(lo: float, hi: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    m = max(2, int(math.ceil((hi - lo) / step)))
    m += m % 2  # even number of intervals
    x = np.linspace(lo, hi, m + 1)
    w = np.ones(m + 1)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return x, w * (hi - lo) / (3 * m)


class _Recursion:
    """Sub-densities of the score S_k = Z_k sqrt(t_k) on the continuation region, look by look."""

    def __init__(self, times: np.ndarray):
        self.times = times
        self.x: np.ndarray | None = None  # grid of the score at the previous look
        self.fw: np.ndarray | None = None  # sub-density times quadrature weights there

    def exit_probabilities(self, k: int, lower: float, upper: float) -> tuple[float, float]:
        """P(continued to look k and Z_k <= lower), P(continued and Z_k >= upper)."""
        t = self.times[k]
        s = math.sqrt(t)
        if k == 0:
            return float(stats.norm.cdf(lower)), float(stats.norm.sf(upper))
        if self.x is None or self.fw is None:
            raise RuntimeError("advance() the earlier looks first")
        sd = math.sqrt(t - self.times[k - 1])
        lo = stats.norm.cdf((lower * s - self.x) / sd)
        hi = stats.norm.sf((upper * s - self.x) / sd)
        return float(self.fw @ lo), float(self.fw @ hi)

    def advance(self, k: int, lower: float, upper: float) -> None:
        """Fix look k's continuation region (lower, upper) on the Z scale."""
        t = self.times[k]
        s = math.sqrt(t)
        lo, hi = max(lower, -_Z_MAX) * s, min(upper, _Z_MAX) * s
        x, w = _simpson_grid(lo, hi, _GRID_STEP * s)
        if k == 0:
            f = stats.norm.pdf(x / s) / s
        else:
            if self.x is None or self.fw is None:
                raise RuntimeError("advance() the earlier looks first")
            sd = math.sqrt(t - self.times[k - 1])
            f = (stats.norm.pdf((x[:, None] - self.x[None, :]) / sd) / sd) @ self.fw
        self.x, self.fw = x, f * w


def _check_times(times: Sequence[float] | np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or len(t) == 0:
        raise ValueError("give at least one information fraction")
    if np.any(t <= 0) or np.any(t > 1 + 1e-12) or np.any(np.diff(t) <= 0):
        raise ValueError("information fractions must increase strictly within (0, 1]")
    return t


def spending_boundaries(
    times: Sequence[float] | np.ndarray, *, alpha: float = 0.05, rule: str = "obrien_fleming", sides: int = 2
) -> np.ndarray:
    """Efficacy z-boundaries c_1..c_K at information fractions `times` by Lan–DeMets spending.

    ``sides=2``: reject at look k when |Z_k| >= c_k, alpha spent half on each tail;
    ``sides=1``: reject when Z_k >= c_k. The last look spends whatever alpha is left, so an
    analysis that ends before t = 1 still spends only α(t_K).
    """
    if sides not in (1, 2):
        raise ValueError("sides must be 1 or 2")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    t = _check_times(times)
    # Two-sided symmetric: each tail spends alpha/2 by the one-sided function (as ldbounds and
    # gsDesign do).
    cumulative = spending(rule, t, alpha) if sides == 1 else 2 * spending(rule, t, alpha / 2)
    rec = _Recursion(t)
    bounds = np.empty(len(t))
    spent = 0.0
    for k in range(len(t)):
        target = float(cumulative[k] - spent)

        def excess(c: float, k: int = k, target: float = target) -> float:
            low, high = rec.exit_probabilities(k, -c if sides == 2 else -np.inf, c)
            return (low + high if sides == 2 else high) - target

        if target <= 1e-15:
            c = _Z_MAX
        else:
            c = float(optimize.brentq(excess, 0.0 if sides == 2 else -_Z_MAX + 1, _Z_MAX, xtol=1e-9))
        bounds[k] = c
        spent += target
        rec.advance(k, -c if sides == 2 else -_Z_MAX, c)
    return bounds


def classic_boundaries(
    n_looks: int, *, alpha: float = 0.05, kind: str = "obrien_fleming", sides: int = 2
) -> np.ndarray:
    """The original (not spending-function) Pocock / O'Brien–Fleming boundaries, equal spacing.

    Pocock: c_k = C_P; O'Brien–Fleming: c_k = C_B sqrt(K / k); the constant is solved so that
    the overall type-I error is `alpha` (Jennison & Turnbull Tables 2.1, 2.3).
    """
    t = np.arange(1, n_looks + 1) / n_looks
    shape = np.ones(n_looks) if kind == "pocock" else np.sqrt(n_looks / np.arange(1, n_looks + 1))
    if kind not in SPENDING_RULES:
        raise ValueError(f"kind must be one of {SPENDING_RULES}")

    def excess(c: float) -> float:
        return crossing_probability(t, c * shape, sides=sides) - alpha

    return float(optimize.brentq(excess, 1.0, 6.0, xtol=1e-10)) * shape


def crossing_probability(
    times: Sequence[float] | np.ndarray, bounds: Sequence[float] | np.ndarray, *, sides: int = 2, drift: float = 0.0
) -> float:
    """P(the boundary is crossed at some look) when E[Z_k] = drift · sqrt(t_k).

    Under H0 (``drift=0``) this is the procedure's type-I error.
    """
    t = _check_times(times)
    c = np.asarray(bounds, dtype=float)
    if drift == 0.0:
        rec = _Recursion(t)
        total = 0.0
        for k in range(len(t)):
            low, high = rec.exit_probabilities(k, -c[k] if sides == 2 else -np.inf, c[k])
            total += (low + high) if sides == 2 else high
            rec.advance(k, -c[k] if sides == 2 else -_Z_MAX, c[k])
        return total
    # With drift: shift the boundaries on the score scale (S_k - drift t_k is null Brownian).
    # Equivalent to testing Z_k - drift sqrt(t_k) against shifted, possibly asymmetric bounds.
    rec = _Recursion(t)
    total = 0.0
    for k in range(len(t)):
        shift = drift * math.sqrt(t[k])
        lower = (-c[k] - shift) if sides == 2 else -np.inf
        upper = c[k] - shift
        low, high = rec.exit_probabilities(k, lower, upper)
        total += (low + high) if sides == 2 else high
        rec.advance(k, lower if sides == 2 else -_Z_MAX, upper)
    return total


# --------------------------------------------------------------------------- a plan


@dataclass(frozen=True)
class SequentialPlan:
    """A pre-registered stopping rule for one planned comparison.

    ``comparison`` is ``(arm1, arm2, alternative)`` as in the planned tests; looks are after every
    ``look_every`` participants per arm have completed, up to ``max_n_per_arm`` (the last look).
    A one-sided comparison ("greater"/"less") uses one-sided boundaries at level ``alpha``; a
    two-sided one splits ``alpha``. ``futility_z``: at an interim look, stop for futility when
    the statistic in the hypothesised direction is below it (``None``: never; non-binding).
    """

    comparison: tuple[str, str, str]
    look_every: int
    max_n_per_arm: int
    spending: str = "obrien_fleming"
    alpha: float = 0.05
    futility_z: float | None = 0.0
    statistic: str = "welch"

    def __post_init__(self) -> None:
        if self.statistic not in ("welch", "trial"):
            raise ValueError("statistic must be 'welch' (totals) or 'trial' (trial-level model)")
        if self.spending not in SPENDING_RULES:
            raise ValueError(f"spending must be one of {SPENDING_RULES}")
        if self.look_every < 2 or self.max_n_per_arm < self.look_every:
            raise ValueError("look_every must be >= 2 and at most max_n_per_arm")
        if self.comparison[2] not in ("greater", "less", "two-sided"):
            raise ValueError("the comparison's alternative must be greater, less or two-sided")

    @property
    def sides(self) -> int:
        return 2 if self.comparison[2] == "two-sided" else 1

    @property
    def look_sizes(self) -> list[int]:
        """Participants per arm at each look (the last one is ``max_n_per_arm``)."""
        sizes = list(range(self.look_every, self.max_n_per_arm + 1, self.look_every))
        if sizes[-1] != self.max_n_per_arm:
            sizes.append(self.max_n_per_arm)
        return sizes

    @property
    def times(self) -> np.ndarray:
        return np.asarray(self.look_sizes, dtype=float) / self.max_n_per_arm

    def boundaries(self) -> np.ndarray:
        return _cached_boundaries(tuple(self.times), self.alpha, self.spending, self.sides)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["comparison"] = list(self.comparison)
        return d

    @classmethod
    def from_config(cls, raw: dict) -> SequentialPlan:
        """From the study configuration's ``sequential`` object (see ``study_config``)."""
        comparison = raw.get("comparison")
        if not isinstance(comparison, list | tuple) or len(comparison) != 3:
            raise ValueError("sequential.comparison must be [arm1, arm2, alternative]")
        return cls(
            comparison=(str(comparison[0]), str(comparison[1]), str(comparison[2])),
            look_every=int(raw["look_every"]),
            max_n_per_arm=int(raw["max_n_per_arm"]),
            spending=str(raw.get("spending", "obrien_fleming")),
            alpha=float(raw.get("alpha", 0.05)),
            futility_z=None if raw.get("futility_z", 0.0) is None else float(raw.get("futility_z", 0.0)),
            statistic=str(raw.get("statistic", "welch")),
        )


_BOUNDARY_CACHE: dict[tuple, np.ndarray] = {}


def _cached_boundaries(times: tuple, alpha: float, rule: str, sides: int) -> np.ndarray:
    key = (times, alpha, rule, sides)
    if key not in _BOUNDARY_CACHE:
        _BOUNDARY_CACHE[key] = spending_boundaries(times, alpha=alpha, rule=rule, sides=sides)
    return _BOUNDARY_CACHE[key].copy()


@dataclass(frozen=True)
class LookDecision:
    """What the pre-registered rule says at one look."""

    look: int  # 1-based
    n_looks: int
    n_per_arm: int
    z: float  # in the hypothesised direction for a one-sided comparison
    efficacy_z: float
    futility_z: float | None
    decision: str
    adjusted_p: float | None = None
    estimate: float | None = None
    rci: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def decision_text(self) -> str:
        return DECISION_TEXT[self.decision]


def decide(plan: SequentialPlan, look: int, z: float) -> str:
    """The rule at 1-based `look` for statistic `z` (signed in the hypothesised direction)."""
    bounds = plan.boundaries()
    k = look - 1
    final = look == len(bounds)
    stat = abs(z) if plan.sides == 2 else z
    if stat >= bounds[k]:
        return "final_reject" if final else "stop_efficacy"
    if final:
        return "final_accept"
    if plan.futility_z is not None and plan.sides == 1 and z < plan.futility_z:
        return "stop_futility"
    return "continue"


def stagewise_p(plan: SequentialPlan, look: int, z: float) -> float:
    """Stage-wise ordering p-value of stopping at 1-based `look` with statistic `z`.

    p = Σ_{j<k} P0(cross at j) + P0(continue to k, Z_k >= z) (two-sided: doubled one-sided on
    |z|, capped at 1). Valid for any stopping by the plan's efficacy boundaries.
    """
    t = plan.times[:look]
    c = plan.boundaries()[:look]
    rec = _Recursion(t)
    if plan.sides == 2:
        zz = abs(z)
        total = 0.0
        for k in range(look - 1):
            _, high = rec.exit_probabilities(k, -c[k], c[k])
            total += high
            rec.advance(k, -c[k], c[k])
        _, high = rec.exit_probabilities(look - 1, -np.inf, zz)
        return float(min(1.0, 2 * (total + high)))
    total = 0.0
    for k in range(look - 1):
        _, high = rec.exit_probabilities(k, -np.inf, c[k])
        total += high
        rec.advance(k, -_Z_MAX, c[k])
    _, high = rec.exit_probabilities(look - 1, -np.inf, z)
    return float(min(1.0, total + high))


def evaluate_look(
    plan: SequentialPlan, n_per_arm: int, z: float, *, estimate: float | None = None, se: float | None = None
) -> LookDecision:
    """The decision once `n_per_arm` participants per arm have completed.

    The look is the last planned size <= `n_per_arm` (between looks the decision of the last look
    stands). ``z`` is the planned comparison's statistic signed so that positive favours arm1
    (for "less": positive favours arm1 < arm2). Gives the stage-wise p and the repeated CI when
    `estimate` and `se` are given.
    """
    sizes = plan.look_sizes
    reached = [i for i, s in enumerate(sizes) if s <= n_per_arm]
    if not reached:
        raise ValueError(f"the first look is at {sizes[0]} per arm; {n_per_arm} have completed")
    k = reached[-1]
    bounds = plan.boundaries()
    decision = decide(plan, k + 1, z)
    stopped = decision != "continue"
    rci = None
    if estimate is not None and se is not None and math.isfinite(se) and se > 0:
        low, high = float(estimate - bounds[k] * se), float(estimate + bounds[k] * se)
        if plan.sides == 1:  # one-sided boundary: a one-sided repeated confidence bound
            low, high = (low, math.inf) if plan.comparison[2] == "greater" else (-math.inf, high)
        rci = (low, high)
    notes = []
    if n_per_arm > sizes[k] and k + 1 < len(sizes):
        notes.append(f"{n_per_arm} per arm have completed; the rule is read at the planned look of {sizes[k]}.")
    return LookDecision(
        look=k + 1, n_looks=len(sizes), n_per_arm=sizes[k], z=float(z), efficacy_z=float(bounds[k]),
        futility_z=plan.futility_z if plan.sides == 1 and k + 1 < len(sizes) else None,
        decision=decision, adjusted_p=stagewise_p(plan, k + 1, z) if stopped else None,
        estimate=estimate, rci=rci, notes=notes,
    )


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SequentialOperatingCharacteristics:
    rejection_rate: float
    mc_se: float
    expected_n_per_arm: float
    stop_efficacy: float
    stop_futility: float
    n_sims: int


def run_on_z_paths(plan: SequentialPlan, z_paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the plan to simulated statistics ``z_paths`` of shape (n_sims, n_looks).

    Returns ``(rejected, stop_look)`` (bool, 0-based look index where each study stopped).
    """
    bounds = plan.boundaries()
    n_sims, n_looks = z_paths.shape
    if n_looks != len(bounds):
        raise ValueError(f"z_paths has {n_looks} looks; the plan has {len(bounds)}")
    stat = np.abs(z_paths) if plan.sides == 2 else z_paths
    cross = stat >= bounds[None, :]
    futile = np.zeros_like(cross)
    if plan.futility_z is not None and plan.sides == 1:
        futile[:, :-1] = z_paths[:, :-1] < plan.futility_z
    stops = cross | futile
    stops[:, -1] = True
    stop_look = stops.argmax(axis=1)
    rejected = cross[np.arange(n_sims), stop_look]
    return rejected, stop_look


def null_z_paths(times: Sequence[float] | np.ndarray, n_sims: int, rng: np.random.Generator, drift: float = 0.0) -> np.ndarray:
    """Canonical-joint-distribution z-statistics: Z_k = (B(t_k) + drift t_k) / sqrt(t_k)."""
    t = _check_times(times)
    dt = np.diff(np.concatenate([[0.0], t]))
    b = np.cumsum(rng.normal(0.0, 1.0, (n_sims, len(t))) * np.sqrt(dt)[None, :], axis=1)
    return (b + drift * t[None, :]) / np.sqrt(t)[None, :]


def operating_characteristics(
    plan: SequentialPlan, z_paths: np.ndarray
) -> SequentialOperatingCharacteristics:
    rejected, stop_look = run_on_z_paths(plan, z_paths)
    sizes = np.asarray(plan.look_sizes)
    n_stop = sizes[stop_look]
    bounds = plan.boundaries()
    stat = np.abs(z_paths) if plan.sides == 2 else z_paths
    interim = stop_look < len(bounds) - 1
    eff = interim & (stat[np.arange(len(stop_look)), stop_look] >= bounds[stop_look])
    rate = float(rejected.mean())
    return SequentialOperatingCharacteristics(
        rejection_rate=rate,
        mc_se=math.sqrt(max(rate * (1 - rate), 1e-12) / len(rejected)),
        expected_n_per_arm=float(n_stop.mean()),
        stop_efficacy=float(eff.mean()),
        stop_futility=float((interim & ~eff).mean()),
        n_sims=len(rejected),
    )


# --------------------------------------------------------------------------- a look on real data


@dataclass
class LookReport:
    """Where a study stands against its plan: counts, the decision at the last look reached."""

    plan: SequentialPlan
    counts: dict[str, int]
    decision: LookDecision | None
    next_look: int | None  # participants per arm at the next planned look
    message: str
    boundaries: list[dict]


def boundary_rows(plan: SequentialPlan) -> list[dict]:
    """One row per look: n per arm, information fraction, z boundary, nominal p, alpha spent."""
    bounds = plan.boundaries()
    times = plan.times
    if plan.sides == 1:
        cumulative = spending(plan.spending, times, plan.alpha)
        nominal = stats.norm.sf(bounds)
    else:
        cumulative = 2 * spending(plan.spending, times, plan.alpha / 2)
        nominal = 2 * stats.norm.sf(bounds)
    return [
        {"look": k + 1, "n_per_arm": n, "fraction": float(t), "efficacy_z": float(c), "nominal_p": float(p),
         "alpha_spent": float(a), "futility_z": plan.futility_z if plan.sides == 1 and k + 1 < len(bounds) else None}
        for k, (n, t, c, p, a) in enumerate(zip(plan.look_sizes, times, bounds, nominal, cumulative, strict=True))
    ]


def look_statistic(plan: SequentialPlan, trials, n_per_arm: int, *, n_trials: int | None = None) -> tuple[float, float, float]:
    """``(z, estimate, se)`` of the planned comparison on the first `n_per_arm` complete
    participants of each arm (in the frame's order, i.e. enrolment), z signed so that positive
    favours the hypothesised direction (for "two-sided": arm1 > arm2)."""
    import pandas as pd

    from stats import learning, trial_model

    a1, a2, alternative = plan.comparison
    totals = learning.participant_totals(trials, n_trials=n_trials)
    width = int(totals["n_trials"].max()) if n_trials is None else n_trials
    order = {p: i for i, p in enumerate(pd.unique(trials["participant"]))}
    totals = totals[totals["n_trials"] == width].copy()
    totals["order"] = totals["participant"].map(order)
    chosen = pd.concat([totals[totals["arm"] == a].sort_values("order").head(n_per_arm) for a in (a1, a2)])
    sign = -1.0 if alternative == "less" else 1.0
    if plan.statistic == "trial":
        sub = trials[trials["participant"].isin(set(chosen["participant"])) & (trials["trial_index"] < width)]
        fit = trial_model.fit_gee(sub, pairs=[(a1, a2, alternative)], arms=[a2, a1])
        c = fit.contrasts[0]
        return sign * c.z, c.estimate, c.se
    x = chosen.loc[chosen["arm"] == a1, "total_correct"].to_numpy(float)
    y = chosen.loc[chosen["arm"] == a2, "total_correct"].to_numpy(float)
    p = float(stats.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue)
    z = float(stats.norm.isf(p)) if math.isfinite(p) else 0.0
    se = math.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
    return sign * z, float(x.mean() - y.mean()), se


def look_from_trials(plan: SequentialPlan, trials, *, n_trials: int | None = None) -> LookReport:
    """The plan's decision on tidy trials (``participant, arm, trial_index, correct``)."""
    from stats import learning

    a1, a2, _ = plan.comparison
    rows = boundary_rows(plan)
    if len(trials):
        totals = learning.participant_totals(trials, n_trials=n_trials)
        width = int(totals["n_trials"].max()) if n_trials is None else n_trials
        complete = totals[totals["n_trials"] == width]
        counts = {a: int((complete["arm"] == a).sum()) for a in (a1, a2)}
    else:
        counts = {a1: 0, a2: 0}
    n_min = min(counts.values())
    sizes = plan.look_sizes
    reached = [s for s in sizes if s <= n_min]
    upcoming = [s for s in sizes if s > n_min]
    next_look = upcoming[0] if upcoming else None
    if not reached:
        return LookReport(plan, counts, None, next_look,
                          f"Before the first look: it comes when {sizes[0]} participants per arm have completed "
                          f"({a1}: {counts[a1]}, {a2}: {counts[a2]}). Continue.", rows)
    # Every look reached is read in order on its own first n_k per arm: the first that says stop
    # is the decision (a look skipped in real time would have stopped the study there).
    for n_k in reached:
        z, est, se = look_statistic(plan, trials, n_k, n_trials=n_trials)
        decision = evaluate_look(plan, n_k, z, estimate=est, se=se)
        if decision.decision != "continue":
            break
    if n_min > decision.n_per_arm:
        decision.notes[:] = [f"{n_min} per arm have completed; the rule is read at the planned look of "
                             f"{decision.n_per_arm} (each earlier look was read first)."]
    if decision.decision == "continue":
        message = f"Look {decision.look} of {decision.n_looks}: continue to the next look at {next_look} per arm."
    else:
        message = f"Look {decision.look} of {decision.n_looks} reached with {decision.n_per_arm} per arm."
    return LookReport(plan, counts, decision, next_look if decision.decision == "continue" else None, message, rows)
