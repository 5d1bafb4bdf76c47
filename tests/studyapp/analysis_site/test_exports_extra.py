"""Groupings and interaction-event exports: every row carries the config hash and the version."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random

import pytest
from django.conf import settings

import studyapp
from studyapp.analysis import exports_extra
from studyapp.pipeline.models import Stimulus
from studyapp.studies.models import Grouping, Participant
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db


def rows(client, url: str) -> list[dict]:
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_groupings_export_has_one_row_per_image_placed(owner):
    study = clustering_study()
    bots = []
    for seed in range(2):
        bot = Bot(study.slug, pid=f"PID{seed}", rng=random.Random(seed))
        bot.open_link()
        bot.walk_clustering()
        bots.append(bot)
    study.refresh_from_db()
    out = rows(owner, f"/admin/analysis/study/{study.pk}/export/groupings.csv")
    assert list(out[0]) == exports_extra.GROUPING_COLUMNS
    assert len(out) == 2 * 6 * 10
    predicted = dict(Stimulus.objects.values_list("pk", "model_prediction"))
    for g in Grouping.objects.select_related("participant"):
        mine = [r for r in out if r["participant"] == g.participant.code and int(r["batch"]) == g.step_index]
        assert {int(r["image_id"]): int(r["cluster"]) for r in mine} == {int(k): v for k, v in g.assignment.items()}
        assert all(int(r["predicted_class"]) == predicted[int(r["image_id"])] for r in mine)
        assert {(r["stage"], r["dataset"], float(r["batch_purity"])) for r in mine} == {(g.stage, g.dataset, g.purity)}
    assert {r["config_hash"] for r in out} == {study.config_hash}
    assert {r["software_version"] for r in out} == {studyapp.__version__}
    assert {r["prolific_pid"] for r in out} == {"PID0", "PID1"}
    hashed = rows(owner, f"/admin/analysis/study/{study.pk}/export/groupings.csv?ids=hash")
    expected = hashlib.sha256(f"{settings.SECRET_KEY}:PID0".encode()).hexdigest()[:16]
    assert expected in {r["prolific_pid"] for r in hashed} and "PID0" not in {r["prolific_pid"] for r in hashed}
    assert {r["prolific_pid"] for r in rows(owner, f"/admin/analysis/study/{study.pk}/export/groupings.csv?ids=drop")} == {""}


def test_the_events_export_lists_every_event_with_its_step(owner):
    study = learning_study()
    bot = Bot(study.slug, pid="EV1")
    bot.open_link()
    bot.enter()
    assert bot.post("events", {"kind": "tab_hidden", "payload": {"ms": 1200}})[0] == 201
    bot.continue_()
    assert bot.post("events", {"kind": "replay"})[0] == 201
    out = rows(owner, f"/admin/analysis/study/{study.pk}/export/events.csv?ids=drop")
    assert list(out[0]) == exports_extra.EVENT_COLUMNS
    participant = Participant.objects.get()
    assert [(r["kind"], r["step_kind"], json.loads(r["payload"])) for r in out] == [
        ("tab_hidden", "instructions", {"ms": 1200}), ("replay", "trial", {}),
    ]
    assert all(r["participant"] == participant.code and r["prolific_pid"] == "" for r in out)
    assert all(r["config_hash"] == participant.config_hash and r["software_version"] == studyapp.__version__ for r in out)
    # The exports are generators over a fixed number of queries.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        list(exports_extra.event_rows(study=study))
        list(exports_extra.grouping_rows(study=study))
    assert len(queries) <= 3
