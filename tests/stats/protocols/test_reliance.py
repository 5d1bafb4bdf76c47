"""AI-assisted decisions: Schemmer's RAIR/RSR and the accuracies computed by hand, planted reliance recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stats.protocols import reliance as rel
from stats.schema import AnalysisInputError


def _frame(cases: dict[tuple[str, str], list[tuple[str, str, str, str]]]) -> pd.DataFrame:
    """cases[(participant, arm)] = [(truth, ai, initial, final), ...] -> long frame."""
    rows = []
    for (person, arm), items in cases.items():
        for k, (truth, ai, initial, final) in enumerate(items):
            for phase, answer in (("alone", initial), ("assisted", final)):
                rows.append({"participant": person, "arm": arm, "item": k, "phase": phase, "truth": truth,
                             "model_answer": ai, "answer": answer})
    return pd.DataFrame(rows)


HAND = {
    ("c1", "Control"): [
        ("A", "A", "B", "A"),  # own wrong, AI right, switched: RAIR case, relied
        ("A", "A", "B", "B"),  # own wrong, AI right, stayed: RAIR case, under-reliance
        ("A", "B", "A", "A"),  # own right, AI wrong, kept: RSR case
        ("A", "B", "A", "B"),  # own right, AI wrong, switched: over-reliance
        ("A", "A", "A", "A"),  # all agree
    ],
    ("e1", "Explained"): [
        ("A", "A", "B", "A"),
        ("A", "A", "B", "A"),
        ("A", "B", "A", "A"),
        ("A", "B", "A", "A"),
        ("A", "A", "A", "A"),
    ],
}


def test_hand_computed_measures():
    r = rel.analyse(_frame(HAND), reference_arm="Control")
    c = {m: r.measure("Control", m).estimate for m in rel.MEASURES}
    assert c == pytest.approx({"RAIR": 0.5, "RSR": 0.5, "human alone": 0.6, "AI alone": 0.6, "team": 0.6,
                               "over-reliance": 0.5, "under-reliance": 1 / 3})
    e = {m: r.measure("Explained", m).estimate for m in rel.MEASURES}
    assert e == pytest.approx({"RAIR": 1.0, "RSR": 1.0, "human alone": 0.6, "AI alone": 0.6, "team": 1.0,
                               "over-reliance": 0.0, "under-reliance": 0.0})
    # split by model correctness: the team is right on 2 of 3 model-right items in Control
    assert r.measure("Control", "team", "model correct").estimate == pytest.approx(2 / 3)
    assert r.measure("Control", "team", "model wrong").estimate == pytest.approx(1 / 2)
    assert r.comparison("Explained", "RAIR").estimate == pytest.approx(0.5)
    # RAIR is undefined on model-wrong items and is not reported there
    with pytest.raises(KeyError):
        r.measure("Control", "RAIR", "model wrong")


def test_multiclass_switch_to_a_wrong_ai_is_over_reliance_but_not_a_rair_or_rsr_case():
    f = _frame({("p", "X"): [("cat", "dog", "bird", "dog"), ("cat", "cat", "bird", "cat")]})
    r = rel.analyse(f)
    assert r.measure("X", "over-reliance").estimate == 1.0
    assert r.measure("X", "RAIR").estimate == 1.0 and r.measure("X", "RAIR").n == 1  # only item 2 counts
    with pytest.raises(KeyError):
        r.measure("X", "RSR")  # no case of own right and AI wrong


def test_items_missing_a_phase_are_left_out_and_counted():
    f = _frame(HAND)
    f = f.drop(f[(f["participant"] == "c1") & (f["item"] == 0) & (f["phase"] == "assisted")].index)
    r = rel.analyse(f, reference_arm="Control")
    assert r.incomplete == 1
    assert r.measure("Control", "RAIR").estimate == 0.0  # the switch on item 0 is gone


def test_recovers_planted_rair_and_keeps_rsr_null():
    plan = rel.ReliancePlan()
    r = rel.analyse(rel.simulate_participants(plan, seed=1), reference_arm="Control")
    assert r.comparison("Explained", "RAIR").covers(plan.planted_rair_difference("Explained", "Control"))
    assert r.comparison("Explained", "RSR").covers(0.0)
    assert r.measure("Control", "AI alone").estimate == pytest.approx(0.75)
    fast = rel.rair_difference(rel.simulate_participants(plan, seed=1), "Explained", "Control")
    assert fast.estimate == pytest.approx(r.comparison("Explained", "RAIR").estimate)


def test_coverage_of_planted_rair_and_zero_under_no_effect():
    plan = rel.ReliancePlan(n_per_arm=30)
    planted = plan.planted_rair_difference("Explained", "Control")
    ests = [rel.rair_difference(rel.simulate_participants(plan, seed=s), "Explained", "Control") for s in range(30)]
    assert np.mean([e.covers(planted) for e in ests]) >= 0.8
    assert np.mean([e.covers(planted + 0.3) for e in ests]) < 0.2
    null = rel.ReliancePlan(n_per_arm=30, rair={"Control": 0.5, "Explained": 0.5})
    nulls = [rel.rair_difference(rel.simulate_participants(null, seed=s), "Explained", "Control") for s in range(30)]
    assert np.mean([e.covers(0.0) for e in nulls]) >= 0.8


def test_power_at_paper_n():
    p = rel.power_at_paper_n(n_sims=40, seed=3)
    assert "100 per arm" in p.design and p.planted == pytest.approx(0.15)
    assert p.power > 0.6
    null = rel.ReliancePlan(rair={"Control": 0.5, "Explained": 0.5})
    assert rel.power_at_paper_n(plan=null, n_sims=40, seed=3).power <= 0.15


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["truth"]), "missing column"),
        (lambda f: f.assign(phase="final"), "phase"),
        (lambda f: f.assign(answer=None), "without an answer"),
        (lambda f: pd.concat([f, f.iloc[[0]]]), "duplicated"),
        (lambda f: f.assign(arm=np.where(f["phase"] == "alone", "Control", "Explained")), "more than one arm"),
        (lambda f: f[f["phase"] == "alone"], "both alone and assisted"),
    ],
)
def test_malformed_frames_are_refused(mutate, message):
    with pytest.raises(AnalysisInputError, match=message):
        rel.analyse(mutate(_frame(HAND)))


def test_unknown_reference_arm_is_refused():
    with pytest.raises(AnalysisInputError, match="reference arm"):
        rel.analyse(_frame(HAND), reference_arm="Nope")
