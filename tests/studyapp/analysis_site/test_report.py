"""The HTML report: complete, self-contained, escaped, drawn from the analysis it is given."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from stats import clustering, learning
from stats.analyse import analyse, settings_from_config
from stats.exclusions import apply_exclusions
from stats.schema import STUDY_A_ARMS, STUDY_B_STAGES
from stats.synthetic import generate_study_a, generate_study_b
from studyapp.analysis.report import render_report
from tests.studyapp.analysis_site.conftest import page_tables, value

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RULES = {"incomplete": True, "min_response_ms": 300, "max_fast_share": 0.5, "attention_checks": True}


def learning_analysis(trials, ratings=None, **config):
    settings, problems = settings_from_config(config, design="learning", levels=STUDY_A_ARMS)
    assert problems == []
    return analyse(design="learning", settings=settings, trials=trials, ratings=ratings)


@pytest.fixture(scope="module")
def study_a():
    trials, ratings = generate_study_a(
        12, seed=5, speeder_share=0.1, attention_fail_share=0.1, attention_trial=3
    )
    kept, report = apply_exclusions(trials, RULES)
    return trials, ratings, kept, report


def test_study_a_report(study_a):
    trials, ratings, kept, exclusions = study_a
    result = learning_analysis(trials, ratings, alpha=0.1, exclusions=RULES)
    html = render_report(
        result,
        config_hash="sha256:abc",
        software_version="0.1.0+test",
        levels=STUDY_A_ARMS,
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
        "p (Holm)",
        "Hedges&#x27; g",
        "Sample size",
        "Figure 5.9",
        "Kruskal-Wallis",
        f"{exclusions.n_excluded} of",
    ]:
        assert needle in html, needle
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)) == 2
    assert "Study B" not in html
    # The tables carry the exact numbers of the pure functions, on the kept participants.
    tables = page_tables(html)
    counts = learning.final_counts(kept, n_trials=20)
    shown = {row[0][0]: row for row in tables["final-counts"]}
    for r in counts.itertuples():
        assert value(shown[r.arm][1]) == r.n and value(shown[r.arm][2]) == r.mean
    family = learning.pairwise_welch(
        learning.participant_totals(kept, n_trials=20), learning.DISSERTATION_PAIRS, alpha=0.1
    )
    shown = {row[0][0]: row for row in tables["welch-tests"]}
    for test, p_adj in zip(family.tests, family.p_adjusted, strict=True):
        assert value(shown[test.hypothesis][3]) == test.t and value(shown[test.hypothesis][6]) == p_adj
    assert len(tables["excluded"]) == len(exclusions.excluded)


def test_the_report_does_not_run_the_analysis_again(study_a, monkeypatch):
    trials, ratings, _, _ = study_a
    result = learning_analysis(trials, ratings, exclusions=RULES)

    def refuse(*args, **kwargs):
        raise AssertionError("the report computed a statistic itself")

    for module, names in (
        (learning, ["learning_curve", "final_counts", "participant_totals", "pairwise_welch",
                    "rating_distribution", "rating_comparison"]),
        (clustering, ["purity_table", "purity_summary", "compare_stages", "compare_confidence"]),
    ):
        for name in names:
            monkeypatch.setattr(module, name, refuse)
    html = render_report(result, config_hash="h", software_version="v", generated_at=WHEN)
    assert "Table 5.3" in html and html.count("data:image/png;base64,") == 2


def test_report_is_self_contained_and_escapes_input(study_a):
    _, _, kept, _ = study_a
    html = render_report(
        learning_analysis(kept),
        config_hash="<script>alert(1)</script>",
        software_version="v",
        generated_at=WHEN,
        image_format="svg",
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from elsewhere
    assert "<link" not in html
    assert 'src="data:image/svg+xml;base64,' in html


def test_study_b_report():
    groupings, confidence, agents = generate_study_b(10, seed=2)
    settings, _ = settings_from_config({}, design="clustering", levels=STUDY_B_STAGES)
    result = analyse(
        design="clustering", settings=settings, groupings=groupings, confidence=confidence,
        agent_ratings=agents,
    )
    html = render_report(result, config_hash="h", software_version="v", generated_at=WHEN)
    for needle in [
        "Study B",
        "Figure 4",
        "Figure 5a–b",
        "Figure 5c",
        "XNN ≠ 1-Heatmap",
        "sign test",
    ]:
        assert needle in html, needle
    assert html.count("data:image/png;base64,") == 3
    assert "Study A" not in html


def test_naive_time_is_refused(study_a):
    result = learning_analysis(study_a[2])
    with pytest.raises(ValueError, match="timezone"):
        render_report(result, config_hash="h", software_version="v", generated_at=datetime(2024, 1, 1))  # noqa: DTZ001 - the naive datetime is the point
    with pytest.raises(ValueError):
        render_report(result, config_hash="h", software_version="v", image_format="gif")
