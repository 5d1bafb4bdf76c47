"""Each exit of the participant flow, and a staff pilot run, in Chromium: what a person sees at
"I do not consent", a full study, a failed comprehension quiz, a withdrawal, a timed-out run and
the end of a completed run; the pilot's banner; the progress bar and the time warning."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from studyapp.studies.models import Arm, Participant, Study
from tests.browser.conftest import finish_with_rating, open_page
from tests.studyapp.factories import learning_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROLIFIC = "https://app.prolific.com/submissions/complete?cc={code}"
EXITS = {
    "completed": {"code": "DONE01", "redirect_url": PROLIFIC},
    "no_consent": {"code": "NOCONS", "redirect_url": PROLIFIC},
    "full": {"code": "FULL01"},
    "failed_checks": {"code": "FAILCK"},
    "withdrew": {"code": "WITHDR"},
    "timed_out": {"code": "TIMEUP"},
}
QUIZ = {"questions": [
    {"key": "feedback", "label": "What do you see after each answer?", "options": ["Nothing", "Feedback from the system"], "answer": 1},
    {"key": "symbols", "label": "How many different symbols are there?", "options": ["Two", "Ten"], "answer": 0},
], "attempts": 3, "on_fail": "exit"}


def study_with_flow(**config) -> Study:
    study = learning_study(n_trials=3)
    study.config = {**study.config, "exits": EXITS, "comprehension": QUIZ,
                    "catch_trials": [{"after": 1, "answer": 0}], **config}
    study.save()
    study.arms.exclude(feedback=Arm.Feedback.GRADCAM).update(cap=0)
    return study


def new_page(browser, viewport=None):
    context, page, errors = open_page(browser, viewport or {"width": 1280, "height": 800})
    # The exits redirect to Prolific, which cannot be reached from here: answer for it.
    page.route("https://app.prolific.com/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<h1>Prolific (stand-in)</h1>"))
    return context, page, errors


def consent(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#consent-go")
    page.check("#agree")
    page.click("#consent-go")


def answer_quiz(page, right: bool) -> None:
    page.wait_for_selector("#submit-quiz")
    labels = page.locator("#quiz fieldset")
    for i, pick in enumerate((1, 0) if right else (0, 1)):
        labels.nth(i).locator("label").nth(pick).click()
    page.click("#submit-quiz")


def exit_outcome(page) -> tuple[str, str]:
    page.wait_for_selector("#exit-title")
    code = page.inner_text("#completion-code") if page.locator("#completion-code").count() else ""
    return page.get_attribute("#exit-title", "data-outcome"), code


def test_each_exit_has_its_own_page_code_and_redirect(browser, live_server, shots):
    study = study_with_flow()
    url = f"{live_server.url}/s/{study.public_code}/"

    # "I do not consent": no run, its own code, then Prolific.
    context, page, errors = new_page(browser)
    page.goto(url + "?PROLIFIC_PID=nc1&STUDY_ID=s&SESSION_ID=x")
    page.wait_for_selector("#consent-decline")
    page.click("#consent-decline")
    assert exit_outcome(page) == ("no_consent", "NOCONS")
    assert page.get_attribute("#redirect", "href").endswith("cc=NOCONS")
    shots(page, "no-consent")
    page.wait_for_url("https://app.prolific.com/**", timeout=10_000)
    assert not Participant.objects.exists() and not errors
    context.close()

    # The quiz failed three times: the failed-checks exit.
    context, page, errors = new_page(browser)
    consent(page, url + "?PROLIFIC_PID=qz1&STUDY_ID=s&SESSION_ID=x")
    page.click("#start")
    answer_quiz(page, right=False)
    page.wait_for_selector("#quiz-retry")
    assert "2" in page.inner_text("#quiz-retry")
    shots(page, "quiz-retry")
    answer_quiz(page, right=False)
    page.wait_for_selector("#quiz-retry >> text=1")
    answer_quiz(page, right=False)
    assert exit_outcome(page) == ("failed_checks", "FAILCK")
    assert page.locator("#withdraw").count() == 0 and page.is_hidden("#progressbar")
    shots(page, "failed-checks")
    assert Participant.objects.get(prolific_pid="qz1").status == Participant.Status.FAILED_CHECKS and not errors
    context.close()

    # Withdraw from a trial: confirm, the data deleted, the withdrew exit.
    context, page, errors = new_page(browser, {"width": 390, "height": 844})
    consent(page, url + "?PROLIFIC_PID=wd1&STUDY_ID=s&SESSION_ID=x")
    page.click("#start")
    answer_quiz(page, right=True)
    page.wait_for_selector("#instant")
    page.click("#withdraw-open")
    page.wait_for_selector("#withdraw-confirm")
    shots(page, "withdraw-confirm-phone")
    page.click("#withdraw-cancel")
    page.wait_for_selector("#withdraw-open")
    page.click("#withdraw-open")
    page.click("#withdraw-confirm")
    assert exit_outcome(page) == ("withdrew", "WITHDR")
    shots(page, "withdrew-phone")
    assert not Participant.objects.filter(prolific_pid="wd1").exists() and not errors
    context.close()

    # Timed out: the warning before the limit, then the timed-out exit the server decides.
    Study.objects.filter(pk=study.pk).update(config={**study.config, "time_limits": {"total_minutes": 20, "warn_seconds": 3600}})
    context, page, errors = new_page(browser)
    consent(page, url + "?PROLIFIC_PID=to1&STUDY_ID=s&SESSION_ID=x")
    page.wait_for_selector("#time-left:visible")
    assert page.inner_text("#time-left").startswith(("Time left for the whole study: 19:", "Time left for the whole study: 20:00"))
    shots(page, "time-warning")
    run = Participant.objects.get(prolific_pid="to1")
    Participant.objects.filter(pk=run.pk).update(started_at=run.started_at - timedelta(minutes=21))
    page.click("#start")  # the write finds the run past its limit
    assert exit_outcome(page) == ("timed_out", "TIMEUP")
    shots(page, "timed-out")
    assert Participant.objects.get(pk=run.pk).status == Participant.Status.TIMED_OUT and not errors
    context.close()

    # Full: every arm at its cap; the full exit instead of a dead end.
    Study.objects.filter(pk=study.pk).update(config={**study.config})
    study.arms.update(cap=0)
    context, page, errors = new_page(browser)
    consent(page, url + "?PROLIFIC_PID=fl1&STUDY_ID=s&SESSION_ID=x")
    assert exit_outcome(page) == ("full", "FULL01")
    shots(page, "full")
    assert not errors
    context.close()


def test_a_completed_run_with_quiz_and_catch_ends_at_its_code(browser, live_server, shots):
    study = study_with_flow()
    context, page, errors = new_page(browser)
    consent(page, f"{live_server.url}/s/{study.public_code}/?PROLIFIC_PID=ok1&STUDY_ID=s&SESSION_ID=x")
    page.click("#start")
    answer_quiz(page, right=True)
    widths = []
    for trial in range(3):
        page.wait_for_selector("#instant")
        widths.append(page.evaluate("parseFloat(document.querySelector('#progressbar > span').style.width)"))
        page.locator(".options label").first.click()
        page.click("#instant")
        page.wait_for_selector("#next")
        page.click("#next")
        if trial == 0:  # the catch item after the first trial
            page.wait_for_selector("#submit-catch")
            assert page.inner_text("#catch-prompt").startswith("Attention check: please choose")
            shots(page, "catch")
            page.locator(".scale label").first.click()
            page.click("#submit-catch")
    assert widths == sorted(widths) and widths[0] < widths[-1]
    page.wait_for_selector("#submit-rating")
    finish_with_rating(page)
    assert page.inner_text("#completion-code") == "DONE01"
    shots(page, "done")
    run = Participant.objects.get(prolific_pid="ok1")
    assert run.status == Participant.Status.COMPLETED and run.checks.filter(passed=True).count() == 2
    assert run.answers.exclude(client_response_ms=None).count() == 3 and not errors
    # The page's events went out in batches; what was still queued is sent when the page goes.
    page.close(run_before_unload=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and run.events.filter(kind="feedback_shown").count() < 3:
        time.sleep(0.2)
    shown = sorted(e.payload["trial"] for e in run.events.filter(kind="feedback_shown"))
    assert shown == [0, 1, 2]  # one per trial, none lost, none twice
    assert all("t" in e.payload for e in run.events.all())  # each with the page's own time
    context.close()


def test_a_pilot_run_from_the_admin_is_marked_on_every_page(browser, live_server, shots):
    study = study_with_flow()
    study.status = Study.Status.DRAFT
    study.save()
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("pilot", "p@example.org", "pw"))
    context, page, errors = new_page(browser)
    context.add_cookies([{"name": "sessionid", "value": staff.cookies["sessionid"].value, "url": live_server.url}])
    page.goto(f"{live_server.url}/admin/studies/study/{study.pk}/pilot/")
    page.select_option("#pilot-arm", label=f"{study.arms.get(feedback='gradcam').name} (Grad-CAM heatmap)")
    shots(page, "pilot-form")
    page.click("#pilot-form input[type=submit]")
    page.wait_for_selector("#start")
    assert page.is_visible("#banner") and page.inner_text("#banner").startswith("Test run")
    shots(page, "pilot-instructions")
    page.click("#start")
    answer_quiz(page, right=True)
    page.wait_for_selector("#instant")
    assert page.is_visible("#banner")
    page.locator(".options label").first.click()
    page.click("#instant")
    page.wait_for_selector("#heatmap")
    shots(page, "pilot-feedback")
    pilot = Participant.objects.get()
    assert pilot.is_test and pilot.arm.feedback == "gradcam" and not errors
    context.close()
