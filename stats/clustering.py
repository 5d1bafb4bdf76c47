"""Study B (XNN paper, section 4.1): clustering purity, confidence and agent ratings.

Inputs (pandas DataFrames):

- groupings: one row per image a participant placed, columns
  ``participant, stage, dataset, image_id, cluster, predicted_class`` (optional ``batch``:
  cluster ids are then local to a batch). ``stage`` is NoVis / 1-Heatmap / XNN, ``dataset``
  CUB / CEL, ``predicted_class`` the CNN's prediction for the image.
- confidence: ``participant, stage, confidence`` (0..6, see `schema.CONFIDENCE_LABELS`),
  optionally ``dataset`` when confidence was asked per dataset (the paper's Figure 5a-b).
- agent ratings: ``participant, agent, rating`` (``agent`` 1-Heatmap / XNN, rating 1..7 from
  Very Poor to Very Good, see `schema.AGENT_RATING_LABELS`).

Stages are within-participant, so comparisons are paired: the paired t-test (scipy
``ttest_rel``) and the Wilcoxon signed-rank test (scipy ``wilcoxon``, zero differences dropped,
``zero_method="wilcox"``). The Wilcoxon null is the exact distribution when there are at most
50 pairs, none tied at zero and no tied magnitudes, and otherwise the normal approximation with
tie-corrected variance (``wilcoxon_method`` in the result says which). Purity takes only the
values k/10 on a batch of 10 images, so ties are the rule. The paper does not name its tests;
we report both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from stats.schema import (
    AGENT_RATING_LABELS,
    CONFIDENCE_LABELS,
    STUDY_B_AGENTS,
    STUDY_B_DATASETS,
    STUDY_B_STAGES,
    Alternative,
    AnalysisInputError,
    likert_distribution,
    ordered_levels,
    require_codes,
    require_columns,
)

#: Default within-participant comparisons (stage1, stage2, alternative); "greater" would test
#: stage1 > stage2. Two-sided because the paper does not state a direction.
DEFAULT_STAGE_PAIRS: tuple[tuple[str, str, Alternative], ...] = (
    ("XNN", "1-Heatmap", "two-sided"),
    ("XNN", "NoVis", "two-sided"),
    ("1-Heatmap", "NoVis", "two-sided"),
)

_SYMBOL = {"greater": ">", "less": "<", "two-sided": "≠"}


# --------------------------------------------------------------------------- purity


def purity(clusters: Sequence, predicted: Sequence) -> float:
    """Purity of a clustering with respect to the model's predicted classes.

    purity = (1/N) · Σ over clusters of the count of the most common predicted class in that
    cluster (XNN paper, section 4.1). 1.0 when every cluster holds a single predicted class.

    >>> purity([0, 0, 0, 1, 1], ["a", "a", "b", "b", "b"])
    0.8
    """
    cluster_of = pd.Series(list(clusters), dtype=object)
    class_of = pd.Series(list(predicted), dtype=object)
    if len(cluster_of) != len(class_of):
        raise AnalysisInputError(
            f"clusters ({len(cluster_of)}) and predicted ({len(class_of)}) differ in length"
        )
    if len(cluster_of) == 0:
        raise AnalysisInputError("purity of an empty clustering is undefined")
    if cluster_of.isna().any() or class_of.isna().any():
        raise AnalysisInputError("purity needs a cluster and a predicted class for every image")
    table = pd.crosstab(cluster_of, class_of)
    return float(table.max(axis=1).sum() / len(cluster_of))


def purity_table(groupings: pd.DataFrame) -> pd.DataFrame:
    """Purity per participant x stage x dataset.

    Returns columns ``participant, stage, dataset, n_images, n_clusters, purity``. With a
    ``batch`` column, clusters of different batches are kept apart.
    """
    require_columns(
        groupings,
        ["participant", "stage", "dataset", "image_id", "cluster", "predicted_class"],
        name="groupings",
    )
    keys = ["participant", "stage", "dataset"]
    has_batch = "batch" in groupings.columns
    dup_keys = [*keys, "batch", "image_id"] if has_batch else [*keys, "image_id"]
    if groupings.duplicated(dup_keys).any():
        raise AnalysisInputError("an image appears twice in one participant's grouping")
    if groupings[["cluster", "predicted_class"]].isna().any().any():
        raise AnalysisInputError("purity needs a cluster and a predicted class for every image")
    cluster_keys = [*keys, "batch", "cluster"] if has_batch else [*keys, "cluster"]
    # The same sum as `purity`, for all groups at once: count images per (cluster, class),
    # keep each cluster's largest count, add them up per participant x stage x dataset.
    per_class = groupings.groupby([*cluster_keys, "predicted_class"], sort=False).size()
    largest = per_class.groupby(level=cluster_keys, sort=False).max()
    out = pd.DataFrame(
        {
            "n_images": groupings.groupby(keys, sort=False).size(),
            "n_clusters": largest.groupby(level=keys, sort=False).size(),
            "majority": largest.groupby(level=keys, sort=False).sum(),
        }
    ).reset_index()
    out["purity"] = out["majority"] / out["n_images"]
    out = out[[*keys, "n_images", "n_clusters", "purity"]]
    return _sort_b(out).reset_index(drop=True)


def _sort_b(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by dataset (CEL, CUB), stage (NoVis, 1-Heatmap, XNN) and participant if present."""
    order = []
    out = frame.copy()
    for col, preferred in (("dataset", STUDY_B_DATASETS), ("stage", STUDY_B_STAGES)):
        if col in out.columns:
            levels = ordered_levels(out[col].dropna(), preferred)
            out[f"_{col}"] = out[col].map({v: i for i, v in enumerate(levels)})
            order.append(f"_{col}")
    if "participant" in out.columns:
        order.append("participant")
    out = out.sort_values(order, kind="stable") if order else out
    return out.drop(columns=[c for c in order if c.startswith("_")])


