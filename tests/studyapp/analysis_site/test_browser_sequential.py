"""Issue 16's sections in Debian's Chromium: the trial-level model and the sequential look on the
analysis page, the look decision on the status page. Screenshots go to /tmp/shots16/ (override
with SHOTS16) for a person to look at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stats.synthetic import PLANTED_CURVES, generate_study_a
from studyapp.analysis import importing
from studyapp.analysis.models import ImportedResults
from studyapp.studies.models import Study
from tests.studyapp.analysis_site.conftest import run_bots
from tests.studyapp.analysis_site.test_browser import images_loaded, logged_in_page
from tests.studyapp.factories import learning_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("SHOTS16", "/tmp/shots16"))  # noqa: S108 - screenshots to look at
PLAN = {"comparison": ["CDeepEx", "Control", "greater"], "look_every": 2, "max_n_per_arm": 8,
        "spending": "obrien_fleming", "alpha": 0.05, "futility_z": 0.0}


def _shot(locator_or_page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    if hasattr(locator_or_page, "screenshot") and hasattr(locator_or_page, "goto"):
        locator_or_page.screenshot(path=str(path), full_page=True)
    else:
        locator_or_page.screenshot(path=str(path))
    return path


def test_study_analysis_and_status_pages(browser, live_server):
    study = learning_study()
    Study.objects.filter(pk=study.pk).update(config={
        **study.config, "exclusions": {"incomplete": True, "min_response_ms": 0, "max_fast_share": 1}, "sequential": PLAN})
    study.refresh_from_db()
    run_bots(study.public_code, 9, seed=7)
    page, errors = logged_in_page(browser, live_server)
    page.goto(f"{live_server.url}/admin/analysis/study/{study.pk}/?tp-n=30&tp-d=0.4&tp-alpha=0.05&tp-sims=100")
    assert page.locator("#trial-model h2").is_visible()
    assert images_loaded(page) == []
    assert page.locator("#trial-curves-figure").evaluate("i => i.naturalWidth") > 0
    assert page.locator("[data-table=trial-contrasts] tbody tr").count() == 3
    assert page.locator("#sequential #look-decision").count() == 1
    assert page.locator("[data-table=trial-power] tbody tr").count() == 2
    _shot(page.locator("#trial-model"), "01-study-analysis-trial-model")
    _shot(page.locator("#sequential"), "02-study-analysis-sequential")
    page.locator("#trial-power").scroll_into_view_if_needed()
    _shot(page.locator("#power"), "03-study-analysis-power")
    page.goto(f"{live_server.url}/admin/studies/study/{study.pk}/dashboard/")
    assert page.locator("#look-decision").count() == 1
    _shot(page, "04-study-status-page")
    assert errors == []


def test_imported_synthetic_study_shows_a_stop(browser, live_server):
    trials, _ = generate_study_a(40, curves=PLANTED_CURVES, seed=16, stimulus_sd=0.3)
    content = trials.drop(columns=["attention_check"]).to_csv(index=False)
    imported = importing.imported_results_create(name="synthetic, planted effect", design="learning", content=content)
    ImportedResults.objects.filter(pk=imported.pk).update(config={**(imported.config or {}), "sequential": {
        "comparison": ["CDeepEx", "GCAM", "greater"], "look_every": 10, "max_n_per_arm": 50, "spending": "obrien_fleming"}})
    page, errors = logged_in_page(browser, live_server)
    page.goto(f"{live_server.url}/admin/analysis/imported/{imported.pk}/?glmm=1")
    assert images_loaded(page) == []
    verdict = page.locator("#look-decision").get_attribute("data-verdict")
    assert verdict in {"continue", "stop_efficacy", "stop_futility"}
    _shot(page.locator("#trial-model"), "05-imported-trial-model-with-glmm")
    _shot(page.locator("#sequential"), "06-imported-sequential")
    assert errors == []
