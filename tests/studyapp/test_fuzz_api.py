"""schemathesis against the participant API's OpenAPI schema: no input gives a 5xx.

A bounded number of examples per operation (STUDY_FUZZ_EXAMPLES, default 25), sent both as a
stranger and as a participant in the middle of the study.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, given, settings

from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study

EXAMPLES = int(os.environ.get("STUDY_FUZZ_EXAMPLES", "25"))


def load_schema():
    from django.conf import settings as dj

    # The schema is generated from the code; build it in-process without a request.
    from drf_spectacular.generators import SchemaGenerator

    raw = SchemaGenerator().get_schema(request=None, public=True)
    return schemathesis.openapi.from_dict(json.loads(json.dumps(raw, default=str))), dj


@pytest.mark.django_db
def test_participant_api_never_answers_5xx():
    study = learning_study()
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    bot.continue_()
    stranger = Client(raise_request_exception=False)
    stranger.get(f"/s/{study.public_code}/")
    schema, _ = load_schema()
    failures: list[str] = []
    checked = 0
    statuses: set[int] = set()
    for operation in (op.ok() for op in schema.get_all_operations()):
        strategy = operation.as_strategy()

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=strategy)
        def run(case):
            nonlocal checked
            params = dict(case.path_parameters or {})
            if "study_code" in params:
                params["study_code"] = study.public_code  # the real study, so requests reach the flow code
            if "step" in params and isinstance(params["step"], int) and params["step"] % 2 == 0:
                params["step"] = Bot.current_step(bot)
            path = operation.path.format(**params)  # noqa: B023 - run() is called within this iteration
            for client in (bot.client, stranger):
                client.raise_request_exception = False
                kwargs = {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value} if "csrftoken" in client.cookies else {}
                if case.method.upper() == "GET":
                    response = client.get(path, data=case.query or {}, **kwargs)
                else:
                    body = case.body if case.body is not None and not isinstance(case.body, schemathesis.core.NotSet) else {}
                    try:
                        payload = json.dumps(body)
                    except (TypeError, ValueError):
                        payload = str(body)
                    response = client.post(path, data=payload, content_type="application/json", **kwargs)
                checked += 1
                statuses.add(response.status_code)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {path} {payload if case.method.upper() != 'GET' else case.query} -> {response.status_code}")

        run()
    assert checked >= EXAMPLES
    assert {200, 400} <= statuses and (403 in statuses or 409 in statuses)  # the flow code was reached
    assert not failures, failures[:5]
