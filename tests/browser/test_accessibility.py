"""Every participant can take part (issue 26): both studies taken with the keyboard alone, at
laptop and phone size, with axe-core (WCAG 2.0/2.1/2.2 A and AA rules) run on every page kind as
it is reached: consent, instructions, quiz, trial, the feedback of every arm, catch, questions,
the grouping of every stage, rating, the time warning with its "More time" button, and every exit.

Keyboard alone: Tab, Shift+Tab, Enter, Space and the arrow keys (and typing into a text box);
no mouse click, no element clicked by the test. Each walk asserts 0 serious and 0 critical
violations, where the focus is after each step, and that the grouping board's moves are announced
in its live region.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from studyapp.studies.models import Arm, Grouping, Participant, Study
from tests.browser.conftest import VIEWPORTS, axe_violations, open_page, participant_url
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROLIFIC = "https://app.prolific.com/submissions/complete?cc={code}"
EXITS = {
    "completed": {"code": "DONE01"}, "no_consent": {"code": "NOCONS"}, "full": {"code": "FULL01"},
    "failed_checks": {"code": "FAILCK"}, "withdrew": {"code": "WITHDR"}, "timed_out": {"code": "TIMEUP"},
}
QUIZ = {"questions": [
    {"key": "feedback", "label": "What do you see after each answer?", "options": ["Nothing", "Feedback from the system"], "answer": 1},
    {"key": "symbols", "label": "How many different symbols are there?", "options": ["Two", "Ten"], "answer": 0},
], "attempts": 2, "on_fail": "exit"}
#: A step limit whose warning shows from the start (so every trial page is scanned with it).
TIME_LIMITS = {"step_minutes": {"trial": 30}, "warn_seconds": 3600}


class Scans:
    """axe-core results per page kind; each page kind is scanned once per walk (first reached)."""

    def __init__(self, page, tag: str):
        self.page, self.tag, self.found, self.seen = page, tag, {}, []

    def __call__(self, kind: str) -> None:
        if kind in self.seen:
            return
        self.seen.append(kind)
        violations = axe_violations(self.page)
        if violations:
            self.found[f"{self.tag}:{kind}"] = violations


# -- keyboard alone ----------------------------------------------------------------------------
def active(page, selector: str) -> bool:
    return page.evaluate("(sel) => !!document.activeElement && document.activeElement.matches(sel)", selector)


def tab_to(page, selector: str, *, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector``; if it is not ahead, Shift+Tab back."""
    for key in ("Tab", "Shift+Tab"):
        for _ in range(limit):
            if active(page, selector):
                return
            page.keyboard.press(key)
    raise AssertionError(f"{selector} was not reached with the keyboard in {limit} presses "
                         f"(focus on {page.evaluate('document.activeElement.outerHTML.slice(0, 120)')})")


def press_on(page, selector: str, key: str = "Enter") -> None:
    tab_to(page, selector)
    page.keyboard.press(key)


def choose(page, name: str, index: int) -> None:
    """Pick option ``index`` of the radio group ``name``: Tab into it, arrow keys to the option."""
    tab_to(page, f'input[type="radio"][name="{name}"]')
    if index == 0:
        page.keyboard.press("Space")
    for _ in range(index):
        page.keyboard.press("ArrowDown")
    assert page.is_checked(f'input[type="radio"][name="{name}"] >> nth={index}')


def next_step(page) -> str:
    return page.eval_on_selector("#app", "el => el.dataset.kind + ':' + el.dataset.step")


def wait_moved(page, before: str) -> None:
    page.wait_for_function(
        "(b) => { const a = document.getElementById('app'); return a.dataset.kind + ':' + a.dataset.step !== b; }", arg=before
    )


def focus_is_in_new_content(page) -> None:
    """After a step, the focus is on the step's first line or heading (not left on the body)."""
    assert page.evaluate("document.getElementById('app').contains(document.activeElement)"), \
        page.evaluate("document.activeElement.outerHTML.slice(0, 120)")


def new_page(browser, viewport: str):
    return open_page(browser, VIEWPORTS[viewport])


def consent_by_keyboard(page, scans: Scans) -> None:
    page.wait_for_selector("#consent-go")
    scans("consent")
    tab_to(page, ".consent")  # the scroll box is reachable (and scrolls with the arrow keys)
    page.keyboard.press("ArrowDown")
    press_on(page, "#agree", "Space")
    before = next_step(page)
    press_on(page, "#consent-go")
    wait_moved(page, before)
    focus_is_in_new_content(page)


def answer_quiz(page, right: bool) -> None:
    page.wait_for_selector("#submit-quiz")
    for qi, pick in enumerate((1, 0) if right else (0, 1)):
        choose(page, f"quiz-{qi}", pick)
    press_on(page, "#submit-quiz")


