"""A person takes the HIVE study in Chromium, in both arms, at laptop and phone size, with axe-core
on the agreement and distinction pages; the four maps of a distinction item fit a phone (2×2)."""

from __future__ import annotations

import pytest

import tests.studyapp.test_hive_protocol as hive
from studyapp.studies.models import Participant, QuestionAnswer
from tests.browser.conftest import VIEWPORTS, axe_violations, finish_with_rating, open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def next_step(page) -> None:
    step = page.locator("#app").get_attribute("data-step")
    page.click("#hive-answer")
    page.wait_for_function(f"document.querySelector('#app').dataset.step !== '{step}'")


def take(page, base: str, shots, tag: str, *, pid: str, width: int) -> dict:
    page.goto(f"{base}?PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1")
    page.wait_for_selector("#consent-go")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    page.click("#start")
    seen: dict = {"agreement": 0, "distinction": 0, "heatmaps": 0, "axe": {}}
    while True:
        page.wait_for_selector("#hive-answer, #submit-rating")
        if page.locator("#submit-rating").count():
            break
        assert page.is_disabled("#hive-answer")  # a choice is required
        grid = page.locator(".hive-grid")
        kind = "distinction" if grid.count() else "agreement"
        if seen[kind] == 0:
            page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
            shots(page, f"{tag}-{kind}")
            seen["axe"][kind] = axe_violations(page)
        if kind == "agreement":
            seen["heatmaps"] += page.locator("#heatmap").count()
            labels = page.locator(".scale label")
            assert labels.count() == 4
            box = labels.first.bounding_box()
            assert box and box["height"] >= 24
            page.keyboard.press("Tab")  # keyboard operable: focus a radio, pick with the keyboard
            page.locator(".scale input").nth(seen["agreement"] % 4).focus()
            page.keyboard.press("Space")
        else:
            options = grid.locator("label")
            assert options.count() == 4
            assert [options.nth(i).inner_text().strip() for i in range(4)] == ["A", "B", "C", "D"]
            boxes = [options.nth(i).bounding_box() for i in range(4)]
            assert all(b and b["height"] >= 24 and b["x"] >= 0 and b["x"] + b["width"] <= width for b in boxes), boxes
            rows = len({round(b["y"]) for b in boxes if b})
            assert rows == (2 if width < 900 else 1), (rows, boxes)  # a 2×2 grid on a phone, one row on a laptop
            options.nth(seen["distinction"] % 4).click()
        next_step(page)
        seen[kind] += 1
    finish_with_rating(page, shots, tag)
    return seen


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_a_person_takes_the_hive_study_in_both_arms(browser, live_server, shots, viewport):
    study = hive.hive_study()
    base = f"{live_server.url}/s/{study.public_code}/"
    by_arm = {}
    for i in range(2):
        context, page, errors = open_page(browser, VIEWPORTS[viewport])
        seen = take(page, base, shots, f"{viewport}-{i}", pid=f"{viewport}{i}", width=VIEWPORTS[viewport]["width"])
        context.close()
        assert not errors, errors
        assert all(not v for v in seen["axe"].values()), seen["axe"]
        participant = Participant.objects.get(prolific_pid=f"{viewport}{i}")
        assert participant.status == "completed"
        stored = QuestionAnswer.objects.filter(participant=participant, key__startswith="hive_").count()
        assert stored == seen["agreement"] + 2 * seen["distinction"]
        assert seen["agreement"] == hive.N
        by_arm[participant.arm.feedback] = (seen["heatmaps"], seen["distinction"])
    assert by_arm == {"control": (0, 0), "gradcam": (hive.N, hive.N)}
