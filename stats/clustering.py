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

Purity alone can be gamed (ten groups of one image each score 1.0) and its chance level depends
on the number and sizes of the groups, so each grouping also gets its chance purity (the mean
purity over every way of spreading that batch's predicted classes over the participant's group
sizes: the permutation null, computed exactly) and two chance-adjusted agreements with the
predictions from scikit-learn: the adjusted Rand index (``adjusted_rand_score``, 0 at chance,
1 for the same partition) and the normalised mutual information (``normalized_mutual_info_score``,
arithmetic mean normalisation).

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
from functools import lru_cache
from math import comb
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from statsmodels.stats.multitest import multipletests

from stats.learning import hedges_g
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


def _max_count_means(size: int, counts: tuple[int, ...]) -> float:
    """E[max_c X_c] for X ~ multivariate hypergeometric: ``size`` images drawn without
    replacement from classes of ``counts`` images each (cached: batches share their shapes)."""
    return _max_count_mean(size, tuple(sorted(counts, reverse=True)))


@lru_cache(maxsize=4096)
def _max_count_mean(size: int, counts: tuple[int, ...]) -> float:
    total = sum(counts)

    def compositions(k: int, left: int):
        if k == len(counts) - 1:
            if left <= counts[k]:
                yield (left,)
            return
        for x in range(min(left, counts[k]) + 1):
            for rest in compositions(k + 1, left - x):
                yield (x, *rest)

    expected = 0.0
    for xs in compositions(0, size):
        ways = 1
        for x, c in zip(xs, counts, strict=True):
            ways *= comb(c, x)
        expected += max(xs) * ways
    return expected / comb(total, size)


def chance_purity(group_sizes: Sequence[int], class_counts: Sequence[int]) -> float:
    """Purity's chance level: its mean over every assignment of the images' predicted classes to
    the groups, keeping the group sizes (the permutation distribution of shuffled labels).

    By linearity, E[purity] = (1/N) Σ_g E[largest class count in group g], and the class counts
    of a group of size s are multivariate hypergeometric; the sum is exact, not sampled.

    >>> chance_purity([2, 1], [2, 1])   # labels a, a, b: {a,a}|{b} once, {a,b}|{a} twice
    0.7777777777777778
    """
    sizes = [int(s) for s in group_sizes]
    counts = tuple(int(c) for c in class_counts if c > 0)
    if not sizes or any(s < 1 for s in sizes) or sum(sizes) != sum(counts):
        raise AnalysisInputError(
            f"group sizes {sizes} and class counts {list(counts)} must be positive with the same total"
        )
    return sum(_max_count_means(s, counts) for s in sizes) / sum(sizes)


def purity_chance(clusters: Sequence, predicted: Sequence) -> float:
    """`chance_purity` of one grouping: its own group sizes and its images' predicted classes."""
    cluster_of = pd.Series(list(clusters), dtype=object)
    class_of = pd.Series(list(predicted), dtype=object)
    if len(cluster_of) != len(class_of) or len(cluster_of) == 0:
        raise AnalysisInputError("chance purity needs as many clusters as predicted classes, at least one")
    return chance_purity(cluster_of.value_counts().tolist(), class_of.value_counts().tolist())


def agreement(clusters: Sequence, predicted: Sequence) -> tuple[float, float]:
    """``(adjusted Rand index, normalised mutual information)`` of a grouping against the
    predicted classes: scikit-learn's ``adjusted_rand_score`` and ``normalized_mutual_info_score``
    (arithmetic normalisation).

    Both depend only on the contingency table of groups x classes, up to the order of its rows
    and columns, so the table is brought to a sorted form and scikit-learn is called once per
    distinct table (cached; scikit-learn's input checks cost about a millisecond a call, and an
    analysis page has a few hundred batches, most of them repeats across requests).

    >>> agreement([0, 0, 1, 1], ["a", "a", "b", "b"])
    (1.0, 1.0)
    """
    cluster_of = pd.Series(list(clusters), dtype=object)
    class_of = pd.Series(list(predicted), dtype=object)
    if len(cluster_of) != len(class_of) or len(cluster_of) == 0:
        raise AnalysisInputError("agreement needs as many clusters as predicted classes, at least one")
    table = pd.crosstab(cluster_of, class_of).to_numpy()
    return _agreement_of_table(_sorted_table(table))


