"""A person takes the AI-assisted decision study in Chromium, in the control and the
nearest-examples arm, at laptop and phone size, with axe-core on both halves of an item."""

from __future__ import annotations

import pytest

import tests.studyapp.test_decision_protocol as dec
from studyapp.studies.models import Participant, TrialAnswer
from tests.browser.conftest import (
    VIEWPORTS,
    axe_violations,
    finish_with_rating,
    open_page,
    participant_url,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def take(page, url: str, shots, tag: str) -> dict:
    page.goto(url)
    page.wait_for_selector("#consent-go")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    assert "performance gets better" not in page.inner_text("#app")  # a decision study measures no learning
    page.click("#start")
    seen: dict = {"alone": 0, "assisted": 0, "examples": 0, "switched": 0}
    while True:
        page.wait_for_selector("#decide, #submit-rating")
        if page.locator("#submit-rating").count():
            break
        kind = "alone" if page.locator("#app").get_attribute("data-kind") == "decision_alone" else "assisted"
        assert page.is_disabled("#decide")  # a choice is required
        assert page.evaluate("document.activeElement.id") == "decision-q"  # focus on the new step's question
        box = page.locator(".options label").first.bounding_box()
        assert box and box["height"] >= 24  # WCAG 2.5.8 target size
        page.keyboard.press("Tab")  # the answers are reached with the keyboard
        assert page.evaluate("document.activeElement.type") == "radio"
        if seen[kind] == 0:
            page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
            shots(page, f"{tag}-{kind}")
            assert axe_violations(page) == [], (kind, axe_violations(page))
        if kind == "alone":
            pick = seen["alone"] % 2
        else:
            assert page.locator("#model-answer").count() == 1 and page.locator("#own-answer").count() == 1
            seen["examples"] += page.locator("#examples").count()
            pick = 1 - (seen["assisted"] % 2) if seen["assisted"] % 3 == 0 else seen["assisted"] % 2  # sometimes switch
            seen["switched"] += pick != seen["assisted"] % 2
        step = page.locator("#app").get_attribute("data-step")
        page.locator(".options label").nth(pick).click()
        page.click("#decide")
        page.wait_for_function(f"document.querySelector('#app').dataset.step !== '{step}'")
        seen[kind] += 1
    finish_with_rating(page, shots, tag)
    return seen


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_a_person_takes_the_decision_study_in_both_arms(browser, live_server, shots, viewport):
    study = dec.decision_study()
    by_arm = {}
    for i in range(2):
        context, page, errors = open_page(browser, VIEWPORTS[viewport])
        seen = take(page, participant_url(live_server, study, f"PROLIFIC_PID={viewport}{i}&STUDY_ID=s1&SESSION_ID=x1"),
                    shots, f"{viewport}-{i}")
        context.close()
        assert not errors, errors
        participant = Participant.objects.get(prolific_pid=f"{viewport}{i}")
        assert participant.status == "completed"
        assert seen["alone"] == seen["assisted"] == dec.N
        answers = dict(TrialAnswer.objects.filter(participant=participant).values_list("trial_index", "choice"))
        assert len(answers) == 2 * dec.N
        by_arm[participant.arm.feedback] = seen["examples"]
    assert by_arm == {"control": 0, "nearest": dec.N}
