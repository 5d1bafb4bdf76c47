"""Importing a results CSV: exports round-trip to identical statistics; bad files store nothing."""

from __future__ import annotations

import io
import random

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from studyapp.analysis import importing
from studyapp.analysis.models import ImportedResults
from studyapp.analysis.sources import imported_source, run_analysis, study_source
from studyapp.studies import services
from studyapp.studies.models import Study
from tests.studyapp.analysis_site.conftest import page_tables, run_bots
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db


def upload(client, *, name: str, design: str, results: bytes, participants: bytes | None = None, study=None):
    form = {"name": name, "design": design, "results": SimpleUploadedFile("results.csv", results, "text/csv")}
    if participants is not None:
        form["participants"] = SimpleUploadedFile("participants.csv", participants, "text/csv")
    if study is not None:
        form["settings_from"] = str(study.pk)
    return client.post("/admin/analysis/imported/upload/", form)


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


def test_a_learning_export_round_trips_to_identical_statistics(owner):
    study = learning_study()
    Study.objects.filter(pk=study.pk).update(
        config={**study.config, "exclusions": {"incomplete": True, "min_response_ms": 0, "max_fast_share": 1}}
    )
    study.refresh_from_db()
    # As an admin edit does: the study's hash is its design's, the hash its runs will carry.
    services.study_refresh_config_hash(study=study)
    run_bots(study.public_code, 7, seed=5, stop_after={6: 4})
    tidy = owner.get(f"/admin/studies/study/{study.pk}/export/tidy.csv?ids=hash").content
    wide = owner.get(f"/admin/studies/study/{study.pk}/export/wide.csv?ids=drop").content

    response = upload(owner, name="round trip", design="learning", results=tidy, participants=wide, study=study)
    assert response.status_code == 302, response.content.decode()[:2000]
    imported = ImportedResults.objects.get()
    assert response["Location"] == f"/admin/analysis/imported/{imported.pk}/"
    assert imported.n_participants == 7 and imported.n_rows == 6 * 20 + 4
    assert imported.config_hash == study.config_hash
    assert imported.config["tests"] == study.config["tests"] and imported.config["alpha"] == 0.1

    live = run_analysis(study_source(study))
    again = run_analysis(imported_source(imported))
    assert again.exclusions.report.excluded["participant"].tolist() == live.exclusions.report.excluded["participant"].tolist()
    same(again.exclusions.report.counts, live.exclusions.report.counts)
    a, b = live.learning, again.learning
    same(b.curve, a.curve)
    same(b.counts, a.counts)
    assert [t.as_dict() for t in b.family.tests] == [t.as_dict() for t in a.family.tests]
    assert b.family.p_adjusted == a.family.p_adjusted and b.family.note == a.family.note
    same(b.rating_dist, a.rating_dist)
    assert b.rating_test == a.rating_test
    assert [(p.comparison, p.d, p.n_per_arm) for p in b.pilot] == [(p.comparison, p.d, p.n_per_arm) for p in a.pilot]

    # And the two pages show the same numbers.
    live_tables = page_tables(owner.get(f"/admin/analysis/study/{study.pk}/").content.decode())
    page = owner.get(f"/admin/analysis/imported/{imported.pk}/").content.decode()
    imported_tables = page_tables(page)
    for name in ("final-counts", "welch-tests", "learning-curve", "ratings", "exclusion-counts", "pilot-power"):
        assert imported_tables[name] == live_tables[name], name
    assert study.config_hash in page
    report = owner.get(f"/admin/analysis/imported/{imported.pk}/report.html").content.decode()
    assert study.config_hash in report and "Pairwise Welch t-tests" in report


