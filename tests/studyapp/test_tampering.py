"""Tampering: each case gets a 4xx and changes nothing."""

from __future__ import annotations

import random
import secrets

import pytest
from django.test import Client

from studyapp.studies.models import Participant, TrialAnswer
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    return learning_study()


def test_floods_of_new_entries_are_rate_limited(study, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"entry": "5/minute", "participant": "1000/minute"}}
    statuses = []
    for i in range(8):
        bot = Bot(study.slug, rng=random.Random(i))
        bot.open_link()
        statuses.append(bot.enter()[0])
    assert statuses[:5] == [201] * 5 and set(statuses[5:]) == {429}
    assert Participant.objects.count() == 5


def test_guessed_codes_give_nothing(study):
    bot = Bot(study.slug)
    bot.open_link()
    bot.enter()
    stranger = Client(enforce_csrf_checks=True)
    stranger.get(f"/s/{study.slug}/")
    token = stranger.cookies["csrftoken"].value
    for _ in range(20):
        code = secrets.token_urlsafe(16)
        r = stranger.post(f"/api/s/{study.slug}/steps/0/continue", data={"participant": code}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
        assert r.status_code == 403
        # A session cookie guessed or copied from a code does not bind either.
        stranger.cookies["sessionid"] = code
        assert stranger.get(f"/api/s/{study.slug}/state").json()["kind"] == "consent"
    assert Participant.objects.get().step_index == 0


def test_a_participant_cannot_act_on_another_study(study):
    from tests.studyapp.factories import clustering_study

    other = clustering_study()
    bot = Bot(study.slug)
    bot.open_link()
    bot.enter()
    r = bot.client.post(f"/api/s/{other.slug}/steps/0/continue", data="{}", content_type="application/json", HTTP_X_CSRFTOKEN=bot.csrf())
    assert r.status_code == 403
    assert not Participant.objects.filter(study=other).exists()


def test_unknown_study_and_malformed_bodies_are_4xx(study):
    bot = Bot(study.slug)
    bot.open_link()
    assert bot.client.get("/api/s/nope/state").status_code == 404
    bot.enter()
    bot.continue_()
    step = bot.state["step"]
    for body in ("not json", "[]", '{"stimulus": "1", "choice": []}', '{"stimulus": -1, "choice": 3}', "{}"):
        r = bot.client.post(f"/api/s/{study.slug}/steps/{step}/answer", data=body, content_type="application/json", HTTP_X_CSRFTOKEN=bot.csrf())
        assert 400 <= r.status_code < 500, body
    assert TrialAnswer.objects.count() == 0


def test_no_ip_address_or_user_agent_is_stored(study):
    bot = Bot(study.slug)
    bot.client.defaults.update(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="SecretBrowser/1.0")
    bot.open_link()
    bot.walk()
    from django.apps import apps
    from django.core import serializers

    dump = "".join(serializers.serialize("json", m.objects.all()) for m in apps.get_app_config("studies").get_models())
    assert "203.0.113.7" not in dump and "SecretBrowser" not in dump
