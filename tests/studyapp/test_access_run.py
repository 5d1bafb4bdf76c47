"""The run a request acts on comes from the session without a query; a session bound before the
run's key was kept there (only its code) still works, and keeps the key from then on."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from studyapp.studies import access
from studyapp.studies.client import DjangoTransport, ParticipantClient
from studyapp.studies.models import Participant
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


def runs_read(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if 'FROM "studies_participant"' in q["sql"]]


def enrolled(study) -> tuple[Client, ParticipantClient]:
    http = Client(enforce_csrf_checks=True)
    p = ParticipantClient(study.public_code, DjangoTransport(http))
    p.page()
    assert p.enter(consent=True).status == 201
    return http, p


def test_a_session_bound_by_code_only_is_looked_up_once_then_by_key():
    study = learning_study()
    http, p = enrolled(study)
    run = Participant.objects.get()
    session = http.session
    assert session[f"{access.RUN_PREFIX}{study.public_code}"] == run.pk
    del session[f"{access.RUN_PREFIX}{study.public_code}"]  # as a session bound before this release
    session.save()
    with CaptureQueriesContext(connection) as ctx:
        assert p.state().data["participant"] == run.code
    assert len(runs_read(ctx)) == 2  # the code looked up, then the run read
    assert http.session[f"{access.RUN_PREFIX}{study.public_code}"] == run.pk
    with CaptureQueriesContext(connection) as ctx:
        assert p.state().data["participant"] == run.code
    assert len(runs_read(ctx)) == 1

