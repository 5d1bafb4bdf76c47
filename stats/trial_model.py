"""Study A at the trial level: correct ~ arm × trial, reported beside the Welch tests.

The log-odds of a correct answer at 0-based trial t in arm a is β_a + γ_a · t, so γ_a is arm a's
**learning rate** (log-odds per trial) and the arm × trial contrasts γ_a1 - γ_a2 say which arm
learns faster. Two fits, both statsmodels:

- **GEE** (``fit_gee``; ``GEE``, binomial family, logit link, exchangeable working correlation
  within a participant, robust "sandwich" standard errors): the model of the reported intervals
  and tests and of the power simulations (`gee_batch` fits many simulated studies at once).
  Its coefficients are population-averaged.
- **GLMM** (``fit_glmm``; ``BinomialBayesMixedGLM``, variational Bayes): a random intercept and
  slope on trial per participant and a random intercept per stimulus (crossed; when the trials
  carry a ``stimulus`` column). Conditional scale; a check of the GEE conclusions, not the test.

Why GEE, and what leaving stimuli out of it means: docs/DECISIONS.md, "Trial model". The Welch
tests stay the primary, published analysis unless the study pre-registers otherwise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from scipy.special import expit
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from stats.schema import STUDY_A_ARMS, AnalysisInputError, ordered_levels, require_columns

ASSUMPTIONS: tuple[str, ...] = (
    "log-odds of a correct answer are linear in the trial number within each arm "
    "(one learning rate per arm); a curve that flattens late is approximated by a straight line "
    "on the logit scale",
    "participants are independent; the answers of one participant may be correlated in any way "
    "(GEE: exchangeable working correlation with robust standard errors)",
    "answers missing because a participant left early are missing at random given arm and trial "
    "(GEE is valid under missing completely at random; the GLMM under missing at random)",
    "GLMM only: participant intercepts and slopes are normal and independent of each other; "
    "stimulus effects (when recorded) are normal and shared by all arms",
    "the trial-level contrasts are exploratory beside the pre-registered Welch tests unless the "
    "study's plan names the trial model as its primary analysis",
)


@dataclass(frozen=True)
class Contrast:
    """Learning rate of arm1 minus arm2 (log-odds per trial), with a two-sided interval."""

    arm1: str
    arm2: str
    alternative: str
    estimate: float
    se: float
    z: float
    p: float
    ci_low: float
    ci_high: float
    ci_level: float

    @property
    def hypothesis(self) -> str:
        symbol = {"greater": ">", "less": "<", "two-sided": "≠"}[self.alternative]
        return f"rate {self.arm1} {symbol} rate {self.arm2}"

    @property
    def odds_ratio_per_10(self) -> tuple[float, float, float]:
        """exp(10 · difference): how much faster the odds of a correct answer grow per 10 trials."""
        return (math.exp(10 * self.estimate), math.exp(10 * self.ci_low), math.exp(10 * self.ci_high))


@dataclass
class TrialModelFit:
    """One GEE fit: coefficients, per-arm rates, contrasts and curves with bands."""

    arms: list[str]
    reference: str
    coefficients: pd.DataFrame  # term, estimate, se, z, p, ci_low, ci_high
    rates: pd.DataFrame  # arm, rate, se, ci_low, ci_high
    contrasts: list[Contrast]
    curves: pd.DataFrame  # arm, trial, observed, n, fitted, band_low, band_high
    dependence: float  # the exchangeable working correlation
    n_participants: int
    n_answers: int
    params: np.ndarray
    cov: np.ndarray
    param_names: list[str]
    assumptions: tuple[str, ...] = ASSUMPTIONS
    notes: list[str] = field(default_factory=list)


def _prepare(trials: pd.DataFrame, arms: Sequence[str] | None) -> tuple[pd.DataFrame, list[str]]:
    require_columns(trials, ["participant", "arm", "trial_index", "correct"], name="trials")
    data = trials[[c for c in ("participant", "arm", "trial_index", "correct", "stimulus") if c in trials]].copy()
    if data["correct"].isna().any():
        raise AnalysisInputError("trials has missing values in 'correct'")
    present = ordered_levels(data["arm"].astype(str).unique(), STUDY_A_ARMS)
    use = [a for a in (arms or present) if a in present]
    if len(use) < 2:
        raise AnalysisInputError(f"the trial model needs two arms with data; have {present}")
    data = data[data["arm"].isin(use)]
    per_arm = data.groupby("arm")["participant"].nunique()
    short = [a for a in use if per_arm.get(a, 0) < 2]
    if short:
        raise AnalysisInputError(f"the trial model needs 2 participants per arm; {', '.join(short)} have fewer")
    data["arm"] = pd.Categorical(data["arm"].astype(str), categories=use)
    data["correct"] = data["correct"].astype(bool).astype(float)
    data["trial"] = data["trial_index"].astype(float)
    data = data.sort_values(["participant", "trial_index"], kind="stable").reset_index(drop=True)
    return data, use


def _formula(reference: str, common_start: bool, trial: str = "trial") -> str:
    arm = f"C(arm, Treatment(reference={reference!r}))"
    if common_start:
        return f"correct ~ {trial} + {arm}:{trial}"
    return f"correct ~ {arm} * {trial}"


def fit_gee_statsmodels(trials: pd.DataFrame, *, arms: Sequence[str] | None = None, common_start: bool = True):
    """The plain statsmodels GEE fit that `fit_gee` wraps (for checks and for the curious)."""
    data, use = _prepare(trials, arms)
    model = smf.gee(
        _formula(use[0], common_start), groups="participant", data=data,
        family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(maxiter=100), data, use


def _rate_vectors(names: list[str], arms: list[str]) -> dict[str, np.ndarray]:
    """Per arm, the vector c with c'β = that arm's learning rate (trial + interaction)."""
    out = {}
    for arm in arms:
        c = np.zeros(len(names))
        c[names.index("trial")] = 1.0
        if arm != arms[0]:
            c[names.index(f"C(arm, Treatment(reference={arms[0]!r}))[T.{arm}]:trial")] = 1.0
        out[arm] = c
    return out


def _level_vectors(names: list[str], arms: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for arm in arms:
        c = np.zeros(len(names))
        c[names.index("Intercept")] = 1.0
        name = f"C(arm, Treatment(reference={arms[0]!r}))[T.{arm}]"
        if arm != arms[0] and name in names:
            c[names.index(name)] = 1.0
        out[arm] = c
    return out


def one_sided_p(z: float, alternative: str) -> float:
    if alternative == "greater":
        return float(stats.norm.sf(z))
    if alternative == "less":
        return float(stats.norm.cdf(z))
    if alternative == "two-sided":
        return float(2 * stats.norm.sf(abs(z)))
    raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")


def fit_gee(
    trials: pd.DataFrame,
    *,
    pairs: Sequence[tuple[str, str, str]] = (),
    arms: Sequence[str] | None = None,
    ci_level: float = 0.95,
    common_start: bool = True,
) -> TrialModelFit:
    """GEE of correct ~ arm × trial (see the module docstring), with the contrasts of `pairs`.

    `pairs` are planned comparisons ``(arm1, arm2, alternative)``; each gives the learning-rate
    difference arm1 - arm2 with a `ci_level` two-sided interval and a p-value for `alternative`.

    ``common_start=True`` (the default, the tested model): one intercept for all arms, i.e.
    ``correct ~ trial + arm:trial``. Participants are randomised and see no feedback before their
    first answer, so the arms cannot differ at trial 0; fixing that spends no information on
    estimating start differences and makes the rate contrasts about 10-20% more precise (see
    benchmarks/power_sequential.py). ``False`` fits the full ``arm * trial``; its arm main
    effects test the equal-start assumption (`start_check`).
    """
    res, data, use = fit_gee_statsmodels(trials, arms=arms, common_start=common_start)
    names = list(res.model.exog_names)
    params = np.asarray(res.params, dtype=float)
    cov = np.asarray(res.cov_params(), dtype=float)
    zq = float(stats.norm.isf((1 - ci_level) / 2))
    bse = np.sqrt(np.diag(cov))
    coefficients = pd.DataFrame({
        "term": [_pretty(n, use[0]) for n in names], "estimate": params, "se": bse, "z": params / bse,
        "p": 2 * stats.norm.sf(np.abs(params / bse)), "ci_low": params - zq * bse, "ci_high": params + zq * bse,
    })
    rate_c = _rate_vectors(names, use)
    rows = []
    for arm in use:
        c = rate_c[arm]
        est, se = float(c @ params), float(math.sqrt(c @ cov @ c))
        rows.append((arm, est, se, est - zq * se, est + zq * se))
    rates = pd.DataFrame(rows, columns=["arm", "rate", "se", "ci_low", "ci_high"])
    contrasts = []
    for a1, a2, alternative in pairs:
        if a1 not in rate_c or a2 not in rate_c:
            continue
        c = rate_c[a1] - rate_c[a2]
        est, se = float(c @ params), float(math.sqrt(c @ cov @ c))
        z = est / se if se > 0 else float("nan")
        contrasts.append(Contrast(a1, a2, alternative, est, se, z, one_sided_p(z, alternative),
                                  est - zq * se, est + zq * se, ci_level))
    curves = _curves(data, use, names, params, cov, zq)
    return TrialModelFit(
        arms=use, reference=use[0], coefficients=coefficients, rates=rates, contrasts=contrasts,
        curves=curves, dependence=float(np.ravel(res.model.cov_struct.dep_params)[0]),
        n_participants=int(data["participant"].nunique()), n_answers=len(data),
        params=params, cov=cov, param_names=names,
    )


def _pretty(name: str, reference: str) -> str:
    prefix = f"C(arm, Treatment(reference={reference!r}))[T."
    if name.startswith(prefix):
        arm, _, rest = name[len(prefix):].partition("]")
        return f"{arm} − {reference}" + (" × trial" if rest == ":trial" else "")
    return {"Intercept": f"intercept ({reference})", "trial": f"trial ({reference})"}.get(name, name)


def _curves(data, arms, names, params, cov, zq) -> pd.DataFrame:
    level_c, rate_c = _level_vectors(names, arms), _rate_vectors(names, arms)
    observed = data.groupby(["arm", "trial_index"], observed=True)["correct"].agg(["mean", "count"])
    rows = []
    for arm in arms:
        trials = sorted(data.loc[data["arm"] == arm, "trial_index"].unique())
        for t in trials:
            c = level_c[arm] + t * rate_c[arm]
            eta, se = float(c @ params), float(math.sqrt(c @ cov @ c))
            obs = observed.loc[(arm, t)]
            rows.append((arm, int(t) + 1, float(obs["mean"]), int(obs["count"]), float(expit(eta)),
                         float(expit(eta - zq * se)), float(expit(eta + zq * se))))
    return pd.DataFrame(rows, columns=["arm", "trial", "observed", "n", "fitted", "band_low", "band_high"])


@dataclass
class GLMMFit:
    """Posterior means and SDs (variational Bayes) of the GLMM's fixed effects and contrasts."""

    coefficients: pd.DataFrame  # term, mean, sd, ci_low, ci_high (mean ± z · sd)
    contrasts: pd.DataFrame  # arm1, arm2, mean, sd, ci_low, ci_high
    variance_components: pd.DataFrame  # component, sd (posterior mean of the SD)
    has_stimulus: bool


