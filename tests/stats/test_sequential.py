"""Group-sequential boundaries against published tables, and the procedure's type-I error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stats import sequential as seq
from stats.synthetic import generate_study_a

FIVE = np.arange(1, 6) / 5


def test_classic_obrien_fleming_matches_jennison_turnbull():
    # Jennison & Turnbull (2000) Table 2.3: C_B(5, 0.05) = 2.040; boundaries C_B sqrt(5/k).
    b = seq.classic_boundaries(5, alpha=0.05, kind="obrien_fleming")
    assert b == pytest.approx([4.56, 3.23, 2.63, 2.28, 2.04], abs=0.006)
    assert b[-1] == pytest.approx(2.040, abs=0.001)


def test_classic_pocock_constant_matches_jennison_turnbull():
    # Jennison & Turnbull (2000) Table 2.1: C_P(5, 0.05) = 2.413.
    b = seq.classic_boundaries(5, alpha=0.05, kind="pocock")
    assert b == pytest.approx([2.413] * 5, abs=0.001)


def test_lan_demets_obrien_fleming_matches_ldbounds():
    # Reboussin et al. (2000), ldbounds: K = 5 equally spaced, two-sided alpha 0.05, iuse = 1.
    b = seq.spending_boundaries(FIVE, alpha=0.05, rule="obrien_fleming", sides=2)
    assert b == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=0.002)


def test_one_sided_obrien_fleming_four_looks():
    # One-sided alpha 0.05 at t = 0.25, 0.5, 0.75, 1 (as tabulated by SeqBounds / ldbounds sides=1).
    b = seq.spending_boundaries([0.25, 0.5, 0.75, 1.0], alpha=0.05, rule="obrien_fleming", sides=1)
    assert b == pytest.approx([3.750, 2.540, 2.016, 1.720], abs=0.002)


def test_pocock_spending_first_look_and_total_alpha():
    b = seq.spending_boundaries(FIVE, alpha=0.05, rule="pocock", sides=2)
    first = 0.05 * math.log1p((math.e - 1) * 0.2)  # the first look spends alpha(t1) alone
    assert b[0] == pytest.approx(stats.norm.isf(first / 2), abs=1e-6)
    assert seq.crossing_probability(FIVE, b, sides=2) == pytest.approx(0.05, abs=1e-5)
    assert np.all(np.diff(b) < 0)  # Pocock-type bounds fall slowly


def test_stagewise_p_is_alpha_on_the_final_boundary():
    plan = seq.SequentialPlan(("A", "B", "greater"), look_every=20, max_n_per_arm=100, futility_z=None)
    c = plan.boundaries()
    assert seq.stagewise_p(plan, 5, c[-1]) == pytest.approx(0.05, abs=1e-5)
    assert seq.stagewise_p(plan, 1, c[0]) == pytest.approx(stats.norm.sf(c[0]), rel=1e-6)


@pytest.mark.parametrize("rule", ["obrien_fleming", "pocock"])
@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_type_one_error_of_the_procedure_is_alpha(rule, alternative):
    """2000 null studies' z paths (canonical joint distribution): rejections within MC error of α."""
    plan = seq.SequentialPlan(("A", "B", alternative), look_every=20, max_n_per_arm=100, spending=rule,
                              futility_z=None)
    rng = np.random.default_rng(2026)
    z = seq.null_z_paths(plan.times, 2000, rng)
    oc = seq.operating_characteristics(plan, z)
    mc = math.sqrt(0.05 * 0.95 / 2000)
    assert abs(oc.rejection_rate - 0.05) <= 3 * mc


def test_futility_is_non_binding_and_lowers_type_one_error():
    rng = np.random.default_rng(5)
    plan = seq.SequentialPlan(("A", "B", "greater"), look_every=20, max_n_per_arm=100, futility_z=0.0)
    z = seq.null_z_paths(plan.times, 2000, rng)
    with_f = seq.operating_characteristics(plan, z)
    without = seq.operating_characteristics(
        seq.SequentialPlan(("A", "B", "greater"), look_every=20, max_n_per_arm=100, futility_z=None), z
    )
    assert with_f.rejection_rate <= without.rejection_rate
    assert with_f.expected_n_per_arm < without.expected_n_per_arm
    assert with_f.stop_futility > 0.4  # about half of null studies are below 0 at the first look


