"""Query budgets of the participant requests, and the cheap paths that keep them.

Counts include the transaction's own statements (``BEGIN``, or SQLite's ``BEGIN IMMEDIATE``, and
``COMMIT``, as Django logs them on both databases), as in production: hence ``transaction=True``,
so that a service's transaction is a real one and not a savepoint inside the test's. Counted once
the process has read the study's stimuli and assets (``selectors.study_content``, two queries per
study and process, again after a study edit or ``CONTENT_TTL_SECONDS``).
"""

from __future__ import annotations

import random

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from studyapp.pipeline.models import ExplanationAsset
from studyapp.pipeline.storage import store_bytes
from studyapp.studies import access, api, selectors, services
from studyapp.studies.client import DjangoTransport, ParticipantClient
from studyapp.studies.models import Participant, Study, TrialAnswer
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study, png

pytestmark = pytest.mark.django_db(transaction=True)

#: The issue's budgets (Study A): answer, continue, state.
BUDGET = {"answer": 5, "continue": 4, "state": 3}


def participant(slug: str) -> ParticipantClient:
    api_client = ParticipantClient(slug, DjangoTransport(Client(enforce_csrf_checks=True)))
    assert api_client.page().status == 200
    return api_client


def counted(call):
    with CaptureQueriesContext(connection) as ctx:
        reply = call()
    assert reply.status in (200, 201), reply.text[:300]
    return reply.data, [q["sql"] for q in ctx.captured_queries]


@pytest.mark.parametrize("touch", [False, True], ids=["seen-recently", "last-seen-written"])
def test_study_a_answer_continue_and_state_stay_within_their_query_budgets(touch, monkeypatch):
    """``last_seen_at`` is written at most every TOUCH_EVERY_SECONDS by a read or an answer (a
    step moved on writes it anyway): counted both without and with that write."""
    monkeypatch.setattr(services, "TOUCH_EVERY_SECONDS", 0 if touch else 3600)
    study = learning_study()
    selectors.study_content(study=Study.objects.get(pk=study.pk))  # what the first request of this process reads

    p = participant(study.public_code)
    state, queries = counted(lambda: p.enter(consent=True))
    state, queries = counted(lambda: p.continue_(state["step"]))
    assert state["kind"] == "trial" and state["answered"] is False
    assert len(queries) == 4 <= BUDGET["continue"], queries  # begin, lock, update, commit

    for _ in range(3):
        state, queries = counted(p.state)
        assert state["kind"] == "trial" and not state["answered"] and "feedback" not in state
        assert len(queries) == 2 + touch <= BUDGET["state"], queries  # the run with its study and arm; its answer

        choice = state["options"][0]["value"]
        state, queries = counted(lambda s=state, c=choice: p.answer(s["step"], stimulus=s["stimulus"], choice=c))
        assert state["answered"] and state["feedback"]["choice"] == choice and state["saved"]["trial"] == state["trial"]
        assert len(queries) == 4 + touch <= BUDGET["answer"], queries  # begin, lock, insert, commit

        state, queries = counted(p.state)
        assert state["feedback"]["choice"] == choice
        assert len(queries) == 2 + touch <= BUDGET["state"], queries

        state, queries = counted(lambda s=state: p.continue_(s["step"]))
        assert state["kind"] == "trial" and state["answered"] is False
        assert len(queries) == 4 <= BUDGET["continue"], queries  # begin, lock, update if answered, commit

    run = Participant.objects.get(code=state["participant"])
    assert run.step_index == state["step"] and run.answers.count() == 3
    # The hot reads ran from their compiled SQL (studyapp.lib.perf.prepared), not through the
    # ORM's compiler each time: the run (read, and locked by the writes) and the trial's answer.
    assert 2 in access._bound_run.prepared._local.entries
    assert 1 in services._locked_run.prepared._local.entries
    assert 2 in selectors._answer.prepared._local.entries


def test_the_response_shows_what_the_database_holds(settings):
    """The state built from what the write knows (and from the process's copy of the study's
    stimuli and assets) is the state a fresh read gives."""
    study = learning_study()
    p = participant(study.public_code)
    state = p.continue_(p.enter(consent=True).data["step"]).data
    answered = p.answer(state["step"], stimulus=state["stimulus"], choice=1).data
    saved = TrialAnswer.objects.get()
    assert study.classes[answered["feedback"]["correct_answer"]] == saved.correct_label and answered["feedback"]["correct"] == saved.correct
    selectors._content.clear()
    again = p.state().data
    assert {k: v for k, v in answered.items() if k != "saved"} == again
    moved = p.continue_(again["step"]).data
    selectors._content.clear()
    assert moved == p.state().data


def test_a_repeated_answer_costs_no_more_than_an_answer_and_is_stored_once():
    study = learning_study()
    p = participant(study.public_code)
    state = p.continue_(p.enter(consent=True).data["step"]).data
    first = p.answer(state["step"], stimulus=state["stimulus"], choice=0).data
    repeat, queries = counted(lambda: p.answer(state["step"], stimulus=state["stimulus"], choice=0))
    assert repeat["feedback"] == first["feedback"] and repeat["saved"] == first["saved"]
    assert len(queries) <= BUDGET["answer"] + 1, queries  # begin, lock, insert refused, rollback, the saved answer
    different = p.answer(state["step"], stimulus=state["stimulus"], choice=1)
    assert different.status == 409 and different.data["error"] == "already_answered"
    assert TrialAnswer.objects.count() == 1 and TrialAnswer.objects.get().choice == study.classes[0]


