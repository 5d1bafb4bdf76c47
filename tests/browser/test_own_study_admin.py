"""A researcher's own study made in the admin, in Chromium, with no command line: upload a zip
of class folders, register a network trained elsewhere (a torch.export file), make the study
from the learning template, select its stimuli and precompute on a real worker (actions on
the study list), open it, and take its first trial as a participant. Screenshots of each page
go to var/screenshots/<test name>/."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from studyapp.pipeline.models import Dataset, PrecomputeJob, TrainedModel
from studyapp.studies.models import Participant, Study
from tests.browser.conftest import participant_url
from tests.owndata import digit_arrays, make_image_folders, train_small_cnn
from tests.studyapp.worker import celery_worker

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.first_run_only, pytest.mark.django_db(transaction=True)]

SIZE = 32


def study_action(page, base: str, study: Study, action: str) -> None:
    """Tick ``study`` on the study list and run one admin action on it."""
    page.goto(f"{base}/admin/studies/study/")
    page.check(f"input[name=_selected_action][value='{study.pk}']")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")


def test_a_researcher_makes_and_opens_an_own_study_in_the_admin(browser, live_server, shots, tmp_path, django_user_model):
    django_user_model.objects.create_superuser("lab", "lab@example.org", "a long password")
    folders = make_image_folders(tmp_path / "shapes", size=SIZE, rgb=True)
    archive = shutil.make_archive(str(tmp_path / "shapes"), "zip", root_dir=folders)
    x, y = digit_arrays(size=SIZE, rgb=True)
    program = torch.export.export(
        train_small_cnn(x, y, epochs=4), (torch.zeros(2, 3, SIZE, SIZE),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, tmp_path / "lab-net.pt2")

    base = live_server.url
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "lab")
    page.fill("#id_password", "a long password")
    page.click("input[type=submit]")

    page.goto(f"{base}/admin/pipeline/dataset/import/")
    page.set_input_files("#id_images-archive", archive)
    page.fill("#id_images-name", "shapes")
    shots(page, "import-form")
    page.click("#import-images input[type=submit]")
    page.wait_for_selector(".messagelist")
    shots(page, "imported")
    dataset = Dataset.objects.get(name="shapes")
    assert dataset.class_names == ["curl", "loop"] and dataset.kind == Dataset.Kind.IMAGES

    page.goto(f"{base}/admin/pipeline/trainedmodel/register/")
    page.select_option("#id_dataset", label="shapes")
    page.set_input_files("#id_file", str(tmp_path / "lab-net.pt2"))
    shots(page, "register-form")
    page.click("input[type=submit][value=Register]")
    page.wait_for_selector(".messagelist")
    shots(page, "registered")
    classifier = TrainedModel.objects.get(dataset=dataset, role="classifier")
    assert classifier.status == "ready" and classifier.test_accuracy > 0.9
    assert "registered" in page.inner_text(".messagelist").lower()

    page.goto(f"{base}/admin/studies/study/")
    page.click("text=New study from template")
    page.select_option("#id_template", "learning")
    page.fill("#id_slug", "lab-shapes")
    page.select_option("#id_dataset", label="shapes")
    page.fill("#id_classes", "curl,loop")
    page.fill("#id_names", "Ternal,Peat")
    page.select_option("#id_classifier", str(classifier.pk))
    page.fill("#id_arms", "Control,GCAM")
    shots(page, "new-study-form")
    page.click("input[type=submit][value='Make the draft study']")
    page.wait_for_selector(".messagelist")
    shots(page, "study-made")
    study = Study.objects.get(slug="lab-shapes")
    assert study.status == "draft" and study.classes == [0, 1] and study.class_names == ["Ternal", "Peat"]
    study.n_trials = 4  # the researcher's edit: a short pilot (the change form is tested elsewhere)
    study.config = {**study.config, "spare_stimuli": 2, "explain_batch": 6, "apem_ceiling": 60}
    study.save()

    study_action(page, base, study, "select_stimuli")
    assert study.stimuli.count() == 6
    with celery_worker(name="admin-own-study"):
        study_action(page, base, study, "precompute_explanations")
        deadline = time.monotonic() + 600
        while PrecomputeJob.objects.filter(study=study).exclude(status__in=["done", "failed"]).exists():
            assert time.monotonic() < deadline, "precompute did not finish"
            time.sleep(1)
    assert PrecomputeJob.objects.get(study=study).status == "done"
    page.goto(f"{base}/admin/studies/study/{study.pk}/dashboard/")
    shots(page, "status-page")
    study_action(page, base, study, "open_studies")
    shots(page, "opened")
    study.refresh_from_db()
    assert study.status == "open", page.inner_text(".messagelist")

    # Two participants: the arms are balanced, so one sees each arm's feedback.
    arms = set()
    for pid in ("own1", "own2"):
        participant = browser.new_page(viewport={"width": 1280, "height": 800})
        participant.goto(participant_url(live_server, study, f"PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1"))
        participant.check("#agree")
        participant.click("#consent-go")
        participant.wait_for_selector("#start")
        participant.click("#start")
        participant.wait_for_selector("#instant")
        arm = Participant.objects.get(study=study, prolific_pid=pid).arm.name
        arms.add(arm)
        shots(participant, f"participant-trial-{arm}")
        assert "Ternal" in participant.inner_text(".options") and "curl" not in participant.content()
        assert "Which kind of picture is this?" in participant.content()  # the template's neutral wording
        participant.locator(".options label").nth(0).click()
        participant.click("#instant")
        participant.wait_for_selector("#verdict")
        if arm == "GCAM":  # the heatmap as the browser gets it: a PNG that loads
            participant.wait_for_function(
                "() => { const i = document.querySelector('#heatmap'); return i && i.complete && i.naturalWidth > 0; }"
            )
        else:
            assert participant.locator("#heatmap").count() == 0
        shots(participant, f"participant-feedback-{arm}")
    assert arms == {"Control", "GCAM"}
