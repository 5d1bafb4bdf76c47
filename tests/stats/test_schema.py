"""Likert coding and the shared distribution helper."""

from __future__ import annotations

import pandas as pd
import pytest

from stats.schema import (
    AGENT_RATING_LABELS,
    CONFIDENCE_LABELS,
    AnalysisInputError,
    code_labels,
    likert_distribution,
    ordered_levels,
)


def test_scales_run_upwards():
    assert AGENT_RATING_LABELS[1] == "Very Poor" and AGENT_RATING_LABELS[7] == "Very Good"
    assert AGENT_RATING_LABELS[4] == "Neutral or N/A"
    assert CONFIDENCE_LABELS[0] == "Zero" and CONFIDENCE_LABELS[6] == "100%"


def test_code_labels():
    assert code_labels(["Very Good", " neutral or n/a ", "VERY POOR"], AGENT_RATING_LABELS) == [
        7,
        4,
        1,
    ]
    with pytest.raises(AnalysisInputError, match="unknown label"):
        code_labels(["Excellent"], AGENT_RATING_LABELS)


def test_ordered_levels():
    assert ordered_levels(["XNN", "Extra", "NoVis", "A"], ["NoVis", "1-Heatmap", "XNN"]) == [
        "NoVis",
        "XNN",
        "A",
        "Extra",
    ]


def test_likert_distribution_fills_empty_levels_and_skips_missing_answers():
    frame = pd.DataFrame({"g": ["a", "a", "a", "b"], "v": [0, 0, None, 6]})
    dist = likert_distribution(frame, groups=["g"], value="v", scale=CONFIDENCE_LABELS)
    assert len(dist) == 14
    a = dist[dist["g"] == "a"].set_index("v")
    assert a.loc[0, "count"] == 2 and a.loc[0, "share"] == 1.0 and a["count"].sum() == 2
    assert dist[dist["g"] == "b"].set_index("v").loc[6, "label"] == "100%"