def purity_summary(purities: pd.DataFrame) -> pd.DataFrame:
    """Mean purity per dataset and stage (the numbers quoted in the paper), plus spread.

    Takes `purity_table` output; returns ``dataset, stage, n, mean, sd, median, q1, q3``.
    """
    require_columns(purities, ["stage", "dataset", "purity"], name="purities")
    table = (
        purities.groupby(["dataset", "stage"])["purity"]
        .agg(
            n="count",
            mean="mean",
            sd=lambda s: s.std(ddof=1),
            median="median",
            q1=lambda s: s.quantile(0.25),
            q3=lambda s: s.quantile(0.75),
        )
        .reset_index()
    )
    return _sort_b(table).reset_index(drop=True)


# --------------------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class PairedComparison:
    """A within-participant comparison of one measure between two stages (or agents).

    ``mean_diff`` is mean(stage1 - stage2) over participants with both values; ``cohen_dz`` is
    mean_diff / sd_diff. ``p_t`` comes from scipy ``ttest_rel``, ``p_wilcoxon`` from scipy
    ``wilcoxon`` (zero differences dropped; ``n_nonzero`` pairs remain; NaN when none do).
    """

    group: str | None
    value: str
    stage1: str
    stage2: str
    alternative: str
    n_pairs: int
    mean1: float
    mean2: float
    mean_diff: float
    sd_diff: float
    cohen_dz: float
    t: float
    df: float
    p_t: float
    n_nonzero: int
    wilcoxon_w: float
    p_wilcoxon: float
    wilcoxon_method: str

    @property
    def hypothesis(self) -> str:
        return f"{self.stage1} {_SYMBOL[self.alternative]} {self.stage2}"


def paired_comparison(
    x: Sequence[float],
    y: Sequence[float],
    alternative: Alternative = "two-sided",
    *,
    names: tuple[str, str] = ("x", "y"),
    value: str = "value",
    group: str | None = None,
) -> PairedComparison:
    """Paired t-test and Wilcoxon signed-rank test of x against y (same participants, same order)."""
    if alternative not in _SYMBOL:
        raise ValueError(f"alternative must be one of {list(_SYMBOL)}, not {alternative!r}")
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape:
        raise AnalysisInputError("paired samples must have the same length")
    diff = xs - ys
    n = len(diff)
    nan = float("nan")
    sd_diff = float(diff.std(ddof=1)) if n >= 2 else nan
    t = df = p_t = nan
    if n >= 2 and sd_diff > 0:
        res = stats.ttest_rel(xs, ys, alternative=alternative)
        t, df, p_t = float(res.statistic), float(res.df), float(res.pvalue)
    n_nonzero = int(np.count_nonzero(diff))
    w = p_w = nan
    method = "not run: no non-zero difference"
    if n_nonzero >= 1:
        # Chosen here rather than by scipy's "auto" (whose rule changed across versions) so that
        # the result says which null distribution was used.
        method = "exact" if n_nonzero <= 50 and n_nonzero == n and _no_ties(diff) else "asymptotic"
        res = stats.wilcoxon(xs, ys, zero_method="wilcox", alternative=alternative, method=method)
        w, p_w = float(res.statistic), float(res.pvalue)
    mean_diff = float(diff.mean()) if n else nan
    return PairedComparison(
        group=group,
        value=value,
        stage1=names[0],
        stage2=names[1],
        alternative=alternative,
        n_pairs=n,
        mean1=float(xs.mean()) if n else nan,
        mean2=float(ys.mean()) if n else nan,
        mean_diff=mean_diff,
        sd_diff=sd_diff,
        cohen_dz=mean_diff / sd_diff if n >= 2 and sd_diff > 0 else nan,
        t=t,
        df=df,
        p_t=p_t,
        n_nonzero=n_nonzero,
        wilcoxon_w=w,
        p_wilcoxon=p_w,
        wilcoxon_method=method,
    )


