"""The participant API client follows the URL scheme in studyapp/urls.py, every route of it."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.urls import get_resolver, resolve

from studyapp.studies.client import Call, ParticipantClient, Reply


class Recorder:
    """A transport that sends nothing: it keeps the calls."""

    def __init__(self):
        self.calls: list[Call] = []

    def send(self, call: Call) -> Call:
        self.calls.append(call)
        return call


def every_call(client: ParticipantClient) -> dict[str, Call]:
    return {
        "study": client.page(prolific_pid="P 1&2", study_id="S1", session_id="X1"),
        "api-state": client.state(prolific_pid="P1"),
        "api-enter": client.enter(consent=True, prolific_pid="P1"),
        "api-continue": client.continue_(3),
        "api-answer": client.answer(4, stimulus=17, choice=1),
        "api-questions": client.questions(5, {"rating": 4}),
        "api-grouping": client.grouping(6, {11: 0, 12: 1}),
        "api-check": client.check(2, {"q1": 0}),
        "api-events": client.event("replay", {"trial": 0}),
        "api-withdraw": client.withdraw(confirm=True),
        "api-time-extend": client.time_extend(),
    }


def test_every_participant_route_is_reachable_through_the_client():
    calls = every_call(ParticipantClient("k3x9q2", Recorder()))  # a study's public code
    for name, call in calls.items():
        match = resolve(urlsplit(call.path).path)
        assert match.url_name == name, call
        assert match.kwargs["study_code"] == "k3x9q2"
    routes = {name for name in get_resolver().reverse_dict if isinstance(name, str) and name.startswith("api-")}
    assert routes - {"api-schema"} == set(calls) - {"study"}


def test_the_client_builds_the_bodies_the_api_reads():
    calls = every_call(ParticipantClient("k3x9q2", Recorder()))  # a study's public code
    assert calls["study"].path == "/s/k3x9q2/?PROLIFIC_PID=P+1%262&STUDY_ID=S1&SESSION_ID=X1"
    assert calls["api-state"].path == "/api/s/k3x9q2/state?PROLIFIC_PID=P1"
    assert calls["api-continue"].label == "POST steps/3/continue"
    assert calls["api-enter"].body == {"consent": True, "prolific_pid": "P1"}
    assert calls["api-answer"].body == {"stimulus": 17, "choice": 1}
    assert calls["api-questions"].body == {"answers": {"rating": 4}}
    assert calls["api-grouping"].body == {"assignment": {"11": 0, "12": 1}}
    assert calls["api-check"].body == {"answers": {"q1": 0}}
    assert calls["api-events"].body == {"kind": "replay", "payload": {"trial": 0}}
    assert calls["api-withdraw"].body == {"confirm": True}
    assert calls["api-time-extend"].label == "POST time/extend" and calls["api-time-extend"].body is None
    assert calls["api-state"].body is None
    assert calls["api-state"].method == "GET"


def test_a_reply_reads_json_and_tolerates_html():
    call = ParticipantClient("s", Recorder()).state()
    assert Reply(call, 409, '{"error": "wrong_step", "state": {"kind": "trial"}}').data["state"] == {"kind": "trial"}
    page = Reply(call, 200, "<!doctype html>")
    assert page.parsed is None
    assert page.data == {}
