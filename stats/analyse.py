"""One whole analysis of a study's frames: what the analysis page, the report and the
synthetic-participants command show.

Framework-free like the rest of `stats`: the Django side builds the frames (from the database
or an imported CSV), `analyse` computes the results with the study's analysis settings, and
the Django side presents them. Each section is computed on its own: a section that cannot be
computed (too few participants, malformed data) carries an ``error`` and the others still show.

Analysis settings come from a study's ``config`` (or an imported result set's):

- ``tests``: list of ``[level1, level2, alternative]``, alternative "greater" (H1: level1 >
  level2), "less" or "two-sided". Levels are arms (learning design) or stages (clustering).
  Default: the dissertation's three one-sided tests when the study has its three arms, else
  every pair two-sided; for the clustering design `clustering.DEFAULT_STAGE_PAIRS`.
- ``alpha``: the significance level (default 0.05; the dissertation used 0.1).
- ``exclusions``: the rules of `exclusions.ExclusionRules`.

The exclusion decision may read more than the analysed rows: ``checks`` (`CHECK_COLUMNS`, one
row per attention check, quiz or catch trial, or one row per participant with
``attention_check`` NaN for those without checks) is stacked under the trials (Study A) or the
batches (Study B) for `apply_exclusions` only. The learning and clustering analyses get the kept
trials, groupings, ratings...; never a check row.
- ``n_trials``: the number of trials "after which" Table 5.2 counts (default: the data's longest
  sequence).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import cast, get_args

import pandas as pd
from statsmodels.stats.power import TTestPower
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from stats import clustering, learning, power
from stats.exclusions import ExclusionReport, ExclusionRules, apply_exclusions
from stats.schema import (
    STUDY_A_ARMS,
    STUDY_B_STAGES,
    Alternative,
    AnalysisInputError,
    Pair,
    ordered_levels,
)

ALTERNATIVES: tuple[Alternative, ...] = get_args(Alternative)
SYMBOLS = {"greater": ">", "less": "<", "two-sided": "≠"}
LEARNING, CLUSTERING = "learning", "clustering"
#: Rules that read server-stamped times (meaningless for bots that answer at once).
TIMING_RULES = ("min_response_ms", "max_fast_share", "min_total_seconds", "max_total_seconds")
#: The columns of the ``checks`` frame (`analyse`): what the exclusion rules read of a check.
CHECK_COLUMNS = ["participant", "arm", "attention_check", "completed", "total_seconds", "rejected_reason"]
#: Every column an exclusion rule reads (`stats.exclusions`).
RULE_COLUMNS = [*CHECK_COLUMNS, "trial_index", "response_ms"]


@dataclass(frozen=True)
class AnalysisSettings:
    pairs: tuple[Pair, ...]
    alpha: float
    exclusions: dict
    n_trials: int | None = None
    power_target: float = 0.8


def default_pairs(design: str, levels: Sequence[str]) -> tuple[Pair, ...]:
    if design == CLUSTERING:
        return clustering.DEFAULT_STAGE_PAIRS
    if set(STUDY_A_ARMS) <= set(levels):
        return learning.DISSERTATION_PAIRS
    return tuple((b, a, "two-sided") for a, b in combinations(levels, 2))


def settings_from_config(
    config: Mapping | None, *, design: str, levels: Sequence[str], n_trials: int | None = None
) -> tuple[AnalysisSettings, list[str]]:
    """Validate the analysis part of a configuration; returns ``(settings, problems)``.

    A malformed entry is reported in ``problems`` and replaced by its default rather than
    raising, so that the page always shows something.
    """
    config = config or {}
    problems: list[str] = []
    alpha = config.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        problems.append(f"config alpha {alpha!r} is not a number between 0 and 1; using 0.05.")
        alpha = 0.05
    raw = config.get("tests")
    pairs: list[Pair] = []
    if raw is None:
        pairs = list(default_pairs(design, levels))
    elif not isinstance(raw, list):
        problems.append("config tests must be a list of [level1, level2, alternative]; using the defaults.")
        pairs = list(default_pairs(design, levels))
    else:
        for item in raw:
            pair, problem = _check_pair(item, levels)
            if problem:
                problems.append(problem)
            elif pair is not None:
                pairs.append(pair)
    exclusions = config.get("exclusions") or {}
    if not isinstance(exclusions, dict):
        problems.append("config exclusions must be an object of rules; no rules applied.")
        exclusions = {}
    configured_trials = config.get("n_trials", n_trials)
    if configured_trials is not None and (
        isinstance(configured_trials, bool) or not isinstance(configured_trials, int) or configured_trials < 1
    ):
        problems.append(f"n_trials {configured_trials!r} is not a whole number >= 1; using the data's.")
        configured_trials = None
    return AnalysisSettings(tuple(pairs), float(alpha), dict(exclusions), configured_trials), problems


def _check_pair(item, levels: Sequence[str]) -> tuple[Pair | None, str | None]:
    if not isinstance(item, list | tuple) or len(item) != 3 or not all(isinstance(x, str) for x in item):
        return None, f"test {item!r} is not [level1, level2, alternative]; left out."
    a, b, alternative = item
    if alternative not in ALTERNATIVES:
        return None, f"test {item!r}: alternative must be one of {', '.join(ALTERNATIVES)}; left out."
    if a == b:
        return None, f"test {item!r} compares {a} with itself; left out."
    unknown = [x for x in (a, b) if x not in levels]
    if unknown and levels:
        return None, f"test {item!r}: {', '.join(unknown)} is not one of {', '.join(levels)}; left out."
    return (a, b, cast(Alternative, alternative)), None


def hypothesis(pair: Sequence[str]) -> str:
    return f"{pair[0]} {SYMBOLS[pair[2]]} {pair[1]}"


# --------------------------------------------------------------------------- results


@dataclass
class ExclusionResult:
    rules: dict
    report: ExclusionReport | None
    error: str | None = None
    ignored: dict = field(default_factory=dict)


@dataclass
class PilotPower:
    comparison: str
    d: float
    g_ci: tuple[float, float] | None
    n_per_arm: int | None
    achieved_power: float | None
    message: str


@dataclass
class LearningResult:
    n_trials: int
    curve: pd.DataFrame
    counts: pd.DataFrame
    totals: pd.DataFrame
    family: learning.PairwiseComparison | None
    skipped: list[str]
    pilot: list[PilotPower]
    ratings: pd.DataFrame
    rating_dist: pd.DataFrame | None
    rating_test: dict | None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class ClusteringResult:
    purities: pd.DataFrame | None = None
    purity_summary: pd.DataFrame | None = None
    purity_tests: pd.DataFrame | None = None
    ari_tests: pd.DataFrame | None = None
    orders: pd.DataFrame | None = None
    order_summary: pd.DataFrame | None = None
    order_tests: pd.DataFrame | None = None
    confidence: pd.DataFrame | None = None
    confidence_dist: pd.DataFrame | None = None
    confidence_tests: pd.DataFrame | None = None
    agent_ratings: pd.DataFrame | None = None
    agent_dist: pd.DataFrame | None = None
    agent_preference: clustering.AgentPreference | None = None
    pilot: list[PilotPower] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Analysis:
    design: str
    settings: AnalysisSettings
    exclusions: ExclusionResult
    learning: LearningResult | None = None
    clustering: ClusteringResult | None = None
    kept: dict[str, pd.DataFrame] = field(default_factory=dict)


def _exclude(
    frame: pd.DataFrame, rules: dict, ignore: Iterable[str]
) -> tuple[pd.DataFrame, ExclusionResult]:
    ignore = set(ignore)
    ignored = {k: v for k, v in rules.items() if k in ignore}
    active = {k: v for k, v in rules.items() if k not in ignore}
    try:
        kept, report = apply_exclusions(frame, ExclusionRules.from_config(active))
    except (ValueError, AnalysisInputError) as exc:
        return frame, ExclusionResult(
            rules=rules, report=None, ignored=ignored,
            error=f"The exclusion rules {rules} cannot be applied: {exc}. No participant was excluded.",
        )
    return kept, ExclusionResult(rules=rules, report=report, ignored=ignored)


def exclusion_basis(frame: pd.DataFrame, checks: pd.DataFrame | None) -> pd.DataFrame:
    """`frame` (trials or batches) with the rows of `checks` stacked under it, for the exclusion
    decision only. Columns missing on one side are NaN on its rows (a check row has no
    ``trial_index`` or ``response_ms``, so the per-trial rules do not see it)."""
    if checks is None or not len(checks):
        return frame
    extra = checks[[c for c in CHECK_COLUMNS if c in checks.columns]]
    if not len(frame):
        return extra.reset_index(drop=True)
    # Only what the rules read, as objects on both sides: no all-NA column decides (or warns
    # about) a result dtype.
    columns = [c for c in RULE_COLUMNS if c in frame.columns or c in extra.columns]
    parts = [part.reindex(columns=columns).astype(object) for part in (frame, extra)]
    basis = pd.concat(parts, ignore_index=True)
    for col in ("trial_index", "response_ms", "total_seconds"):
        if col in basis.columns:
            basis[col] = pd.to_numeric(basis[col], errors="coerce")
    return basis


def analyse(
    *,
    design: str,
    settings: AnalysisSettings,
    trials: pd.DataFrame | None = None,
    ratings: pd.DataFrame | None = None,
    groupings: pd.DataFrame | None = None,
    batches: pd.DataFrame | None = None,
    confidence: pd.DataFrame | None = None,
    agent_ratings: pd.DataFrame | None = None,
    checks: pd.DataFrame | None = None,
    ignore_rules: Iterable[str] = (),
) -> Analysis:
    """Apply the exclusions, then every analysis of the design (see the module docstring).

    Learning design: `trials` (and `ratings`). Clustering design: `groupings`, `batches` (one row
    per batch, what the exclusion rules read), `confidence`, `agent_ratings`. Both: `checks`
    (`CHECK_COLUMNS`), read by the exclusion rules only.
    `ignore_rules` names exclusion rules to leave out (reported as ignored).
    """
    if design == LEARNING:
        trials = trials if trials is not None else pd.DataFrame(columns=["participant", "arm", "trial_index", "correct"])
        _, excl = _exclude(exclusion_basis(trials, checks), settings.exclusions, ignore_rules)
        kept = excl.report.apply(trials) if excl.report is not None else trials
        analysis = Analysis(design, settings, excl)
        rated = ratings if ratings is not None else pd.DataFrame(columns=["participant", "arm", "rating"])
        if excl.report is not None:
            rated = excl.report.apply(rated)
        analysis.kept = {"trials": kept, "ratings": rated}
        analysis.learning = _learning(kept, rated, settings)
        return analysis
    if design == CLUSTERING:
        basis = batches if batches is not None else pd.DataFrame(columns=["participant"])
        _, excl = _exclude(exclusion_basis(basis, checks), settings.exclusions, ignore_rules)
        analysis = Analysis(design, settings, excl)
        frames = {"groupings": groupings, "confidence": confidence, "agent_ratings": agent_ratings}
        for name, frame in frames.items():
            if frame is not None and excl.report is not None:
                frames[name] = excl.report.apply(frame)
        analysis.kept = {k: v for k, v in frames.items() if v is not None}
        analysis.clustering = _clustering(settings=settings, **frames)
        return analysis
    raise ValueError(f"design must be {LEARNING!r} or {CLUSTERING!r}, not {design!r}")


def _learning(trials: pd.DataFrame, ratings: pd.DataFrame, settings: AnalysisSettings) -> LearningResult:
    errors: dict[str, str] = {}
    n_trials = settings.n_trials or (int(trials["trial_index"].max()) + 1 if len(trials) else 0)
    empty_curve = pd.DataFrame(columns=["arm", "trial", "n", "mean", "sd"])
    empty_counts = pd.DataFrame(columns=["arm", "n", "mean", "sd", "n_short"])
    try:
        curve = learning.learning_curve(trials)
        counts = learning.final_counts(trials, n_trials=n_trials)
        totals = learning.participant_totals(trials, n_trials=n_trials)
        totals = totals[totals["n_trials"] == n_trials].reset_index(drop=True)
    except AnalysisInputError as exc:
        errors["trials"] = str(exc)
        curve, counts = empty_curve, empty_counts
        totals = pd.DataFrame(columns=["participant", "arm", "n_trials", "total_correct"])
    family, skipped, pilot = None, [], []
    usable = []
    per_arm = totals["arm"].value_counts()
    for pair in settings.pairs:
        short = [a for a in pair[:2] if per_arm.get(a, 0) < 2]
        if short:
            skipped.append(
                f"{hypothesis(pair)}: not tested yet, "
                + ", ".join(f"{a} has {per_arm.get(a, 0)}" for a in short)
                + f" participant(s) with all {n_trials} trials (2 needed)."
            )
        else:
            usable.append(pair)
    if usable:
        family = learning.pairwise_welch(totals, usable, alpha=settings.alpha)
        pilot = [_pilot_two_sample(totals, pair, settings) for pair in usable]
    rating_dist = rating_test = None
    if len(ratings):
        try:
            rating_dist = learning.rating_distribution(ratings)
            rating_test = learning.rating_comparison(ratings)
        except AnalysisInputError as exc:
            errors["ratings"] = str(exc)
    return LearningResult(
        n_trials=n_trials, curve=curve, counts=counts, totals=totals, family=family,
        skipped=skipped, pilot=pilot, ratings=ratings, rating_dist=rating_dist,
        rating_test=rating_test, errors=errors,
    )


def _pilot_two_sample(totals: pd.DataFrame, pair, settings: AnalysisSettings) -> PilotPower:
    a1, a2, alternative = pair
    eff = power.pilot_effect(totals, a1, a2)
    comparison = hypothesis(pair)
    ci = (eff.g_ci_low, eff.g_ci_high)
    if not math.isfinite(eff.d):
        return PilotPower(comparison, eff.d, ci, None, None, "none: no spread, d is undefined")
    try:
        size = power.sample_size_from_pilot(
            totals, a1, a2, alpha=settings.alpha, power=settings.power_target, alternative=alternative
        )
    except ValueError as exc:
        message = "none: the difference points the other way" if "points against" in str(exc) else str(exc)
        return PilotPower(comparison, eff.d, ci, None, None, message)
    return PilotPower(comparison, eff.d, ci, size.n_per_arm, size.achieved_power, "")


def paired_sample_size(
    dz: float, *, alpha: float, power_target: float, alternative: str = "two-sided"
) -> tuple[int, float]:
    """Participants needed for a paired t-test to detect Cohen's d_z (statsmodels ``TTestPower``).

    Returns ``(n, achieved power)``. Raises ValueError for a zero effect or one pointing against
    a one-sided alternative.
    """
    if not math.isfinite(dz) or dz == 0:
        raise ValueError("a zero or undefined effect cannot be detected at any sample size")
    if (alternative == "greater" and dz < 0) or (alternative == "less" and dz > 0):
        raise ValueError(f"effect size {dz:.3g} points against alternative {alternative!r}")
    sm_alt = {"greater": "larger", "less": "smaller", "two-sided": "two-sided"}[alternative]
    analysis = TTestPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exact = analysis.solve_power(
            effect_size=abs(dz) if sm_alt == "two-sided" else dz,
            nobs=None, alpha=alpha, power=power_target, alternative=sm_alt,
        )
    exact = float(exact)
    def enough(n: int) -> bool:
        return analysis.power(effect_size=dz, nobs=n, alpha=alpha, alternative=sm_alt) >= power_target

    n = max(2, math.ceil(exact - 1e-9)) if math.isfinite(exact) else 2
    if not enough(n):
        # The solver gave up or rounded below the target: double, then bisect (bounded).
        low, high = n, n
        while not enough(high):
            low, high = high, high * 2
            if high > 10**6:
                raise ValueError("more than a million participants needed")
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (low, mid) if enough(mid) else (mid, high)
        n = high
    return n, float(analysis.power(effect_size=dz, nobs=n, alpha=alpha, alternative=sm_alt))


def _pilot_paired(tests: pd.DataFrame, settings: AnalysisSettings, what: str) -> list[PilotPower]:
    out = []
    for row in tests.itertuples():
        comparison = f"{what}, {row.group}: {row.hypothesis}" if row.group else f"{what}: {row.hypothesis}"
        try:
            n, achieved = paired_sample_size(
                row.cohen_dz, alpha=settings.alpha, power_target=settings.power_target,
                alternative=row.alternative,
            )
        except ValueError as exc:
            message = "none: no difference" if "zero or undefined" in str(exc) else str(exc)
            out.append(PilotPower(comparison, row.cohen_dz, None, None, None, message))
            continue
        out.append(PilotPower(comparison, row.cohen_dz, None, n, achieved, ""))
    return out


def _stage_pairs(settings: AnalysisSettings, present: Iterable[str]) -> tuple[Pair, ...]:
    present = set(present)
    return tuple(p for p in settings.pairs if p[0] in present and p[1] in present)


def _clustering(
    *,
    settings: AnalysisSettings,
    groupings: pd.DataFrame | None,
    confidence: pd.DataFrame | None,
    agent_ratings: pd.DataFrame | None,
) -> ClusteringResult:
    result = ClusteringResult()
    if groupings is not None and len(groupings):
        try:
            result.purities = clustering.purity_table(groupings)
            result.purity_summary = clustering.purity_summary(result.purities)
            pairs = _stage_pairs(settings, result.purities["stage"])
            if pairs:
                result.purity_tests = clustering.compare_stages(result.purities, value="purity", pairs=pairs)
                result.ari_tests = clustering.compare_stages(result.purities, value="ari", pairs=pairs)
                result.pilot += _pilot_paired(result.purity_tests, settings, "purity")
        except AnalysisInputError as exc:
            result.errors["purity"] = str(exc)
        if result.purities is not None and "batch" in groupings.columns:
            try:
                orders = clustering.order_table(groupings)
                if orders["stage_order"].notna().any():
                    result.orders = orders
                    result.order_summary = clustering.order_summary(result.purities, orders)
                    result.order_tests = clustering.order_effect(result.purities, orders)
            except AnalysisInputError as exc:
                result.errors["order"] = str(exc)
    if confidence is not None and len(confidence):
        try:
            result.confidence = confidence
            result.confidence_dist = clustering.confidence_distribution(confidence)
            pairs = _stage_pairs(settings, confidence["stage"])
            if pairs:
                result.confidence_tests = clustering.compare_confidence(confidence, pairs=pairs)
        except AnalysisInputError as exc:
            result.errors["confidence"] = str(exc)
    if agent_ratings is not None and len(agent_ratings):
        try:
            result.agent_ratings = agent_ratings
            result.agent_dist = clustering.agent_rating_distribution(agent_ratings)
            if {"XNN", "1-Heatmap"} <= set(agent_ratings["agent"]):
                result.agent_preference = clustering.agent_preference(agent_ratings)
        except AnalysisInputError as exc:
            result.errors["agents"] = str(exc)
    return result


def levels_of(design: str, *, arms: Iterable[str] = (), stages: Iterable[str] = ()) -> list[str]:
    """The levels a test may name: the arms (learning) or the stages (clustering), in order."""
    if design == CLUSTERING:
        return ordered_levels(list(stages) or list(STUDY_B_STAGES), STUDY_B_STAGES)
    return ordered_levels(list(arms), STUDY_A_ARMS)


# --------------------------------------------------------------------------- text


def summary_text(analysis: Analysis) -> str:
    """A plain-text summary (the synthetic-participants command prints it)."""
    lines = []
    excl = analysis.exclusions
    if excl.error:
        lines.append(excl.error)
    elif excl.report is not None:
        lines.append(excl.report.to_text().splitlines()[0])
        lines.append(excl.report.to_text().splitlines()[1])
    if excl.ignored:
        lines.append(f"Exclusion rules not applied here: {excl.ignored}")
    res = analysis.learning
    if res is not None:
        lines.append(f"Correct answers after {res.n_trials} trials (mean ± SD, n):")
        for row in res.counts.itertuples():
            lines.append(f"  {row.arm:<10} {row.mean:7.3f} ± {row.sd:.3f}  (n = {row.n})")
        if res.family is not None:
            lines.append(f"One-sided Welch t-tests (alpha = {analysis.settings.alpha:g}, Holm-adjusted p in brackets):")
            for test, p_adj in zip(res.family.tests, res.family.p_adjusted, strict=True):
                mark = "significant" if test.p <= analysis.settings.alpha else "not significant"
                lines.append(
                    f"  {test.hypothesis:<22} t = {test.t:6.3f}, df = {test.df:6.2f}, p = {test.p:.4g} "
                    f"[{p_adj:.4g}], g = {test.hedges_g:.3f} [{test.g_ci_low:.3f}, {test.g_ci_high:.3f}]: {mark}"
                )
        lines.extend(f"  {s}" for s in res.skipped)
    return "\n".join(lines)
