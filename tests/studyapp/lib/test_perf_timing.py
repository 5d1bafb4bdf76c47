"""Per-request stage times (studyapp.lib.perf.timing): only when switched on, and they add up."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from studyapp.lib.perf import timing
from studyapp.studies.client import CSRF_COOKIE, DjangoTransport, ParticipantClient
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db(transaction=True)


def stages(header: str) -> dict[str, float]:
    return {name: float(dur) for name, _, dur in (part.strip().partition(";dur=") for part in header.split(",")) if dur}


def test_a_write_reports_its_stages_in_a_server_timing_header(settings):
    settings.MIDDLEWARE = timing.with_timing(settings.MIDDLEWARE)
    study = learning_study()
    http = Client(enforce_csrf_checks=True)
    p = ParticipantClient(study.public_code, DjangoTransport(http))
    p.page()
    state = p.enter(consent=True).data
    sent = time.time()
    response = http.post(p.root + f"steps/{state['step']}/continue", "{}", content_type="application/json",
                         HTTP_X_CSRFTOKEN=http.cookies[CSRF_COOKIE].value, HTTP_X_REQUEST_START=f"t={sent:.6f}")
    assert response.status_code == 200, response.content[:300]
    timed = stages(response["Server-Timing"])
    held = timed.pop("held", None)  # SQLite: how long the write held the lock file (overlaps the stages)
    assert set(timed) == {*timing.EXCLUSIVE, "app", "cpu", "gc", "queue"}
    from django.db import connection

    if connection.vendor == "sqlite":
        assert held is not None and 0 < held <= timed["app"]
    else:
        assert held is None
    # Every stage ran: the middleware, the view's code, the throttle, the session's load and save
    # (its row), BEGIN and the locking read, the UPDATE, DRF's renderer.
    for name in timing.EXCLUSIVE:
        assert timed[name] > 0, (name, timed)
    # Exclusive stages: they add up to the request's time on the server, nothing left over
    # (each value is rounded to 0.01 ms in the header).
    assert abs(sum(timed[name] for name in timing.EXCLUSIVE) - timed["app"]) <= 0.01 * len(timing.EXCLUSIVE)
    assert 0 < timed["cpu"] and 0 <= timed["gc"] <= timed["app"]
    assert 0 <= timed["queue"] <= 1000 * (time.time() - sent)


def test_a_nested_stage_pauses_the_one_around_it(monkeypatch):
    ticks = iter([0.0, 1.0, 3.0, 6.0, 10.0])  # enter a, enter b (a ran 1), leave b (b ran 2), enter c, leave c, leave a
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    clock = timing._Clock()
    clock.enter("a")
    clock.enter("b")
    clock.leave()
    clock.enter("c")
    ticks = iter([10.0, 10.0])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    clock.leave()
    clock.leave()
    assert clock.stages == {"a": 1.0 + 3.0 + 0.0, "b": 2.0, "c": 4.0}


def test_the_settings_wrap_every_middleware_in_the_two_timers(settings):
    wrapped = timing.with_timing(settings.MIDDLEWARE)
    assert wrapped[0] == timing.OUTER and wrapped[-1] == timing.INNER
    assert wrapped[1:-1] == [m for m in settings.MIDDLEWARE if m not in (timing.OUTER, timing.INNER)]
    assert timing.with_timing(wrapped) == wrapped


def test_off_by_default():
    study = learning_study()
    response = Client().get(f"/s/{study.public_code}/")  # the study's page
    assert response.status_code == 200 and "Server-Timing" not in response
