"""The "Do the automatic metrics predict people?" section of the analysis page in Debian's Chromium
at laptop size: synthetic participants with a planted APEM slope, the section's tables and
sentences, no page errors, no serious axe-core violations inside it. The screenshot goes to
/tmp/analysis_site_screens/metrics-people.png (ANALYSIS_SCREENS) for a person to look at."""

from __future__ import annotations

import io
import random

import pytest
from django.core.management import call_command

from studyapp.studies import services
from tests.browser.conftest import AXE_JS, AXE_TAGS
from tests.studyapp.analysis_site.test_browser import SCREENS, logged_in_page
from tests.studyapp.factories import learning_study
from tests.studyapp.test_metrics_people_page import BASE, SLOPE, with_apem

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_metrics_people_section_in_browser(browser, live_server, monkeypatch):
    study = learning_study()
    with_apem(study, seed=1)
    monkeypatch.setattr(services, "_rng", random.Random(1))
    call_command("synthetic_participants", study=study.slug, n=30, seed=1, apem_slope=SLOPE, base=BASE, stdout=io.StringIO())
    page, errors = logged_in_page(browser, live_server)
    page.goto(f"{live_server.url}/admin/analysis/study/{study.pk}/")
    section = page.locator("#metrics-people")
    section.wait_for()
    assert page.locator("#metrics-people table[data-table^=metrics-people-]").count() == 2  # Grad-CAM and CDeepEx
    text = section.inner_text()
    assert section.locator("li").count() >= 2 and "One standard deviation more of APEM score" in text, text
    assert not errors, errors
    page.add_script_tag(content=AXE_JS.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async (tags) => await axe.run('#metrics-people', {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        AXE_TAGS,
    )
    serious = [(v["id"], [n["html"][:120] for n in v["nodes"]][:3]) for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, serious
    SCREENS.mkdir(parents=True, exist_ok=True)
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(SCREENS / "metrics-people.png"))
    page.screenshot(path=str(SCREENS / "metrics-people-page.png"), full_page=True)