def _sorted_table(table: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """The contingency table with its columns, then its rows, in descending lexicographic order
    (a permutation of the table, so every statistic of the table is unchanged)."""
    cols = sorted(map(tuple, table.T.tolist()), reverse=True)
    return tuple(sorted(zip(*cols, strict=True), reverse=True))


@lru_cache(maxsize=65536)
def _agreement_of_table(table: tuple[tuple[int, ...], ...]) -> tuple[float, float]:
    groups, classes = [], []
    for g, row in enumerate(table):
        for c, n in enumerate(row):
            groups += [g] * n
            classes += [c] * n
    return (float(adjusted_rand_score(classes, groups)), float(normalized_mutual_info_score(classes, groups)))


def purity_table(groupings: pd.DataFrame) -> pd.DataFrame:
    """Purity per participant x stage x dataset, with the number of groups used, purity's chance
    level and the chance-adjusted agreements.

    Returns columns ``participant, stage, dataset, n_images, n_clusters, purity, chance_purity,
    ari, nmi``. With a ``batch`` column, clusters of different batches are kept apart, and the
    chance level, ARI and NMI are computed per batch and averaged weighted by images (one batch
    per participant x stage x dataset in Study B, so they are that batch's).
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
    # Per batch, its contingency table (group x class counts), from the counts above in one pass.
    n_batch_keys = len(cluster_keys) - 1
    tables: dict[tuple, dict[Any, dict[Any, int]]] = {}
    for index, n in per_class.items():
        tables.setdefault(index[:n_batch_keys], {}).setdefault(index[n_batch_keys], {})[index[-1]] = int(n)
    rows = []
    for key, table in tables.items():
        classes = sorted({c for row in table.values() for c in row}, key=str)
        matrix = np.array([[row.get(c, 0) for c in classes] for row in table.values()])
        ari, nmi = _agreement_of_table(_sorted_table(matrix))
        chance = chance_purity(matrix.sum(1).tolist(), matrix.sum(0).tolist())
        rows.append((*key[: len(keys)], int(matrix.sum()), chance, ari, nmi))
    per_batch = pd.DataFrame(rows, columns=[*keys, "_n", "chance_purity", "ari", "nmi"])
    measures = ["chance_purity", "ari", "nmi"]
    weighted = per_batch[measures].mul(per_batch["_n"], axis=0).assign(_n=per_batch["_n"], **{k: per_batch[k] for k in keys})
    sums = weighted.groupby(keys, sort=False)[[*measures, "_n"]].sum()
    means = sums[measures].div(sums["_n"], axis=0).reset_index()
    out = out.merge(means, on=keys, how="left")
    out = out[[*keys, "n_images", "n_clusters", "purity", *measures]]
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


#: `purity_table` columns that `purity_summary` averages next to purity, and their names there.
SUMMARY_MEANS = {"n_clusters": "mean_groups", "chance_purity": "mean_chance", "ari": "mean_ari", "nmi": "mean_nmi"}


def purity_summary(purities: pd.DataFrame) -> pd.DataFrame:
    """Mean purity per dataset and stage (the numbers quoted in the paper), plus spread.

    Takes `purity_table` output; returns ``dataset, stage, n, mean, sd, median, q1, q3``, then
    for each of `SUMMARY_MEANS` present in the input its mean: ``mean_groups`` (groups used),
    ``mean_chance`` (chance purity), ``mean_ari``, ``mean_nmi``.
    """
    require_columns(purities, ["stage", "dataset", "purity"], name="purities")
    grouped = purities.groupby(["dataset", "stage"])
    table = (
        grouped["purity"]
        .agg(
            n="count",
            mean="mean",
            sd=lambda s: s.std(ddof=1),
            median="median",
            q1=lambda s: s.quantile(0.25),
            q3=lambda s: s.quantile(0.75),
        )
    )
    present = [c for c in SUMMARY_MEANS if c in purities.columns]
    if present:
        table = table.join(grouped[present].mean().rename(columns=SUMMARY_MEANS))
    return _sort_b(table.reset_index()).reset_index(drop=True)


# --------------------------------------------------------------------------- order


def order_table(groupings: pd.DataFrame) -> pd.DataFrame:
    """Each participant's counterbalancing order, read from the order of their batches.

    Needs ``participant, stage, dataset, batch`` (``batch`` increases with the plan's order).
    Returns ``participant, stage_order, first_dataset, order``: ``stage_order`` names the stage
    right after NoVis (``"XNN second"`` or ``"1-Heatmap second"``), ``first_dataset`` the data set
    of the first batch, ``order`` both (e.g. ``"XNN second, CUB first"``). A participant without
    both later stages gets no ``stage_order`` (NaN).
    """
    require_columns(groupings, ["participant", "stage", "dataset", "batch"], name="groupings")
    firsts = (
        groupings.groupby(["participant", "stage", "dataset"], sort=False)["batch"].min().reset_index()
        .sort_values(["participant", "batch"], kind="stable")
    )
    rows = []
    for participant, part in firsts.groupby("participant", sort=False):
        later = [s for s in part["stage"] if s in ("XNN", "1-Heatmap")]
        stage_order = f"{later[0]} second" if {"XNN", "1-Heatmap"} <= set(later) else np.nan
        first = part["dataset"].iloc[0]
        rows.append((participant, stage_order, first,
                     f"{stage_order}, {first} first" if isinstance(stage_order, str) else f"{first} first"))
    return pd.DataFrame(rows, columns=["participant", "stage_order", "first_dataset", "order"])


def order_summary(purities: pd.DataFrame, orders: pd.DataFrame, *, value: str = "purity") -> pd.DataFrame:
    """Mean `value` per dataset x stage x counterbalancing order (order as a factor).

    Returns ``dataset, stage, order, n, mean, sd``.
    """
    require_columns(purities, ["participant", "stage", "dataset", value], name="purities")
    require_columns(orders, ["participant", "order"], name="orders")
    merged = purities.merge(orders[["participant", "order"]], on="participant", how="inner")
    table = (
        merged.groupby(["dataset", "stage", "order"])[value]
        .agg(n="count", mean="mean", sd=lambda s: s.std(ddof=1))
        .reset_index()
    )
    return _sort_b(table).reset_index(drop=True)  # a stable sort: orders stay alphabetical


def order_effect(
    purities: pd.DataFrame, orders: pd.DataFrame, *, value: str = "purity",
    stage1: str = "XNN", stage2: str = "1-Heatmap",
) -> pd.DataFrame:
    """Does the stage order change the within-participant difference ``stage1 - stage2``?

    Per dataset, the participants' differences are split by ``stage_order`` and the two groups
    compared with Welch's t-test (scipy ``ttest_ind(equal_var=False)``) and the Mann-Whitney U
    test (scipy ``mannwhitneyu``, two-sided). A carry-over (practice or fatigue) effect shows as
    a difference that depends on which stage came second.

    Returns ``dataset, order1, order2, n1, n2, mean_diff1, mean_diff2, t, p_t, u, p_u``.
    """
    require_columns(purities, ["participant", "stage", "dataset", value], name="purities")
    require_columns(orders, ["participant", "stage_order"], name="orders")
    columns = ["dataset", "order1", "order2", "n1", "n2", "mean_diff1", "mean_diff2", "t", "p_t", "u", "p_u"]
    rows = []
    levels = (f"{stage1} second", f"{stage2} second")
    for dataset in ordered_levels(purities["dataset"].dropna(), STUDY_B_DATASETS):
        wide = purities[purities["dataset"] == dataset].pivot(index="participant", columns="stage", values=value)
        if stage1 not in wide.columns or stage2 not in wide.columns:
            continue
        diff = (wide[stage1] - wide[stage2]).dropna().rename("diff").reset_index()
        diff = diff.merge(orders[["participant", "stage_order"]], on="participant", how="inner")
        a = diff.loc[diff["stage_order"] == levels[0], "diff"].to_numpy(float)
        b = diff.loc[diff["stage_order"] == levels[1], "diff"].to_numpy(float)
        nan = float("nan")
        t = p_t = u = p_u = nan
        if len(a) >= 2 and len(b) >= 2 and (a.std() > 0 or b.std() > 0):
            res = stats.ttest_ind(a, b, equal_var=False)
            t, p_t = float(res.statistic), float(res.pvalue)
        if len(a) and len(b):
            res = stats.mannwhitneyu(a, b, alternative="two-sided")
            u, p_u = float(res.statistic), float(res.pvalue)
        rows.append((dataset, *levels, len(a), len(b), float(a.mean()) if len(a) else nan,
                     float(b.mean()) if len(b) else nan, t, p_t, u, p_u))
    return pd.DataFrame(rows, columns=columns)


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


# --------------------------------------------------------------------------- between studies

#: The measures `compare_studies` tests: purity and its two chance-adjusted partners.
STUDY_MEASURES = {
    "purity": "Purity",
    "ari": "Adjusted Rand index",
    "above_chance": "Purity minus its chance level",
}

#: Printed with every comparison of studies (the page and the report say it too).
BETWEEN_STUDIES_NOTE = (
    "Each study was run with its own participants, so a comparison of studies is between groups of "
    "people (Welch's t-test on one value per participant), not within a person as the stages of one "
    "study are; the groups may also differ in when and where they were recruited."
)


def study_conditions(purities: pd.DataFrame) -> list[tuple[str, str]]:
    """The ``(study, condition)`` pairs of a stacked purity table in drawing order: studies in
    their order of appearance, conditions in the paper's stage order within each."""
    require_columns(purities, ["study", "condition", "stage"], name="purities")
    out: list[tuple[str, str]] = []
    for study in pd.unique(purities["study"]):
        part = purities[purities["study"] == study]
        stage_of = dict(zip(part["condition"], part["stage"], strict=False))
        stages = ordered_levels(part["stage"], STUDY_B_STAGES)
        out += [(str(study), str(c)) for c in sorted(stage_of, key=lambda c: (stages.index(stage_of[c]), str(c)))]
    return out


def compare_studies(purities: pd.DataFrame, *, adjust: str = "holm") -> pd.DataFrame:
    """Between-study Welch tests of clustering purity, for studies of the same design run with
    different participants (XNN paper Fig. 4 puts the main study's NoVis, 1-Heatmap (ExcitationBP)
    and XNN beside the complementary study's 1-Heatmap (DeepLIFT)).

    `purities` is `purity_table` output of several studies stacked, with a ``study`` column
    (its name) and a ``condition`` column (what the stage showed in that study, e.g.
    ``"1-Heatmap (DeepLIFT)"``; the stage name when absent). Per data set, every condition of
    one study is compared with every condition of each other study by Welch's t-test (scipy
    ``ttest_ind(equal_var=False)``, two-sided: the paper states no direction) on one value per
    participant, for each of `STUDY_MEASURES`: ``purity``, ``ari`` and ``above_chance`` (purity
    minus its chance level for the participant's group sizes, from ``chance_purity``), each
    present in the input. p-values are adjusted (`adjust`, a statsmodels ``multipletests``
    method) within each data set and measure. A pair with fewer than two values on a side gets
    NaN statistics (and is left out of the adjustment).

    Returns ``dataset, measure, study1, condition1, study2, condition2, n1, mean1, sd1, n2,
    mean2, sd2, difference, t, df, p, p_adjusted, hedges_g``; see `BETWEEN_STUDIES_NOTE`.
    """
    frame = purities.copy()
    if "condition" not in frame.columns:
        frame["condition"] = frame["stage"]
    require_columns(frame, ["participant", "study", "stage", "dataset", "purity"], name="purities")
    if frame["study"].nunique() < 2:
        raise AnalysisInputError("a comparison of studies needs groupings of at least two studies")
    if "chance_purity" in frame.columns:
        frame["above_chance"] = frame["purity"] - frame["chance_purity"]
    measures = [m for m in STUDY_MEASURES if m in frame.columns]
    conditions = study_conditions(frame)
    rows = []
    for dataset in ordered_levels(frame["dataset"], STUDY_B_DATASETS):
        part = frame[frame["dataset"] == dataset]
        cells = {key: group for key, group in part.groupby(["study", "condition"], sort=False)}
        empty = part.iloc[0:0]
        for measure in measures:
            block: list[dict[str, Any]] = []
            for i, (s1, c1) in enumerate(conditions):
                for s2, c2 in conditions[i + 1:]:
                    if s1 == s2:
                        continue
                    a = cells.get((s1, c1), empty)[measure].dropna().to_numpy(float)
                    b = cells.get((s2, c2), empty)[measure].dropna().to_numpy(float)
                    row: dict[str, Any] = {
                        "dataset": dataset, "measure": measure, "study1": s1, "condition1": c1, "study2": s2,
                        "condition2": c2, "n1": len(a), "mean1": a.mean() if len(a) else np.nan,
                        "sd1": a.std(ddof=1) if len(a) > 1 else np.nan, "n2": len(b),
                        "mean2": b.mean() if len(b) else np.nan, "sd2": b.std(ddof=1) if len(b) > 1 else np.nan,
                        "t": np.nan, "df": np.nan, "p": np.nan, "hedges_g": np.nan,
                    }
                    row["difference"] = row["mean1"] - row["mean2"]
                    if len(a) > 1 and len(b) > 1 and (a.std() > 0 or b.std() > 0):
                        res = stats.ttest_ind(a, b, equal_var=False)
                        row.update(t=float(res.statistic), df=float(res.df), p=float(res.pvalue))
                        row["hedges_g"] = hedges_g(  # g only: its normal interval is cheap and unused
                            row["mean1"], row["sd1"], len(a), row["mean2"], row["sd2"], len(b), ci_method="normal",
                        )[0]
                    block.append(row)
            for r, p_adjusted in zip(block, _adjust([r["p"] for r in block], adjust), strict=True):
                r["p_adjusted"] = p_adjusted
            rows += block
    columns = [
        "dataset", "measure", "study1", "condition1", "study2", "condition2", "n1", "mean1", "sd1", "n2",
        "mean2", "sd2", "difference", "t", "df", "p", "p_adjusted", "hedges_g",
    ]
    return pd.DataFrame(rows, columns=columns)
