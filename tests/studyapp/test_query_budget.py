import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from studyapp.studies.client import DjangoTransport, ParticipantClient
from tests.studyapp.factories import learning_study


def _counted(fn):
    with CaptureQueriesContext(connection) as ctx:
        r = fn()
    return r, ctx.captured_queries


@pytest.mark.django_db(transaction=True)
def test_print_counts():
    study = learning_study()
    api = ParticipantClient(study.slug, DjangoTransport(Client(enforce_csrf_checks=True)))
    api.page()
    s = api.enter(consent=True).data
    for name, fn in [
        ("state-instr", lambda: api.state()),
        ("continue-instr", lambda: api.continue_(0)),
        ("state-trial", lambda: api.state()),
        ("answer", lambda: api.answer(1, stimulus=s2["stimulus"], choice=study.classes[0])),
        ("state-answered", lambda: api.state()),
        ("continue-trial", lambda: api.continue_(1)),
    ]:
        r, q = _counted(fn)
        if name == "state-trial":
            s2 = r.data
        print(name, r.status, len(q))
        for x in q:
            print("   ", x["sql"][:200])