def fit_glmm(
    trials: pd.DataFrame,
    *,
    pairs: Sequence[tuple[str, str, str]] = (),
    arms: Sequence[str] | None = None,
    ci_level: float = 0.95,
    random_slope: bool = True,
    common_start: bool = True,
) -> GLMMFit:
    """BinomialBayesMixedGLM: random intercept (and slope) per participant, random stimulus.

    Fixed effects as in `fit_gee`. ``trial`` is scaled (per 10 trials) inside the fit for
    stable variational estimates and converted back to log-odds per trial.
    """
    data, use = _prepare(trials, arms)
    data["t10"] = data["trial"] / 10.0
    vc = {"participant": "0 + C(participant)"}
    if random_slope:
        vc["slope"] = "0 + C(participant):t10"
    has_stimulus = "stimulus" in data and data["stimulus"].notna().all() and data["stimulus"].nunique() > 1
    if has_stimulus:
        vc["stimulus"] = "0 + C(stimulus)"
    formula = _formula(use[0], common_start, trial="t10")
    model = BinomialBayesMixedGLM.from_formula(formula, vc, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit_vb()
    k = model.k_fep
    names = list(model.exog_names)[:k]
    mean, sd = np.asarray(res.fe_mean), np.asarray(res.fe_sd)
    zq = float(stats.norm.isf((1 - ci_level) / 2))
    coefficients = pd.DataFrame({
        "term": [_pretty(n.replace("t10", "trial"), use[0]) for n in names],
        "mean": mean, "sd": sd, "ci_low": mean - zq * sd, "ci_high": mean + zq * sd,
    })
    # Slopes are per 10 trials of t10: per trial is /10. The posterior covariance between fixed
    # effects is not kept by the VB fit (mean-field), so contrasts combine the SDs as independent.
    rate = {use[0]: (mean[names.index("t10")], sd[names.index("t10")] ** 2, 0.0)}
    for arm in use[1:]:
        i = names.index(f"C(arm, Treatment(reference={use[0]!r}))[T.{arm}]:t10")
        rate[arm] = (mean[names.index("t10")] + mean[i], sd[names.index("t10")] ** 2 + sd[i] ** 2, sd[i] ** 2)
    rows = []
    for a1, a2, _alt in pairs:
        if a1 not in rate or a2 not in rate:
            continue
        if a2 == use[0]:
            est, var = rate[a1][0] - rate[a2][0], rate[a1][2]
        elif a1 == use[0]:
            est, var = rate[a1][0] - rate[a2][0], rate[a2][2]
        else:
            est, var = rate[a1][0] - rate[a2][0], rate[a1][2] + rate[a2][2]
        est, s = est / 10, math.sqrt(var) / 10
        rows.append((a1, a2, est, s, est - zq * s, est + zq * s))
    contrasts = pd.DataFrame(rows, columns=["arm1", "arm2", "mean", "sd", "ci_low", "ci_high"])
    vc_names = list(model.vcp_names)
    components = pd.DataFrame({"component": vc_names, "sd": np.exp(np.asarray(res.vcp_mean))})
    return GLMMFit(coefficients=coefficients, contrasts=contrasts, variance_components=components,
                   has_stimulus=bool(has_stimulus))


@dataclass(frozen=True)
class StartCheck:
    """Do the arms differ at trial 0? (Wald test of the full model's arm main effects.)"""

    chi2: float
    df: int
    p: float
    differences: dict[str, tuple[float, float, float]]  # arm: (log-odds vs reference, CI low, high)


def start_check(trials: pd.DataFrame, *, arms: Sequence[str] | None = None, ci_level: float = 0.95) -> StartCheck:
    """The equal-start assumption of the common-start model, tested with the full model."""
    res, _, use = fit_gee_statsmodels(trials, arms=arms, common_start=False)
    names = list(res.model.exog_names)
    idx = [names.index(f"C(arm, Treatment(reference={use[0]!r}))[T.{a}]") for a in use[1:]]
    params = np.asarray(res.params)[idx]
    cov = np.asarray(res.cov_params())[np.ix_(idx, idx)]
    chi2 = float(params @ np.linalg.solve(cov, params))
    zq = float(stats.norm.isf((1 - ci_level) / 2))
    se = np.sqrt(np.diag(cov))
    diffs = {a: (float(b), float(b - zq * e), float(b + zq * e)) for a, b, e in zip(use[1:], params, se, strict=True)}
    return StartCheck(chi2=chi2, df=len(idx), p=float(stats.chi2.sf(chi2, len(idx))), differences=diffs)


# --------------------------------------------------------------------------- simulations


def design_matrix(arm: np.ndarray, n_trials: int, *, common_start: bool = True) -> np.ndarray:
    """The design for a 0/1 arm indicator per participant: (N, T, 3) [1, trial, arm · trial]
    with a common start, else (N, T, 4) [1, arm, trial, arm · trial]."""
    arm = np.asarray(arm, dtype=float)
    t = np.arange(n_trials, dtype=float)
    cols = [np.ones((len(arm), n_trials))]
    if not common_start:
        cols.append(np.broadcast_to(arm[:, None], (len(arm), n_trials)))
    cols += [np.broadcast_to(t[None, :], (len(arm), n_trials)), arm[:, None] * t[None, :]]
    return np.stack(cols, axis=2)


def gee_batch(
    y: np.ndarray, x: np.ndarray, *, max_iter: int = 50, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """statsmodels' GEE (logit, exchangeable, robust covariance) for many studies at once.

    `y` is (S, N, T) 0/1 answers of S simulated studies of N participants with T trials each, all
    with the same (N, T, p) design `x`. Returns ``(params (S, p), robust cov (S, p, p),
    dependence (S,))``. The estimator is statsmodels' (same estimating equations, the same
    moment estimators of scale and exchangeable correlation with ddof = p), so the results equal
    ``sm.GEE(...).fit()`` to its convergence tolerance (tests/stats/test_trial_model.py checks).
    Equal cluster sizes only: the closed-form inverse of the exchangeable matrix is what makes it
    fast.
    """
    y = np.asarray(y, dtype=float)
    s_n, n, t = y.shape
    p = x.shape[2]
    n_obs, n_pairs = n * t, n * t * (t - 1) / 2
    beta = np.zeros((s_n, p))
    rho = np.zeros(s_n)
    for _ in range(max_iter):
        eta = np.einsum("ntp,sp->snt", x, beta)
        mu = expit(eta)
        a = np.sqrt(np.clip(mu * (1 - mu), 1e-10, None))
        r = (y - mu) / a  # Pearson residuals
        e = a[..., None] * x[None]  # sqrt(v) X  (S, N, T, p)
        c1 = 1.0 / (1.0 - rho)
        c2 = rho / (1.0 + (t - 1) * rho)
        u = e.sum(axis=2)  # (S, N, p)
        rs = r.sum(axis=2)  # (S, N)
        bread = c1[:, None, None] * (
            np.einsum("sntp,sntq->spq", e, e) - c2[:, None, None] * np.einsum("snp,snq->spq", u, u)
        )
        score = c1[:, None] * (np.einsum("sntp,snt->sp", e, r) - c2[:, None] * np.einsum("snp,sn->sp", u, rs))
        step = np.linalg.solve(bread, score[..., None])[..., 0]
        beta = beta + step
        # Dependence update at the new beta (statsmodels' Exchangeable.update).
        mu = expit(np.einsum("ntp,sp->snt", x, beta))
        r = (y - mu) / np.sqrt(np.clip(mu * (1 - mu), 1e-10, None))
        ssr = (r * r).sum(axis=(1, 2))
        scale = ssr / (n_obs - p)
        pair_sum = ((r.sum(axis=2) ** 2 - (r * r).sum(axis=2)) / 2).sum(axis=1) / scale
        rho = np.clip(pair_sum / (n_pairs - p), -1.0 / (t - 1) + 1e-6, 1 - 1e-6)
        if np.max(np.abs(step)) < tol:
            break
    eta = np.einsum("ntp,sp->snt", x, beta)
    mu = expit(eta)
    a = np.sqrt(np.clip(mu * (1 - mu), 1e-10, None))
    r = (y - mu) / a
    e = a[..., None] * x[None]
    c1 = 1.0 / (1.0 - rho)
    c2 = rho / (1.0 + (t - 1) * rho)
    u = e.sum(axis=2)
    bread = c1[:, None, None] * (
        np.einsum("sntp,sntq->spq", e, e) - c2[:, None, None] * np.einsum("snp,snq->spq", u, u)
    )
    g = c1[:, None, None] * (np.einsum("sntp,snt->snp", e, r) - c2[:, None, None] * u * r.sum(axis=2)[..., None])
    meat = np.einsum("snp,snq->spq", g, g)
    inv = np.linalg.inv(bread)
    cov = inv @ meat @ inv
    return beta, cov, rho


def interaction_z(
    y: np.ndarray, arm: np.ndarray, *, common_start: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """For simulated studies (S, N, T) of two arms (0/1 per participant): the arm × trial
    coefficient (arm 1's rate minus arm 0's) and its robust z, by `gee_batch`."""
    beta, cov, _ = gee_batch(y, design_matrix(arm, y.shape[2], common_start=common_start))
    est = beta[:, -1]
    se = np.sqrt(cov[:, -1, -1])
    return est, est / se