def _no_ties(diff: np.ndarray) -> bool:
    magnitudes = np.abs(diff[diff != 0])
    return len(np.unique(magnitudes)) == len(magnitudes)


def compare_stages(
    frame: pd.DataFrame,
    *,
    value: str,
    pairs: Sequence[tuple[str, str, Alternative]] = DEFAULT_STAGE_PAIRS,
    by: str | None = "dataset",
    adjust: str = "holm",
) -> pd.DataFrame:
    """Within-participant comparisons of `value` between stages, per level of `by`.

    `frame` has columns ``participant, stage, value`` (and `by` unless None), one row per
    participant x stage (x `by`); e.g. `purity_table` output with ``value="purity"``.
    Participants lacking either stage of a pair are left out of that pair (``n_pairs``).
    Within each level of `by`, the p-values of each test family are adjusted with `adjust`
    (statsmodels ``multipletests``), giving ``p_t_adjusted`` and ``p_wilcoxon_adjusted``.

    Returns one row per (group, pair): ``group, hypothesis, stage1, stage2, alternative,
    n_pairs, mean1, mean2, mean_diff, sd_diff, cohen_dz, t, df, p_t, p_t_adjusted, n_nonzero,
    wilcoxon_w, p_wilcoxon, p_wilcoxon_adjusted, wilcoxon_method``.
    """
    cols = ["participant", "stage", value] + ([by] if by else [])
    require_columns(frame, cols, name="frame")
    keys = ["participant", "stage"] + ([by] if by else [])
    if frame.duplicated(keys).any():
        raise AnalysisInputError(f"more than one {value} per {' x '.join(keys)}")
    groups: list[tuple[Any, pd.DataFrame]] = (
        [(g, part) for g, part in frame.groupby(by, sort=False)] if by else [(None, frame)]
    )
    if by:
        order = ordered_levels(frame[by].dropna(), STUDY_B_DATASETS)
        groups.sort(key=lambda item: order.index(item[0]))
    rows = []
    for group, part in groups:
        wide = part.pivot(index="participant", columns="stage", values=value)
        family = []
        for stage1, stage2, alternative in pairs:
            if stage1 in wide.columns and stage2 in wide.columns:
                both = wide[[stage1, stage2]].dropna()
            else:
                both = pd.DataFrame(columns=[stage1, stage2], dtype=float)
            family.append(
                paired_comparison(
                    both[stage1],
                    both[stage2],
                    alternative,
                    names=(stage1, stage2),
                    value=value,
                    group=group,
                )
            )
        p_t_adj = _adjust([c.p_t for c in family], adjust)
        p_w_adj = _adjust([c.p_wilcoxon for c in family], adjust)
        for comp, pt, pw in zip(family, p_t_adj, p_w_adj, strict=True):
            row = asdict(comp)
            row.update(hypothesis=comp.hypothesis, p_t_adjusted=pt, p_wilcoxon_adjusted=pw)
            rows.append(row)
    columns = [
        "group",
        "hypothesis",
        "stage1",
        "stage2",
        "alternative",
        "n_pairs",
        "mean1",
        "mean2",
        "mean_diff",
        "sd_diff",
        "cohen_dz",
        "t",
        "df",
        "p_t",
        "p_t_adjusted",
        "n_nonzero",
        "wilcoxon_w",
        "p_wilcoxon",
        "p_wilcoxon_adjusted",
        "wilcoxon_method",
    ]
    return pd.DataFrame(rows, columns=columns)


def _adjust(pvals: list[float], method: str) -> list[float]:
    """Adjust the finite p-values among `pvals`; NaNs stay NaN and do not count as tests."""
    arr = np.asarray(pvals, dtype=float)
    out = np.full_like(arr, np.nan)
    finite = np.isfinite(arr)
    if finite.sum() == 1:
        out[finite] = arr[finite]
    elif finite.sum() > 1:
        out[finite] = multipletests(arr[finite], method=method)[1]
    return out.tolist()


# --------------------------------------------------------------------------- questionnaires


def _check_confidence(confidence: pd.DataFrame) -> None:
    require_columns(confidence, ["participant", "stage", "confidence"], name="confidence")
    require_codes(confidence["confidence"], CONFIDENCE_LABELS, name="confidence.confidence")


