"""The configuration in the admin: every key documented from the typed model, a JSON Schema for
editors, and a bad key or value refused on save with the field named (nothing saved)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from studyapp.lib.study_config import StudyConfig
from studyapp.studies.models import Study
from tests.studyapp.admin_forms import study_change_data, superuser_client
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> Client:
    return superuser_client()


def test_the_change_page_lists_every_key_of_the_typed_model(owner):
    study = learning_study(open_it=False)
    html = owner.get(f"/admin/studies/study/{study.pk}/change/").content.decode()
    assert 'id="config-reference"' in html
    for key in StudyConfig.model_fields:
        assert f"<code>{key}</code>" in html, key
    for nested in ("ComprehensionConfig.attempts", "TimeLimits.warn_seconds", "ExitConfig.code", "CatchItem.after"):
        assert f"<code>{nested}</code>" in html, nested
    schema = owner.get("/admin/studies/study/config-schema.json").json()
    assert set(schema["properties"]) == set(StudyConfig.model_fields)


@pytest.mark.parametrize(("config", "field"), [
    ({"exits": {"full": {"code": "has space"}}}, "exits.full.code"),
    ({"time_limits": {"total_minutes": -5}}, "time_limits.total_minutes"),
    ({"spare_stimuli": 3, "sparestimuli": 1}, "sparestimuli"),
])
def test_a_bad_configuration_is_refused_on_save_with_the_field_named(owner, config, field):
    study = learning_study(open_it=False)
    before = Study.objects.get(pk=study.pk).config
    data = study_change_data(owner, study)
    data["config"] = json.dumps({**study.config, **config})
    reply = owner.post(f"/admin/studies/study/{study.pk}/change/", data)
    assert reply.status_code == 200  # the form again, with the error
    assert field in reply.content.decode()
    assert Study.objects.get(pk=study.pk).config == before


def test_the_language_of_a_study_with_runs_cannot_change(owner):
    from tests.studyapp.bots import Bot

    study = learning_study()
    bot = Bot(study.public_code, pid="L1")
    bot.open_link()
    bot.enter()
    data = study_change_data(owner, study)
    data["language"] = "de"
    reply = owner.post(f"/admin/studies/study/{study.pk}/change/", data)
    assert reply.status_code == 200 and "its language can no longer change" in reply.content.decode()
    assert Study.objects.get(pk=study.pk).language == "en"
