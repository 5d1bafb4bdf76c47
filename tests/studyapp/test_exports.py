"""Every CSV export (tidy, wide, groupings, events) at its one admin URL: the rows are what the
bots did, every row carries the config hash and the version, external ids are kept, hashed or
dropped, and only staff who may view the study get them."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import random

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings

import studyapp
from studyapp.pipeline.models import Stimulus
from studyapp.studies import exports
from studyapp.studies.models import Grouping, Participant
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def owner(db) -> Client:
    return _client(get_user_model().objects.create_user("owner", password="pw-owner-123", is_staff=True, is_superuser=True))


def rows(client, url: str) -> list[dict]:
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_groupings_export_has_one_row_per_image_placed(owner):
    study = clustering_study()
    bots = []
    for seed in range(2):
        bot = Bot(study.public_code, pid=f"PID{seed}", rng=random.Random(seed))
        bot.open_link()
        bot.walk_clustering()
        bots.append(bot)
    study.refresh_from_db()
    out = rows(owner, f"/admin/studies/study/{study.pk}/export/groupings.csv")
    assert list(out[0]) == exports.GROUPING_COLUMNS
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
    hashed = rows(owner, f"/admin/studies/study/{study.pk}/export/groupings.csv?ids=hash")
    expected = hmac.new(settings.SECRET_KEY.encode(), b"PID0", hashlib.sha256).hexdigest()[:16]
    assert expected in {r["prolific_pid"] for r in hashed} and "PID0" not in {r["prolific_pid"] for r in hashed}
    assert hashlib.sha256(f"{settings.SECRET_KEY}:PID0".encode()).hexdigest()[:16] not in {r["prolific_pid"] for r in hashed}
    with override_settings(EXPORT_ID_HMAC_KEY="rotated"):
        rotated = {r["prolific_pid"] for r in rows(owner, f"/admin/studies/study/{study.pk}/export/groupings.csv?ids=hash")}
    assert expected not in rotated and hmac.new(b"rotated", b"PID0", hashlib.sha256).hexdigest()[:16] in rotated
    assert {r["prolific_pid"] for r in rows(owner, f"/admin/studies/study/{study.pk}/export/groupings.csv?ids=drop")} == {""}


def test_the_events_export_lists_every_event_with_its_step(owner):
    study = learning_study()
    bot = Bot(study.public_code, pid="EV1")
    bot.open_link()
    bot.enter()
    assert bot.post("events", {"kind": "tab_hidden", "payload": {"ms": 1200}})[0] == 201
    bot.continue_()
    assert bot.post("events", {"kind": "replay"})[0] == 201
    out = rows(owner, f"/admin/studies/study/{study.pk}/export/events.csv?ids=drop")
    assert list(out[0]) == exports.EVENT_COLUMNS
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
        list(exports.event_rows(study=study))
        list(exports.grouping_rows(study=study))
    assert len(queries) <= 3


def test_the_tidy_and_wide_exports_match_what_the_bots_did(owner):
    study = learning_study()
    bots = []
    for i in range(3):
        bot = Bot(study.public_code, pid=f"P{i}", rng=random.Random(10 + i))
        bot.open_link()
        bot.walk(rating=i + 2)
        bots.append(bot)
    out = rows(owner, f"/admin/studies/study/{study.pk}/export/tidy.csv")
    assert list(out[0]) == exports.TIDY_COLUMNS
    assert len(out) == 60
    study.refresh_from_db()
    for bot in bots:
        mine = [r for r in out if r["participant"] == bot.state["participant"]]
        assert [int(r["trial_index"]) for r in mine] == list(range(20))
        for r, act in zip(mine, bot.actions, strict=True):
            assert int(r["stimulus_id"]) == act["stimulus"] and int(r["choice"]) == study.classes[act["choice"]]
            assert bool(int(r["correct"])) == act["correct"] and int(r["correct_label"]) == study.classes[act["correct_answer"]]
            assert r["config_hash"] == study.config_hash and int(r["response_ms"]) >= 0
        assert mine[0]["prolific_pid"] == bot.pid
    hashed = rows(owner, f"/admin/studies/study/{study.pk}/export/tidy.csv?ids=hash")
    assert "P0" not in [r["prolific_pid"] for r in hashed]
    wide = rows(owner, f"/admin/studies/study/{study.pk}/export/wide.csv?ids=drop")
    assert len(wide) == 3 and all(r["prolific_pid"] == "" for r in wide)
    for bot in bots:
        row = next(r for r in wide if r["participant"] == bot.state["participant"])
        assert int(row["n_correct"]) == sum(a["correct"] for a in bot.actions)
        assert [int(row[f"correct_{i + 1}"]) for i in range(20)] == [int(a["correct"]) for a in bot.actions]


def test_every_kind_is_served_at_one_url_to_staff_who_may_view_the_study(owner):
    study = learning_study(open_it=False)
    helper = get_user_model().objects.create_user("helper", password="pw-helper-123", is_staff=True)
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_study"))
    for kind in exports.KINDS:
        url = f"/admin/studies/study/{study.pk}/export/{kind}.csv"
        response = _client(viewer).get(url)
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), kind
        assert response.content.decode() == exports.export_csv(study=study, kind=kind)
        assert f'filename="{study.slug}-{kind}-' in response["Content-Disposition"]
        assert _client(helper).get(url).status_code == 403, kind
        assert _client().get(url).status_code == 302, kind  # to the login page
    assert owner.get(f"/admin/studies/study/{study.pk}/export/nope.csv").status_code == 404
    assert owner.get(f"/admin/studies/study/{study.pk}/export/events.csv?ids=leak").status_code == 400
    assert owner.get("/admin/studies/study/999999/export/tidy.csv").status_code == 404
    with pytest.raises(ValueError):
        exports.export_csv(study=study, kind="nope")


def test_each_tidy_row_names_the_asset_models_and_data_it_showed(owner):
    """Per-trial provenance: the asset shown (id, content hash, params hash), the classifier and
    generator (ids, checkpoint sha256) and the data set's fingerprint, in a fixed query count."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from studyapp.pipeline.models import ExplanationAsset, TrainedModel
    from studyapp.pipeline.storage import store_bytes

    study = learning_study()
    classifier = TrainedModel.objects.get(role="classifier")
    classifier.checkpoint = store_bytes(b"classifier weights", ext="pt", folder="models")
    classifier.save()
    generator = TrainedModel.objects.create(
        dataset=classifier.dataset, role="vae", arch="VAE", status="ready",
        checkpoint=store_bytes(b"generator weights", ext="pt", folder="models"),
    )
    for asset in ExplanationAsset.objects.filter(method="cdeepex"):
        asset.params = {"method": "cdeepex", "classifier_id": classifier.pk, "generator_id": generator.pk}
        asset.params_hash = f"c{asset.pk}"
        asset.save()
    for i in range(3):
        bot = Bot(study.public_code, pid=f"Q{i}", rng=random.Random(20 + i))
        bot.open_link()
        bot.walk()
    # An asset made after the trials were shown is not what they showed.
    later = ExplanationAsset.objects.filter(method="cdeepex", valid=True).order_by("pk").first()
    newer = ExplanationAsset.objects.create(
        stimulus=later.stimulus, method="cdeepex", params_hash="newer", params={"generator_id": generator.pk},
        valid=True, files={"gif": store_bytes(b"another gif", ext="gif")},
    )
    out = rows(owner, f"/admin/studies/study/{study.pk}/export/tidy.csv")
    assert set(exports.PROVENANCE_COLUMNS) <= set(out[0]) and list(out[0]) == exports.TIDY_COLUMNS
    sha = lambda path: path.rsplit("/", 1)[-1].split(".")[0]  # noqa: E731
    assets = {
        (a.stimulus_id, a.method): a
        for a in ExplanationAsset.objects.filter(valid=True).exclude(pk=newer.pk).order_by("created_at", "pk")
    }
    seen = set()
    for r in out:
        assert int(r["classifier_id"]) == classifier.pk
        assert r["classifier_checkpoint_sha256"] == sha(classifier.checkpoint) and len(r["classifier_checkpoint_sha256"]) == 64
        assert r["dataset_fingerprint"] == classifier.dataset.fingerprint
        seen.add(r["feedback"])
        if r["feedback"] == "control":
            assert r["explanation_asset_id"] == r["explanation_content_hash"] == r["generator_id"] == ""
            continue
        asset = assets[(int(r["stimulus_id"]), r["feedback"])]
        assert int(r["explanation_asset_id"]) == asset.pk != newer.pk
        assert r["explanation_params_hash"] == asset.params_hash
        named = {role: sha(path) for role, path in asset.files.items()}
        assert r["explanation_content_hash"] == hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()
        if r["feedback"] == "cdeepex":
            assert int(r["generator_id"]) == generator.pk
            assert r["generator_checkpoint_sha256"] == sha(generator.checkpoint)
        else:  # Grad-CAM needs no generator
            assert r["generator_id"] == r["generator_checkpoint_sha256"] == ""
    assert seen == {"control", "gradcam", "cdeepex"}
    # Different files, different content hash.
    assert exports.content_hash(newer.files) != exports.content_hash(later.files)
    # The query count does not grow with the participants.
    with CaptureQueriesContext(connection) as few:
        list(exports.tidy_rows(study=study))
    for i in range(3, 6):
        bot = Bot(study.public_code, pid=f"Q{i}", rng=random.Random(20 + i))
        bot.open_link()
        bot.walk()
    with CaptureQueriesContext(connection) as many:
        assert len(list(exports.tidy_rows(study=study))) == 6 * 20
    assert len(many) == len(few) <= 10  # 5 for the rows and provenance, 5 for the exposure columns
