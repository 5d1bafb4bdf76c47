"""Do the automatic metrics predict people? An item-level model of a human outcome on the assets' metrics.

The question Nguyen, Kim & Nguyen asked ("The effectiveness of feature attribution methods and
its correlation with automatic evaluation scores", NeurIPS 2021: the automatic scores of
attribution maps correlated poorly with how much the maps helped people). They correlated
method-level aggregates; here the question is asked per answer, on every study: a model of the
human outcome of each participant × item (correct or not, or a rating) on the metrics stored
with the asset that participant saw (APEM score, ε⁻/ε⁺, morph size, gate numbers...), with
participant and item effects. The answer is each metric's coefficient with its interval.

Model, and why this one: a linear model of the outcome on the metrics (a linear probability
model for a binary outcome), fitted by OLS, with **two-way cluster-robust standard errors by
participant and by item** (Cameron, Gelbach & Miller, J. Bus. Econ. Stat. 2011; statsmodels
``cov_type="cluster"`` with two group columns) and t intervals on min(#participants, #items) - 1
degrees of freedom. This is GEE with an independence working correlation, clustered both ways.

- Participant *and* item effects matter: the metrics vary between items, and items differ in
  ways no metric captures. A model clustered by participant only (plain GEE by participant)
  treats items as fixed and gives intervals that are far too narrow for item-level predictors
  (`tests/stats/protocols/test_metrics_people.py` checks that its coverage falls short of the
  two-way intervals'). ``clustering="participant"`` is kept for that comparison.
- A linear model's coefficient is the same averaged over people as for each person, and reads
  directly as "percentage points of accuracy per unit of the metric". A logistic mixed model's
  coefficients are conditional on the random effects and cannot be compared with a population
  number without integrating them out.
- statsmodels' ``BinomialBayesMixedGLM`` (variational Bayes) gives posterior standard
  deviations, not frequentist intervals, and VB is known to understate them; ``MixedLM`` with
  crossed participant and item effects needs one all-covering group with variance components
  (dense, slow: power by simulation would take minutes). Cluster-robust OLS takes milliseconds.
- The two-way covariance is a difference of covariances and can fail to be positive semi-definite
  in a finite sample; `_two_way_se` then repairs it as CGM recommend (see there).
- Caveat: cluster-robust errors are biased downwards with few clusters; at 20 items the t(G-1)
  interval is still a little narrow. Coverage of the planted APEM slope in 200 simulated studies
  (`MetricsPlan`, 45 participants): two-way 0.90 at 20 items and 0.94 at 60; clustered by
  participant only, 0.75 and 0.81.

Input frame (long format, one row per participant × item, the phase whose answer is the outcome):

``participant``, ``item``, the outcome column (bool or 0/1 for correct, or a numeric rating)
and one numeric column per metric; optionally categorical columns to adjust for (``arm``).

Example::

    frame = simulate_participants(MetricsPlan(), seed=1)
    model = fit(frame, outcome="correct", metrics=["apem", "morph_size"])
    model.coefficients[["metric", "coef", "ci_low", "ci_high", "per_sd"]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from stats.protocols.estimates import Estimate, ProtocolPower, power_by_simulation
from stats.protocols.schema import ITEM, PARTICIPANT, require_frame
from stats.schema import AnalysisInputError

CORRECT = "correct"
RATING = "rating"
CLUSTERINGS: tuple[str, ...] = ("two-way", "participant")

#: Nguyen et al. fitted no item-level model, so no paper gives this model's n. Power is computed
#: at the dissertation's Study A (the demo): 3 arms × 15 participants, 20 items each.
PAPER_N_PARTICIPANTS = 45
PAPER_N_ITEMS = 20


@dataclass(frozen=True)
class MetricsModel:
    """``coefficients``: one row per metric: ``coef`` (outcome units per metric unit), ``se``,
    ``ci_low``, ``ci_high``, ``p_value`` (two-sided t), ``per_sd`` (coef × the metric's SD)
    and its interval ``per_sd_low``, ``per_sd_high``.
    """

    coefficients: pd.DataFrame
    outcome: str
    clustering: str
    n_obs: int
    n_participants: int
    n_items: int
    df: int
    level: float

    def coefficient(self, metric: str) -> Estimate:
        row = self.coefficients.set_index("metric").loc[metric]
        return Estimate(float(row["coef"]), float(row["ci_low"]), float(row["ci_high"]), self.n_obs,
                        f"OLS, {self.clustering} cluster-robust SE, t({self.df})", float(row["p_value"]),
                        self.level)


def fit(
    frame: pd.DataFrame,
    *,
    outcome: str,
    metrics: Sequence[str],
    adjust_for: Sequence[str] = (),
    clustering: str = "two-way",
    level: float = 0.95,
) -> MetricsModel:
    """The item-level model of `outcome` on `metrics` (plus dummies of `adjust_for`).

    Rows with a missing outcome or metric are dropped. Raises `AnalysisInputError` for a
    malformed frame, a metric without variation, or too few participants or items.
    """
    if clustering not in CLUSTERINGS:
        raise ValueError(f"clustering must be one of {CLUSTERINGS}")
    metrics = list(metrics)
    if not metrics:
        raise AnalysisInputError("name at least one metric")
    require_frame(frame, [PARTICIPANT, ITEM, outcome, *metrics, *adjust_for], name="metrics frame")
    data = frame.dropna(subset=[outcome, *metrics])
    y_raw = data[outcome]
    y = y_raw.astype(float) if y_raw.dtype == bool else pd.to_numeric(y_raw, errors="coerce")
    if y.isna().any():
        raise AnalysisInputError(f"outcome {outcome!r} must be numeric or boolean")
    x = data[metrics].apply(pd.to_numeric, errors="coerce")
    if x.isna().any().any():
        raise AnalysisInputError(f"metrics {metrics} must be numeric")
    flat = [m for m in metrics if x[m].std() == 0 or not np.isfinite(x[m].std())]
    if flat:
        raise AnalysisInputError(f"metric(s) {flat} do not vary: no slope can be estimated")
    n_p, n_i = int(data[PARTICIPANT].nunique()), int(data[ITEM].nunique())
    if min(n_p, n_i) < 3:
        raise AnalysisInputError(f"need at least 3 participants and 3 items, have {n_p} and {n_i}")
    design = x
    if adjust_for:
        dummies = pd.get_dummies(data[list(adjust_for)].astype(str), drop_first=True, dtype=float)
        design = pd.concat([x, dummies], axis=1)
    design = sm.add_constant(design, has_constant="add")
    if clustering == "two-way":
        groups = np.column_stack([pd.factorize(data[PARTICIPANT])[0], pd.factorize(data[ITEM])[0]])
        df = min(n_p, n_i) - 1
    else:
        groups = pd.factorize(data[PARTICIPANT])[0]
        df = n_p - 1
    model = sm.OLS(y.to_numpy(), design.to_numpy())
    res = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    bse = np.asarray(res.bse, dtype=float)
    if clustering == "two-way":
        one_way = [np.asarray(model.fit(cov_type="cluster", cov_kwds={"groups": groups[:, j]}).bse, dtype=float)
                   for j in range(2)]
        bse = _two_way_se(np.asarray(res.cov_params(), dtype=float), one_way)
    crit = float(stats.t.ppf(0.5 + level / 2, df))
    rows = []
    for k, m in enumerate(metrics, start=1):
        coef, se = float(res.params[k]), float(bse[k])
        sd = float(x[m].std())
        p = float(2 * stats.t.sf(abs(coef / se), df)) if se > 0 else float("nan")
        rows.append({"metric": m, "coef": coef, "se": se, "ci_low": coef - crit * se, "ci_high": coef + crit * se,
                     "p_value": p, "per_sd": coef * sd, "per_sd_low": (coef - crit * se) * sd,
                     "per_sd_high": (coef + crit * se) * sd})
    return MetricsModel(coefficients=pd.DataFrame(rows), outcome=outcome, clustering=clustering, n_obs=len(data),
                        n_participants=n_p, n_items=n_i, df=df, level=level)


def _two_way_se(cov: np.ndarray, one_way: Sequence[np.ndarray]) -> np.ndarray:
    """Standard errors from the two-way cluster-robust covariance V_p + V_i - V_pi.

    That difference need not be positive semi-definite in a finite sample (Cameron, Gelbach &
    Miller 2011, §2.3); statsmodels then returns NaN for a negative variance. As CGM recommend, a
    matrix that is not PSD has its negative eigenvalues set to 0; and since that repair can leave a
    variance near 0, each error is then at least the larger of the two one-way clustered errors
    (conservative). A PSD matrix is used as it is, so the usual case is untouched.
    """
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    if np.all(np.isfinite(values)) and values.min() >= 0:
        return np.sqrt(np.diag(cov))
    repaired = (vectors * np.clip(values, 0, None)) @ vectors.T
    floor = np.nanmax(np.vstack(one_way), axis=0)
    return np.maximum(np.sqrt(np.clip(np.diag(repaired), 0, None)), floor)


# --------------------------------------------------------------------------- synthetic participants


@dataclass(frozen=True)
class MetricsPlan:
    """Synthetic answers whose probability of being correct depends on APEM by a known amount.

    Each item j has metrics apem_j ~ Uniform(0, 1) and morph_size_j ~ Uniform(0, 1) (a metric
    with no effect), and a difficulty v_j ~ Uniform(-item_spread, item_spread) that no metric
    explains; participant i has a skill u_i ~ Uniform(-participant_spread, participant_spread).
    P(correct_ij) = base + apem_slope · (apem_j - 0.5) + u_i + v_j (all on the probability scale,
    inside (0, 1) for the defaults, so the planted slope is exactly ``apem_slope``).
    ``outcome="rating"``: rating = 1 + Binomial(4, P), a 1-5 rating with slope 4 · apem_slope.
    """

    n_participants: int = PAPER_N_PARTICIPANTS
    n_items: int = PAPER_N_ITEMS
    base: float = 0.6
    apem_slope: float = 0.3
    morph_slope: float = 0.0
    participant_spread: float = 0.1
    item_spread: float = 0.15
    outcome: str = CORRECT
    metrics: tuple[str, ...] = field(default=("apem", "morph_size"))

    def planted_slope(self, metric: str = "apem") -> float:
        slope = self.apem_slope if metric == "apem" else self.morph_slope
        return 4 * slope if self.outcome == RATING else slope


def simulate_participants(plan: MetricsPlan, *, seed: int | np.random.Generator = 0) -> pd.DataFrame:
    """Columns participant, item, apem, morph_size and ``plan.outcome`` (correct: bool; rating: 1-5)."""
    rng = np.random.default_rng(seed)
    reach = abs(plan.apem_slope) / 2 + abs(plan.morph_slope) / 2 + plan.participant_spread + plan.item_spread
    if plan.base - reach < 0 or plan.base + reach > 1:
        raise ValueError("the plan's probabilities leave [0, 1]")
    if plan.outcome not in (CORRECT, RATING):
        raise ValueError(f"outcome must be {CORRECT!r} or {RATING!r}")
    p_n, i_n = plan.n_participants, plan.n_items
    apem = rng.uniform(size=i_n)
    morph = rng.uniform(size=i_n)
    v = rng.uniform(-plan.item_spread, plan.item_spread, i_n)
    u = rng.uniform(-plan.participant_spread, plan.participant_spread, p_n)
    prob = (plan.base + plan.apem_slope * (apem - 0.5) + plan.morph_slope * (morph - 0.5) + v)[None, :] + u[:, None]
    if plan.outcome == CORRECT:
        y: np.ndarray = rng.uniform(size=(p_n, i_n)) < prob
    else:
        y = 1 + rng.binomial(4, prob)
    return pd.DataFrame({PARTICIPANT: np.repeat([f"p{i}" for i in range(p_n)], i_n),
                         ITEM: np.tile([f"i{j}" for j in range(i_n)], p_n),
                         "apem": np.tile(apem, p_n), "morph_size": np.tile(morph, p_n), plan.outcome: y.ravel()})


def power_at_paper_n(*, plan: MetricsPlan | None = None, n_sims: int = 300, alpha: float = 0.05,
                     seed: int = 0) -> ProtocolPower:
    """Power of the APEM coefficient (two-way clustered t-test, two-sided) at the demo's 45
    participants × 20 items (or `plan`'s design)."""
    plan = plan or MetricsPlan()

    def one(rng: np.random.Generator) -> Estimate:
        f = simulate_participants(plan, seed=rng)
        return fit(f, outcome=plan.outcome, metrics=list(plan.metrics)).coefficient("apem")

    return power_by_simulation(one, planted=plan.planted_slope("apem"), protocol="metrics-people",
                               measure=f"{plan.outcome} per unit APEM",
                               design=f"{plan.n_participants} participants × {plan.n_items} items",
                               n_sims=n_sims, alpha=alpha, seed=seed)
