"""Metrics versus people: the APEM slope planted in synthetic answers is recovered, the null metric is not,
and the two-way clustered intervals hold their level where clustering by participant alone does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stats.protocols import metrics_people as mp
from stats.schema import AnalysisInputError


def test_coefficients_are_least_squares_and_per_sd_scales_them():
    f = mp.simulate_participants(mp.MetricsPlan(), seed=5)
    m = mp.fit(f, outcome="correct", metrics=["apem", "morph_size"])
    x = np.column_stack([np.ones(len(f)), f["apem"], f["morph_size"]])
    beta = np.linalg.lstsq(x, f["correct"].astype(float), rcond=None)[0]
    c = m.coefficients.set_index("metric")
    assert c.loc["apem", "coef"] == pytest.approx(beta[1]) and c.loc["morph_size", "coef"] == pytest.approx(beta[2])
    assert c.loc["apem", "per_sd"] == pytest.approx(beta[1] * f["apem"].std())
    assert (m.n_participants, m.n_items, m.df, m.n_obs) == (45, 20, 19, 900)


def test_an_exact_linear_outcome_gives_its_slope():
    f = pd.DataFrame({"participant": np.repeat(["a", "b", "c"], 4), "item": np.tile(list("wxyz"), 3),
                      "apem": np.tile([0.1, 0.4, 0.6, 0.9], 3)})
    f["rating"] = 2 + 3 * f["apem"]
    assert mp.fit(f, outcome="rating", metrics=["apem"]).coefficient("apem").estimate == pytest.approx(3.0)


@pytest.mark.parametrize("outcome", ["correct", "rating"])
def test_recovers_the_planted_apem_slope_and_not_the_null_metric(outcome):
    plan = mp.MetricsPlan(n_participants=60, n_items=40, outcome=outcome)
    m = mp.fit(mp.simulate_participants(plan, seed=1), outcome=outcome, metrics=["apem", "morph_size"])
    apem = m.coefficient("apem")
    assert apem.covers(plan.planted_slope("apem")) and not apem.covers(0.0)
    assert m.coefficient("morph_size").covers(0.0)
    assert plan.planted_slope("apem") == pytest.approx(0.3 if outcome == "correct" else 1.2)


def test_two_way_intervals_hold_their_level_and_participant_clustering_does_not():
    plan = mp.MetricsPlan(n_items=40)
    cover = {"two-way": [], "participant": []}
    for s in range(80):
        f = mp.simulate_participants(plan, seed=s)
        for clustering in cover:
            est = mp.fit(f, outcome="correct", metrics=["apem"], clustering=clustering).coefficient("apem")
            cover[clustering].append(est.covers(plan.planted_slope()))
    assert np.mean(cover["two-way"]) >= 0.88
    assert np.mean(cover["participant"]) < np.mean(cover["two-way"]) - 0.05


def test_no_effect_covers_zero_and_a_wrong_slope_is_rejected():
    plan = mp.MetricsPlan(apem_slope=0.0)
    ests = [mp.fit(mp.simulate_participants(plan, seed=s), outcome="correct", metrics=["apem"]).coefficient("apem")
            for s in range(40)]
    assert np.mean([e.covers(0.0) for e in ests]) >= 0.8
    assert np.mean([e.covers(0.45) for e in ests]) < 0.2


def test_adjusting_for_arm_keeps_the_slope():
    plan = mp.MetricsPlan(n_participants=60, n_items=40, base=0.55)
    f = mp.simulate_participants(plan, seed=2)
    f["arm"] = np.where(f["participant"].str[1:].astype(int) % 2 == 0, "Control", "GCAM")
    rng = np.random.default_rng(0)
    bump = (f["arm"] == "GCAM") & ~f["correct"] & (rng.uniform(size=len(f)) < 0.2)  # GCAM answers better
    f.loc[bump, "correct"] = True
    m = mp.fit(f, outcome="correct", metrics=["apem"], adjust_for=["arm"])
    assert m.coefficient("apem").covers(plan.planted_slope())


def test_a_two_way_covariance_that_is_not_psd_is_repaired_not_nan():
    """15 participants × 20 items, seed 17: V_p + V_i - V_pi has a negative eigenvalue and statsmodels'
    standard error of an intercept or slope is NaN (CI on PostgreSQL met such a draw). The fit repairs the
    matrix (CGM 2011) and each error is at least the larger one-way clustered error."""
    import pandas as pd
    import statsmodels.api as sm

    f = mp.simulate_participants(mp.MetricsPlan(n_participants=15, n_items=20), seed=17)
    x = sm.add_constant(f[["apem", "morph_size"]].to_numpy())
    groups = np.column_stack([pd.factorize(f["participant"])[0], pd.factorize(f["item"])[0]])
    ols = sm.OLS(f["correct"].astype(float).to_numpy(), x)
    with np.errstate(invalid="ignore"):
        raw = ols.fit(cov_type="cluster", cov_kwds={"groups": groups})
        assert np.isnan(raw.bse).any() and np.linalg.eigvalsh(raw.cov_params()).min() < 0
    one_way = np.maximum(*(ols.fit(cov_type="cluster", cov_kwds={"groups": groups[:, j]}).bse for j in (0, 1)))
    m = mp.fit(f, outcome="correct", metrics=["apem", "morph_size"])
    se = m.coefficients["se"].to_numpy()
    assert np.isfinite(m.coefficients[["se", "ci_low", "ci_high", "p_value"]].to_numpy()).all()
    assert (se >= one_way[1:] - 1e-12).all()


def test_a_psd_two_way_covariance_is_used_as_it_is():
    import pandas as pd
    import statsmodels.api as sm

    f = mp.simulate_participants(mp.MetricsPlan(), seed=1)
    x = sm.add_constant(f[["apem", "morph_size"]].to_numpy())
    groups = np.column_stack([pd.factorize(f["participant"])[0], pd.factorize(f["item"])[0]])
    raw = sm.OLS(f["correct"].astype(float).to_numpy(), x).fit(cov_type="cluster", cov_kwds={"groups": groups})
    assert np.linalg.eigvalsh(raw.cov_params()).min() >= 0
    m = mp.fit(f, outcome="correct", metrics=["apem", "morph_size"])
    assert np.allclose(m.coefficients["se"].to_numpy(), raw.bse[1:])


def test_power_at_paper_n():
    p = mp.power_at_paper_n(n_sims=60, seed=1)
    assert "45 participants × 20 items" == p.design and p.power > 0.6 and p.planted == 0.3
    assert mp.power_at_paper_n(plan=mp.MetricsPlan(apem_slope=0.0), n_sims=60, seed=1).power <= 0.2


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda f: f.assign(apem="high"), {}, "numeric"),
        (lambda f: f.assign(apem=0.5), {}, "do not vary"),
        (lambda f: f[f["item"].isin(["i0", "i1"])], {}, "at least 3"),
        (lambda f: f.drop(columns=["morph_size"]), {}, "missing column"),
        (lambda f: f.assign(correct="yes"), {}, "numeric or boolean"),
        (lambda f: f, {"metrics": []}, "at least one metric"),
    ],
)
def test_malformed_input_is_refused(mutate, kwargs, message):
    f = mutate(mp.simulate_participants(mp.MetricsPlan(), seed=0))
    args = {"outcome": "correct", "metrics": ["apem", "morph_size"], **kwargs}
    with pytest.raises(AnalysisInputError, match=message):
        mp.fit(f, **args)
