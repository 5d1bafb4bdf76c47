"""Frozen study versions: a run keeps reading the design and the explanation assets it was
enrolled under, whatever the researcher edits or precomputes afterwards."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from studyapp.pipeline.models import ExplanationAsset
from studyapp.pipeline.storage import store_bytes
from studyapp.studies import versions
from studyapp.studies.models import Participant, Study, StudyVersion
from tests.studyapp.admin_forms import study_change_data, superuser_client
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study, png

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> Client:
    return superuser_client()


def _gradcam_bot(study: Study, pid: str) -> Bot:
    """A bot in the Grad-CAM arm (other arms are capped at zero while it enrols)."""
    for arm in study.arms.all():
        arm.cap = None if arm.feedback == "gradcam" else 0
        arm.save()
    bot = Bot(study.public_code, pid=pid)
    bot.open_link()
    assert bot.enter()[0] in (200, 201)
    return bot


def _re_precompute(study: Study) -> dict[int, str]:
    """What a precompute with other parameters makes: a newer valid Grad-CAM asset per stimulus."""
    made = {}
    for stimulus in study.stimuli.all():
        path = store_bytes(png(5000 + stimulus.pk), ext="png")
        ExplanationAsset.objects.create(
            stimulus=stimulus, method="gradcam", params_hash="other-params", params={"layer": "other"},
            valid=True, files={"overlay": path},
        )
        made[stimulus.pk] = path
    return made


def test_a_run_keeps_its_version_and_assets_after_an_edit_and_a_re_precompute(owner):
    study = learning_study()
    first = _gradcam_bot(study, "V1")
    run = Participant.objects.get(prolific_pid="V1")
    assert run.version is not None and run.version.number == 1
    assert all("assets" in s for s in run.plan if s["kind"] == "trial")
    old_names = list(study.class_names)

    # The researcher renames the classes, rewrites the cover story and re-precomputes.
    study.refresh_from_db()
    study.class_names = ["Zorb", "Quill"]
    study.cover_story = "An edited cover story."
    study.save()
    new_assets = _re_precompute(study)
    v2 = versions.version_after_edit(study=study)
    assert v2 is not None and v2.number == 2
    assert {c["field"] for c in v2.changes} >= {"class_names", "cover_story"}
    assert next(c for c in v2.changes if c["field"] == "class_names") == {
        "field": "class_names", "before": old_names, "after": ["Zorb", "Quill"],
    }

    # The first run still sees version 1: its names, and the Grad-CAM asset pinned at enrolment.
    code, state = first.continue_()
    assert code == 200 and state["kind"] == "trial"
    assert [o["label"] for o in state["options"]] == old_names
    code, answered = first.answer(0)
    assert code in (200, 201)
    overlay = answered["feedback"]["assets"]["overlay"]
    pinned = run.plan[state["step"]]["assets"]["gradcam"]
    assert overlay.endswith(ExplanationAsset.objects.get(pk=pinned).files["overlay"])
    assert not overlay.endswith(new_assets[state["stimulus"]])
    assert answered["feedback"]["choice_label"] in old_names

    # A run enrolled after the edit reads version 2 and the new assets.
    second = _gradcam_bot(study, "V2")
    assert Participant.objects.get(prolific_pid="V2").version == v2
    code, state = second.continue_()
    assert [o["label"] for o in state["options"]] == ["Zorb", "Quill"]
    code, answered = second.answer(0)
    assert answered["feedback"]["assets"]["overlay"].endswith(new_assets[state["stimulus"]])

    # Every export row names the version its run was enrolled under.
    body = owner.get(f"/admin/studies/study/{study.pk}/export/tidy.csv").content.decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert {(r["prolific_pid"], r["study_version"]) for r in rows} == {("V1", "1"), ("V2", "2")}
    by_pid = {r["prolific_pid"]: r for r in rows}
    assert int(by_pid["V1"]["explanation_asset_id"]) == pinned
    wide = list(csv.DictReader(io.StringIO(owner.get(f"/admin/studies/study/{study.pk}/export/wide.csv").content.decode())))
    assert {(r["prolific_pid"], r["study_version"]) for r in wide} == {("V1", "1"), ("V2", "2")}


def test_an_admin_edit_of_a_study_with_runs_makes_a_version_shown_with_its_changes(owner):
    study = learning_study()
    _gradcam_bot(study, "A1")
    study.refresh_from_db()
    data = study_change_data(owner, study)
    data["rating_question"] = "How useful was the feedback?"
    reply = owner.post(f"/admin/studies/study/{study.pk}/change/", data, follow=True)
    assert reply.status_code == 200
    errors = reply.context.get("errors") if reply.context else None
    assert not errors, errors
    assert list(StudyVersion.objects.filter(study=study).values_list("number", flat=True)) == [1, 2]
    v2 = StudyVersion.objects.get(study=study, number=2)
    assert [c["field"] for c in v2.changes] == ["rating_question"]
    assert "made version 2" in reply.content.decode()
    page = owner.get(f"/admin/studies/study/{study.pk}/change/").content.decode()
    assert "How useful was the feedback?" in page and "rating_question" in page


def test_an_unchanged_design_keeps_one_version_and_runs_before_versions_read_the_live_study():
    study = learning_study()
    first = versions.current_version(study=study)
    assert versions.current_version(study=study) == first
    assert StudyVersion.objects.filter(study=study).count() == 1
    bot = _gradcam_bot(study, "L1")
    run = Participant.objects.get(prolific_pid="L1")
    Participant.objects.filter(pk=run.pk).update(version=None)  # a run from before versions
    study.class_names = ["Live", "Names"]
    study.save()
    code, state = bot.continue_()
    assert [o["label"] for o in state["options"]] == ["Live", "Names"]
