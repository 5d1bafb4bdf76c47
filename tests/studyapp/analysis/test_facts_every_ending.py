"""Every ending of a run, read by the data package (wide and checks tables) and by the analysis
(frames and page): one definition of each fact (`studyapp.studies.facts`), so they agree run by run.

Runs go through the real participant API (bots): completed; completed and then rejected; failed the
quiz once with tries left (still active); failed the quiz at every try (ended, failed checks);
timed out after passing the quiz; idle past ``dropout_minutes`` (stale); withdrew (deleted)."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from studyapp.analysis import datapackage, frames
from studyapp.studies import facts, services
from studyapp.studies.models import Participant, Study
from tests.studyapp.analysis_site.conftest import owner, page_tables  # noqa: F401 (the owner persona)
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db

QUIZ = {"questions": [{"key": "q1", "label": "Which is right?", "options": ["this", "that"], "answer": 0}],
        "attempts": 3, "on_fail": "exit"}
RIGHT, WRONG = {"q1": 0}, {"q1": 1}
RULES = {"incomplete": True, "attention_checks": True}

#: What each ending must read as, in the wide table (blank: "").
EXPECTED = {
    "completed": {"status": "completed", "total": True, "quiz_passed": "1", "attention_check": "1", "stale": "0"},
    "retried": {"status": "completed", "total": True, "quiz_passed": "1", "attention_check": "1", "stale": "0"},
    "rejected": {"status": "rejected", "total": True, "quiz_passed": "1", "attention_check": "1", "stale": "0"},
    "quiz_open": {"status": "active", "total": False, "quiz_passed": "", "attention_check": "", "stale": "0"},
    "failed": {"status": "failed_checks", "total": False, "quiz_passed": "0", "attention_check": "0", "stale": "0"},
    "timed_out": {"status": "timed_out", "total": False, "quiz_passed": "1", "attention_check": "1", "stale": "0"},
    "stale": {"status": "active", "total": False, "quiz_passed": "1", "attention_check": "1", "stale": "1"},
}


@pytest.fixture
def endings():
    study = learning_study()
    study.config = {**study.config, "comprehension": QUIZ, "exclusions": RULES,
                    "time_limits": {"total_minutes": 30}}
    study.save()
    study.refresh_from_db()
    who: dict[str, str] = {}

    def bot(name: str) -> Bot:
        b = Bot(study.public_code, pid=f"P{name}")
        b.open_link()
        b.enter()
        b.continue_()
        assert b.state["kind"] == "quiz"
        return b

    for name in ("completed", "rejected"):
        b = bot(name)
        b.walk(quiz=lambda s: RIGHT)
        who[name] = b.state["participant"]
    b = bot("retried")
    b.check(WRONG)
    b.walk(quiz=lambda s: RIGHT)
    who["retried"] = b.state["participant"]
    b = bot("quiz_open")
    assert b.check(WRONG)[1]["attempts_left"] == 2
    who["quiz_open"] = b.state["participant"]
    b = bot("failed")
    for _ in range(3):
        b.check(WRONG)
    assert b.state["kind"] == "exit" and b.state["exit"]["outcome"] == "failed_checks"
    who["failed"] = b.state["participant"]
    for name in ("timed_out", "stale"):
        b = bot(name)
        b.check(RIGHT)
        b.answer(study.classes[0])
        who[name] = b.state["participant"]
    leaving = bot("withdrew")
    withdrawn = leaving.state["participant"]
    assert leaving.post("withdraw", {"confirm": True})[0] == 200

    runs = Participant.objects.filter(study=study)
    # Completed runs took ten minutes; one is rejected afterwards by the researcher.
    runs.filter(status=Participant.Status.COMPLETED).update(started_at=F("finished_at") - timedelta(minutes=10))
    services.participant_reject(participant=runs.get(code=who["rejected"]), reason="answered at random")
    # One run passes the study's 30 minutes and is ended by the server on its next read.
    runs.filter(code=who["timed_out"]).update(started_at=timezone.now() - timedelta(minutes=31))
    timed = Bot(study.public_code, pid="Ptimed_out")
    timed.open_link()
    assert timed.state["kind"] == "exit" and timed.state["exit"]["outcome"] == "timed_out"
    # One is idle for longer than dropout_minutes: active, but no longer holding its slot.
    runs.filter(code=who["stale"]).update(last_seen_at=timezone.now() - timedelta(minutes=study.dropout_minutes + 1))
    assert not runs.filter(code=withdrawn).exists()
    return study, who, withdrawn


def _package_tables(study: Study) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    with zipfile.ZipFile(io.BytesIO(datapackage.build_zip(study, ids="keep"))) as archive:
        wide = list(csv.DictReader(io.StringIO(archive.read(datapackage.data_path(study, "wide")).decode())))
        checks = list(csv.DictReader(io.StringIO(archive.read(datapackage.data_path(study, "checks")).decode())))
    by_run: dict[str, list[dict]] = {}
    for row in checks:
        by_run.setdefault(row["participant"], []).append(row)
    return {r["participant"]: r for r in wide}, by_run


def test_the_data_package_and_the_analysis_agree_on_every_ending(endings, owner):  # noqa: F811
    study, who, withdrawn = endings
    wide, checks = _package_tables(study)
    data = frames.study_data(study=study)
    participants = data.participants.set_index("participant")
    judged = data.checks.groupby("participant")["attention_check"].apply(list).to_dict()
    seconds = data.checks.groupby("participant")["total_seconds"].first().to_dict()
    html = owner.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    excluded: dict[str, set[str]] = {}
    for row in page_tables(html).get("excluded", []):
        excluded.setdefault(row[0][0], set()).add(row[2][0])

    # Withdrawn: nowhere.
    assert withdrawn not in wide and withdrawn not in checks and withdrawn not in participants.index
    assert set(wide) == set(participants.index) == set(who.values())

    for name, code in who.items():
        row, want = wide[code], EXPECTED[name]
        # The wide table: what each ending must read as.
        assert row["status"] == want["status"], name
        assert (row["total_seconds"] != "") is want["total"], name
        assert (row["quiz_passed"], row["attention_check"], row["stale"]) == (
            want["quiz_passed"], want["attention_check"], want["stale"]), name
        # The checks table holds every try, and judged as `facts` judges reads the same as the wide table.
        tries = [("quiz" if r["kind"] == "quiz" else r["kind"], int(r["step_index"]), int(r["attempt"]), r["passed"] == "1")
                 for r in checks.get(code, [])]
        assert len(tries) == (2 if name == "retried" else 3 if name == "failed" else 1), name
        verdict = facts.attention_check(facts.check_verdicts(tries, status=row["status"], attempts=QUIZ["attempts"]))
        assert ("" if verdict is None else str(int(verdict))) == row["attention_check"], name
        # The analysis frames: the same completion, time, staleness and attention check.
        assert bool(participants.loc[code, "completed"]) is (row["total_seconds"] != ""), name
        assert bool(participants.loc[code, "stale"]) is (row["stale"] == "1"), name
        frame_checks = [c for c in judged.get(code, []) if c is not None and not (isinstance(c, float) and math.isnan(c))]
        frame_verdict = all(frame_checks) if frame_checks else None
        assert ("" if frame_verdict is None else str(int(frame_verdict))) == row["attention_check"], name
        if code in seconds:
            frame_seconds = seconds[code]
            if row["total_seconds"] == "":
                assert math.isnan(frame_seconds), name
            else:
                assert frame_seconds == pytest.approx(float(row["total_seconds"])), name
        # The analysis page: the exclusion report lists the same facts for the run.
        reasons = excluded.get(code[:13] + "…", set())
        assert ("attention_check" in reasons) is (row["attention_check"] == "0"), (name, reasons)
        analysed = code in seconds  # a run with answers or a judged check
        assert ("incomplete" in reasons) is (analysed and row["total_seconds"] == ""), (name, reasons)
        assert ("rejected" in reasons) is (row["status"] == "rejected"), (name, reasons)
    # A rejection after completing keeps the time the run took.
    assert float(wide[who["rejected"]]["total_seconds"]) == pytest.approx(600)
    assert who["quiz_open"] not in seconds  # no answer and no judged check yet: not a participant of the report
