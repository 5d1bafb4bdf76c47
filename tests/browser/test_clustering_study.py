"""A person takes Study B in Chromium: drags images into groups, toggles heatmaps, compares, answers."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from studyapp.studies.models import Grouping, InteractionEvent, Participant, QuestionAnswer
from tests.browser.conftest import open_page
from tests.studyapp.factories import clustering_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

N_GROUPS = 4  # as many as the data sets have classes


def wait_next_step(page, before: str) -> None:
    page.wait_for_function(f"document.getElementById('app').dataset.step !== '{before}'")


def answer_questions(page) -> None:
    before = page.eval_on_selector("#app", "el => el.dataset.step")
    for fieldset in page.locator("fieldset.question").all():
        if fieldset.locator("textarea").count():
            fieldset.locator("textarea").fill("The heatmaps helped a bit.")
        else:
            fieldset.locator("label").nth(1).click()
    page.click("#submit-questions")
    wait_next_step(page, before)


def drag_one(page, group: int, in_tray: int) -> None:
    """Drag the first card of the tray onto ``group``; retry a drag that did not take (it then
    counted as a click and selected the card, so that is undone first)."""
    for _attempt in range(3):
        page.locator(".tray .card-img").first.drag_to(page.locator(f'.zone[data-group="{group}"]'))
        try:
            page.wait_for_function(f"document.querySelectorAll('.tray .card-img').length < {in_tray}", timeout=10_000)
            return
        except PlaywrightTimeout:
            if page.locator(".tray .card-img.selected").count():
                page.locator(".tray .card-img.selected").first.click()
    raise AssertionError(f"dragging an image to group {group} did not move it (3 tries)")


def group_batch(page, stage: str, shots, n: int) -> None:
    page.wait_for_selector("#done-grouping")
    cards = page.locator(".tray .card-img")
    assert cards.count() == 10
    if stage == "1-Heatmap":
        cards.first.hover()
        page.click("#toggle-all")
        assert page.locator(".heat.on").count() == 10
    if stage == "XNN":
        assert page.locator(".xtoggle input").count() == 7
        page.locator(".xtoggle input").nth(2).uncheck()
        assert page.locator(".tray .card-img").first.locator(".xfeat").count() == 6
        assert page.locator(".contrib.pos").count() > 0 and page.locator(".contrib.neg").count() > 0
    if stage != "NoVis":
        page.locator(".tray .card-img").nth(0).click()
        page.locator(".tray .card-img").nth(1).click()
        assert page.locator(".banner").count() == 2
        page.click("#compare-btn")
        page.wait_for_selector("#compare")
        assert page.locator(".compare-row").count() == 2
        shots(page, f"{n}-{stage}-compare")
        page.locator('[data-move="0"]').click()  # the click way: select, then "Move selected here"
    else:  # the keyboard way: Space on a focused card selects it, Enter on "Move selected here"
        first = page.locator(".tray .card-img").first
        first_id = first.get_attribute("data-id")
        first.focus()
        page.keyboard.press("Space")
        page.wait_for_selector(f'.tray .card-img.selected[data-id="{first_id}"]')
        page.locator('[data-move="1"]').focus()
        page.keyboard.press("Enter")
        page.wait_for_selector(f'.zone[data-group="1"] .card-img[data-id="{first_id}"]')
    for _ in range(N_GROUPS - page.locator(".groups .zone").count()):
        page.click("#new-group")
    # Drag the rest (with the mouse: SortableJS on HTML5 drag and drop), over four groups. Bounded:
    # a drag that does not start is a click (it selects the card), so an unbounded loop would spin
    # for ever on a failed drag.
    left = page.locator(".tray .card-img").count()
    for k in range(left):
        drag_one(page, k % N_GROUPS, left - k)
    assert page.is_enabled("#done-grouping")
    shots(page, f"{n}-{stage}-grouped")
    before = page.eval_on_selector("#app", "el => el.dataset.step")
    page.click("#done-grouping")
    wait_next_step(page, before)


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}])
def test_a_person_takes_the_clustering_study(browser, live_server, shots, viewport):
    study = clustering_study()
    context, page, errors = open_page(browser, viewport)
    page.goto(f"{live_server.url}/s/{study.public_code}/?PROLIFIC_PID=clusterer")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    shots(page, "instructions")
    page.click("#start")
    page.wait_for_selector("#submit-questions")
    shots(page, "demographics")
    answer_questions(page)
    n = 0
    while True:
        page.wait_for_selector("#done-grouping, #submit-questions, #completion-code")
        if page.locator("#completion-code").count():
            break
        if page.locator("#done-grouping").count():
            stage = Participant.objects.get(prolific_pid="clusterer").current_step["stage"]
            group_batch(page, stage, shots, n)
            n += 1
        else:
            shots(page, f"questions-{n}")
            answer_questions(page)
    shots(page, "done")
    context.close()
    assert not errors, errors
    p = Participant.objects.get(prolific_pid="clusterer")
    assert p.status == "completed" and n == 6
    assert Grouping.objects.filter(participant=p).count() == 6
    assert all(sorted(set(g.assignment.values())) == list(range(N_GROUPS)) for g in Grouping.objects.filter(participant=p))
    assert QuestionAnswer.objects.get(participant=p, key="comments").value == "The heatmaps helped a bit."
    kinds = set(InteractionEvent.objects.filter(participant=p).values_list("kind", flat=True))
    assert {"hover", "toggle_all", "toggle_xfeature", "select", "compare", "move"} <= kinds
