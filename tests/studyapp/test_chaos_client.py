"""benchmarks/chaos.py: the simulated page retries as static/study/study.js does, and failures are
put down to the chaos event they followed. The inner transport is a scripted stand-in for the
network; BrowserRetry and blame() are the code under test."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from studyapp.studies.client import Call, Reply

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chaos():
    spec = importlib.util.spec_from_file_location("benchmarks_chaos", ROOT / "benchmarks" / "chaos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Network:
    """Answers the script in order: an int is a status, "drop" three dropped connections (then the
    benchmark's transport gives up with RuntimeError, as Measured does)."""

    def __init__(self, script):
        self.script = list(script)
        self.sent: list[Call] = []
        self.dropped = 0

    async def send(self, call: Call) -> Reply:
        self.sent.append(call)
        step = self.script.pop(0)
        if step == "drop":
            self.dropped += 3
            raise RuntimeError("no answer after 3 attempts")
        if isinstance(step, tuple):  # (status, body)
            return Reply(call, step[0], json.dumps(step[1]))
        return Reply(call, step, "{}")


CALL = Call("POST", "/api/s/x/steps/3/answer", "POST steps/3/answer", {"stimulus": 1, "choice": 2})


def test_the_same_request_is_sent_again_after_a_5xx_or_a_drop(chaos):
    log = chaos.Log()
    net = Network(["drop", 500, 502, 200])
    reply = asyncio.run(chaos.BrowserRetry(net, log).send(CALL))
    assert reply.status == 200
    assert net.sent == [CALL] * 4  # same method, path and body every time
    assert log.retries == 3 and log.gave_up == 0
    assert [f.kind for f in log.failures] == ["dropped: ?"] * 3 + ["HTTP 500", "HTTP 502"]


def test_a_4xx_is_rendered_not_retried(chaos):
    log = chaos.Log()
    net = Network([409, 200])
    assert asyncio.run(chaos.BrowserRetry(net, log).send(CALL)).status == 409
    assert len(net.sent) == 1 and log.retries == 0 and not log.failures


def test_the_person_gives_up_after_a_bounded_number_of_clicks(chaos):
    log = chaos.Log()
    net = Network([503] * chaos.MAX_CLICKS)
    with pytest.raises(RuntimeError, match="still failing"):
        asyncio.run(chaos.BrowserRetry(net, log).send(CALL))
    assert len(net.sent) == chaos.MAX_CLICKS and log.gave_up == 1


def test_failures_are_blamed_on_the_event_they_followed(chaos):
    events = [(100.0, "worker SIGKILL (pid 7)"), (130.0, "PostgreSQL 15/x immediate restart (1.0 s)")]
    assert chaos.blame(chaos.Failure(101.0, "x", "dropped: ReadError"), events) == "worker SIGKILL"
    assert chaos.blame(chaos.Failure(110.0, "x", "HTTP 500"), events) == "worker SIGKILL"
    assert chaos.blame(chaos.Failure(129.5, "x", "HTTP 500"), events) == "unexplained"  # 29.5 s after the kill, before the restart
    assert chaos.blame(chaos.Failure(131.0, "x", "HTTP 500"), events) == "database restart"  # the latest event wins
    assert chaos.blame(chaos.Failure(99.5, "x", "HTTP 500"), events) == "unexplained"  # before any event
    assert chaos.blame(chaos.Failure(200.0, "x", "HTTP 500"), events) == "unexplained"


def test_a_repeat_refused_with_the_state_shows_that_state_but_never_acknowledges_an_answer(chaos):
    state = {"kind": "trial", "step": 4, "answered": False}
    refused = (409, {"error": "wrong_step", "state": state})
    log = chaos.Log()
    cont = Call("POST", "/api/s/x/steps/3/continue", "POST steps/3/continue", None)
    reply = asyncio.run(chaos.BrowserRetry(Network([500, refused]), log).send(cont))
    assert (reply.status, reply.data) == (200, state) and log.rerendered == 1
    # the same refusal of a repeated answer stays a 409: the benchmark must not count it as stored
    reply = asyncio.run(chaos.BrowserRetry(Network([500, refused]), log).send(CALL))
    assert reply.status == 409 and log.rerendered == 1
    # and a first try refused is the walk's business, untouched
    assert asyncio.run(chaos.BrowserRetry(Network([refused]), log).send(cont)).status == 409


def test_a_dropped_attempt_is_named_by_the_exception_httpx_raised(chaos):
    """Over a real httpx client whose network (MockTransport) resets the first connection."""
    import httpx

    calls = {"n": 0}

    def network(request):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, json={"kind": "done"})

    class Measured:  # the benchmark's transport in miniature: retries a drop, counts it
        def __init__(self, client):
            self.client, self.dropped = client, 0

        async def send(self, call):
            for _ in range(3):
                try:
                    response = await self.client.request(call.method, call.path)
                except httpx.TransportError:
                    self.dropped += 1
                    continue
                return Reply(call, response.status_code, response.text)
            raise RuntimeError("no answer")

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(network), base_url="http://test") as client:
            log = chaos.Log()
            reply = await chaos.BrowserRetry(Measured(client), log).send(CALL)
            return reply, log

    reply, log = asyncio.run(go())
    assert reply.status == 200 and [f.kind for f in log.failures] == ["dropped: RemoteProtocolError"]
