"""Names, Likert scales and input validation shared by the analysis modules.

Coding of every ordinal scale (higher code = more of the named quality):

- Study A feedback rating (dissertation ch. 5, Figure 5.9): 1 = mostly misleading,
  2 = sometimes misleading, 3 = neither misleading nor helpful, 4 = sometimes helpful,
  5 = mostly helpful.
- Study B confidence after each stage (XNN paper, Figure 5a-b): 0 = Zero, 1 = Very Low,
  2 = Low, 3 = Mediocre, 4 = High, 5 = Very High, 6 = 100%.
- Study B agent rating at the end (XNN paper, Figure 5c): 1 = Very Poor, 2 = Poor,
  3 = Slightly Poor, 4 = Neutral or N/A, 5 = Slightly Good, 6 = Good, 7 = Very Good.
  The paper lists the options from "Very Good" down; we code them upwards so that a positive
  difference means "rated better". "Neutral or N/A" is the midpoint (4), as in the paper's
  single scale; an analysis that wants to drop N/A must do so before calling us.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import pandas as pd

#: The alternative hypothesis of a test: "greater" tests H1: first > second.
Alternative = Literal["greater", "less", "two-sided"]
#: A planned comparison: (first level, second level, alternative).
Pair = tuple[str, str, Alternative]

STUDY_A_ARMS: tuple[str, ...] = ("Control", "GCAM", "CDeepEx")
STUDY_B_STAGES: tuple[str, ...] = ("NoVis", "1-Heatmap", "XNN")
STUDY_B_DATASETS: tuple[str, ...] = ("CEL", "CUB")  # the paper's panel order: (a) CEL, (b) CUB
STUDY_B_AGENTS: tuple[str, ...] = ("1-Heatmap", "XNN")

FEEDBACK_RATING_LABELS: dict[int, str] = {
    1: "mostly misleading",
    2: "sometimes misleading",
    3: "neither misleading nor helpful",
    4: "sometimes helpful",
    5: "mostly helpful",
}
CONFIDENCE_LABELS: dict[int, str] = {
    0: "Zero",
    1: "Very Low",
    2: "Low",
    3: "Mediocre",
    4: "High",
    5: "Very High",
    6: "100%",
}
AGENT_RATING_LABELS: dict[int, str] = {
    1: "Very Poor",
    2: "Poor",
    3: "Slightly Poor",
    4: "Neutral or N/A",
    5: "Slightly Good",
    6: "Good",
    7: "Very Good",
}


class AnalysisInputError(ValueError):
    """A DataFrame handed to the analysis does not have the documented shape or values."""


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, name: str) -> None:
    """Raise `AnalysisInputError` naming every column of `columns` missing from `frame`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisInputError(
            f"{name} is missing column(s) {missing}; it has {list(frame.columns)}"
        )


def require_codes(values: pd.Series, scale: Mapping[int, str], *, name: str) -> None:
    """Raise unless every non-missing value of `values` is a code of `scale`."""
    present = values.dropna()
    bad = sorted(set(present.tolist()) - set(scale))
    if bad:
        raise AnalysisInputError(
            f"{name} has value(s) {bad[:10]} outside the scale {sorted(scale)}"
        )


def code_labels(labels: Iterable[str], scale: Mapping[int, str]) -> list[int]:
    """Turn Likert labels (case- and space-insensitive) into their integer codes.

    >>> code_labels(["Very Good", "neutral or n/a"], AGENT_RATING_LABELS)
    [7, 4]
    """
    lookup = {label.casefold().strip(): code for code, label in scale.items()}
    codes = []
    for label in labels:
        key = str(label).casefold().strip()
        if key not in lookup:
            raise AnalysisInputError(
                f"unknown label {label!r}; expected one of {list(scale.values())}"
            )
        codes.append(lookup[key])
    return codes


def ordered_levels(present: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """The levels of `preferred` that occur in `present`, then any others in sorted order."""
    present_set = list(dict.fromkeys(present))
    head = [p for p in preferred if p in present_set]
    tail = sorted(p for p in present_set if p not in head)
    return head + tail


def likert_distribution(
    frame: pd.DataFrame,
    *,
    groups: list[str],
    value: str,
    scale: Mapping[int, str],
    group_orders: Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Count each level of `scale` per combination of `groups`, including empty levels.

    Returns columns ``*groups, value, label, count, share`` with ``share`` the fraction of the
    group's non-missing answers (NaN for a group without answers). Groups follow
    `group_orders` where given (unknown values after, sorted).
    """
    require_columns(frame, [*groups, value], name="frame")
    require_codes(frame[value], scale, name=value)
    answered = frame.dropna(subset=[value]).copy()
    answered[value] = answered[value].astype(int)
    group_orders = group_orders or {}
    levels = [ordered_levels(frame[g].dropna(), group_orders.get(g, ())) for g in groups]
    index = pd.MultiIndex.from_product([*levels, list(scale)], names=[*groups, value])
    counts = answered.groupby([*groups, value]).size().reindex(index, fill_value=0)
    out = counts.rename("count").reset_index()
    totals = out.groupby(groups)["count"].transform("sum")
    out["share"] = (out["count"] / totals).where(totals > 0)
    out["label"] = out[value].map(scale)
    out["count"] = out["count"].astype(int)
    return out[[*groups, value, "label", "count", "share"]]
