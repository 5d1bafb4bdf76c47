"""A person takes the forward-simulation study in Chromium, in both arms, at laptop and phone size."""

from __future__ import annotations

import pytest

import tests.studyapp.test_simulation_protocol as sim
from studyapp.studies.models import Participant, TrialAnswer
from tests.browser.conftest import VIEWPORTS, finish_with_rating, open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def take(page, base: str, shots, tag: str, *, pid: str) -> dict:
    page.goto(f"{base}?PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1")
    page.wait_for_selector("#consent-go")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    page.click("#start")
    seen: dict = {"heatmaps": 0, "learn": 0, "tests": 0}
    while True:
        page.wait_for_selector("#sim-answer, #model-answer, #submit-rating")
        if page.locator("#submit-rating").count():
            break
        if page.locator("#sim-answer").count():
            assert page.is_disabled("#sim-answer")  # a choice is required
            assert page.evaluate("document.activeElement.id") == "sim-q"  # focus on the new step's question
            box = page.locator(".options label").first.bounding_box()
            assert box and box["height"] >= 24  # WCAG 2.5.8 target size
            if seen["tests"] == 0:
                page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
                shots(page, f"{tag}-test")
            step = page.locator("#app").get_attribute("data-step")
            page.locator(".options label").nth(seen["tests"] % 2).click()
            page.click("#sim-answer")
            page.wait_for_function(f"document.querySelector('#app').dataset.step !== '{step}'")
            seen["tests"] += 1
        else:
            if seen["learn"] == 0:
                page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
                shots(page, f"{tag}-learn")
            seen["heatmaps"] += page.locator("#heatmap").count()
            seen["learn"] += 1
            step = page.locator("#app").get_attribute("data-step")
            page.click("#next")
            page.wait_for_function(f"document.querySelector('#app').dataset.step !== '{step}'")
    finish_with_rating(page, shots, tag)
    return seen


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_a_person_takes_the_simulation_study_in_both_arms(browser, live_server, shots, viewport):
    study = sim.simulation_study()
    base = f"{live_server.url}/s/{study.public_code}/"
    by_arm = {}
    for i in range(2):
        context, page, errors = open_page(browser, VIEWPORTS[viewport])
        seen = take(page, base, shots, f"{viewport}-{i}", pid=f"{viewport}{i}")
        context.close()
        assert not errors, errors
        participant = Participant.objects.get(prolific_pid=f"{viewport}{i}")
        assert participant.status == "completed"
        assert TrialAnswer.objects.filter(participant=participant).count() == 2 * sim.N == seen["tests"]
        assert seen["learn"] == sim.N
        by_arm[participant.arm.feedback] = seen["heatmaps"]
    assert by_arm == {"control": 0, "gradcam": sim.N}
