"""Tampering: each case gets a 4xx and changes nothing."""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path

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
        bot = Bot(study.public_code, rng=random.Random(i))
        bot.open_link()
        statuses.append(bot.enter()[0])
    assert statuses[:5] == [201] * 5 and set(statuses[5:]) == {429}
    assert Participant.objects.count() == 5


def test_guessed_codes_give_nothing(study):
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    stranger = Client(enforce_csrf_checks=True)
    stranger.get(f"/s/{study.public_code}/")
    token = stranger.cookies["csrftoken"].value
    for _ in range(20):
        code = secrets.token_urlsafe(16)
        r = stranger.post(f"/api/s/{study.public_code}/steps/0/continue", data={"participant": code}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
        assert r.status_code == 403
        # A session cookie guessed or copied from a code does not bind either.
        stranger.cookies["sessionid"] = code
        assert stranger.get(f"/api/s/{study.public_code}/state").json()["kind"] == "consent"
    assert Participant.objects.get().step_index == 0


def test_a_participant_cannot_act_on_another_study(study):
    from tests.studyapp.factories import clustering_study

    other = clustering_study()
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    r = bot.client.post(f"/api/s/{other.public_code}/steps/0/continue", data="{}", content_type="application/json", HTTP_X_CSRFTOKEN=bot.csrf())
    assert r.status_code == 403
    assert not Participant.objects.filter(study=other).exists()


def test_unknown_study_and_malformed_bodies_are_4xx(study):
    bot = Bot(study.public_code)
    bot.open_link()
    assert bot.client.get("/api/s/nope/state").status_code == 404
    bot.enter()
    bot.continue_()
    step = bot.state["step"]
    for body in ("not json", "[]", '{"stimulus": "1", "choice": []}', '{"stimulus": -1, "choice": 3}', "{}"):
        r = bot.client.post(f"/api/s/{study.public_code}/steps/{step}/answer", data=body, content_type="application/json", HTTP_X_CSRFTOKEN=bot.csrf())
        assert 400 <= r.status_code < 500, body
    assert TrialAnswer.objects.count() == 0


def test_no_ip_address_or_user_agent_is_stored(study):
    bot = Bot(study.public_code)
    bot.client.defaults.update(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="SecretBrowser/1.0")
    bot.open_link()
    bot.walk()
    from django.apps import apps
    from django.core import serializers

    dump = "".join(serializers.serialize("json", m.objects.all()) for m in apps.get_app_config("studies").get_models())
    assert "203.0.113.7" not in dump and "SecretBrowser" not in dump


# -- issue 11: resuming a run, private files, hostile bodies -------------------------------------


def half_way(study, pid: str = "VICTIM") -> Bot:
    """A Prolific participant (SESSION_ID X1) who has answered the first trial."""
    bot = Bot(study.public_code, pid=pid)
    bot.open_link()
    bot.enter()
    bot.continue_()
    bot.answer(0)
    return bot


def test_a_known_prolific_id_alone_does_not_take_over_a_run(study):
    victim = half_way(study)
    before = Participant.objects.values_list("code", "step_index", "last_seen_at").get()
    for session in ("", "&SESSION_ID=", "&SESSION_ID=X2", "&SESSION_ID=x1", "&SESSION_ID=X10"):
        attacker = Bot(study.public_code)  # a fresh browser that knows the victim's PROLIFIC_PID
        assert attacker.client.get(f"/s/{study.public_code}/?PROLIFIC_PID=VICTIM{session}").status_code == 200
        status, data = attacker.get(f"state?PROLIFIC_PID=VICTIM{session}")
        assert status == 403 and data["error"] == "resume_refused", session
        assert "another browser or Prolific session" in data["detail"] and "state" not in data and "participant" not in data
        # Enrolling with the same PROLIFIC_PID is refused the same way and creates nothing.
        status, data = attacker.post("enter", {"consent": True, "prolific_pid": "VICTIM", "study_id": "S1",
                                               "session_id": session.partition("=")[2]})
        assert status == 403 and data["error"] == "resume_refused", session
        # No binding was made: withdrawing (and every step) is refused.
        status, data = attacker.post("withdraw", {"confirm": True})
        assert status == 403 and data["error"] == "no_participant"
        assert attacker.post(f"steps/{victim.state['step']}/continue")[0] == 403
        assert attacker.get("state")[1]["kind"] == "consent"
    assert Participant.objects.values_list("code", "step_index", "last_seen_at").get() == before
    assert TrialAnswer.objects.count() == 1
    assert victim.refresh()["participant"] == before[0]


def test_a_run_enrolled_without_a_session_id_resumes_only_in_its_own_browser(study):
    owner = Bot(study.public_code)
    owner.open_link()
    status, _ = owner.post("enter", {"consent": True, "prolific_pid": "NOSESSION"})
    assert status == 201
    for query in ("PROLIFIC_PID=NOSESSION", "PROLIFIC_PID=NOSESSION&SESSION_ID=", "PROLIFIC_PID=NOSESSION&SESSION_ID=X1"):
        stranger = Bot(study.public_code)
        stranger.open_link()
        status, data = stranger.get(f"state?{query}")
        assert status == 403 and data["error"] == "resume_refused", query
    assert owner.refresh()["kind"] == "instructions"


def test_a_run_resumes_in_a_new_browser_with_its_session_id_which_may_then_withdraw(study):
    victim = half_way(study)
    again = Bot(study.public_code, pid="VICTIM")
    state = again.open_link()  # the same recruitment link: PROLIFIC_PID and SESSION_ID X1
    assert state["participant"] == victim.state["participant"] and state["step"] == victim.state["step"]
    status, data = again.post("withdraw", {"confirm": True})
    assert status == 200 and data["withdrawn"]
    assert not Participant.objects.exists() and not TrialAnswer.objects.exists()


def test_media_serves_participants_only_what_they_are_shown(study, settings, django_user_model):
    from studyapp.pipeline.models import ExplanationAsset
    from studyapp.pipeline.storage import media_path, store_bytes

    stimulus = study.stimuli.order_by("position").first()
    shown = [stimulus.image, *ExplanationAsset.objects.filter(stimulus=stimulus).values_list("files", flat=True)[0].values()]
    checkpoint = store_bytes(b"classifier weights", ext="pt", folder="models")
    dataset = store_bytes(b"images and labels", ext="npz", folder="datasets")
    private = [checkpoint, dataset, store_bytes(b"tidy csv", ext="csv", folder="exports")]
    media_path("secret.txt").write_text("top level")
    media_path(stimulus.image).with_name(".tmp-half-written.png").write_bytes(b"partial")
    hidden = str(Path(stimulus.image).with_name(".tmp-half-written.png"))
    tampered = [*private, "secret.txt", hidden, f"stimuli/../{checkpoint}", f"assets/%2e%2e/{dataset}",
                f"stimuli/..%2f{checkpoint}", "stimuli", "stimuli/", "assets/00", "stimuli/x%00.png"]
    participant = Bot(study.public_code)
    participant.open_link()
    participant.enter()
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True, is_superuser=True))
    missing = Client().get("/media/models/00/no-such-file.pt")
    assert missing.status_code == 404
    for client in (participant.client, Client(), staff):
        for path in shown:
            response = client.get(f"/media/{path}")
            assert response.status_code == 200, path
            assert b"".join(response.streaming_content) == media_path(path).read_bytes()
        for path in tampered:
            response = client.get(f"/media/{path}")
            # The same 404 as a file that does not exist: a refusal does not tell that it does.
            assert response.status_code == 404 and response.content == missing.content, path


