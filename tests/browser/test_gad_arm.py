"""A person takes a demo-like Study A arm whose feedback is the GAD map, in Chromium: the
explanations are the pipeline's own (a small real MnistNet, GAD support models fine-tuned on the
study's two classes), and the feedback shows the stored overlay PNG."""

from __future__ import annotations

import pytest

from studyapp.pipeline import explain
from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.pipeline.storage import media_url
from studyapp.studies import services
from studyapp.studies.models import Participant, TrialAnswer
from tests.browser.conftest import finish_with_rating, open_page
from tests.studyapp.test_apem_gad import compute, gad_learning_study

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_person_sees_gad_feedback(browser, live_server, shots, tmp_path):
    study = gad_learning_study(tmp_path, feedbacks=("gad",), n_trials=4, spare=2)
    explain._SUPPORTS.clear()
    compute(study, "gad")
    services.study_open(study=study)
    overlays = {
        media_url(a.files["overlay"])
        for a in ExplanationAsset.objects.filter(stimulus__study=study, method="gad", valid=True)
    }
    assert len(overlays) >= 4

    context, page, errors = open_page(browser, {"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/s/{study.public_code}/?PROLIFIC_PID=gad1&STUDY_ID=s1&SESSION_ID=x1")
    page.check("#agree")
    page.click("#consent-go")
    page.wait_for_selector("#start")
    assert "set this symbol apart" in page.inner_text("#arm-instruction")
    page.click("#start")
    shown = []
    for trial in range(4):
        page.wait_for_selector("#instant")
        page.locator(".options label").nth(trial % 2).click()
        page.click("#instant")
        page.wait_for_selector("#heatmap")
        page.wait_for_function("document.querySelector('#heatmap').complete")
        assert page.evaluate("document.querySelector('#heatmap').naturalWidth") == 224  # 28 px x 8
        shown.append(page.get_attribute("#heatmap", "src"))
        labels = page.locator(".options label span").all_inner_texts()
        correct = page.inner_text("#correct-label")
        other = next(label for label in labels if label != correct)
        assert page.inner_text("#feedback figcaption") == f"Parts that tell {correct} apart from {other}"
        if trial == 0:
            shots(page, "gad-feedback")
        page.click("#next")
    page.wait_for_selector("#submit-rating")
    finish_with_rating(page)
    context.close()

    assert not errors, errors
    assert all(any(src.endswith(url) for url in overlays) for src in shown), (shown, overlays)
    participant = Participant.objects.get(prolific_pid="gad1")
    assert participant.status == "completed" and participant.arm.feedback == "gad"
    answered = TrialAnswer.objects.filter(participant=participant).values_list("stimulus_id", flat=True)
    assert len(answered) == 4 and set(answered) <= set(Stimulus.objects.filter(study=study).values_list("pk", flat=True))