def confidence_distribution(confidence: pd.DataFrame) -> pd.DataFrame:
    """Confidence answers per stage (per dataset when that column exists): Figure 5a-b.

    Returns ``[dataset,] stage, confidence, label, count, share``.
    """
    _check_confidence(confidence)
    groups = (["dataset"] if "dataset" in confidence.columns else []) + ["stage"]
    return likert_distribution(
        confidence,
        groups=groups,
        value="confidence",
        scale=CONFIDENCE_LABELS,
        group_orders={"dataset": STUDY_B_DATASETS, "stage": STUDY_B_STAGES},
    )


def compare_confidence(
    confidence: pd.DataFrame,
    *,
    pairs: Sequence[tuple[str, str, Alternative]] = DEFAULT_STAGE_PAIRS,
    adjust: str = "holm",
) -> pd.DataFrame:
    """`compare_stages` on the 0..6 confidence codes, per dataset when that column exists.

    On an ordinal scale the Wilcoxon test is the primary one; the t-test treats the codes as
    equally spaced and is there for comparison. (Paper: CEL, XNN vs 1-Heatmap, p = 0.083.)
    """
    _check_confidence(confidence)
    by = "dataset" if "dataset" in confidence.columns else None
    return compare_stages(confidence, value="confidence", pairs=pairs, by=by, adjust=adjust)


def _check_agent_ratings(agent_ratings: pd.DataFrame) -> None:
    require_columns(agent_ratings, ["participant", "agent", "rating"], name="agent_ratings")
    require_codes(agent_ratings["rating"], AGENT_RATING_LABELS, name="agent_ratings.rating")
    if agent_ratings.duplicated(["participant", "agent"]).any():
        raise AnalysisInputError("more than one rating per participant x agent")


def agent_rating_distribution(agent_ratings: pd.DataFrame) -> pd.DataFrame:
    """Agent ratings per agent: Figure 5c. Returns ``agent, rating, label, count, share``."""
    _check_agent_ratings(agent_ratings)
    return likert_distribution(
        agent_ratings,
        groups=["agent"],
        value="rating",
        scale=AGENT_RATING_LABELS,
        group_orders={"agent": STUDY_B_AGENTS},
    )


@dataclass(frozen=True)
class AgentPreference:
    """Is `agent` rated better than `baseline` by the same participants?

    Counts are per participant: ``n_prefer_agent`` rated `agent` strictly higher. Tests:

    - Wilcoxon signed-rank on the paired 1..7 codes (scipy ``wilcoxon``, zeros dropped);
    - exact sign test: binomial test of ``n_prefer_agent`` out of the non-tied pairs against
      1/2 (scipy ``binomtest``). It uses only the direction, not the size, of each preference.

    The paper reports p = 0.0049 without naming its test.
    """

    agent: str
    baseline: str
    alternative: str
    n_pairs: int
    n_prefer_agent: int
    n_prefer_baseline: int
    n_ties: int
    median_agent: float
    median_baseline: float
    wilcoxon_w: float
    p_wilcoxon: float
    wilcoxon_method: str
    p_sign: float

    def as_dict(self) -> dict:
        return asdict(self)


def agent_preference(
    agent_ratings: pd.DataFrame,
    *,
    agent: str = "XNN",
    baseline: str = "1-Heatmap",
    alternative: Alternative = "two-sided",
) -> AgentPreference:
    """Paired comparison of two agents' ratings; "greater" tests H1: `agent` rated higher."""
    _check_agent_ratings(agent_ratings)
    wide = agent_ratings.pivot(index="participant", columns="agent", values="rating")
    for name in (agent, baseline):
        if name not in wide.columns:
            raise AnalysisInputError(f"no ratings for agent {name!r}")
    both = wide[[agent, baseline]].dropna().astype(float)
    comp = paired_comparison(both[agent], both[baseline], alternative, names=(agent, baseline))
    diff = both[agent] - both[baseline]
    n_up, n_down = int((diff > 0).sum()), int((diff < 0).sum())
    p_sign = (
        float(stats.binomtest(n_up, n_up + n_down, 0.5, alternative=alternative).pvalue)
        if n_up + n_down
        else float("nan")
    )
    return AgentPreference(
        agent=agent,
        baseline=baseline,
        alternative=alternative,
        n_pairs=len(both),
        n_prefer_agent=n_up,
        n_prefer_baseline=n_down,
        n_ties=int((diff == 0).sum()),
        median_agent=float(both[agent].median()) if len(both) else float("nan"),
        median_baseline=float(both[baseline].median()) if len(both) else float("nan"),
        wilcoxon_w=comp.wilcoxon_w,
        p_wilcoxon=comp.p_wilcoxon,
        wilcoxon_method=comp.wilcoxon_method,
        p_sign=p_sign,
    )