def test_deep_oversized_and_malformed_bodies_are_4xx_on_every_endpoint_and_change_nothing(study, settings):
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    bot.continue_()
    step = bot.state["step"]
    deep = "[" * 5000 + "]" * 5000
    stimulus = bot.state["stimulus"]
    bodies = {
        deep: (400, "nested too deeply"),
        '{"a":' * 5000 + "1" + "}" * 5000: (400, "nested too deeply"),
        f'{{"stimulus": {stimulus}, "choice": 0, "x": {deep}}}': (400, "nested too deeply"),
        f'{{"answers": {{"feedback_rating": {deep}}}}}': (400, "nested too deeply"),
        f'{{"kind": "hover", "payload": {{"a": {deep}}}}}': (400, "nested too deeply"),
        f'{{"stimulus": {stimulus}, "choice": 0, "pad": "' + "x" * settings.STUDY_API_MAX_BODY_BYTES + '"}':
            (413, "too large"),
        "[" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1): (413, "too large"),
        f'{{"stimulus": {stimulus}, "choice": NaN}}': (400, "not valid json"),
        '{"stimulus": 1, "choice": ': (400, "not valid json"),
        b'{"kind": "\xff\xfe"}': (400, "not valid utf-8"),
    }
    endpoints = ["enter", f"steps/{step}/answer", f"steps/{step}/continue", f"steps/{step}/questions",
                 f"steps/{step}/grouping", "events", "withdraw", "time/extend"]
    for endpoint in endpoints:
        for body, (expected, words) in bodies.items():
            r = bot.client.post(f"/api/s/{study.public_code}/{endpoint}", data=body, content_type="application/json",
                                HTTP_X_CSRFTOKEN=bot.csrf())
            assert r.status_code == expected, (endpoint, body[:40])
            assert words in r.json()["detail"].lower(), (endpoint, r.json())
    # A string full of brackets is not nesting, and 64 levels are allowed: both reach the flow
    # (refused there as a bad answer); 65 levels are not.
    from studyapp.lib.bodies import MAX_JSON_DEPTH

    def nested(levels: int) -> str:  # the body object is the first level
        return '{"choice": "x", "pad": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    for body in (json.dumps({"stimulus": stimulus, "choice": "[" * 5000}), nested(MAX_JSON_DEPTH)):
        r = bot.client.post(f"/api/s/{study.public_code}/steps/{step}/answer", data=body, content_type="application/json",
                            HTTP_X_CSRFTOKEN=bot.csrf())
        assert r.status_code == 400 and "choice" in r.json(), r.json()
    r = bot.client.post(f"/api/s/{study.public_code}/steps/{step}/answer", data=nested(MAX_JSON_DEPTH + 1),
                        content_type="application/json", HTTP_X_CSRFTOKEN=bot.csrf())
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"]
    participant = Participant.objects.get()
    assert participant.step_index == step and TrialAnswer.objects.count() == 0 and not participant.events.exists()
    assert bot.refresh()["step"] == step


def test_the_admin_refuses_deep_json_and_oversized_forms_and_changes_nothing(settings, django_user_model):
    study = learning_study(open_it=False)
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("staff", password="pw-staff-123", is_staff=True, is_superuser=True))
    url = f"/admin/studies/study/{study.pk}/change/"
    assert staff.get(url).status_code == 200
    for data, expected in (({"title": "Renamed", "config": "[" * 5000 + "]" * 5000}, 400),
                           ({"title": "Renamed", "instructions": '{"a":' * 3000 + "1" + "}" * 3000}, 400),
                           ({"title": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}, 413)):
        r = staff.post(url, data)
        assert r.status_code == expected and r.content.decode().startswith("The request body is"), r.content[:200]
    study.refresh_from_db()
    assert study.title != "Renamed" and isinstance(study.config, dict)
