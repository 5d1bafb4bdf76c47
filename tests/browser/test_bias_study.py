"""A person takes the bias-discovery study in Chromium, in both arms, at laptop and phone size: the
explained predictions, a region marked by dragging with the mouse on the first picture and with the
keyboard (the grid's cell buttons) on the second, the candidate cue chosen; axe-core on the marking page."""

from __future__ import annotations

import pytest

import tests.studyapp.test_bias_protocol as bias
from studyapp.studies.models import Participant, QuestionAnswer
from tests.browser.conftest import (
    VIEWPORTS,
    axe_violations,
    finish_with_rating,
    open_page,
    participant_url,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def take(page, url: str, shots, tag: str, planted: str) -> dict:
    page.goto(url)
    page.wait_for_selector("#consent-go")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    page.click("#start")
    seen: dict = {"heatmaps": 0, "learn": 0, "marks": 0, "axe": []}
    while True:
        page.wait_for_selector("#model-answer, #bias-next, #submit-rating")
        if page.locator("#submit-rating").count():
            break
        step = page.locator("#app").get_attribute("data-step")
        if page.locator("#bias-next").count():
            page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
            assert page.is_disabled("#bias-next")  # a region is required
            assert page.evaluate("document.activeElement.id") == "mark-q"
            cell = page.locator("#mark-grid button").first.bounding_box()
            assert cell and cell["height"] >= 24 and cell["width"] >= 24  # WCAG 2.5.8 target size
            if seen["marks"] == 0:
                # the mouse: drag from the picture's top-left corner over about a quarter of its side
                area = page.locator("#mark-area").bounding_box()
                page.mouse.move(area["x"] + 2, area["y"] + 2)
                page.mouse.down()
                page.mouse.move(area["x"] + area["width"] * 0.15, area["y"] + area["height"] * 0.15, steps=5)
                page.mouse.move(area["x"] + area["width"] * 0.22, area["y"] + area["height"] * 0.22, steps=5)
                page.mouse.up()
            else:
                # the keyboard: Tab to the grid's first cell and press Space (no mouse)
                page.locator("#mark-grid button").first.focus()
                page.keyboard.press("Space")
                assert page.locator("#mark-grid button").first.get_attribute("aria-pressed") == "true"
            assert page.locator("#mark-box").is_visible() and "top left" in page.locator("#mark-said").inner_text()
            if page.locator("#cue-q").count():
                assert page.is_disabled("#bias-next")  # the cue question is required too
                label = page.locator(".options label", has_text=planted)
                label.locator("input").focus()
                page.keyboard.press("Space")
            seen["axe"] += axe_violations(page)
            shots(page, f"{tag}-mark{seen['marks']}")
            assert not page.is_disabled("#bias-next")
            page.click("#bias-next")
            seen["marks"] += 1
        else:
            if seen["learn"] == 0:
                page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
                shots(page, f"{tag}-learn")
            seen["heatmaps"] += page.locator("#heatmap").count()
            seen["learn"] += 1
            page.click("#next")
        page.wait_for_function(f"document.querySelector('#app').dataset.step !== '{step}'")
    finish_with_rating(page, shots, tag)
    return seen


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_a_person_takes_the_bias_study_in_both_arms(browser, live_server, shots, viewport):
    study = bias.bias_study()
    planted = bias.planted_text(study)
    by_arm = {}
    for i in range(2):
        context, page, errors = open_page(browser, VIEWPORTS[viewport])
        pid = f"{viewport}{i}"
        seen = take(page, participant_url(live_server, study, f"PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1"), shots,
                    f"{viewport}-{i}", planted)
        context.close()
        assert not errors, errors
        assert not seen["axe"], seen["axe"]
        participant = Participant.objects.get(prolific_pid=pid)
        assert participant.status == "completed"
        answers = dict(QuestionAnswer.objects.filter(participant=participant).values_list("key", "value"))
        # the drawn box lies in the picture's top-left corner; the grid's first cell is its top-left 7x7 pixels
        x0, y0, x1, y1 = map(int, answers["bias_mark_0"].split(","))
        assert x0 <= 1 and y0 <= 1 and 3 <= x1 <= 8 and 3 <= y1 <= 8, answers
        assert answers["bias_mark_1"] == "0,0,7,7"
        assert study.config["bias"]["candidates"][answers["bias_cue"]] == planted
        assert seen["learn"] == 6 and seen["marks"] == 2
        by_arm[participant.arm.feedback] = seen["heatmaps"]
    assert by_arm == {"control": 0, "gradcam": 6}
