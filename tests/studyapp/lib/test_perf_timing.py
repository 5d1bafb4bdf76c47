"""Per-request stage times (studyapp.lib.perf.timing): only when switched on, and they add up."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from studyapp.studies.client import CSRF_COOKIE, DjangoTransport, ParticipantClient
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE = "studyapp.lib.perf.timing.StageTimingMiddleware"


def stages(header: str) -> dict[str, float]:
    return {name: float(dur) for name, _, dur in (part.strip().partition(";dur=") for part in header.split(",")) if dur}


def test_a_write_reports_its_stages_in_a_server_timing_header(settings):
    settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]
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
    assert {"app", "gc", "queue", "throttle", "lock", "db"} <= set(timed)
    assert timed["lock"] > 0 and timed["db"] > 0  # BEGIN and the locking read; the UPDATE
    assert timed["throttle"] + timed["lock"] + timed["db"] <= timed["app"]
    assert 0 <= timed["queue"] <= 1000 * (time.time() - sent)


def test_off_by_default():
    study = learning_study()
    response = Client().get(f"/s/{study.public_code}/")  # the study's page
    assert response.status_code == 200 and "Server-Timing" not in response
