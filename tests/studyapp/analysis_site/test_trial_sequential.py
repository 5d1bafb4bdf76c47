"""Issue 16 on the pages: the trial-level model, the power comparison, the sequential look on the
analysis and status pages, and the pre-registration download."""

from __future__ import annotations

from html import unescape

import pytest

from stats import exclusions, sequential, trial_model
from studyapp.analysis import frames
from studyapp.lib.study_config import StudyConfigError, validate_config
from studyapp.studies.models import Study
from tests.studyapp.analysis_site.conftest import page_tables, run_bots, value
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db

RULES = {"incomplete": True, "min_response_ms": 0, "max_fast_share": 1}
PLAN = {"comparison": ["CDeepEx", "Control", "greater"], "look_every": 2, "max_n_per_arm": 6,
        "spending": "obrien_fleming", "alpha": 0.05, "futility_z": 0.0}


def _study(plan=PLAN) -> Study:
    study = learning_study()
    config = {**study.config, "exclusions": RULES}
    if plan is not None:
        config["sequential"] = plan
    Study.objects.filter(pk=study.pk).update(config=config)
    study.refresh_from_db()
    study.config_hash = study.compute_config_hash()
    study.save(update_fields=["config_hash"])
    return study


def _kept_trials(study: Study):
    kept, _ = exclusions.apply_exclusions(frames.study_trials(study=study), RULES)
    return kept


def test_analysis_page_shows_the_trial_model_and_the_look(owner):
    study = _study()
    run_bots(study.public_code, 7, seed=3, stop_after={6: 4})
    html = owner.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert 'id="trial-model"' in html and 'id="trial-curves-figure"' in html
    assert 'src="data:image/png;base64,' in html
    tables = page_tables(html)
    kept = _kept_trials(study)
    pairs = [("CDeepEx", "Control", "greater"), ("GCAM", "Control", "greater"), ("CDeepEx", "GCAM", "greater")]
    fit = trial_model.fit_gee(kept, pairs=pairs)
    # Learning rates and contrasts: the exact numbers of a direct fit on the same kept rows.
    rates = {row[0][0]: value(row[1]) for row in tables["trial-rates"]}
    for r in fit.rates.itertuples():
        assert rates[r.arm] == pytest.approx(r.rate, rel=1e-9)
    shown = [(row[0][0], value(row[1])) for row in tables["trial-contrasts"]]
    assert shown == [(c.hypothesis, pytest.approx(c.estimate, rel=1e-9)) for c in fit.contrasts]
    assert len(tables["trial-curves"]) == 20  # one row per trial
    # Assumptions are spelled out, with the equal-start check.
    assert "the arms start equal" in unescape(html)
    # The sequential section: plan, boundary table and the decision stats gives on the same rows.
    plan = sequential.SequentialPlan.from_config(PLAN)
    report = sequential.look_from_trials(plan, kept, n_trials=20)
    assert 'id="sequential"' in html and "O'Brien–Fleming" in unescape(html)
    bounds = [value(row[3]) for row in tables["sequential-boundaries"]]
    assert bounds == pytest.approx(list(plan.boundaries()), rel=1e-9)
    verdict = report.decision.decision if report.decision else "continue"
    assert f'data-verdict="{verdict}"' in html
    assert unescape(report.message) in unescape(html)


def test_glmm_is_fitted_on_request(owner):
    study = _study(plan=None)
    run_bots(study.public_code, 6, seed=4)
    html = owner.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert 'id="glmm-link"' in html and 'id="no-sequential"' in html
    html = owner.get(f"/admin/analysis/study/{study.pk}/?glmm=1").content.decode()
    tables = page_tables(html)
    assert "glmm-contrasts" in tables or "The GLMM could not be fitted" in html


def test_power_section_compares_welch_and_the_trial_model(owner):
    study = _study(plan=None)
    url = f"/admin/analysis/study/{study.pk}/"
    html = owner.get(url).content.decode()
    assert 'id="trial-power-form"' in html and "trial-power" not in page_tables(html)
    html = owner.get(url, {"tp-n": 20, "tp-d": 0.5, "tp-alpha": 0.05, "tp-sims": 50}).content.decode()
    rows = page_tables(html)["trial-power"]
    assert [r[0][0] for r in rows] == ["dissertation (Table 5.2)", "yours, d = 0.5"]
    for r in rows:
        assert 0 <= value(r[3]) <= 1 and 0 <= value(r[4]) <= 1
        assert value(r[5]) > 0 and value(r[6]) > 0
    # The larger entered effect needs fewer participants than the dissertation's.
    assert value(rows[1][5]) < value(rows[0][5])
    bad = owner.get(url, {"tp-n": 1, "tp-sims": 50}).content.decode()
    assert "trial-power" not in page_tables(bad)


def test_status_page_says_continue_or_stop(owner):
    study = _study()
    before = owner.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    assert 'id="look-decision" data-verdict="continue"' in before and "Before the first look" in unescape(before)
    run_bots(study.public_code, 6, seed=5)
    html = owner.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    plan = sequential.SequentialPlan.from_config(PLAN)
    report = sequential.look_from_trials(plan, _kept_trials(study), n_trials=20)
    verdict = report.decision.decision if report.decision else "continue"
    assert f'data-verdict="{verdict}"' in html
    assert "sequential-boundaries" in page_tables(html)
    assert 'id="preregistration-link"' in html


def test_status_page_without_a_plan_has_no_look(owner):
    study = _study(plan=None)
    html = owner.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    assert "look-decision" not in html


def test_plan_is_typed_and_part_of_the_configuration_hash():
    study = _study()
    with_plan = study.compute_config_hash()
    study.config = {**study.config, "sequential": {**PLAN, "spending": "pocock"}}
    assert study.compute_config_hash() != with_plan
    validate_config({"sequential": PLAN})
    with pytest.raises(StudyConfigError, match="sequential"):
        validate_config({"sequential": {**PLAN, "spending": "haybittle"}})
    with pytest.raises(StudyConfigError, match="sequential"):
        validate_config({"sequential": {**PLAN, "look_every": 10, "max_n_per_arm": 4}})


def test_preregistration_download(owner, member):
    study = _study()
    response = owner.get(f"/admin/analysis/study/{study.pk}/preregistration.md")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert study.config_hash in text
    assert "H1: CDeepEx > Control (one-sided)" in text
    assert "Welch t-tests" in text and "GEE" in text
    assert "O'Brien–Fleming-type (Lan–DeMets) alpha spending at α = 0.05" in text
    plan = sequential.SequentialPlan.from_config(PLAN)
    assert f"| 1 | 2 | {plan.boundaries()[0]:.3f} |" in text
    assert "exclude participants who did not complete the study" in text
    assert member.get(f"/admin/analysis/study/{study.pk}/preregistration.md").status_code in (302, 403)