def test_a_clustering_export_round_trips_to_identical_statistics(owner):
    study = clustering_study()
    for seed in range(3):
        bot = Bot(study.public_code, rng=random.Random(seed))
        bot.open_link()
        bot.walk_clustering()
    groupings = owner.get(f"/admin/studies/study/{study.pk}/export/groupings.csv").content
    wide = owner.get(f"/admin/studies/study/{study.pk}/export/wide.csv").content
    response = upload(owner, name="B", design="clustering", results=groupings, participants=wide, study=study)
    assert response.status_code == 302, response.content.decode()[:2000]
    imported = ImportedResults.objects.get()
    live = run_analysis(study_source(study)).clustering
    again = run_analysis(imported_source(imported)).clustering
    same(again.purity_summary, live.purity_summary)
    same(again.purity_tests, live.purity_tests)
    same(again.confidence_tests, live.confidence_tests)
    same(again.agent_dist, live.agent_dist)
    assert again.agent_preference == live.agent_preference
    assert owner.get(f"/admin/analysis/imported/{imported.pk}/").status_code == 200


GOOD = "participant,arm,trial_index,correct,response_ms\nP1,Control,0,1,900\nP1,Control,1,0,800\nP2,GCAM,0,true,700\nP2,GCAM,1,false,600\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("participant,arm,trial_index\nP1,Control,0\n", "missing the required column(s) ['correct']"),
        ("participant,arm,trial_index,correct\n", "no data rows"),
        (GOOD.replace("P1,Control,1,0,800", "P1,Control,one,0,800"), "line 3, column 'trial_index': 'one': not a whole number"),
        (GOOD.replace("P2,GCAM,0,true", "P2,GCAM,0,maybe"), "line 4, column 'correct': 'maybe': expected 0/1 or true/false"),
        (GOOD.replace("P1,Control,1,0,800", "P1,Control,1,0,-5"), "column 'response_ms': '-5': outside >= 0"),
        (GOOD.replace("P1,Control,1,0,800", "P1,Control,2,0,800"), "trial_index must run 0, 1, 2"),
        (GOOD.replace("P1,Control,1,0,800", "P1,GCAM,1,0,800"), "appear in more than one arm"),
        (GOOD.replace("P1,Control,1,0,800", "P1,Control,0,0,800"), "duplicate trial_index"),
        (GOOD.replace("P1,Control,1,0,800", "P1,Control,1,0"), "line 3: 4 fields, but the header has 5"),
        ("participant,arm,trial_index,correct,rating\nP1,A,0,1,9\n", "column 'rating': '9': not one of the allowed values: 1 (mostly misleading), 2"),
        ("participant,participant,arm,trial_index,correct\n", "duplicate column(s) ['participant']"),
    ],
)
def test_a_bad_results_file_is_refused_with_a_clear_error(content, message):
    with pytest.raises(importing.ResultsImportError) as error:
        importing.imported_results_create(name="bad", design="learning", content=content)
    assert any(message in e for e in error.value.errors), error.value.errors
    assert not ImportedResults.objects.exists()


def test_every_problem_is_listed_up_to_a_limit():
    rows = "".join(f"P{i},Control,x,1\n" for i in range(30))
    with pytest.raises(importing.ResultsImportError) as error:
        importing.parse_results("participant,arm,trial_index,correct\n" + rows, design="learning")
    assert len(error.value.errors) == importing.MAX_LISTED + 1
    assert error.value.errors[-1] == "... and 10 more problem(s)."


def test_a_participants_file_that_contradicts_the_results_is_refused():
    participants = "participant,arm,feedback_rating,status\nP1,GCAM,4,completed\nP2,GCAM,2,active\n"
    with pytest.raises(importing.ResultsImportError, match="participant P1 is in arm GCAM, but in arm Control"):
        importing.parse_results(GOOD, design="learning", participants=participants)
    with pytest.raises(importing.ResultsImportError, match=r"line 2, column 'feedback_rating': '6': not one of the allowed values: 1 \(mostly misleading\)"):
        importing.parse_results(GOOD, design="learning", participants="participant,feedback_rating\nP1,6\n")
    parsed = importing.parse_results(
        GOOD, design="learning", participants="participant,feedback_rating,status\nP1,4,completed\nP2,,active\nP9,3,active\n"
    )
    assert parsed.frames["ratings"].to_dict("records") == [{"participant": "P1", "arm": "Control", "rating": 4}]
    assert parsed.frames["trials"]["completed"].tolist() == [True, True, False, False]
    assert "1 participant(s) of the participants file have no rows" in parsed.notes[0]


