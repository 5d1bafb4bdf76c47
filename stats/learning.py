"""Study A (dissertation ch. 5): learning to predict the classifier, per feedback arm.

Input: tidy trials, one row per answered trial, with columns

    participant (str), arm (str), trial_index (int, 0-based), correct (bool)

plus, for `rescore`, ``choice``, ``true_label`` and ``model_prediction``. Each participant
belongs to one arm and answers trials 0, 1, ..., k-1 (a participant who left early has a
shorter prefix; a gap in the indices is refused as corrupt data).

What the dissertation reports and where it is computed here:

- Figure 5.8, cumulative correct answers per trial, mean and SD per arm: `learning_curve`.
- Table 5.2, correct answers after 20 trials, mean and SD per arm: `final_counts`.
- Table 5.3, pairwise one-sided Welch t-tests: `pairwise_welch` (raw data) or
  `pairwise_welch_from_summary` (from a Table 5.2-like summary).
- Figure 5.9, distribution of the 5-level feedback rating per arm: `rating_distribution`.

Standard deviations are sample SDs (ddof=1) throughout. Table 5.2 uses them too: its numbers
are reproduced only with ddof=1 (e.g. GCAM: 15 integer counts summing to 155 with sum of squares
1645 give SD 1.759329 with ddof=1 and 1.699673 with ddof=0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.meta_analysis import effectsize_smd
from statsmodels.stats.multitest import multipletests

from stats.schema import (
    FEEDBACK_RATING_LABELS,
    STUDY_A_ARMS,
    Alternative,
    AnalysisInputError,
    likert_distribution,
    ordered_levels,
    require_columns,
)

CIMethod = Literal["noncentral_t", "normal"]

#: The three one-sided comparisons of Table 5.3, as (arm1, arm2, alternative): "greater" tests
#: H1: mean(arm1) > mean(arm2).
DISSERTATION_PAIRS: tuple[tuple[str, str, Alternative], ...] = (
    ("CDeepEx", "Control", "greater"),
    ("GCAM", "Control", "greater"),
    ("CDeepEx", "GCAM", "greater"),
)


def dissertation_table_5_2(n_per_arm: int = 15) -> pd.DataFrame:
    """Table 5.2 as printed (columns ``arm, n, mean, sd``), with the stated n = 15 per arm.

    The Control mean 9.714286 = 136/14 cannot be the mean of 15 integer counts (those are
    multiples of 1/15: 9.6667 or 9.7333), and its SD fits 14 counts with ddof=1 exactly
    (sum of squares 1356). So Control probably had 14 participants; pass ``n_per_arm`` or edit
    the frame to explore that. The published Table 5.3 p-values use 15.
    """
    return pd.DataFrame(
        {
            "arm": ["Control", "GCAM", "CDeepEx"],
            "n": [n_per_arm] * 3,
            "mean": [9.714286, 10.333333, 10.666667],
            "sd": [1.637473, 1.759329, 1.588650],
        }
    )


_ALTERNATIVES = ("greater", "less", "two-sided")
_SYMBOL = {"greater": ">", "less": "<", "two-sided": "≠"}


# --------------------------------------------------------------------------- trial data


def _check_trials(trials: pd.DataFrame) -> pd.DataFrame:
    require_columns(trials, ["participant", "arm", "trial_index", "correct"], name="trials")
    arms_per_participant = trials.groupby("participant")["arm"].nunique()
    mixed = arms_per_participant[arms_per_participant > 1].index.tolist()
    if mixed:
        raise AnalysisInputError(f"participant(s) {mixed[:5]} appear in more than one arm")
    if trials.duplicated(["participant", "trial_index"]).any():
        dup = trials.loc[trials.duplicated(["participant", "trial_index"]), "participant"]
        raise AnalysisInputError(
            f"duplicate trial_index for participant(s) {dup.unique()[:5].tolist()}"
        )
    if trials["correct"].isna().any():
        raise AnalysisInputError("trials has missing values in 'correct'")
    ordered = trials.sort_values(["participant", "trial_index"], kind="stable")
    position = ordered.groupby("participant").cumcount()
    gaps = ordered.loc[ordered["trial_index"].to_numpy() != position.to_numpy(), "participant"]
    if not gaps.empty:
        raise AnalysisInputError(
            f"trial_index must run 0, 1, 2, ... per participant; gaps for {gaps.unique()[:5].tolist()}"
        )
    return ordered


def rescore(
    trials: pd.DataFrame, *, reference: Literal["true_label", "model_prediction"]
) -> pd.DataFrame:
    """Return a copy of `trials` whose ``correct`` is ``choice == trials[reference]``.

    The study measures how well people learn to predict the network, so "correct" can be the
    ground-truth label or the model's prediction (in the dissertation y_true is the label the
    classifier produced). Needs columns ``choice`` and `reference`.
    """
    if reference not in ("true_label", "model_prediction"):
        raise ValueError(f"reference must be 'true_label' or 'model_prediction', not {reference!r}")
    require_columns(trials, ["choice", reference], name="trials")
    out = trials.copy()
    out["correct"] = (out["choice"] == out[reference]).astype(bool)
    return out


def cumulative_correct(trials: pd.DataFrame) -> pd.DataFrame:
    """Cumulative number of correct answers per participant after each trial.

    Returns columns ``participant, arm, trial_index, trial, correct, cumulative_correct``
    where ``trial = trial_index + 1`` (the number of trials answered so far).
    """
    ordered = _check_trials(trials)
    out = ordered[["participant", "arm", "trial_index", "correct"]].copy()
    out["correct"] = out["correct"].astype(bool)
    out["trial"] = out["trial_index"].astype(int) + 1
    out["cumulative_correct"] = out.groupby("participant")["correct"].cumsum().astype(int)
    return out[
        ["participant", "arm", "trial_index", "trial", "correct", "cumulative_correct"]
    ].reset_index(drop=True)


def _arm_order(arms) -> list[str]:
    return ordered_levels(arms, STUDY_A_ARMS)


def learning_curve(trials: pd.DataFrame) -> pd.DataFrame:
    """Figure 5.8 as a table: cumulative correct answers at each trial, per arm.

    Returns columns ``arm, trial, n, mean, sd`` (``trial`` is 1-based, ``n`` the participants
    who reached that trial, ``sd`` the sample SD, NaN when n < 2), arms in the order
    Control, GCAM, CDeepEx, then any others alphabetically.
    """
    cum = cumulative_correct(trials)
    table = (
        cum.groupby(["arm", "trial"])["cumulative_correct"]
        .agg(n="count", mean="mean", sd=lambda s: s.std(ddof=1))
        .reset_index()
    )
    table["arm"] = pd.Categorical(table["arm"], _arm_order(table["arm"]), ordered=True)
    table = table.sort_values(["arm", "trial"]).reset_index(drop=True)
    table["arm"] = table["arm"].astype(str)
    return table


def participant_totals(trials: pd.DataFrame, *, n_trials: int | None = None) -> pd.DataFrame:
    """Correct answers per participant among trials ``0 .. n_trials-1``.

    Returns columns ``participant, arm, n_trials, total_correct`` where ``n_trials`` is how many
    of those trials the participant answered. `n_trials` defaults to the longest sequence in
    the data.
    """
    ordered = _check_trials(trials)
    if n_trials is None:
        n_trials = int(ordered["trial_index"].max()) + 1 if len(ordered) else 0
    window = ordered[ordered["trial_index"] < n_trials]
    totals = (
        window.groupby(["participant", "arm"])["correct"]
        .agg(n_trials="count", total_correct=lambda s: int(s.astype(bool).sum()))
        .reset_index()
    )
    # Participants with no trial in the window still exist: keep them with zero trials.
    everyone = ordered[["participant", "arm"]].drop_duplicates()
    totals = everyone.merge(totals, on=["participant", "arm"], how="left")
    totals[["n_trials", "total_correct"]] = (
        totals[["n_trials", "total_correct"]].fillna(0).astype(int)
    )
    return totals.sort_values(["arm", "participant"]).reset_index(drop=True)


def final_counts(trials: pd.DataFrame, *, n_trials: int | None = None) -> pd.DataFrame:
    """Table 5.2: correct answers after `n_trials` trials, mean and SD per arm.

    Only participants who answered all `n_trials` trials count (a shorter sequence has no
    value "after n trials"); their number is reported in ``n_short``. Returns columns
    ``arm, n, mean, sd, n_short``.
    """
    totals = participant_totals(trials, n_trials=n_trials)
    if n_trials is None:
        n_trials = int(totals["n_trials"].max()) if len(totals) else 0
    complete = totals["n_trials"] == n_trials
    table = (
        totals[complete]
        .groupby("arm")["total_correct"]
        .agg(n="count", mean="mean", sd=lambda s: s.std(ddof=1))
    )
    short = totals[~complete].groupby("arm").size().rename("n_short")
    arms = _arm_order(totals["arm"])
    table = table.reindex(arms).join(short).fillna({"n": 0, "n_short": 0})
    table[["n", "n_short"]] = table[["n", "n_short"]].astype(int)
    return table.rename_axis("arm").reset_index()[["arm", "n", "mean", "sd", "n_short"]]


# --------------------------------------------------------------------------- tests


@dataclass(frozen=True)
class WelchTest:
    """One Welch t-test of arm1 against arm2 with Hedges' g.

    ``alternative`` follows scipy: "greater" tests H1: mean1 > mean2. ``df`` is the
    Welch-Satterthwaite df. ``hedges_g`` is (mean1 - mean2) / pooled SD times the small-sample
    correction J = 1 - 3 / (4 (n1 + n2) - 9); the pooled SD assumes equal variances even though
    the test does not, as is usual. ``g_ci_low/high`` is a two-sided ``ci_level`` interval for
    the standardised difference whatever the test's direction; ``ci_method`` says how.
    """

    arm1: str
    arm2: str
    alternative: str
    n1: int
    mean1: float
    sd1: float
    n2: int
    mean2: float
    sd2: float
    t: float
    df: float
    p: float
    hedges_g: float
    g_ci_low: float
    g_ci_high: float
    ci_level: float
    ci_method: str

    @property
    def hypothesis(self) -> str:
        """The alternative hypothesis as text, e.g. ``"CDeepEx > Control"``."""
        return f"{self.arm1} {_SYMBOL[self.alternative]} {self.arm2}"

    def as_dict(self) -> dict:
        return {"hypothesis": self.hypothesis, **asdict(self)}


def welch_df(sd1: float, n1: int, sd2: float, n2: int) -> float:
    """Welch-Satterthwaite degrees of freedom from sample SDs and sizes.

    df = (s1²/n1 + s2²/n2)² / ((s1²/n1)² / (n1 - 1) + (s2²/n2)² / (n2 - 1)).
    scipy's ``ttest_ind_from_stats`` uses this df but does not return it.
    """
    v1, v2 = sd1**2 / n1, sd2**2 / n2
    return float((v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1)))


def hedges_g(
    mean1: float,
    sd1: float,
    n1: int,
    mean2: float,
    sd2: float,
    n2: int,
    *,
    ci_level: float = 0.95,
    ci_method: CIMethod = "noncentral_t",
) -> tuple[float, float, float]:
    """Hedges' g of group 1 minus group 2 and a two-sided confidence interval.

    g comes from statsmodels' ``effectsize_smd`` (Cohen's d with pooled SD times
    J = 1 - 3 / (4 (n1 + n2) - 9), Hedges 1981). Interval methods:

    - ``"noncentral_t"`` (default, exact under normality with equal variances; Steiger &
      Fouladi 1997): find the noncentrality parameters λ for which the pooled-variance t statistic
      t = d / sqrt(1/n1 + 1/n2) sits at the upper and lower (1 - level)/2 tails of a noncentral
      t with n1 + n2 - 2 df; the limits are λ · sqrt(1/n1 + 1/n2) · J (J applied as in R's
      ``effectsize::hedges_g``, so the interval is on g's scale).
    - ``"normal"``: g ± z · sqrt(var), with statsmodels' large-sample variance
      (n1 + n2)/(n1 n2) + g² / (2 (n1 + n2 - 3.94)) (Hedges & Olkin 1985).

    Returns ``(g, low, high)``.
    """
    if not 0 < ci_level < 1:
        raise ValueError("ci_level must be in (0, 1)")
    nan = float("nan")
    if sd1 == 0 and sd2 == 0:  # no spread: the standardised difference is undefined
        return nan, nan, nan
    g, var_g = effectsize_smd(mean1, sd1, n1, mean2, sd2, n2)
    g, var_g = float(g), float(var_g)
    if not (math.isfinite(g) and math.isfinite(var_g)):
        return g, nan, nan
    tail = (1 - ci_level) / 2
    if ci_method == "normal":
        half = float(stats.norm.isf(tail)) * math.sqrt(var_g)
        return g, g - half, g + half
    if ci_method != "noncentral_t":
        raise ValueError(f"ci_method must be 'noncentral_t' or 'normal', not {ci_method!r}")
    j = 1 - 3 / (4 * (n1 + n2) - 9)
    scale = math.sqrt(1 / n1 + 1 / n2)
    df = n1 + n2 - 2
    t_obs = (g / j) / scale

    def ncp_at(prob: float) -> float:
        # nct.cdf(t_obs; df, ncp) decreases in ncp from 1 to 0; widen the bracket until it
        # straddles prob. scipy returns NaN deep in the tails (e.g. t = 5.2, df = 16,
        # ncp = -5), where the cdf is 1 below t_obs and 0 above it to double precision.
        def f(ncp: float) -> float:
            c = float(stats.nct.cdf(t_obs, df, ncp))
            if math.isnan(c):
                c = 1.0 if ncp < t_obs else 0.0
            return c - prob

        width = 2.0
        while f(t_obs - width) < 0 or f(t_obs + width) > 0:
            width *= 2
        return optimize.brentq(f, t_obs - width, t_obs + width, xtol=1e-10)

    low = float(ncp_at(1 - tail)) * scale * j
    high = float(ncp_at(tail)) * scale * j
    return g, low, high


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, not {alternative!r}")


def _welch_result(
    names: tuple[str, str],
    alternative: Alternative,
    arm1: tuple[float, float, int],
    arm2: tuple[float, float, int],
    res: Any,
    df: float,
    *,
    ci_level: float,
    ci_method: CIMethod,
) -> WelchTest:
    """The :class:`WelchTest` of a scipy result ``res`` on arms ``(mean, sd, n)``, with Hedges' g."""
    (mean1, sd1, n1), (mean2, sd2, n2) = arm1, arm2
    g, low, high = hedges_g(mean1, sd1, n1, mean2, sd2, n2, ci_level=ci_level, ci_method=ci_method)
    return WelchTest(
        arm1=names[0],
        arm2=names[1],
        alternative=alternative,
        n1=int(n1),
        mean1=float(mean1),
        sd1=float(sd1),
        n2=int(n2),
        mean2=float(mean2),
        sd2=float(sd2),
        t=float(res.statistic),
        df=df,
        p=float(res.pvalue),
        hedges_g=g,
        g_ci_low=low,
        g_ci_high=high,
        ci_level=ci_level,
        ci_method=ci_method,
    )


def welch_from_summary(
    mean1: float,
    sd1: float,
    n1: int,
    mean2: float,
    sd2: float,
    n2: int,
    alternative: Alternative = "greater",
    *,
    names: tuple[str, str] = ("group 1", "group 2"),
    ci_level: float = 0.95,
    ci_method: CIMethod = "noncentral_t",
) -> WelchTest:
    """Welch t-test from means, sample SDs (ddof=1) and sizes (scipy ``ttest_ind_from_stats``).

    >>> r = welch_from_summary(10.666667, 1.588650, 15, 9.714286, 1.637473, 15, "greater")
    >>> round(r.p, 4)
    0.0586
    """
    _check_alternative(alternative)
    res = stats.ttest_ind_from_stats(
        mean1, sd1, n1, mean2, sd2, n2, equal_var=False, alternative=alternative
    )
    return _welch_result(
        names,
        alternative,
        (mean1, sd1, n1),
        (mean2, sd2, n2),
        res,
        welch_df(sd1, n1, sd2, n2),
        ci_level=ci_level,
        ci_method=ci_method,
    )


def welch_test(
    x: Sequence[float],
    y: Sequence[float],
    alternative: Alternative = "greater",
    *,
    names: tuple[str, str] = ("x", "y"),
    ci_level: float = 0.95,
    ci_method: CIMethod = "noncentral_t",
) -> WelchTest:
    """Welch t-test on raw values (scipy ``ttest_ind(equal_var=False)``) with Hedges' g."""
    _check_alternative(alternative)
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if len(xs) < 2 or len(ys) < 2:
        raise AnalysisInputError(
            f"a Welch test needs at least 2 values per group; got {len(xs)} ({names[0]}) and "
            f"{len(ys)} ({names[1]})"
        )
    res = stats.ttest_ind(xs, ys, equal_var=False, alternative=alternative)
    m1, s1, m2, s2 = xs.mean(), xs.std(ddof=1), ys.mean(), ys.std(ddof=1)
    return _welch_result(
        names,
        alternative,
        (m1, s1, len(xs)),
        (m2, s2, len(ys)),
        res,
        float(res.df),
        ci_level=ci_level,
        ci_method=ci_method,
    )


@dataclass(frozen=True)
class PairwiseComparison:
    """A family of Welch tests with multiplicity-adjusted p-values.

    ``p_adjusted[i]`` belongs to ``tests[i]``; ``significant`` uses the raw p, and
    ``significant_adjusted`` the adjusted p, both as ``p <= alpha``.
    """

    tests: tuple[WelchTest, ...]
    p_adjusted: tuple[float, ...]
    adjust_method: str
    alpha: float
    note: str

    def to_frame(self) -> pd.DataFrame:
        """One row per test: ``hypothesis, arm1, arm2, alternative, n1, mean1, sd1, n2, mean2,
        sd2, t, df, p, p_adjusted, significant, significant_adjusted, hedges_g, g_ci_low,
        g_ci_high, ci_level, ci_method``."""
        rows = []
        for test, p_adj in zip(self.tests, self.p_adjusted, strict=True):
            row = test.as_dict()
            row["p_adjusted"] = p_adj
            row["significant"] = test.p <= self.alpha
            row["significant_adjusted"] = p_adj <= self.alpha
            rows.append(row)
        columns = [
            "hypothesis",
            "arm1",
            "arm2",
            "alternative",
            "n1",
            "mean1",
            "sd1",
            "n2",
            "mean2",
            "sd2",
            "t",
            "df",
            "p",
            "p_adjusted",
            "significant",
            "significant_adjusted",
            "hedges_g",
            "g_ci_low",
            "g_ci_high",
            "ci_level",
            "ci_method",
        ]
        return pd.DataFrame(rows, columns=columns)


def _family(tests: list[WelchTest], *, alpha: float, adjust: str) -> PairwiseComparison:
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    pvals = [t.p for t in tests]
    if len(tests) > 1:
        _, p_adj, _, _ = multipletests(pvals, alpha=alpha, method=adjust)
        p_adj = tuple(float(p) for p in p_adj)
    else:
        p_adj = tuple(pvals)
    raw_hits = [t.hypothesis for t in tests if t.p <= alpha]
    adj_hits = [t.hypothesis for t, p in zip(tests, p_adj, strict=True) if p <= alpha]
    note = (
        f"{len(tests)} tests within one study (arms are shared between tests). Raw p-values "
        f"control the error rate of each comparison on its own: with {len(tests)} tests at "
        f"alpha = {alpha:g}, the chance of at least one false positive when no effect exists is "
        f"up to {min(1.0, len(tests) * alpha):.2g} (Bonferroni bound). "
        f"The '{adjust}' adjustment (statsmodels multipletests) controls that family-wise error "
        f"rate at {alpha:g}. Significant at p <= {alpha:g}: "
        f"raw {', '.join(raw_hits) or 'none'}; adjusted {', '.join(adj_hits) or 'none'}."
    )
    if len(tests) == 1:
        note = "A single test: no multiplicity adjustment."
    return PairwiseComparison(tuple(tests), p_adj, adjust, alpha, note)


def pairwise_welch(
    totals: pd.DataFrame,
    pairs: Sequence[tuple[str, str, Alternative]] = DISSERTATION_PAIRS,
    *,
    value: str = "total_correct",
    alpha: float = 0.05,
    adjust: str = "holm",
    ci_level: float = 0.95,
    ci_method: CIMethod = "noncentral_t",
) -> PairwiseComparison:
    """Table 5.3 from per-participant values (e.g. `participant_totals`).

    `totals` needs columns ``arm`` and `value`. Each pair is ``(arm1, arm2, alternative)``, the
    direction chosen by the researcher before seeing the data; "greater" tests
    H1: mean(arm1) > mean(arm2). The dissertation counted p <= 0.1 as significant; pass
    ``alpha=0.1`` to follow it. `adjust` is any statsmodels ``multipletests`` method.
    """
    require_columns(totals, ["arm", value], name="totals")
    tests = []
    for arm1, arm2, alternative in pairs:
        x = totals.loc[totals["arm"] == arm1, value].dropna()
        y = totals.loc[totals["arm"] == arm2, value].dropna()
        tests.append(
            welch_test(
                x, y, alternative, names=(arm1, arm2), ci_level=ci_level, ci_method=ci_method
            )
        )
    return _family(tests, alpha=alpha, adjust=adjust)


def pairwise_welch_from_summary(
    summary: pd.DataFrame,
    pairs: Sequence[tuple[str, str, Alternative]] = DISSERTATION_PAIRS,
    *,
    alpha: float = 0.05,
    adjust: str = "holm",
    ci_level: float = 0.95,
    ci_method: CIMethod = "noncentral_t",
) -> PairwiseComparison:
    """Table 5.3 from a Table 5.2-like summary with columns ``arm, n, mean, sd`` (sample SD).

    With the dissertation's Table 5.2 and n = 15 per arm this reproduces Table 5.3 (p = 0.0586,
    0.1635, 0.2952). Note that the Control row (mean 9.714286 = 136/14, SD consistent with 14
    integer counts with sum of squares 1356) looks like it came from 14 participants; with
    n = 14 the two Control p-values would be 0.0620 and 0.1676. The published p-values use 15.
    """
    require_columns(summary, ["arm", "n", "mean", "sd"], name="summary")
    by_arm = summary.set_index("arm")
    tests = []
    for arm1, arm2, alternative in pairs:
        for arm in (arm1, arm2):
            if arm not in by_arm.index:
                raise AnalysisInputError(f"summary has no row for arm {arm!r}")
        a, b = by_arm.loc[arm1], by_arm.loc[arm2]
        tests.append(
            welch_from_summary(
                a["mean"],
                a["sd"],
                int(a["n"]),
                b["mean"],
                b["sd"],
                int(b["n"]),
                alternative,
                names=(arm1, arm2),
                ci_level=ci_level,
                ci_method=ci_method,
            )
        )
    return _family(tests, alpha=alpha, adjust=adjust)


# --------------------------------------------------------------------------- ratings


def rating_distribution(ratings: pd.DataFrame) -> pd.DataFrame:
    """Figure 5.9 as a table: how many participants of each arm chose each rating.

    `ratings` has columns ``participant, arm, rating`` (1..5, see
    `schema.FEEDBACK_RATING_LABELS`); one rating per participant. Returns every arm x level with
    columns ``arm, rating, label, count, share`` (share of the arm's ratings, 0..1).
    """
    require_columns(ratings, ["participant", "arm", "rating"], name="ratings")
    if ratings["participant"].duplicated().any():
        raise AnalysisInputError("ratings has more than one rating for some participant")
    return likert_distribution(
        ratings,
        groups=["arm"],
        value="rating",
        scale=FEEDBACK_RATING_LABELS,
        group_orders={"arm": STUDY_A_ARMS},
    )


def rating_comparison(ratings: pd.DataFrame) -> dict:
    """Do the arms' ratings differ? Kruskal-Wallis H test (scipy ``kruskal``) across arms.

    The dissertation only shows the distributions; this is an added omnibus test suited to an
    ordinal 5-level scale with many ties (scipy corrects H for ties). Returns
    ``{"test", "H", "p", "n_per_arm", "median_per_arm"}``; H and p are NaN with fewer than two
    rated arms or when every rating is identical.
    """
    require_columns(ratings, ["arm", "rating"], name="ratings")
    rated = ratings.dropna(subset=["rating"])
    arms = _arm_order(rated["arm"])
    groups = [rated.loc[rated["arm"] == a, "rating"].astype(float).to_numpy() for a in arms]
    h, p = float("nan"), float("nan")
    if len(groups) >= 2 and rated["rating"].nunique() > 1:
        res = stats.kruskal(*groups)
        h, p = float(res.statistic), float(res.pvalue)
    return {
        "test": "Kruskal-Wallis H (scipy.stats.kruskal, tie-corrected)",
        "H": h,
        "p": p,
        "n_per_arm": {a: len(g) for a, g in zip(arms, groups, strict=True)},
        "median_per_arm": {a: float(np.median(g)) for a, g in zip(arms, groups, strict=True)},
    }
