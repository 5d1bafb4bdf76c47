"""Synthetic participants: the decision rule, seeding, and the generated tidy data."""

from __future__ import annotations

import numpy as np
import pytest

from stats import learning
from stats.synthetic import (
    PLANTED_CURVES,
    LearningCurve,
    SyntheticParticipant,
    choose_answer,
    generate_study_a,
    generate_study_b,
    seed_for,
)

OPTIONS = ["Ternal", "Peat"]


def test_curve_shape():
    curve = LearningCurve(start=0.5, ceiling=0.9, rate=0.1)
    assert curve.probability(0) == pytest.approx(0.5)
    assert curve.probability(1000) == pytest.approx(0.9)
    assert curve.probability(10) == pytest.approx(0.9 - 0.4 * np.exp(-1.0))
    p = curve.probability(np.arange(20))
    assert np.all(np.diff(p) > 0)
    assert curve.expected_total(20) == pytest.approx(p.sum())
    with pytest.raises(ValueError):
        LearningCurve(start=1.5)


@pytest.mark.parametrize("trial_index", [0, 10, 19])
def test_choose_answer_is_correct_with_the_curve_probability(trial_index):
    rng = np.random.default_rng(0)
    n = 20000
    hits = sum(
        choose_answer(
            arm="CDeepEx", trial_index=trial_index, correct_answer="Peat", options=OPTIONS, rng=rng
        )
        == "Peat"
        for _ in range(n)
    )
    p = float(PLANTED_CURVES["CDeepEx"].probability(trial_index))
    assert abs(hits / n - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_wrong_answers_are_other_options():
    rng = np.random.default_rng(1)
    curves = {"X": LearningCurve(start=0.0, ceiling=0.0, rate=0.0)}  # always wrong
    answers = {
        choose_answer(
            arm="X", trial_index=3, correct_answer="a", options="abc", rng=rng, curves=curves
        )
        for _ in range(200)
    }
    assert answers == {"b", "c"}


def test_choose_answer_refusals():
    rng = np.random.default_rng(0)
    with pytest.raises(KeyError):
        choose_answer(arm="Nope", trial_index=0, correct_answer="Peat", options=OPTIONS, rng=rng)
    with pytest.raises(ValueError):
        choose_answer(arm="GCAM", trial_index=0, correct_answer="Other", options=OPTIONS, rng=rng)
    with pytest.raises(ValueError):
        choose_answer(arm="GCAM", trial_index=-1, correct_answer="Peat", options=OPTIONS, rng=rng)


def test_bot_is_reproducible_from_its_seed():
    def run(seed):
        bot = SyntheticParticipant("GCAM", seed=seed)
        return (
            [bot.choose(t, "Peat", OPTIONS) for t in range(20)],
            bot.response_ms(),
            bot.feedback_rating(),
        )

    assert run(seed_for(1, "P1")) == run(seed_for(1, "P1"))
    assert run(seed_for(1, "P1")) != run(seed_for(2, "P1"))
    assert seed_for("a", 1) == seed_for("a", 1) != seed_for("a1")
    assert 0 <= seed_for("x") < 2**63


def test_generated_study_a_schema_and_reference():
    trials, ratings = generate_study_a(5, seed=1, model_error=0.3)
    assert list(trials.columns) == [
        "participant",
        "arm",
        "trial_index",
        "correct",
        "response_ms",
        "choice",
        "true_label",
        "model_prediction",
        "completed",
        "attention_check",
    ]
    assert trials.groupby("arm")["participant"].nunique().to_dict() == {
        "CDeepEx": 5,
        "Control": 5,
        "GCAM": 5,
    }
    assert (trials["correct"] == (trials["choice"] == trials["model_prediction"])).all()
    assert (trials["true_label"] != trials["model_prediction"]).any()
    rescored = learning.rescore(trials, reference="model_prediction")
    assert (rescored["correct"] == trials["correct"]).all()
    truth, _ = generate_study_a(5, seed=1, reference="true_label")
    assert (truth["correct"] == (truth["choice"] == truth["true_label"])).all()
    assert set(ratings["rating"]) <= {1, 2, 3, 4, 5} and len(ratings) == 15
    again, _ = generate_study_a(5, seed=1, model_error=0.3)
    assert trials.equals(again)


def test_generated_misbehaviour():
    trials, ratings = generate_study_a(
        30,
        seed=2,
        speeder_share=0.3,
        dropout_share=0.3,
        attention_fail_share=0.3,
        attention_trial=4,
    )
    per = trials.groupby("participant")
    n_trials = per.size()
    done = per["completed"].first()
    assert (n_trials[done] == 20).all() and (n_trials[~done] < 20).all()
    assert set(ratings["participant"]) == set(done[done].index)
    checks = trials.dropna(subset=["attention_check"])
    assert (checks["trial_index"] == 4).all() and (~checks["attention_check"]).any()
    assert per["response_ms"].max().lt(300).any()


def test_generated_study_b_schema():
    groupings, confidence, agents = generate_study_b(3, seed=0)
    assert len(groupings) == 3 * 2 * 3 * 10
    assert groupings.groupby(["participant", "stage", "dataset"]).size().eq(10).all()
    assert confidence["confidence"].between(0, 6).all() and len(confidence) == 18
    assert agents["rating"].between(1, 7).all() and set(agents["agent"]) == {"XNN", "1-Heatmap"}
