"""Forward/counterfactual simulation: hand-computed accuracies, planted effects recovered, nulls kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from stats.protocols import simulation as sim
from stats.schema import AnalysisInputError


def _hand_frame() -> pd.DataFrame:
    """Two participants per arm, 4 forward test items per phase (items 0, 1 model-correct)."""
    rows = []
    # hits per participant and phase, item by item (1 = guessed the model's answer)
    hits = {
        ("c1", "Control"): {"pre": [1, 0, 0, 0], "post": [1, 1, 0, 0]},
        ("c2", "Control"): {"pre": [1, 1, 0, 0], "post": [1, 1, 0, 0]},
        ("e1", "Explained"): {"pre": [1, 0, 0, 0], "post": [1, 1, 1, 1]},
        ("e2", "Explained"): {"pre": [0, 0, 0, 0], "post": [1, 1, 1, 0]},
    }
    for (person, arm), phases in hits.items():
        rows.append({"participant": person, "arm": arm, "item": "L0", "phase": "learn", "item_kind": "forward",
                     "model_correct": True, "model_answer": "A", "answer": None})
        for phase, hs in phases.items():
            for k, h in enumerate(hs):
                rows.append({"participant": person, "arm": arm, "item": f"{phase}{k}", "phase": phase,
                             "item_kind": "forward", "model_correct": k < 2, "model_answer": "A",
                             "answer": "A" if h else "B"})
    return pd.DataFrame(rows)


def test_hand_computed_accuracies_change_effect_and_utility():
    r = sim.analyse(_hand_frame())
    acc = r.accuracy.set_index(["item_kind", "subset", "arm"])
    ctrl = acc.loc[("forward", "all", "Control")]
    expl = acc.loc[("forward", "all", "Explained")]
    assert ctrl["pre"] == pytest.approx((0.25 + 0.5) / 2) and ctrl["post"] == pytest.approx(0.5)
    assert expl["pre"] == pytest.approx(0.125) and expl["post"] == pytest.approx(0.875)
    assert ctrl["change"] == pytest.approx(0.125) and expl["change"] == pytest.approx(0.75)
    # model-wrong items (2, 3): control never, explained 0 -> 0.75
    wrong = acc.loc[("forward", "model wrong", "Explained")]
    assert wrong["pre"] == 0 and wrong["post"] == pytest.approx(0.75)
    eff = r.effects.set_index(["item_kind", "subset", "arm"]).loc[("forward", "all", "Explained")]
    assert eff["effect"] == pytest.approx(0.75 - 0.125)
    assert eff["utility"] == pytest.approx(0.875 / 0.5)  # Colin's ratio to the baseline arm
    assert eff["post_gain"] == pytest.approx(0.375)
    assert r.effect("Explained").estimate == pytest.approx(0.625)
    assert "counterfactual" not in set(r.accuracy["item_kind"])  # no such items, no rows
    assert r.balance["share_model_correct"].tolist() == [0.5, 0.5] and r.balance["n_answers"].tolist() == [16, 16]


def test_answers_stored_as_numbers_or_text_compare_equal():
    f = _hand_frame()
    f["model_answer"] = 1
    f["answer"] = f["answer"].map({"A": "1", "B": 0.0, None: None})
    assert sim.analyse(f).effect("Explained").estimate == pytest.approx(0.625)


def test_recovers_the_planted_effect_on_every_subset_and_kind():
    plan = sim.SimulationPlan(n_per_arm=60)
    r = sim.analyse(sim.simulate_participants(plan, seed=3))
    planted = plan.planted_effect("Explained")
    assert planted == pytest.approx(0.08)
    for kind in ("forward", "counterfactual"):
        for subset in ("all", "model correct", "model wrong"):
            assert r.effect("Explained", item_kind=kind, subset=subset).covers(planted), (kind, subset)
    fast = sim.explanation_effect(sim.simulate_participants(plan, seed=3), "Explained")
    assert fast.estimate == pytest.approx(r.effect("Explained").estimate)
    # every participant is counted once per arm
    assert set(r.accuracy["n"]) == {60} and r.n_participants == 120


def test_intervals_cover_the_planted_effect_at_their_level_and_exclude_a_wrong_value():
    plan = sim.SimulationPlan(n_per_arm=30, counterfactual=False)
    planted = plan.planted_effect("Explained")
    ests = [sim.explanation_effect(sim.simulate_participants(plan, seed=s), "Explained") for s in range(40)]
    coverage = np.mean([e.covers(planted) for e in ests])
    assert 0.85 <= coverage <= 1.0
    assert np.mean([e.covers(planted + 0.2) for e in ests]) < 0.2  # a wrong planted value is rejected


def test_no_effect_interval_covers_zero_in_most_seeds():
    plan = sim.SimulationPlan(n_per_arm=30, gains={"Control": 0.05, "Explained": 0.05}, counterfactual=False)
    ests = [sim.explanation_effect(sim.simulate_participants(plan, seed=s), "Explained") for s in range(40)]
    assert np.mean([e.covers(0.0) for e in ests]) >= 0.85


def test_power_at_paper_n_detects_planted_and_keeps_alpha_under_null():
    p = sim.power_at_paper_n(n_sims=60, seed=1)
    assert p.planted == pytest.approx(0.08) and p.power > 0.5 and p.coverage > 0.8
    assert "50 per arm" in p.design
    null = sim.SimulationPlan(gains={"Control": 0.05, "Explained": 0.05})
    p0 = sim.power_at_paper_n(plan=null, n_sims=60, seed=1)
    assert p0.power <= 0.15


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["answer"]), "missing column"),
        (lambda f: f.assign(phase=f["phase"].replace({"post": "after"})), "phase"),
        (lambda f: pd.concat([f, f.iloc[[1]]]), "duplicated"),
        (lambda f: f.assign(arm=np.where(f.index % 2 == 0, "Control", "Explained")), "more than one arm"),
        (lambda f: f.assign(model_correct="maybe"), "non-boolean"),
        (lambda f: f[f["arm"] != "Control"], "control arm"),
        (lambda f: f.iloc[0:0], "no rows"),
        (lambda f: f.assign(item=f["item"].replace({"L0": "post0"})), "both in the learning phase"),
    ],
)
def test_malformed_frames_are_refused(mutate, message):
    with pytest.raises(AnalysisInputError, match=message):
        sim.analyse(mutate(_hand_frame()))


def test_plan_refuses_probabilities_outside_0_1():
    with pytest.raises(ValueError, match="leave"):
        sim.simulate_participants(dataclasses.replace(sim.SimulationPlan(), gains={"Control": 0.0, "Explained": 0.5}))
