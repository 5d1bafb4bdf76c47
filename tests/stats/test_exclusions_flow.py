"""The participant-flow exclusions (issue 14): total duration, researcher rejections, and the
check rows that `analyse` reads for the exclusion decision only."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

from stats.analyse import CHECK_COLUMNS, CLUSTERING, LEARNING, analyse, settings_from_config
from stats.exclusions import ExclusionRules, apply_exclusions

NAN = math.nan


def make_trials() -> pd.DataFrame:
    """Three trials each; ``total_seconds`` and ``rejected_reason`` repeated on every row:

    - ada (Control): 600 s, kept;
    - bo (Control): 40 s, too quick;
    - cy (GCAM): 5000 s, too slow;
    - di (GCAM): did not finish (NaN duration: not judged by the duration rules);
    - ed (CDeepEx): 700 s, rejected by the researcher;
    - fy (CDeepEx): 800 s, a blank reason (not a rejection).
    """
    people = [
        ("ada", "Control", True, 600.0, ""),
        ("bo", "Control", True, 40.0, ""),
        ("cy", "GCAM", True, 5000.0, ""),
        ("di", "GCAM", False, NAN, ""),
        ("ed", "CDeepEx", True, 700.0, "answered at random"),
        ("fy", "CDeepEx", True, 800.0, "   "),
    ]
    rows = [
        {"participant": who, "arm": arm, "trial_index": i, "correct": i % 2 == 0, "response_ms": 900 + i,
         "completed": done, "total_seconds": secs, "rejected_reason": reason}
        for who, arm, done, secs, reason in people
        for i in range(3)
    ]
    return pd.DataFrame(rows)


def reasons(report) -> dict:
    return {(r.participant, r.rule): r.reason for r in report.excluded.itertuples()}


def test_total_duration_rules_and_rejections():
    kept, report = apply_exclusions(make_trials(), {"min_total_seconds": 60, "max_total_seconds": 3600})
    assert reasons(report) == {
        ("bo", "total_duration"): "took 40 s in all; minimum 60 s",
        ("cy", "total_duration"): "took 5000 s in all; maximum 3600 s",
        ("ed", "rejected"): "rejected by the researcher: answered at random",
    }
    assert set(kept["participant"]) == {"ada", "di", "fy"}  # di has no duration: not judged
    assert report.by_rule == {"total_duration": 2, "rejected": 1}
    assert report.rules == {"min_total_seconds": 60, "max_total_seconds": 3600}
    text = report.to_text()
    assert "3 of 6 participants excluded, 3 kept." in text
    assert "  - ed (CDeepEx): rejected by the researcher: answered at random" in text


def test_each_bound_alone():
    _, low = apply_exclusions(make_trials(), {"min_total_seconds": 650})
    assert {p for p, rule in reasons(low) if rule == "total_duration"} == {"ada", "bo"}
    _, high = apply_exclusions(make_trials(), {"max_total_seconds": 750})
    assert {p for p, rule in reasons(high) if rule == "total_duration"} == {"cy", "fy"}


def test_a_rejection_excludes_without_any_rule_and_nothing_without_the_column():
    _, report = apply_exclusions(make_trials(), {})
    assert reasons(report) == {("ed", "rejected"): "rejected by the researcher: answered at random"}
    assert report.rules == {}  # not a configurable rule
    _, none = apply_exclusions(make_trials().drop(columns="rejected_reason"), {})
    assert none.n_excluded == 0 and "rejected" not in none.by_rule


def test_duration_rules_need_the_column():
    from stats.schema import AnalysisInputError

    with pytest.raises(AnalysisInputError, match="total_seconds"):
        apply_exclusions(make_trials().drop(columns="total_seconds"), {"max_total_seconds": 10})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"min_total_seconds": -1}, ">= 0"),
        ({"max_total_seconds": "600"}, "number"),
        ({"max_total_seconds": True}, "number"),
        ({"min_total_seconds": 900, "max_total_seconds": 600}, "at most"),
    ],
)
def test_malformed_duration_rules_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        ExclusionRules.from_config(config)


def test_min_equal_to_max_is_allowed():
    assert ExclusionRules.from_config({"min_total_seconds": 600, "max_total_seconds": 600}).max_total_seconds == 600


# --------------------------------------------------------------------------- analyse(checks=)


def learning_trials(n_trials: int = 4) -> pd.DataFrame:
    """Two participants per arm who finished, with different totals."""
    rows = []
    for arm, people in (("Control", ["c1", "c2"]), ("GCAM", ["g1", "g2"]), ("CDeepEx", ["d1", "d2"])):
        for k, who in enumerate(people):
            for i in range(n_trials):
                rows.append({"participant": who, "arm": arm, "trial_index": i, "correct": i % 2 == 0 if k == 0 else i < n_trials - len(arm) % 3,
                             "response_ms": 1000, "completed": True, "total_seconds": 300.0,
                             "rejected_reason": ""})
    return pd.DataFrame(rows)


def checks_for(trials: pd.DataFrame, failed: dict[str, list[bool]]) -> pd.DataFrame:
    """One row per check for the participants in `failed`, one NaN row for the others, plus q1
    who failed the quiz and left before any trial."""
    rows = []
    for who, arm in trials.groupby("participant", sort=False)["arm"].first().items():
        for passed in failed.get(who, [None]):
            rows.append((who, arm, passed, True, 300.0, ""))
    rows.append(("q1", "GCAM", False, False, NAN, ""))
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def settings(rules: dict):
    s, problems = settings_from_config(
        {"exclusions": rules}, design=LEARNING, levels=["Control", "GCAM", "CDeepEx"]
    )
    assert not problems
    return s


def test_a_failed_catch_trial_excludes_and_check_rows_never_reach_the_curve():
    trials = learning_trials()
    checks = checks_for(trials, {"g2": [True, False], "d1": [True]})
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):  # no pandas concat/dtype deprecations
            warnings.simplefilter("error", category)
        result = analyse(design=LEARNING, settings=settings({"attention_checks": True}), trials=trials,
                         checks=checks)
    report = result.exclusions.report
    assert result.exclusions.error is None and report is not None
    assert reasons(report) == {
        ("g2", "attention_check"): "failed 1 of 2 attention check(s)",
        ("q1", "attention_check"): "failed 1 of 1 attention check(s)",
    }
    assert report.n_before == 7 and report.n_kept == 5  # q1 counts: it enrolled and failed a check
    kept = result.kept["trials"]
    # The learning analyses get the kept trials, exactly: no check row, no q1, no g2.
    pd.testing.assert_frame_equal(kept, trials[trials["participant"] != "g2"].reset_index(drop=True))
    curve = result.learning.curve
    assert set(curve["trial"]) == {1, 2, 3, 4}  # a check row would add a NaN trial
    gcam_n = curve[curve["arm"] == "GCAM"]["n"].unique().tolist()
    assert gcam_n == [1]
    assert result.learning.counts.set_index("arm").loc["GCAM", "n"] == 1


def test_without_the_rule_checks_change_nothing_but_rejections_and_durations_still_read_them():
    trials = learning_trials()
    checks = checks_for(trials, {"g2": [False]})
    plain = analyse(design=LEARNING, settings=settings({}), trials=trials)
    with_checks = analyse(design=LEARNING, settings=settings({}), trials=trials, checks=checks)
    assert with_checks.exclusions.report.n_excluded == 0
    pd.testing.assert_frame_equal(plain.learning.curve, with_checks.learning.curve)
    # A rejection known only from the check frame (e.g. a run with no trials) is reported.
    checks.loc[checks["participant"] == "q1", "rejected_reason"] = "bot"
    rejected = analyse(design=LEARNING, settings=settings({"incomplete": True}), trials=trials, checks=checks)
    assert reasons(rejected.exclusions.report) == {
        ("q1", "incomplete"): "did not complete the study",
        ("q1", "rejected"): "rejected by the researcher: bot",
    }


def test_clustering_checks_decide_for_the_batches():
    batches = pd.DataFrame(
        [(p, "Within", b, 60000, True, 900.0, "") for p in ("p1", "p2", "p3") for b in range(2)],
        columns=["participant", "arm", "trial_index", "response_ms", "completed", "total_seconds",
                 "rejected_reason"],
    )
    groupings = pd.DataFrame(
        [(p, "Within", "XNN", "CUB", b, i, i % 2, i % 2) for p in ("p1", "p2", "p3") for b in range(2)
         for i in range(4)],
        columns=["participant", "arm", "stage", "dataset", "batch", "image_id", "cluster", "predicted_class"],
    )
    checks = pd.DataFrame(
        [("p1", "Within", True, True, 900.0, ""), ("p2", "Within", False, True, 900.0, ""),
         ("p3", "Within", None, True, 900.0, "")],
        columns=CHECK_COLUMNS,
    )
    s, _ = settings_from_config({"exclusions": {"attention_checks": True}}, design=CLUSTERING, levels=[])
    result = analyse(design=CLUSTERING, settings=s, groupings=groupings, batches=batches, checks=checks)
    assert reasons(result.exclusions.report) == {("p2", "attention_check"): "failed 1 of 1 attention check(s)"}
    assert set(result.kept["groupings"]["participant"]) == {"p1", "p3"}
