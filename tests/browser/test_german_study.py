"""A person takes a German Study A in Chromium (laptop and phone): every word of the interface is
German, from the consent page to the completion code, and none of the catalogs' English shows."""

from __future__ import annotations

import pytest

from studyapp.studies.models import Arm, Participant
from tests.browser.conftest import VIEWPORTS, finish_with_rating
from tests.studyapp.factories import learning_study
from tests.studyapp.test_i18n import assert_no_english, german

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_a_person_takes_a_german_study_in_german(browser, live_server, shots, viewport):
    study = german(learning_study())
    # Only the Grad-CAM arm takes runs here, so that the feedback shown is a highlighted image.
    study.arms.exclude(feedback=Arm.Feedback.GRADCAM).update(cap=0)
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-US")  # the study decides, not the browser
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    seen: list[tuple[str, str]] = []

    def look(name: str) -> None:
        shots(page, f"{viewport}-{name}")
        seen.append((name, page.inner_text("body")))

    page.goto(f"{live_server.url}/s/{study.public_code}/?PROLIFIC_PID=de-{viewport}&STUDY_ID=s1&SESSION_ID=x1")
    page.wait_for_selector("#consent-go")
    assert page.evaluate("document.documentElement.lang") == "de"
    assert page.inner_text("#app h2") == "Einwilligung"
    assert page.inner_text("#consent-go") == "Weiter"
    look("consent")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    assert page.inner_text("#start") == "Beginnen"
    assert "Ihnen wird das Bild eines Symbols gezeigt" in page.inner_text("#app")
    look("instructions")
    page.click("#start")
    for trial in range(20):
        page.wait_for_selector("#instant")
        assert page.inner_text("#progress") == f"Frage {trial + 1} von 20"
        assert page.inner_text("#instant") == "Sofort antworten"
        if trial == 0:
            assert "Welches Symbol ist das?" in page.inner_text("#app")
            look("trial")
        page.locator(".options label").nth(trial % 2).click()
        page.click("#instant")
        page.wait_for_selector("#verdict")
        assert page.inner_text("#verdict") in ("Richtig!", "Nicht richtig.")
        assert page.inner_text("#app .answer").startswith("Die richtige Antwort ist ")
        if trial == 0:
            page.wait_for_selector("#heatmap")
            assert page.inner_text("#feedback figcaption").startswith("Bereiche, die das System für ")
            look("feedback")
        assert page.inner_text("#next") == ("Absenden" if trial == 19 else "Weiter")
        page.click("#next")
    page.wait_for_selector("#submit-rating")
    assert page.inner_text("#app h2") == "Bitte bewerten Sie das Feedback, das Sie erhalten haben."
    look("rating")
    finish_with_rating(page)
    assert page.inner_text("#app h2") == "Vielen Dank!"
    assert page.inner_text("#progress") == "Abgeschlossen"
    assert "Ihr Abschlusscode:" in page.inner_text("#app")
    look("done")
    context.close()
    assert not errors, errors
    assert Participant.objects.get(prolific_pid=f"de-{viewport}").status == "completed"
    assert_no_english(seen)