# -- Study A -------------------------------------------------------------------------------------
def learning_walk(page, scans: Scans) -> str:
    """One run of Study A from consent to the end, keyboard only; returns its arm's feedback."""
    consent_by_keyboard(page, scans)
    scans("instructions")
    before = next_step(page)
    press_on(page, "#start")
    wait_moved(page, before)
    scans("quiz")
    answer_quiz(page, right=False)
    page.wait_for_selector("#quiz-retry")
    scans("quiz-retry")
    answer_quiz(page, right=True)
    feedback = ""
    for _ in range(3):  # 2 trials and the catch item
        page.wait_for_selector("#instant, #submit-catch")
        focus_is_in_new_content(page)
        if page.locator("#submit-catch").count():
            scans("catch")
            choose(page, "catch", 0)
            before = next_step(page)
            press_on(page, "#submit-catch")
            wait_moved(page, before)
            continue
        page.wait_for_selector("#time-left:not([hidden]) #more-time")
        scans("trial")
        choose(page, page.get_attribute(".options input", "name"), 1)
        press_on(page, "#instant")
        page.wait_for_selector("#verdict")
        assert active(page, "#verdict")  # focus moves to the feedback
        feedback = "heatmap" if page.locator("#heatmap").count() else "morph" if page.locator("#morph").count() else "control"
        # a heatmap comes with its colour scale, words at both ends (not colour alone)
        assert page.locator("#feedback #legend").count() == (1 if feedback == "heatmap" else 0)
        scans(f"feedback-{feedback}")
        if feedback == "morph":
            press_on(page, "#replay")
        before = next_step(page)
        press_on(page, "#next")
        wait_moved(page, before)
    page.wait_for_selector("#submit-rating")
    scans("rating")
    choose(page, "rating", 3)
    press_on(page, "#submit-rating")
    page.wait_for_selector("#completion-code")
    scans("exit-completed")
    return feedback


def flow_study() -> Study:
    study = learning_study(n_trials=2)
    study.config = {**study.config, "exits": EXITS, "comprehension": QUIZ, "catch_trials": [{"after": 1, "answer": 0}],
                    "time_limits": TIME_LIMITS}
    study.save()
    return study


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_study_a_by_keyboard_alone_meets_wcag_aa_on_every_page(browser, live_server, viewport):
    study = flow_study()
    found: dict = {}
    feedback = set()
    for i in range(3):  # one run per arm: the feedback of every arm
        context, page, errors = new_page(browser, viewport)
        scans = Scans(page, f"{viewport}-run{i}")
        page.goto(participant_url(live_server, study, f"PROLIFIC_PID={viewport}{i}&STUDY_ID=s&SESSION_ID=x"))
        feedback.add(learning_walk(page, scans))
        found |= scans.found
        assert not errors, errors
        context.close()
        assert Participant.objects.get(prolific_pid=f"{viewport}{i}").status == "completed"
    assert feedback == {"control", "heatmap", "morph"}

    # More time at the warning, with the keyboard; then the other exits, each scanned.
    context, page, errors = new_page(browser, viewport)
    scans = Scans(page, f"{viewport}-exits")
    page.goto(participant_url(live_server, study, f"PROLIFIC_PID={viewport}x&STUDY_ID=s&SESSION_ID=x"))
    consent_by_keyboard(page, scans)
    press_on(page, "#start")
    answer_quiz(page, right=True)
    page.wait_for_selector("#time-left:not([hidden]) #more-time")
    press_on(page, "#more-time")
    page.wait_for_selector("#instant")
    page.wait_for_function("!document.getElementById('more-time')")  # one extension (the default) is used
    run = Participant.objects.get(prolific_pid=f"{viewport}x")
    assert run.time_extensions == {"steps": {str(run.step_index): 1}}
    # The limit has passed (moved back in time): the page asks the server and shows the timed-out exit.
    Participant.objects.filter(pk=run.pk).update(step_shown_at=timezone.now() - timedelta(minutes=61))
    page.reload()
    page.wait_for_selector("#exit-title")
    assert page.get_attribute("#exit-title", "data-outcome") == "timed_out"
    scans("exit-timed_out")
    context.close()

    context, page, errors = new_page(browser, viewport)
    scans = Scans(page, f"{viewport}-exits2")
    page.goto(participant_url(live_server, study, f"PROLIFIC_PID={viewport}q&STUDY_ID=s&SESSION_ID=x"))
    consent_by_keyboard(page, scans)
    press_on(page, "#start")
    answer_quiz(page, right=False)
    page.wait_for_selector("#quiz-retry")
    answer_quiz(page, right=False)
    page.wait_for_selector("#exit-title[data-outcome='failed_checks']")
    scans("exit-failed_checks")
    context.close()

    context, page, errors = new_page(browser, viewport)
    scans = Scans(page, f"{viewport}-exits3")
    page.goto(participant_url(live_server, study, f"PROLIFIC_PID={viewport}w&STUDY_ID=s&SESSION_ID=x"))
    consent_by_keyboard(page, scans)
    press_on(page, "#withdraw-open")
    page.wait_for_selector("#withdraw-confirm")
    assert active(page, "#withdraw-confirm")
    scans("withdraw-confirm")
    page.keyboard.press("Enter")
    page.wait_for_selector("#exit-title[data-outcome='withdrew']")
    scans("exit-withdrew")
    context.close()

    context, page, errors = new_page(browser, viewport)
    scans = Scans(page, f"{viewport}-exits4")
    page.goto(participant_url(live_server, study, f"PROLIFIC_PID={viewport}n&STUDY_ID=s&SESSION_ID=x"))
    page.wait_for_selector("#consent-decline")
    press_on(page, "#consent-decline")
    page.wait_for_selector("#exit-title[data-outcome='no_consent']")
    scans("exit-no_consent")
    Arm.objects.filter(study=study).update(cap=0)
    page.goto(participant_url(live_server, study, f"PROLIFIC_PID={viewport}f&STUDY_ID=s&SESSION_ID=x"))
    press_on(page, "#agree", "Space")
    press_on(page, "#consent-go")
    page.wait_for_selector("#exit-title[data-outcome='full']")
    scans("exit-full")
    context.close()
    assert not found, found


