"""The analysis pages in Debian's Chromium: they render, every figure loads, nothing errors.

Screenshots go to /tmp/analysis_site_screens/ (override with ANALYSIS_SCREENS) for a person to look at.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from studyapp.studies.models import Study
from tests.studyapp.analysis_site.conftest import run_bots
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENS = Path(os.environ.get("ANALYSIS_SCREENS", "/tmp/analysis_site_screens"))  # noqa: S108 - screenshots to look at


def logged_in_page(browser, live_server, width: int = 1280):
    get_user_model().objects.create_user("analyst", password="pw-analyst-123", is_staff=True, is_superuser=True)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "analyst")
    page.fill("#id_password", "pw-analyst-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return page, errors


def images_loaded(page) -> list[str]:
    """The figures that did not load (naturalWidth 0). They load lazily: scroll to each first."""
    images = page.locator(".analysis-figure img")
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.analysis-figure img')].every(i => i.complete)", timeout=60_000
    )
    return page.eval_on_selector_all(
        ".analysis-figure img",
        "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)",
    )


def shot(page, name: str) -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_learning_analysis_in_browser(browser, live_server):
    study = learning_study()
    # Bots answer in ~0 ms: keep the response-time rule out, or it (rightly) excludes them all.
    Study.objects.filter(pk=study.pk).update(config={**study.config, "exclusions": {"incomplete": True}})
    page, errors = logged_in_page(browser, live_server)
    page.goto(f"{live_server.url}/admin/analysis/study/{study.pk}/")
    page.wait_for_selector("#no-trials")
    assert images_loaded(page) == []
    shot(page, "learning-empty")

    run_bots(study.public_code, 9, seed=11, stop_after={8: 3})  # 3 per arm: at least 2 complete in each
    page.goto(f"{live_server.url}/admin/analysis/study/{study.pk}/")
    page.wait_for_selector("table[data-table=welch-tests]")
    # learning curve, ratings, power curve, and the trial-level model's fitted curves
    assert page.locator(".analysis-figure img").count() == 4
    assert page.locator("#trial-curves-figure").count() == 1
    assert images_loaded(page) == []
    shot(page, "learning-data")
    # Change the planned tests through the form, as a researcher would.
    page.select_option("select[name=tests-0-alternative]", "two-sided")
    page.check("input[name=tests-2-DELETE]")
    page.fill("input[name=alpha]", "0.05")
    page.click("#tests-form input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert page.locator("table[data-table=welch-tests] tbody tr").count() == 2
    assert "CDeepEx ≠ Control" in page.inner_text("table[data-table=welch-tests]")
    # The power form recomputes the sample size.
    page.fill("input[name=pw-d]", "0.2")
    page.click("#power-form input[type=submit]")
    page.wait_for_selector("#power-result")
    assert images_loaded(page) == []
    shot(page, "learning-after-form")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "learning-phone")
    assert errors == []


def test_the_clustering_analysis_and_an_import_in_browser(browser, live_server, tmp_path):
    study = clustering_study()
    for seed in range(4):
        bot = Bot(study.public_code, rng=random.Random(seed))
        bot.open_link()
        bot.walk_clustering()
    page, errors = logged_in_page(browser, live_server)
    page.goto(f"{live_server.url}/admin/analysis/study/{study.pk}/")
    page.wait_for_selector("table[data-table=purity]")
    assert page.locator(".analysis-figure img").count() == 3  # purity, confidence, agents
    assert images_loaded(page) == []
    shot(page, "clustering-data")

    # A bad file is refused with its problems listed; a good one opens its analysis.
    bad = tmp_path / "bad.csv"
    bad.write_text("participant,arm,trial_index,correct\nP1,Control,0,maybe\nP1,Control,2,1\n")
    page.goto(f"{live_server.url}/admin/analysis/imported/upload/")
    page.fill("#id_name", "Lab pilot")
    page.set_input_files("#id_results", str(bad))
    page.click("input[type=submit]")
    page.wait_for_selector("#import-errors")
    shot(page, "import-refused")
    errors[:] = [e for e in errors if "/imported/upload/" not in e]  # the refusal is a 400, as it should be
    good = tmp_path / "good.csv"
    rng = random.Random(4)
    good.write_text("participant,arm,trial_index,correct\n" + "".join(
        f"P{p},{arm},{t},{int(rng.random() < (0.5 if arm == 'Control' else 0.5 + 0.04 * t))}\n"
        for p, arm in enumerate(["Control", "CDeepEx"] * 6) for t in range(20)
    ))
    page.set_input_files("#id_results", str(good))
    page.fill("#id_name", "Lab pilot")
    page.click("input[type=submit]")
    page.wait_for_selector("table[data-table=final-counts]")
    assert images_loaded(page) == []
    shot(page, "imported-analysis")
    assert errors == []
