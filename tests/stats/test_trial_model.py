"""The trial-level model against statsmodels on generated data, and recovery of a planted effect."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from stats import power
from stats import trial_model as tm
from stats.schema import AnalysisInputError
from stats.synthetic import LearningCurve, dissertation_curves, generate_study_a, simulate_answers


def _direct_gee(trials, formula):
    data = trials.copy()
    data["correct"] = data["correct"].astype(float)
    data["trial"] = data["trial_index"].astype(float)
    data = data.sort_values(["participant", "trial_index"]).reset_index(drop=True)
    return smf.gee(formula, groups="participant", data=data, family=sm.families.Binomial(),
                   cov_struct=sm.cov_struct.Exchangeable()).fit(maxiter=100)


@pytest.mark.parametrize("common_start", [True, False])
def test_wrapper_coefficients_equal_a_direct_statsmodels_fit(common_start):
    trials, _ = generate_study_a(12, seed=11, stimulus_sd=0.3)
    fit = tm.fit_gee(trials, common_start=common_start)
    ref = "C(arm, Treatment(reference='Control'))"
    formula = f"correct ~ trial + {ref}:trial" if common_start else f"correct ~ {ref} * trial"
    direct = _direct_gee(trials, formula)
    assert sorted(fit.param_names) == sorted(direct.model.exog_names)
    np.testing.assert_allclose(fit.params, direct.params[fit.param_names].to_numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.coefficients["se"], direct.bse[fit.param_names].to_numpy(), rtol=1e-6)


def test_batch_gee_equals_statsmodels():
    rng = np.random.default_rng(3)
    n, t = 25, 20
    arm = np.repeat([0.0, 1.0], n)
    y = np.concatenate([
        simulate_answers(LearningCurve(rate=0.03, rate_sd=0.5), n_participants=n, n_trials=t, n_sims=3, rng=rng),
        simulate_answers(LearningCurve(rate=0.08, rate_sd=0.5), n_participants=n, n_trials=t, n_sims=3, rng=rng),
    ], axis=1).astype(float)
    for common in (True, False):
        x = tm.design_matrix(arm, t, common_start=common)
        beta, cov, rho = tm.gee_batch(y, x)
        for s in range(3):
            res = sm.GEE(y[s].ravel(), x.reshape(-1, x.shape[2]), groups=np.repeat(np.arange(2 * n), t),
                         family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable()).fit()
            np.testing.assert_allclose(beta[s], res.params, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(np.sqrt(np.diag(cov[s])), res.bse, rtol=1e-6)
            assert rho[s] == pytest.approx(float(res.model.cov_struct.dep_params), abs=1e-6)


def test_planted_learning_rate_difference_is_recovered():
    # A logistic truth so that the estimand is exactly the rate difference: log-odds -0.2 + r_a t.
    rng = np.random.default_rng(8)
    n, t = 150, 20
    rates = {"Control": 0.02, "CDeepEx": 0.09}
    rows = []
    for arm, r in rates.items():
        u = rng.normal(0, 0.3, n)  # participant intercepts: GEE's coefficients are then attenuated a bit
        p = 1 / (1 + np.exp(-(-0.2 + u[:, None] + r * np.arange(t)[None, :])))
        y = rng.random((n, t)) < p
        for i in range(n):
            for k in range(t):
                rows.append((f"{arm}-{i}", arm, k, bool(y[i, k])))
    import pandas as pd

    trials = pd.DataFrame(rows, columns=["participant", "arm", "trial_index", "correct"])
    fit = tm.fit_gee(trials, pairs=[("CDeepEx", "Control", "greater")])
    c = fit.contrasts[0]
    planted = rates["CDeepEx"] - rates["Control"]
    assert c.estimate > 0 and c.z > 3 and c.p < 0.001
    # Population-averaged attenuation with intercept SD 0.3 is ~2%: the interval still covers it.
    assert c.ci_low <= planted <= c.ci_high
    assert fit.rates.set_index("arm").loc["CDeepEx", "rate"] > fit.rates.set_index("arm").loc["Control", "rate"]
    # Curves: fitted probabilities rise in CDeepEx, bands contain the fit.
    cd = fit.curves[fit.curves["arm"] == "CDeepEx"]
    assert cd["fitted"].is_monotonic_increasing
    assert ((cd["band_low"] <= cd["fitted"]) & (cd["fitted"] <= cd["band_high"])).all()
    check = tm.start_check(trials)
    assert check.df == 1 and 0 <= check.p <= 1


def test_sign_follows_the_planted_direction():
    trials, _ = generate_study_a(40, seed=2)  # PLANTED_CURVES: CDeepEx learns fastest, Control slowest
    fit = tm.fit_gee(trials, pairs=[("Control", "CDeepEx", "less"), ("CDeepEx", "Control", "greater")])
    less, greater = fit.contrasts
    assert less.estimate == pytest.approx(-greater.estimate)
    assert less.p == pytest.approx(greater.p)
    assert greater.estimate > 0


def test_glmm_has_stimulus_and_slope_components_and_agrees_in_sign():
    trials, _ = generate_study_a(15, seed=5, stimulus_sd=0.5)
    trials = trials[trials["arm"].isin(["Control", "CDeepEx"])]
    g = tm.fit_glmm(trials, pairs=[("CDeepEx", "Control", "greater")])
    assert g.has_stimulus
    assert list(g.variance_components["component"]) == ["participant", "slope", "stimulus"]
    gee = tm.fit_gee(trials, pairs=[("CDeepEx", "Control", "greater")])
    assert np.sign(g.contrasts["mean"].iloc[0]) == np.sign(gee.contrasts[0].estimate)


def test_refuses_too_little_data():
    trials, _ = generate_study_a(1, seed=1)
    with pytest.raises(AnalysisInputError):
        tm.fit_gee(trials)


def test_trial_level_power_type_one_and_gain():
    curves = dissertation_curves()
    null = {"A": curves["GCAM"], "B": curves["GCAM"]}
    r0 = power.simulate_power_trial_level(null, "A", "B", 40, n_sims=300, seed=1)
    # 300 null studies: within 3 MC SDs of 0.05 for both tests.
    bound = 3 * np.sqrt(0.05 * 0.95 / 300)
    assert abs(r0.welch_power - 0.05) <= bound and abs(r0.trial_power - 0.05) <= bound
    r1 = power.simulate_power_trial_level(curves, "CDeepEx", "Control", 50, n_sims=300, seed=2)
    assert r1.welch_power > 0.3 and r1.trial_power > 0.3
    assert r1.welch_n80 is not None and 40 < r1.welch_n80 < 150
