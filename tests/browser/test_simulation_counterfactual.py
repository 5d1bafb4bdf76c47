"""A person takes a forward-simulation study with counterfactual items in Chromium (laptop and
phone size): the changed input (a morph's last frame, 224 px) shows like any test item, its
answer is stored against the model's answer on it; screenshots of a counterfactual item."""

from __future__ import annotations

import pytest

import tests.studyapp.test_simulation_protocol as sim
from studyapp.pipeline.storage import media_url
from studyapp.studies.models import Participant, TrialAnswer
from tests.browser.conftest import VIEWPORTS, axe_violations, open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_a_person_answers_counterfactual_items(browser, live_server, shots, viewport):
    study = sim.counterfactual_study(1)
    context, page, errors = open_page(browser, VIEWPORTS[viewport])
    page.goto(f"{live_server.url}/s/{study.public_code}/?PROLIFIC_PID=cf{viewport}&STUDY_ID=s1&SESSION_ID=x1")
    page.wait_for_selector("#consent-go")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    page.click("#start")
    plan = Participant.objects.get(prolific_pid=f"cf{viewport}").plan
    changed = {media_url(s["image"]): s for s in plan if s.get("item_kind") == "counterfactual"}
    shown = 0
    while True:
        page.wait_for_selector("#sim-answer, #model-answer, #submit-rating")
        if page.locator("#submit-rating").count():
            break
        step = page.locator("#app").get_attribute("data-step")
        if page.locator("#sim-answer").count():
            srcs = page.eval_on_selector_all("#app img", "imgs => imgs.map(i => new URL(i.src).pathname)")
            if any(src in changed for src in srcs):
                page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
                if shown == 0:
                    shots(page, f"{viewport}-counterfactual")
                    assert axe_violations(page) == []
                shown += 1
            page.locator(".options label").first.click()
            page.click("#sim-answer")
        else:
            page.click("#next")
        page.wait_for_function(f"document.querySelector('#app').dataset.step !== '{step}'")
    context.close()
    assert not errors, errors
    assert shown == 2
    run = Participant.objects.get(prolific_pid=f"cf{viewport}")
    answers = {a.trial_index: a for a in TrialAnswer.objects.filter(participant=run)}
    assert len(answers) == 2 * (sim.N + 1)
    for s in changed.values():
        assert answers[s["trial"]].correct_label == s["model_answer"]
