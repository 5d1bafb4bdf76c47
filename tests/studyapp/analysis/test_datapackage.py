"""The data package of a study (/admin/analysis/study/<pk>/datapackage.zip): every export as CSV and
JSON with its dictionary, valid by the Frictionless validator; every column of every CSV has a
dictionary entry; the stimulus manifest holds the real file hashes; the import checks uploaded CSVs
against the same dictionary and names the column it refuses."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import random
import re
import zipfile

import frictionless
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from stats.schema import AGENT_RATING_LABELS, CONFIDENCE_LABELS, FEEDBACK_RATING_LABELS
from studyapp.analysis import datapackage, importing
from studyapp.analysis.models import ImportedResults
from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.pipeline.storage import media_path
from studyapp.studies import codebook, exports, plans
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db

TABLES = list(exports.KINDS)


@pytest.fixture
def owner(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user("owner", password="pw-owner-123", is_staff=True, is_superuser=True))
    return client


def _learning_with_bots(n: int = 3):
    study = learning_study()
    for i in range(n):
        bot = Bot(study.public_code, pid=f"P{i}", rng=random.Random(10 + i))
        bot.open_link()
        bot.walk(rating=i + 2)
    bot.post("events", {"kind": "replay", "payload": {"n": 1}})
    study.refresh_from_db()
    return study


def _download(client: Client, study, tmp_path, ids: str = "hash") -> dict[str, bytes]:
    response = client.get(f"/admin/analysis/study/{study.pk}/datapackage.zip?ids={ids}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/zip"
    assert f"{study.slug}-datapackage" in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
        return {name: archive.read(name) for name in archive.namelist()}


def _csv(content: bytes) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(content.decode()))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def _assert_valid(tmp_path) -> None:
    report = frictionless.validate(str(tmp_path / "datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])


def test_the_learning_package_holds_every_file_and_validates(owner, tmp_path):
    study = _learning_with_bots()
    files = _download(owner, study, tmp_path)
    data = {kind: datapackage.data_path(study, kind) for kind in TABLES}
    assert set(files) == {
        "datapackage.json", "dataset_description.json", "README.md", "codebook.csv", "versions.json",
        "stimuli.json", "report.html", *data.values(), *(f"json/{k}.json" for k in TABLES),
    }
    _assert_valid(tmp_path)
    # The validator reads what it is given: a changed cell or file makes the package invalid.
    tidy_file = tmp_path / data["tidy"]
    tidy_file.write_text(tidy_file.read_text().replace(",control,", ",hologram,", 1))
    problems = frictionless.validate(str(tmp_path / "datapackage.json")).flatten(["fieldName", "type"])
    assert ["feedback", "constraint-error"] in problems and [None, "hash-count"] in problems
    tidy_file.write_bytes(files[data["tidy"]])
    (tmp_path / "stimuli.json").write_bytes(files["stimuli.json"].replace(b'"valid": true', b'"valid": false', 1))
    assert not frictionless.validate(str(tmp_path / "datapackage.json")).valid

    package = json.loads(files["datapackage.json"])
    resources = {r["name"]: r for r in package["resources"]}
    # Every file but the descriptors is a resource, with its true size and sha256.
    assert {r["path"] for r in package["resources"]} == set(files) - {"datapackage.json", "dataset_description.json", "README.md"}
    for r in package["resources"]:
        assert r["hash"] == "sha256:" + hashlib.sha256(files[r["path"]]).hexdigest() and r["bytes"] == len(files[r["path"]])
    # Each CSV is exactly the export, and its schema names every column in order.
    for kind in TABLES:
        assert files[data[kind]].decode() == exports.export_csv(study=study, kind=kind, ids="hash")
        header, rows = _csv(files[data[kind]])
        assert [f["name"] for f in resources[kind]["schema"]["fields"]] == header
        as_json = json.loads(files[f"json/{kind}.json"])
        assert len(as_json) == len(rows) and all(list(r) == header for r in as_json)
    header, tidy = _csv(files[data["tidy"]])
    assert len(tidy) == 3 * study.n_trials and "P0" not in {r["prolific_pid"] for r in tidy}
    first = json.loads(files["json/tidy.json"])[0]
    assert isinstance(first["trial_index"], int) and isinstance(first["correct"], int) and first["participant"] == tidy[0]["participant"]
    # The Likert coding of the rating, from the analysis schema, in the wide table's schema.
    fields = {f["name"]: f for f in resources["wide"]["schema"]["fields"]}
    assert [c["value"] for c in fields["feedback_rating"]["categories"]] == list(range(1, len(study.rating_scale) + 1))
    assert fields["rt_ms_1"]["unit"] == "ms" and fields["correct_20"]["constraints"]["enum"] == [0, 1]
    assert set(fields["arm"]["constraints"]["enum"]) == set(study.arms.values_list("name", flat=True))
    # Psych-DS: a schema.org Dataset listing every column of every data file once.
    description = json.loads(files["dataset_description.json"])
    assert description["@type"] == "Dataset" and description["schemaVersion"].startswith("Psych-DS")
    measured = [v["name"] for v in description["variableMeasured"]]
    assert len(measured) == len(set(measured))
    assert set(measured) == {name for kind in TABLES for name in _csv(files[data[kind]])[0]}
    # The versions are the study's rows, with their hashes.
    listed = json.loads(files["versions.json"])
    assert [(v["number"], v["config_hash"]) for v in listed] == list(
        study.versions.order_by("number").values_list("number", "config_hash")
    )
    assert {r.get("study_version", "") for r in tidy} <= {str(v["number"]) for v in listed} | {""}
    # The report is the analysis report of the study, as its own URL serves it (but the time it was made).
    served = owner.get(f"/admin/analysis/study/{study.pk}/report.html").content.decode()
    page = owner.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert all(f"/admin/analysis/study/{study.pk}/datapackage.zip?ids={ids}" in page for ids in exports.ID_MODES)
    assert _without_time(files["report.html"].decode()) == _without_time(served)
    assert "analysis report" in served and study.config_hash in served


def _without_time(html: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "TIME", html)


def test_the_stimulus_manifest_holds_the_files_true_hashes(owner, tmp_path):
    study = _learning_with_bots(1)
    manifest = json.loads(_download(owner, study, tmp_path)["stimuli.json"])
    stimuli = {s["id"]: s for s in manifest["stimuli"]}
    assert set(stimuli) == set(Stimulus.objects.filter(study=study).values_list("pk", flat=True))
    for s in Stimulus.objects.filter(study=study).select_related("dataset"):
        row = stimuli[s.pk]
        assert row["image_sha256"] == hashlib.sha256(media_path(s.image).read_bytes()).hexdigest()
        assert (row["true_label"], row["model_prediction"], row["dataset_fingerprint"]) == (s.true_label, s.model_prediction, s.dataset.fingerprint)
        assets = {a["id"]: a for a in row["explanations"]}
        for asset in ExplanationAsset.objects.filter(stimulus=s):
            shown = assets[asset.pk]
            assert shown["files"] == {role: hashlib.sha256(media_path(p).read_bytes()).hexdigest() for role, p in asset.files.items()}
            assert shown["content_hash"] == exports.content_hash(asset.files) and shown["params_hash"] == asset.params_hash
            assert shown["valid"] == asset.valid
    assert {m["id"] for m in manifest["models"]} >= {s["classifier_id"] for s in manifest["stimuli"]}
    # The tidy rows' asset hashes are those of the manifest.
    tidy = list(exports.tidy_rows(study=study))
    by_id = {a["id"]: a for s in manifest["stimuli"] for a in s["explanations"]}
    for r in tidy:
        if r["explanation_asset_id"] != "":
            assert by_id[r["explanation_asset_id"]]["content_hash"] == r["explanation_content_hash"]


def test_the_clustering_package_validates_and_codes_its_scales(owner, tmp_path):
    study = clustering_study()
    for seed in range(2):
        bot = Bot(study.public_code, pid=f"C{seed}", rng=random.Random(seed))
        bot.open_link()
        bot.walk_clustering()
    files = _download(owner, study, tmp_path, ids="drop")
    _assert_valid(tmp_path)
    # The study's notes (where the paper is silent and what was chosen) in the README and the report.
    notes = study.parsed_config.notes
    assert "does not say it told them how many categories" in notes
    assert f"## The study's notes\n\nWhere the published design is silent, and what this study chose:\n\n{notes}" in files["README.md"].decode()
    assert html.escape(notes, quote=True) in files["report.html"].decode()
    package = json.loads(files["datapackage.json"])
    fields = {f["name"]: f for r in package["resources"] if r["name"] == "wide" for f in r["schema"]["fields"]}
    confidence = [n for n in fields if n.startswith("confidence:")]
    agents = [n for n in fields if n.startswith("agent_rating:")]
    assert len(confidence) == 6 and len(agents) == 2
    for name in confidence:
        assert {c["value"]: c["label"] for c in fields[name]["categories"]} == CONFIDENCE_LABELS
    for name in agents:
        assert {c["value"]: c["label"] for c in fields[name]["categories"]} == AGENT_RATING_LABELS
    for question in plans.demographic_questions(study):  # the options the participants were offered
        assert fields[question["key"]]["constraints"]["enum"] == question["options"]
    _, groupings = _csv(files[datapackage.data_path(study, "groupings")])
    assert len(groupings) == 2 * 6 * 10 and {r["prolific_pid"] for r in groupings} == {""}
    # The package's own CSVs pass the import's dictionary check.
    parsed = importing.parse_results(files[datapackage.data_path(study, "groupings")], design="clustering",
                                     participants=files[datapackage.data_path(study, "wide")])
    assert parsed.n_participants == 2 and len(parsed.frames["confidence"]) == 2 * 6
    dictionary = list(csv.DictReader(io.StringIO(files["codebook.csv"].decode())))
    assert {(r["file"], r["name"]) for r in dictionary} == {
        (kind, name) for kind in TABLES for name in _csv(files[datapackage.data_path(study, kind)])[0]
    }


def test_every_column_of_every_export_is_in_the_dictionary():
    fixed = {"tidy": exports.TIDY_COLUMNS, "groupings": exports.GROUPING_COLUMNS, "events": exports.EVENT_COLUMNS,
             "checks": getattr(exports, "CHECK_COLUMNS", [])}
    assert set(exports.KINDS) <= set(codebook.ENTRIES)
    for kind, header in fixed.items():
        assert [c.name for c in codebook.columns(kind, header)] == list(header)
    # The lead's study_version column and the wide table's named columns.
    assert codebook.entry("tidy", "study_version").type == "integer"
    assert codebook.entry("wide", "confidence:XNN:CUB").allowed == tuple(CONFIDENCE_LABELS)
    assert codebook.entry("wide", "feedback_rating").allowed == tuple(FEEDBACK_RATING_LABELS)
    # A column added to an export without an entry is named.
    with pytest.raises(codebook.MissingEntry, match="new_column"):
        codebook.columns("tidy", [*exports.TIDY_COLUMNS, "new_column"])
    with pytest.raises(codebook.MissingEntry, match="age_band"):
        codebook.columns("wide", ["participant", "age_band"])  # a question only a study's plans define


def test_the_package_needs_staff_who_may_view_the_study(client, owner, tmp_path):
    study = learning_study()
    url = f"/admin/analysis/study/{study.pk}/datapackage.zip"
    assert client.get(url).status_code == 302  # to the login page
    helper = Client()
    helper.force_login(get_user_model().objects.create_user("helper", password="pw-helper-123", is_staff=True))
    assert helper.get(url).status_code == 403
    assert owner.get(url + "?ids=maybe").status_code == 400
    # A study without participants still makes a valid package: every table with its header only.
    files = _download(owner, study, tmp_path)
    _assert_valid(tmp_path)
    assert all(len(_csv(files[datapackage.data_path(study, kind)])[1]) == 0 for kind in TABLES)
    assert json.loads(files["json/tidy.json"]) == [] and json.loads(files["stimuli.json"])["stimuli"]
    assert f"{url}?ids=hash" in owner.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()


def _edited(text: str, column: str, value: str, row: int = 1) -> str:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    rows[row][column] = value
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_the_import_checks_the_dictionary_and_names_the_column():
    study = _learning_with_bots(2)
    tidy = exports.export_csv(study=study, kind="tidy")
    wide = exports.export_csv(study=study, kind="wide")
    importing.parse_results(tidy, design="learning", participants=wide)  # the exports import as they are
    before = ImportedResults.objects.count()
    for column, value, said in (
        ("feedback", "hologram", "not one of the allowed values"),
        ("shown_at", "yesterday", "not an ISO 8601"),
        ("explanation_asset_id", "1.5", "not a whole number"),
        ("explanation_content_hash", "abc", "does not match the pattern"),
    ):
        with pytest.raises(importing.ResultsImportError) as caught:
            importing.imported_results_create(name="bad", design="learning", content=_edited(tidy, column, value))
        assert f"line 3, column '{column}': '{value}': {said}" in str(caught.value.errors)
    for column, value in (("correct_3", "7"), ("n_correct", "-1"), ("finished_at", "soon")):
        with pytest.raises(importing.ResultsImportError, match=f"column '{column}'"):
            importing.imported_results_create(name="bad", design="learning", content=tidy, participants=_edited(wide, column, value, 0))
    assert ImportedResults.objects.count() == before
    # Every status of the dictionary imports; a run that timed out did not complete.
    parsed = importing.parse_results(tidy, design="learning", participants=_edited(wide, "status", "timed_out", 0))
    completed = parsed.main.drop_duplicates("participant").set_index("participant")["completed"]
    assert completed.to_dict() == {r["participant"]: r["status"] == "completed" for r in csv.DictReader(io.StringIO(_edited(wide, "status", "timed_out", 0)))}