# -- Study B -------------------------------------------------------------------------------------
def group_by_keyboard(page, n_groups: int) -> None:
    """Put every image of the batch into ``n_groups`` groups: Space selects the focused image,
    Tab moves to the next one, Enter on a group's "Move selected here"; the board says what moved."""
    for _ in range(n_groups - page.locator(".groups .zone").count()):
        press_on(page, "#new-group")
    total = page.locator(".tray .card-img").count()
    per_group = [total // n_groups + (1 if g < total % n_groups else 0) for g in range(n_groups)]
    for group, size in enumerate(per_group):
        tab_to(page, ".tray .card-img")
        for k in range(size):
            if k:
                tab_to(page, ".tray .card-img:not(.selected)")
            page.keyboard.press("Space")
        page.wait_for_function(f"document.querySelectorAll('.tray .card-img.selected').length === {size}")
        press_on(page, f'[data-move="{group}"]')
        page.wait_for_function(f"document.querySelectorAll('.zone[data-group=\"{group}\"] .card-img').length === {size}")
        page.wait_for_function("document.getElementById('announce').textContent.includes('moved to')")
        # the focus goes on to the next image to group, or to Done when none is left
        assert active(page, ".tray .card-img, #done-grouping"), page.evaluate("document.activeElement.outerHTML.slice(0, 120)")


def answer_questions_by_keyboard(page) -> None:
    for qi, fieldset in enumerate(page.locator("fieldset.question").all()):
        if fieldset.locator("textarea").count():
            tab_to(page, f"#q-{qi}")
            page.keyboard.type("Readable.")
        else:
            choose(page, f"q-{qi}", 1)
    before = next_step(page)
    press_on(page, "#submit-questions")
    wait_moved(page, before)


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_study_b_by_keyboard_alone_meets_wcag_aa_on_every_page(browser, live_server, viewport):
    study = clustering_study()
    context, page, errors = new_page(browser, viewport)
    scans = Scans(page, viewport)
    pid = f"kb-{viewport}"
    page.goto(participant_url(live_server, study, f"PROLIFIC_PID={pid}"))
    consent_by_keyboard(page, scans)
    scans("instructions")
    before = next_step(page)
    press_on(page, "#start")
    wait_moved(page, before)
    n = 0
    while True:
        page.wait_for_selector("#done-grouping, #submit-questions, #completion-code")
        focus_is_in_new_content(page)
        if page.locator("#completion-code").count():
            scans("exit-completed")
            break
        if page.locator("#done-grouping").count():
            stage = Participant.objects.get(prolific_pid=pid).current_step["stage"]
            assert page.locator("#legend").count() == (0 if stage == "NoVis" else 1)
            scans(f"grouping-{stage}")
            if stage == "1-Heatmap":  # the keyboard's hover: a focused image shows its heatmap
                tab_to(page, ".tray .card-img")
                assert page.locator(".tray .card-img:focus .heat.on").count() == 1
                press_on(page, "#toggle-all")
            if stage != "NoVis":
                tab_to(page, ".tray .card-img")
                page.keyboard.press("Space")
                page.wait_for_selector(".tray .card-img.selected")
                scans(f"grouping-{stage}-selected")
                page.keyboard.press("Space")  # and unselected again
                page.wait_for_function("!document.querySelector('.tray .card-img.selected')")
            group_by_keyboard(page, 4)
            before = next_step(page)
            press_on(page, "#done-grouping")
            wait_moved(page, before)
            n += 1
        else:
            scans("questions")
            answer_questions_by_keyboard(page)
    context.close()
    assert not errors, errors
    assert not scans.found, scans.found
    run = Participant.objects.get(prolific_pid=pid)
    assert run.status == "completed" and n == 6
    assert all(sorted(set(g.assignment.values())) == [0, 1, 2, 3] for g in Grouping.objects.filter(participant=run))