def test_power_under_drift_matches_the_recursion():
    plan = seq.SequentialPlan(("A", "B", "greater"), look_every=20, max_n_per_arm=100, futility_z=None)
    drift = 2.5
    exact = seq.crossing_probability(plan.times, plan.boundaries(), sides=1, drift=drift)
    z = seq.null_z_paths(plan.times, 4000, np.random.default_rng(1), drift=drift)
    oc = seq.operating_characteristics(plan, z)
    assert abs(oc.rejection_rate - exact) <= 3 * math.sqrt(exact * (1 - exact) / 4000)


def test_decisions_and_looks():
    plan = seq.SequentialPlan(("A", "B", "greater"), look_every=20, max_n_per_arm=50)
    assert plan.look_sizes == [20, 40, 50]
    c = plan.boundaries()
    assert seq.decide(plan, 1, c[0] + 0.01) == "stop_efficacy"
    assert seq.decide(plan, 1, -0.5) == "stop_futility"
    assert seq.decide(plan, 2, 1.0) == "continue"
    assert seq.decide(plan, 3, c[2] - 0.01) == "final_accept"
    assert seq.decide(plan, 3, c[2]) == "final_reject"
    d = seq.evaluate_look(plan, 45, 5.0, estimate=1.0, se=0.2)
    assert (d.look, d.n_per_arm, d.decision) == (2, 40, "stop_efficacy")
    assert d.rci == pytest.approx((1.0 - c[1] * 0.2, math.inf))
    with pytest.raises(ValueError):
        seq.evaluate_look(plan, 10, 1.0)


def test_plan_from_config_and_bad_plans():
    plan = seq.SequentialPlan.from_config(
        {"comparison": ["CDeepEx", "GCAM", "two-sided"], "look_every": 25, "max_n_per_arm": 100, "spending": "pocock"}
    )
    assert plan.sides == 2 and plan.spending == "pocock" and plan.futility_z == 0.0
    with pytest.raises(ValueError):
        seq.SequentialPlan(("A", "B", "greater"), look_every=20, max_n_per_arm=100, spending="haybittle")
    with pytest.raises(ValueError):
        seq.SequentialPlan(("A", "B", "greater"), look_every=50, max_n_per_arm=20)


def test_look_from_trials_reads_the_planned_look():
    trials, _ = generate_study_a(45, seed=4)
    plan = seq.SequentialPlan(("CDeepEx", "Control", "greater"), look_every=20, max_n_per_arm=100)
    report = seq.look_from_trials(plan, trials)
    assert report.counts == {"CDeepEx": 45, "Control": 45}
    assert report.decision is not None and report.decision.look == 2 and report.decision.n_per_arm == 40
    few, _ = generate_study_a(10, seed=4)
    early = seq.look_from_trials(plan, few)
    assert early.decision is None and early.next_look == 20 and "first look" in early.message


def test_an_earlier_look_that_stops_wins():
    import pandas as pd

    rows = []
    rng = np.random.default_rng(0)
    for i in range(40):  # enrolment order: the first 10 per arm differ hugely, later ones reverse it
        for arm in ("CDeepEx", "Control"):
            good = (arm == "CDeepEx") == (i < 10)
            p = 0.9 if good else 0.2
            for t in range(20):
                rows.append((f"{arm}-{i:02d}", arm, t, bool(rng.random() < p)))
    trials = pd.DataFrame(rows, columns=["participant", "arm", "trial_index", "correct"])
    order = trials.groupby("participant", sort=False).ngroup()
    trials = trials.assign(_o=order).sort_values(["_o", "trial_index"], kind="stable").drop(columns="_o")
    plan = seq.SequentialPlan(("CDeepEx", "Control", "greater"), look_every=10, max_n_per_arm=50)
    report = seq.look_from_trials(plan, trials)
    assert report.decision.look == 1 and report.decision.decision == "stop_efficacy"
    z_now, _, _ = seq.look_statistic(plan, trials, 40)
    assert z_now < plan.boundaries()[3]  # read at look 4 alone it would not stop