def test_semicolons_and_a_byte_order_mark_are_read():
    content = ("\ufeff" + GOOD.replace(",", ";")).encode("utf-8")
    parsed = importing.parse_results(content, design="learning")
    assert parsed.n_participants == 2 and parsed.frames["trials"]["correct"].tolist() == [True, False, True, False]


def test_the_upload_form_shows_the_errors_and_stores_nothing(owner):
    bad = GOOD.replace("P2,GCAM,0,true", "P2,GCAM,0,maybe").encode()
    response = upload(owner, name="bad", design="learning", results=bad)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was imported." in html and "expected 0/1 or true/false" in html
    assert not ImportedResults.objects.exists()
    wrong_design = upload(owner, name="bad", design="clustering", results=GOOD.encode())
    assert wrong_design.status_code == 400
    assert "missing the required column(s) [&#x27;stage&#x27;" in wrong_design.content.decode()
    assert not ImportedResults.objects.exists()
    assert upload(owner, name="good", design="learning", results=GOOD.encode()).status_code == 302
    assert ImportedResults.objects.count() == 1


def test_stored_frames_come_back_with_their_types():
    imported = importing.imported_results_create(name="x", design="learning", content=io.StringIO(GOOD).getvalue())
    trials = importing.imported_frames(imported)["trials"]
    assert trials["trial_index"].dtype == "int64" and trials["correct"].dtype == bool
    assert trials["response_ms"].tolist() == [900, 800, 700, 600]


def test_what_other_tools_write_is_read_and_typed():
    # pandas writes the whole numbers of a column with blanks as 900.0, and booleans as True/False.
    content = (
        "participant,arm,trial_index,correct,response_ms,choice,notes\n"
        "P1,Control,0,True,900.0,3,anything\nP1,Control,1,FALSE,,4,\nP2,GCAM,0,yes,700.0,3,x\n"
    )
    trials = importing.parse_results(content, design="learning").frames["trials"]
    assert trials["correct"].tolist() == [True, False, True]
    assert trials["response_ms"].tolist()[::2] == [900, 700] and pd.isna(trials["response_ms"][1])
    assert trials["choice"].dtype == "int64"  # labels that are all whole numbers become integers
    assert "notes" not in trials  # a column the analysis does not read is not kept


def test_the_data_dictionary_types_the_columns_the_analysis_does_not_read():
    # config_hash and shown_at are the tidy export's columns: its dictionary's pattern and type apply.
    sha = "0" * 64
    content = (
        "participant,arm,trial_index,correct,config_hash,shown_at\n"
        f"P1,Control,0,1,{sha},2026-01-31T14:05:00+00:00\n"
        "P1,Control,1,0,abc,2026-01-31T14:06:00.250000+00:00\n"
        f"P2,GCAM,0,1,{sha},soon\n"
    )
    with pytest.raises(importing.ResultsImportError) as error:
        importing.parse_results(content, design="learning")
    assert error.value.errors == [
        "line 3, column 'config_hash': 'abc': does not match the pattern [0-9a-f]{64}.",
        "line 4, column 'shown_at': 'soon': not an ISO 8601 date and time (e.g. 2026-01-31T14:05:00+00:00).",
    ]
    fixed = content.replace(",abc,", f",{sha},").replace(",soon", ",2026-01-31T14:07:00+00:00")
    assert importing.parse_results(fixed, design="learning").config_hashes == {sha: 2}
