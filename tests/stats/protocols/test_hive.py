"""HIVE: agreement by model correctness and distinction against chance, by hand and on planted data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stats.protocols import hive
from stats.schema import AnalysisInputError


def _hand() -> pd.DataFrame:
    rows = []
    # p1 rates correct items 4, 3 and wrong items 2, 2; p2: correct 3, 3, wrong 3, 1
    for person, ratings in (("p1", [(True, 4), (True, 3), (False, 2), (False, 2)]),
                            ("p2", [(True, 3), (True, 3), (False, 3), (False, 1)])):
        for k, (correct, conf) in enumerate(ratings):
            rows.append({"participant": person, "arm": "GradCAM", "item": f"a{k}", "phase": "agreement",
                         "model_correct": correct, "confidence": conf})
    # distinction: p1 right 2 of 3, p2 right 1 of 3
    for person, chosen in (("p1", ["c", "b", "x"]), ("p2", ["x", "x", "a"])):
        for k, (ans, model) in enumerate(zip(chosen, ["c", "b", "a"], strict=True)):
            rows.append({"participant": person, "arm": "GradCAM", "item": f"d{k}", "phase": "distinction",
                         "answer": ans, "model_answer": model})
    return pd.DataFrame(rows)


def test_hand_computed_agreement_and_distinction():
    r = hive.analyse(_hand())
    a = r.agreement.iloc[0]
    assert a["conf_correct"] == pytest.approx((3.5 + 3) / 2) and a["conf_wrong"] == pytest.approx((2 + 2) / 2)
    assert a["difference"] == pytest.approx(((3.5 - 2) + (3 - 2)) / 2)
    assert a["confident_correct"] == 1.0 and a["confident_wrong"] == pytest.approx(1 / 4)
    d = r.distinction.iloc[0]
    assert (d["n_answers"], d["n_correct"]) == (6, 3) and d["accuracy"] == 0.5
    assert d["p_binomial"] == pytest.approx(stats.binomtest(3, 6, 0.25, alternative="greater").pvalue)
    assert d["p_binomial"] == pytest.approx(sum(stats.binom.pmf(k, 6, 0.25) for k in range(3, 7)))
    assert d["chance"] == 0.25 and r.accuracy("GradCAM").null == 0.25
    # two options: chance 1/2, nothing above chance
    assert hive.distinction(_hand(), n_options=2).iloc[0]["p_binomial"] == pytest.approx(
        stats.binomtest(3, 6, 0.5, alternative="greater").pvalue)


def test_planted_difference_matches_a_large_sample():
    plan = hive.HivePlan(n_per_arm=4000, n_agreement=10, n_distinction=2)
    f = hive.simulate_participants(plan, seed=0)
    est = hive.analyse(f).difference(plan.arm)
    assert est.covers(plan.planted_difference()) and abs(est.estimate - plan.planted_difference()) < 0.03


def test_recovers_planted_values_at_the_papers_n():
    plan = hive.HivePlan()
    r = hive.analyse(hive.simulate_participants(plan, seed=1))
    assert r.difference(plan.arm).covers(plan.planted_difference())
    assert r.accuracy(plan.arm).covers(plan.accuracy)
    assert not r.accuracy(plan.arm).covers(0.25)


def test_null_effects_cover_zero_and_chance_in_most_seeds():
    plan = hive.HivePlan(mu_correct=0.3, mu_wrong=0.3, accuracy=0.25)
    results = [hive.analyse(hive.simulate_participants(plan, seed=s)) for s in range(30)]
    assert np.mean([r.difference(plan.arm).covers(0.0) for r in results]) >= 0.8
    assert np.mean([r.accuracy(plan.arm).p_value <= 0.05 for r in results]) <= 0.2
    wrong = plan.planted_difference() + 0.5
    assert np.mean([r.difference(plan.arm).covers(wrong) for r in results]) < 0.2


def test_power_at_paper_n():
    p = hive.power_at_paper_n(n_sims=40, seed=2)
    assert p.planted == pytest.approx(0.32) and p.power > 0.5 and "50 participants" in p.design
    chance = hive.power_at_paper_n(plan=hive.HivePlan(accuracy=0.25), n_sims=40, seed=2)
    assert chance.power <= 0.2
    agree = hive.power_at_paper_n(task="agreement", n_sims=40, seed=2)
    assert agree.planted == pytest.approx(hive.HivePlan().planted_difference())
    with pytest.raises(ValueError, match="task"):
        hive.power_at_paper_n(task="both")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.assign(confidence=f["confidence"].replace({4: 5})), "outside the scale"),
        (lambda f: f.assign(phase=f["phase"].replace({"agreement": "trust"})), "phase"),
        (lambda f: f.drop(columns=["confidence"]), "missing column"),
        (lambda f: pd.concat([f, f.iloc[[0]]]), "duplicated"),
        (lambda f: f.assign(model_answer=None), "model's option"),
    ],
)
def test_malformed_frames_are_refused(mutate, message):
    with pytest.raises(AnalysisInputError, match=message):
        hive.analyse(mutate(_hand()))


def test_plan_refuses_impossible_accuracy():
    with pytest.raises(ValueError, match="leaves"):
        hive.simulate_participants(dataclasses.replace(hive.HivePlan(), accuracy=0.95))
