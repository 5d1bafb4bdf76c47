"""Exclusion rules and their report."""

from __future__ import annotations

import pandas as pd
import pytest

from stats.exclusions import ExclusionRules, apply_exclusions
from stats.schema import AnalysisInputError
from stats.synthetic import generate_study_a

RULES = {
    "incomplete": True,
    "min_response_ms": 300,
    "max_fast_share": 0.5,
    "attention_checks": True,
}


def make_trials() -> pd.DataFrame:
    """Named personas, 4 trials each (attention check on trial 2):

    - ada (Control): careful, passes everything;
    - bo (Control): left after 2 trials;
    - cy (GCAM): 3 of 4 answers under 300 ms;
    - di (GCAM): 2 of 4 fast: exactly the limit, kept;
    - ed (CDeepEx): failed the attention check and did not complete.
    """
    rows = []

    def add(who, arm, times, completed=True, check=True):
        for i, ms in enumerate(times):
            rows.append(
                {
                    "participant": who,
                    "arm": arm,
                    "trial_index": i,
                    "correct": True,
                    "response_ms": ms,
                    "completed": completed,
                    "attention_check": check if i == 2 else None,
                }
            )

    add("ada", "Control", [900, 1200, 800, 1500])
    add("bo", "Control", [900, 1000], completed=False)
    add("cy", "GCAM", [120, 150, 200, 1400])
    add("di", "GCAM", [120, 150, 900, 1400])
    add("ed", "CDeepEx", [900, 1000, 1100, 700], completed=False, check=False)
    return pd.DataFrame(rows)


def test_each_rule_and_the_report():
    kept, report = apply_exclusions(make_trials(), RULES)
    assert set(kept["participant"]) == {"ada", "di"}
    assert report.excluded_participants == {"bo", "cy", "ed"}
    reasons = {(r.participant, r.rule): r.reason for r in report.excluded.itertuples()}
    assert reasons == {
        ("bo", "incomplete"): "did not complete the study",
        ("cy", "too_fast"): "3 of 4 answers (75%) faster than 300 ms; limit 50%",
        ("ed", "attention_check"): "failed 1 of 1 attention check(s)",
        ("ed", "incomplete"): "did not complete the study",
    }
    assert report.by_rule == {"incomplete": 2, "too_fast": 1, "attention_check": 1}
    counts = report.counts.set_index("arm")
    assert counts.loc["Control"].tolist() == [2, 1, 1]
    assert counts.loc["GCAM"].tolist() == [2, 1, 1]
    assert counts.loc["CDeepEx"].tolist() == [1, 1, 0]
    assert (report.n_before, report.n_excluded, report.n_kept) == (5, 3, 2)
    assert report.rules == RULES
    text = report.to_text()
    assert "3 of 5 participants excluded" in text and "cy (GCAM)" in text


def test_report_filters_other_frames():
    _, report = apply_exclusions(make_trials(), RULES)
    ratings = pd.DataFrame(
        {
            "participant": ["ada", "cy", "di"],
            "arm": ["Control", "GCAM", "GCAM"],
            "rating": [3, 4, 5],
        }
    )
    assert report.apply(ratings)["participant"].tolist() == ["ada", "di"]


def test_no_rules_keeps_everyone():
    trials = make_trials()
    kept, report = apply_exclusions(trials, {})
    assert len(kept) == len(trials) and report.n_excluded == 0 and report.rules == {}


def test_a_study_without_arms_still_gets_its_all_row():
    """No arm on any row (a clustering study): the counts are just the "all" row. Appending that
    row to the empty per-arm frame was a pandas-4 deprecation (an error under pyproject's filters)."""
    trials = make_trials().assign(arm=None)
    _, report = apply_exclusions(trials, RULES)
    assert report.counts["arm"].tolist() == ["all"]
    assert all(report.counts[c].dtype.kind == "i" for c in ("n_before", "n_excluded", "n_kept"))


def test_expected_trials_without_completed_column():
    trials = make_trials().drop(columns="completed")
    _, report = apply_exclusions(trials, {"incomplete": True, "expected_trials": 4})
    assert report.excluded.to_dict("records") == [
        {
            "participant": "bo",
            "arm": "Control",
            "rule": "incomplete",
            "reason": "answered 2 of 4 trials",
        }
    ]
    with pytest.raises(AnalysisInputError, match="expected_trials"):
        apply_exclusions(trials, {"incomplete": True})


def test_rule_columns_must_exist():
    with pytest.raises(AnalysisInputError, match="attention_check"):
        apply_exclusions(make_trials().drop(columns="attention_check"), {"attention_checks": True})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"incomplete": "yes"}, "true or false"),
        ({"min_response_ms": 300}, "together"),
        ({"min_response_ms": 300, "max_fast_share": 1.5}, "share"),
        ({"min_response_ms": -1, "max_fast_share": 0.5}, ">= 0"),
        ({"min_response_ms": True, "max_fast_share": 0.5}, "number"),
        ({"expected_trials": 2.5}, "whole number"),
        ({"speeders": True}, "unknown"),
    ],
)
def test_malformed_rules_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        ExclusionRules.from_config(config)


def test_synthetic_misbehaviour_is_caught():
    trials, _ = generate_study_a(
        40,
        seed=9,
        speeder_share=0.2,
        dropout_share=0.2,
        attention_fail_share=0.2,
        attention_trial=5,
    )
    kept, report = apply_exclusions(trials, RULES | {"expected_trials": 20})
    per_participant = trials.groupby("participant")
    speeders = per_participant["response_ms"].max().lt(300)
    dropped = ~per_participant["completed"].all()
    failed = trials[trials["attention_check"].eq(False).fillna(False)]["participant"].unique()
    expected = set(speeders[speeders].index) | set(dropped[dropped].index) | set(failed)
    assert report.excluded_participants == expected
    assert report.n_kept == kept["participant"].nunique() == 120 - len(expected)
    assert 0 < report.n_excluded < 120