def test_study_b_grouping_and_questions_stay_within_the_same_budgets():
    study = clustering_study()
    selectors.study_content(study=Study.objects.get(pk=study.pk))

    p = participant(study.public_code)
    state = p.continue_(p.enter(consent=True).data["step"]).data
    rng = random.Random(0)
    counts: dict[str, set[int]] = {"questions": set(), "state (grouping)": set(), "grouping": set()}
    while state["kind"] != "done":
        if state["kind"] == "questions":
            answers = Bot.default_answers(state, rng)
            state, queries = counted(lambda s=state, a=answers: p.questions(s["step"], a))
            counts["questions"].add(len(queries))  # begin, lock, insert the answers, update, commit
        else:
            assert state["kind"] == "grouping" and len(state["images"]) == 10
            again, queries = counted(p.state)
            assert again == state
            counts["state (grouping)"].add(len(queries))  # the run with its study and arm
            assignment = Bot.random_grouping(state, rng)
            state, queries = counted(lambda s=state, a=assignment: p.grouping(s["step"], a))
            counts["grouping"].add(len(queries))  # begin, lock, insert the grouping, update, commit
    assert counts == {"questions": {5}, "state (grouping)": {1}, "grouping": {5}}
    run = Participant.objects.get(code=state["participant"])
    assert run.groupings.count() == 6 and run.status == Participant.Status.COMPLETED


def test_a_new_asset_or_a_study_edit_is_seen(monkeypatch):
    """The process's copy of a study's assets is read again after a study edit, or after
    CONTENT_TTL_SECONDS; an asset missing from it is asked of the database at once."""
    study = learning_study()
    p = participant(study.public_code)
    p.enter(consent=True)
    run = Participant.objects.get()
    run.arm = study.arms.get(feedback="gradcam")
    # A run without pinned assets (enrolled before plans pinned them) is shown the newest valid
    # asset: that is what this test follows. A pinned run keeps its own (tests/studyapp/test_versions.py).
    run.plan = [{k: v for k, v in step.items() if k != "assets"} for step in run.plan]
    run.save(update_fields=["arm", "plan"])
    state = p.continue_(0).data

    def newer_overlay(seed: int) -> str:
        path = store_bytes(png(seed), ext="png")
        ExplanationAsset.objects.create(stimulus_id=state["stimulus"], method="gradcam", params_hash=f"new{seed}",
                                        params={}, valid=True, files={"overlay": path})
        return path

    def overlay() -> str:
        return p.state().data["feedback"]["assets"]["overlay"]

    p.answer(state["step"], stimulus=state["stimulus"], choice=0)
    first = overlay()
    path = newer_overlay(1)
    assert overlay() == first  # within the time the process trusts its copy
    Study.objects.get(pk=study.pk).save()  # an edit of the study
    assert overlay().endswith(path)
    path = newer_overlay(2)
    monkeypatch.setattr(selectors, "CONTENT_TTL_SECONDS", 0.0)
    assert overlay().endswith(path)
    # An asset the copy lacks entirely (none valid when it was read) is served at once.
    monkeypatch.setattr(selectors, "CONTENT_TTL_SECONDS", 3600.0)
    next_state = p.continue_(state["step"]).data
    ExplanationAsset.objects.filter(stimulus_id=next_state["stimulus"], method="gradcam").update(valid=False)
    selectors._content.clear()
    p.state()
    path = store_bytes(png(3), ext="png")
    ExplanationAsset.objects.create(stimulus_id=next_state["stimulus"], method="gradcam", params_hash="late",
                                    params={}, valid=True, files={"overlay": path})
    answered = p.answer(next_state["step"], stimulus=next_state["stimulus"], choice=0).data
    assert answered["feedback"]["assets"]["overlay"].endswith(path)


class CountingCache:
    """The default cache, counting the calls the throttle makes."""

    def __init__(self):
        from django.core.cache import cache

        self.cache = cache
        self.calls: list[str] = []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.cache, name)


def test_the_participant_throttle_refuses_a_flood_with_one_cache_round_trip_per_lease(settings, monkeypatch):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"entry": "1000/minute", "participant": "25/minute"}}
    api.SessionRateThrottle._leases.clear()
    clock = [16_666 * 60 + 20.0]  # a fixed time, 20 s into a minute
    monkeypatch.setattr(api.SessionRateThrottle, "timer", lambda self: clock[0])
    counting = CountingCache()
    monkeypatch.setattr(api.SessionRateThrottle, "cache", counting)
    study = learning_study()
    p = participant(study.public_code)
    p.enter(consent=True)
    statuses = [p.state().status for _ in range(30)]
    assert statuses == [200] * 25 + [429] * 5
    refused = p.state()
    assert refused.status == 429 and refused.data["detail"].endswith("in 40 seconds.")
    # 25 let through in three leases (10, 10, 5), each one incr (the window's first finds no
    # counter and adds it); the first refusal asks once more, the later ones in this window are
    # answered from the process's memory.
    assert counting.calls.count("incr") == 4 and counting.calls.count("add") == 1
    assert "set" not in counting.calls
    # The next window starts afresh; another browser has its own count.
    clock[0] += 60
    assert p.state().status == 200
    other = participant(study.public_code)
    other.enter(consent=True)
    assert other.state().status == 200
