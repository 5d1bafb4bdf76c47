"""The HTML report: complete, self-contained, escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from studyapp.analysis.exclusions import apply_exclusions
from studyapp.analysis.report import render_report
from studyapp.analysis.synthetic import generate_study_a, generate_study_b

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def study_a():
    trials, ratings = generate_study_a(
        12, seed=5, speeder_share=0.1, attention_fail_share=0.1, attention_trial=3
    )
    kept, report = apply_exclusions(
        trials,
        {
            "incomplete": True,
            "min_response_ms": 300,
            "max_fast_share": 0.5,
            "attention_checks": True,
        },
    )
    return kept, report.apply(ratings), report


def test_study_a_report(study_a):
    trials, ratings, exclusions = study_a
    html = render_report(
        config_hash="sha256:abc",
        software_version="0.1.0+test",
        exclusion_report=exclusions,
        trials=trials,
        ratings=ratings,
        alpha=0.1,
        generated_at=WHEN,
    )
    assert html.startswith("<!DOCTYPE html>")
    for needle in [
        "sha256:abc",
        "0.1.0+test",
        "2024-05-01T12:00:00+00:00",
        "Exclusions",
        "Table 5.2",
        "Table 5.3",
        "CDeepEx &gt; Control",
        "p (holm)",
        "Hedges&#x27; g",
        "Sample size",
        "Figure 5.9",
        "Kruskal-Wallis",
        f"{exclusions.n_excluded} of",
    ]:
        assert needle in html, needle
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)) == 2
    assert "Study B" not in html


def test_report_is_self_contained_and_escapes_input(study_a):
    trials, ratings, _ = study_a
    html = render_report(
        config_hash="<script>alert(1)</script>",
        software_version="v",
        trials=trials,
        generated_at=WHEN,
        image_format="svg",
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from elsewhere
    assert "<link" not in html
    assert 'src="data:image/svg+xml;base64,' in html


def test_study_b_report():
    groupings, confidence, agents = generate_study_b(10, seed=2)
    html = render_report(
        config_hash="h",
        software_version="v",
        groupings=groupings,
        confidence=confidence,
        agent_ratings=agents,
        generated_at=WHEN,
    )
    for needle in [
        "Study B",
        "Figure 4",
        "Figure 5a-b",
        "Figure 5c",
        "XNN ≠ 1-Heatmap",
        "sign test",
    ]:
        assert needle in html, needle
    assert html.count("data:image/png;base64,") == 3
    assert "Study A" not in html


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        render_report(config_hash="h", software_version="v", generated_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        render_report(config_hash="h", software_version="v", image_format="gif")
