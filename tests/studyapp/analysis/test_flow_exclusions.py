"""The participant flow in the analysis (issue 14): check rows, durations, rejections and test runs
read from the database into the frames, and the exclusion report of the analysis page."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from stats.analyse import CHECK_COLUMNS
from studyapp.analysis import frames
from studyapp.studies import services
from studyapp.studies.models import CheckAnswer, Participant, Study
from tests.studyapp.analysis_site.conftest import page_tables
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db

RULES = {"incomplete": True, "attention_checks": True, "min_total_seconds": 60, "max_total_seconds": 3600}
QUIZ = {"questions": [{"key": "q1", "label": "Which is right?", "options": ["this", "that"], "answer": 0}],
        "attempts": 3, "on_fail": "continue"}


@pytest.fixture
def owner(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user("owner", password="pw-owner-123", is_staff=True, is_superuser=True))
    return client


def _check(participant: Participant, step: int, kind: str, passed: bool, attempt: int = 1) -> None:
    now = timezone.now()
    CheckAnswer.objects.create(participant=participant, step_index=step, kind=kind, attempt=attempt,
                               answers={"q1": 0 if passed else 1}, passed=passed,
                               shown_at=now - timedelta(seconds=5), answered_at=now)


@pytest.fixture
def flow_study():
    """Six bots finish the study (600 s each, except one of 30 s); one is a test run; three more
    enrol and never reach a trial. Returns ``(study, codes by persona)``."""
    study = learning_study()
    who: dict[str, Participant] = {}
    for i, name in enumerate(["ada", "amy", "bo", "cy", "di", "test"]):
        bot = Bot(study.public_code, pid=f"F{i}", rng=random.Random(40 + i))
        bot.open_link()
        bot.walk(rating=1 + i % 5)
        who[name] = Participant.objects.get(code=bot.state["participant"])
    for name in ("fay", "gus", "hal"):
        who[name], _ = services.participant_enroll(study=study, consent=True, prolific_pid=f"E{name}")
    done = Participant.objects.filter(study=study, status=Participant.Status.COMPLETED)
    assert done.count() == 6
    done.update(started_at=F("finished_at") - timedelta(seconds=600))
    Participant.objects.filter(pk=who["di"].pk).update(started_at=F("finished_at") - timedelta(seconds=30))
    # Checks: ada and amy pass a catch trial; bo passes one and fails one.
    for name in ("ada", "amy"):
        _check(who[name], 5, CheckAnswer.Kind.CATCH, True)
    _check(who["bo"], 5, CheckAnswer.Kind.CATCH, True)
    _check(who["bo"], 9, CheckAnswer.Kind.CATCH, False)
    # The quiz: fay failed it three times and was sent to the failed-checks exit; gus failed once
    # and still has two tries (not judged yet); hal failed three times and went on flagged.
    for attempt in (1, 2, 3):
        _check(who["fay"], 2, CheckAnswer.Kind.QUIZ, False, attempt)
        _check(who["hal"], 2, CheckAnswer.Kind.QUIZ, False, attempt)
    _check(who["gus"], 2, CheckAnswer.Kind.QUIZ, False)
    Participant.objects.filter(pk=who["fay"].pk).update(status=Participant.Status.FAILED_CHECKS, finished_at=timezone.now())
    # cy completed and was rejected afterwards; the test run is a staff pilot.
    Participant.objects.filter(pk=who["cy"].pk).update(status=Participant.Status.REJECTED, rejected_reason="answered at random")
    Participant.objects.filter(pk=who["test"].pk).update(is_test=True)
    Study.objects.filter(pk=study.pk).update(config={**study.config, "exclusions": RULES, "comprehension": QUIZ})
    study.refresh_from_db()
    return study, {name: p.code for name, p in who.items()}


def test_the_frames_carry_checks_durations_and_rejections_and_leave_test_runs_out(flow_study):
    study, code = flow_study
    with CaptureQueriesContext(connection) as queries:
        data = frames.study_data(study=study)
    assert len(queries) <= 3  # trials, ratings, participants with their checks: none per participant
    assert list(data.checks.columns) == CHECK_COLUMNS
    checks = {(r.participant, r.attention_check) for r in data.checks.itertuples()}
    c = code
    assert checks == {
        (c["ada"], True), (c["amy"], True), (c["bo"], True), (c["bo"], False), (c["cy"], None),
        (c["di"], None), (c["fay"], False), (c["hal"], False),
    }
    assert c["gus"] not in set(data.checks["participant"])  # no answer and no judged check yet: no data
    assert c["test"] not in set(data.trials["participant"]) | set(data.participants["participant"])
    assert c["test"] not in set(data.ratings["participant"]) | set(data.checks["participant"])

    per = data.trials.groupby("participant").first()
    assert per.loc[c["ada"], "total_seconds"] == pytest.approx(600)
    assert per.loc[c["di"], "total_seconds"] == pytest.approx(30)
    # cy was rejected after completing: still a completed run with a duration, and the reason.
    assert bool(per.loc[c["cy"], "completed"]) and per.loc[c["cy"], "total_seconds"] == pytest.approx(600)
    assert per.loc[c["cy"], "rejected_reason"] == "answered at random"
    assert per.loc[c["ada"], "rejected_reason"] == ""
    # Ended runs stay in the frames (not completed, no duration): the report decides.
    status = data.participants.set_index("participant")["status"]
    assert status[c["fay"]] == Participant.Status.FAILED_CHECKS
    fay = data.checks[data.checks["participant"] == c["fay"]].iloc[0]
    assert not fay["completed"] and math.isnan(fay["total_seconds"])

    with_test = frames.study_data(study=study, include_test=True)
    assert with_test.n_test == 1 and data.n_test == 0
    assert c["test"] in set(with_test.trials["participant"])
    assert len(with_test.trials) == len(data.trials) + study.n_trials
    assert c["test"] in set(with_test.checks["participant"]) and c["test"] in set(with_test.ratings["participant"])


def _excluded(html: str) -> set[tuple[str, str, str]]:
    rows = page_tables(html).get("excluded", [])
    return {(row[0][0], row[2][0], row[3][0]) for row in rows}


def _short(code: str) -> str:
    return code[:13] + "…"  # the page shows the code truncated to 14 characters


def test_the_analysis_page_lists_each_reason_and_shows_test_runs_on_request(flow_study, owner):
    study, c = flow_study
    html = owner.get(f"/admin/analysis/study/{study.pk}/").content.decode()
    assert _excluded(html) == {
        (_short(c["bo"]), "attention_check", "failed 1 of 2 attention check(s)"),
        (_short(c["cy"]), "rejected", "rejected by the researcher: answered at random"),
        (_short(c["di"]), "total_duration", "took 30 s in all; minimum 60 s"),
        (_short(c["fay"]), "attention_check", "failed 1 of 1 attention check(s)"),
        (_short(c["fay"]), "incomplete", "did not complete the study"),
        (_short(c["hal"]), "attention_check", "failed 1 of 1 attention check(s)"),
        (_short(c["hal"]), "incomplete", "did not complete the study"),
    }
    assert "5 of 7 participants excluded, 2 analysed." in html  # gus (no data yet) is not counted
    tables = page_tables(html)
    # The learning analyses see the two kept runs' trials only (no check row, no test run).
    assert sum(int(float(row[1][1])) for row in tables["final-counts"]) == 2
    assert "1 test run (staff previews and pilots) left out." in html
    assert "including" not in html.split('id="test-runs"')[1][:80]

    html = owner.get(f"/admin/analysis/study/{study.pk}/?test=1").content.decode()
    assert "including 1 test run" in html
    assert "5 of 8 participants excluded, 3 analysed." in html  # the pilot completed: it is kept
    assert sum(int(float(row[1][1])) for row in page_tables(html)["final-counts"]) == 3
    assert f'/admin/analysis/study/{study.pk}/figure/learning-curve.png?test=1' in html
    assert f'/admin/analysis/study/{study.pk}/report.html?test=1' in html
    # The figure and the report read the same rows as the page they are linked from.
    assert owner.get(f"/admin/analysis/study/{study.pk}/figure/learning-curve.png?test=1").status_code == 200
    report = owner.get(f"/admin/analysis/study/{study.pk}/report.html?test=1").content.decode()
    assert "including 1 test run" in report
