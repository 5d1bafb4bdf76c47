"""A person takes Study A in Chromium, once per arm, on a laptop and on a phone viewport."""

from __future__ import annotations

import pytest

from studyapp.studies.models import Participant, QuestionAnswer, TrialAnswer
from tests.browser.conftest import VIEWPORTS, finish_with_rating, open_page
from tests.studyapp.factories import learning_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def take_study(page, base: str, shots, tag: str, *, pid: str) -> dict:
    page.goto(f"{base}?PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1")
    page.wait_for_selector("#consent-go")
    shots(page, f"{tag}-consent")
    assert page.is_disabled("#consent-go")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    shots(page, f"{tag}-instructions")
    arm_text = page.inner_text("#arm-instruction")
    page.click("#start")
    seen = {"arm_text": arm_text, "feedback": set()}
    for trial in range(20):
        page.wait_for_selector("#instant")
        assert page.inner_text("#progress") == f"Question {trial + 1} of 20"
        assert page.is_disabled("#instant")  # a choice is required
        if trial == 0:
            shots(page, f"{tag}-trial")
        labels = page.locator(".options label")
        labels.nth(trial % 2).click()
        page.click("#instant")
        page.wait_for_selector("#verdict")
        if page.locator("#heatmap").count():
            seen["feedback"].add("heatmap")
        if page.locator("#morph").count():
            seen["feedback"].add("morph")
            page.click("#replay")
        if trial == 0:
            shots(page, f"{tag}-feedback")
            # Reload and the back button both show the current step again, answered.
            page.reload()
            page.wait_for_selector("#verdict")
            page.go_back()
            page.wait_for_selector("#verdict")
        page.click("#next")
    page.wait_for_selector("#submit-rating")
    shots(page, f"{tag}-rating")
    finish_with_rating(page, shots, tag)
    return seen


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_a_person_takes_the_study_in_every_arm(browser, live_server, shots, viewport):
    study = learning_study()
    base = f"{live_server.url}/s/{study.public_code}/"
    by_arm = {}
    for i in range(3):
        context, page, errors = open_page(browser, VIEWPORTS[viewport])
        seen = take_study(page, base, shots, f"{viewport}-{i}", pid=f"{viewport}{i}")
        context.close()
        participant = Participant.objects.get(prolific_pid=f"{viewport}{i}")
        assert not errors, errors
        assert participant.status == "completed"
        assert TrialAnswer.objects.filter(participant=participant).count() == 20
        assert QuestionAnswer.objects.get(participant=participant).value == 4
        assert seen["arm_text"] == participant.arm.instruction
        by_arm[participant.arm.feedback] = seen["feedback"]
    assert by_arm == {"control": set(), "gradcam": {"heatmap"}, "cdeepex": {"morph"}}
