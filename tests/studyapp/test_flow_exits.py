"""The participant flow of a paid study, through the real API: pilot runs, the comprehension quiz,
catch trials, every outcome's own exit and code, withdrawal, rejection, time limits and the
exposure columns of the tidy export."""

from __future__ import annotations

import csv
import io
import random
from datetime import timedelta

import pytest
from django.test import Client

from studyapp.studies import selectors
from studyapp.studies.models import CheckAnswer, InteractionEvent, Participant, Study, TrialAnswer
from tests.studyapp.admin_forms import superuser_client
from tests.studyapp.bots import Bot
from tests.studyapp.factories import clustering_study, learning_study

pytestmark = pytest.mark.django_db

EXITS = {
    "completed": {"code": "DONE01", "redirect_url": "https://app.prolific.com/submissions/complete?cc={code}"},
    "no_consent": {"code": "NOCONS", "redirect_url": "https://app.prolific.com/submissions/complete?cc={code}"},
    "full": {"code": "FULL01", "redirect_url": "https://app.prolific.com/submissions/complete?cc={code}"},
    "failed_checks": {"code": "FAILCK"},
    "withdrew": {"code": "WITHDR"},
    "timed_out": {"code": "TIMEUP"},
}
QUIZ = {
    "questions": [
        {"key": "arm", "label": "What will you see after each answer?", "options": ["Nothing", "Feedback"], "answer": 1},
        {"key": "count", "label": "How many symbols are there?", "options": ["Two", "Ten"], "answer": 0},
    ],
    "attempts": 3,
    "on_fail": "exit",
}
RIGHT = {"arm": 1, "count": 0}
WRONG = {"arm": 0, "count": 0}


@pytest.fixture
def owner() -> Client:
    return superuser_client()


def configured(**config) -> Study:
    study = learning_study()
    study.config = {**study.config, "exits": EXITS, **config}
    study.save()
    return study


def csv_rows(owner: Client, study: Study, kind: str, query: str = "") -> list[dict]:
    reply = owner.get(f"/admin/studies/study/{study.pk}/export/{kind}.csv{query}")
    assert reply.status_code == 200
    return list(csv.DictReader(io.StringIO(reply.content.decode())))


def test_every_outcome_ends_at_its_own_exit_with_its_own_code():
    study = configured(comprehension=QUIZ)
    # Did not consent: no run, the no-consent exit.
    bot = Bot(study.public_code, pid="NC1")
    bot.open_link()
    status, declined = bot.post("enter", {"consent": False})
    assert status == 200 and declined["exit"] == {
        "outcome": "no_consent", "code": "NOCONS",
        "redirect_url": "https://app.prolific.com/submissions/complete?cc=NOCONS", "text": "",
    }
    # Completed: its code and redirect.
    done = Bot(study.public_code, pid="OK1", rng=random.Random(1))
    done.open_link()
    final = done.walk(quiz=lambda s: RIGHT)
    assert final["kind"] == "done" and final["exit"]["outcome"] == "completed" and final["exit"]["code"] == "DONE01"
    assert final["exit"]["redirect_url"].endswith("cc=DONE01")
    # Failed the quiz three times: the failed-checks exit; writes are refused with that state.
    failing = Bot(study.public_code, pid="QZ1")
    failing.open_link()
    failing.enter()
    failing.continue_()
    assert failing.state["kind"] == "quiz" and failing.state["attempts_left"] == 3
    assert all(set(q) == {"key", "label", "options"} for q in failing.state["questions"])  # never the right option
    for left in (2, 1):
        status, state = failing.check(WRONG)
        assert status == 200 and state["kind"] == "quiz" and state["retry"] and state["attempts_left"] == left
    status, state = failing.check(WRONG)
    assert status == 200 and state["kind"] == "exit" and state["exit"]["outcome"] == "failed_checks"
    assert state["exit"]["code"] == "FAILCK"
    run = Participant.objects.get(prolific_pid="QZ1")
    assert run.status == Participant.Status.FAILED_CHECKS and run.checks.count() == 3
    status, refused = failing.post(f"steps/{state['step']}/check", {"answers": RIGHT})
    assert status == 409 and refused["state"]["exit"]["outcome"] == "failed_checks"
    assert failing.refresh()["kind"] == "exit"
    # Withdrew: the data deleted, the withdrew exit.
    leaving = Bot(study.public_code, pid="WD1")
    leaving.open_link()
    leaving.enter()
    status, gone = leaving.post("withdraw", {"confirm": True})
    assert status == 200 and gone["state"]["exit"]["outcome"] == "withdrew" and gone["state"]["exit"]["code"] == "WITHDR"
    assert not Participant.objects.filter(prolific_pid="WD1").exists()
    # Study full: the full exit instead of a dead end.
    study.arms.update(cap=0)
    late = Bot(study.public_code, pid="FL1")
    late.open_link()
    status, full = late.enter()
    assert status == 403 and full["error"] == "study_full"
    assert full["state"]["exit"]["outcome"] == "full" and full["state"]["exit"]["code"] == "FULL01"
    # Each exit's code is its own.
    codes = {declined["exit"]["code"], final["exit"]["code"], state["exit"]["code"], gone["state"]["exit"]["code"],
             full["state"]["exit"]["code"]}
    assert len(codes) == 5


def test_a_quiz_failed_with_on_fail_continue_goes_on_flagged(owner):
    study = configured(comprehension={**QUIZ, "on_fail": "continue", "attempts": 2})
    bot = Bot(study.public_code, pid="QC1", rng=random.Random(2))
    bot.open_link()
    final = bot.walk(quiz=lambda s: WRONG)
    assert final["kind"] == "done"
    run = Participant.objects.get(prolific_pid="QC1")
    assert run.status == Participant.Status.COMPLETED
    assert list(run.checks.values_list("attempt", "passed")) == [(1, False), (2, False)]
    wide = {r["prolific_pid"]: r for r in csv_rows(owner, study, "wide")}
    assert (wide["QC1"]["quiz_attempts"], wide["QC1"]["quiz_passed"], wide["QC1"]["attention_check"]) == ("2", "0", "0")


def test_catch_trials_sit_at_their_positions_in_every_arm_and_are_scored(owner):
    study = configured(catch_trials=[
        {"after": 2, "answer": 1},  # an image with the two names: "choose the second"
        {"after": 5, "prompt": "To show you are reading, choose {answer}.", "options": ["Red", "Blue", "Green"], "answer": 2},
    ])
    names = list(study.class_names)
    plans = []
    for i, wrong in enumerate((False, True, False)):
        bot = Bot(study.public_code, pid=f"CT{i}", rng=random.Random(i))
        bot.open_link()
        seen = []

        def catch(state, wrong=wrong, seen=seen):
            seen.append(state)
            right = next(o["value"] for o in state["options"] if o["label"] in state["prompt"])
            return (right + 1) % len(state["options"]) if wrong else right

        assert bot.walk(catch=catch)["kind"] == "done"
        assert [s["prompt"] for s in seen] == [
            f"Attention check: please choose “{names[1]}”.", "To show you are reading, choose Green.",
        ]
        assert "image_url" in seen[0] and "image_url" not in seen[1]
        plans.append(Participant.objects.get(prolific_pid=f"CT{i}").plan)
    arms = {Participant.objects.get(prolific_pid=f"CT{i}").arm_id for i in range(3)}
    assert len(arms) == 3  # one run per arm, the catch items at the same steps in each
    positions = {tuple(i for i, s in enumerate(plan) if s["kind"] == "catch") for plan in plans}
    assert positions == {(3, 7)}  # instructions, 2 trials, catch, 3 trials, catch
    trials_before = [sum(1 for s in plans[0][:i] if s["kind"] == "trial") for i in (3, 7)]
    assert trials_before == [2, 5]
    checks = csv_rows(owner, study, "checks")
    assert [(r["prolific_pid"], r["kind"], r["item"], r["passed"]) for r in checks] == [
        ("CT0", "catch", "0", "1"), ("CT0", "catch", "1", "1"),
        ("CT1", "catch", "0", "0"), ("CT1", "catch", "1", "0"),
        ("CT2", "catch", "0", "1"), ("CT2", "catch", "1", "1"),
    ]
    wide = {r["prolific_pid"]: r for r in csv_rows(owner, study, "wide")}
    assert [wide[f"CT{i}"]["attention_check"] for i in range(3)] == ["1", "0", "1"]
    assert [wide[f"CT{i}"]["catch_failed"] for i in range(3)] == ["0", "2", "0"]
    # Catch items are not trials: the learning data keeps 20 trials per run.
    assert TrialAnswer.objects.filter(participant__prolific_pid="CT1").count() == 20


def test_catch_items_go_between_the_batches_of_study_b():
    study = clustering_study()
    study.config = {**study.config, "catch_trials": [{"after": 1, "options": ["Yes", "No"], "answer": 0}]}
    study.save()
    bot = Bot(study.public_code, pid="CB1", rng=random.Random(3))
    bot.open_link()
    bot.enter()
    plan = Participant.objects.get(prolific_pid="CB1").plan
    kinds = [s["kind"] for s in plan]
    first = kinds.index("grouping")
    # the first batch, its confidence question, then the catch item, then the second batch
    assert kinds[first:first + 4] == ["grouping", "questions", "catch", "grouping"]


def test_a_pilot_run_takes_no_slot_is_marked_and_left_out_of_the_exports(owner):
    study = configured()
    study.status = Study.Status.DRAFT
    study.save()
    gradcam = study.arms.get(feedback="gradcam")
    page = owner.get(f"/admin/studies/study/{study.pk}/pilot/")
    assert page.status_code == 200 and "Start a test run" in page.content.decode()
    reply = owner.post(f"/admin/studies/study/{study.pk}/pilot/", {"arm": gradcam.pk})
    assert reply.status_code == 302 and reply["Location"] == f"/s/{study.public_code}/"
    state = owner.get(f"/api/s/{study.public_code}/state").json()
    assert state["kind"] == "instructions" and state["test_run"] is True
    pilot = Participant.objects.get(is_test=True)
    assert pilot.arm == gradcam
    # The staff browser walks the pilot like a participant.
    bot = Bot(study.public_code, client=owner, rng=random.Random(4))
    bot.state = state
    assert bot.walk()["kind"] == "done"
    assert all(a["completed"] == 0 for a in selectors.arm_fill(study=study))
    assert [a["test"] for a in selectors.arm_fill(study=study) if a["arm"] == gradcam.name] == [1]
    # Open the study: the first real participant is not pushed away from the piloted arm.
    study.status = Study.Status.OPEN
    study.save()
    for arm in study.arms.exclude(pk=gradcam.pk):
        arm.cap = 0
        arm.save()
    real = Bot(study.public_code, pid="R1")
    real.open_link()
    assert real.enter()[0] == 201  # the gradcam arm's cap is None; a pilot never fills a capped arm either
    gradcam.cap = 1
    gradcam.save()
    assert csv_rows(owner, study, "tidy") == []  # the real run has answered nothing; the pilot is left out
    assert {r["is_test"] for r in csv_rows(owner, study, "wide")} == {"0"}
    with_tests = csv_rows(owner, study, "tidy", "?test=1")
    assert len(with_tests) == 20 and {r["participant"] for r in with_tests} == {pilot.code}
    # One action deletes the test runs.
    owner.post("/admin/studies/study/", {"action": "delete_test_runs", "_selected_action": [study.pk]})
    assert not Participant.objects.filter(is_test=True).exists() and Participant.objects.filter(prolific_pid="R1").exists()


def test_a_rejected_run_keeps_its_data_frees_its_slot_and_is_flagged(owner):
    study = configured()
    study.arms.update(cap=1)
    runs = []
    for i in range(3):
        bot = Bot(study.public_code, pid=f"RJ{i}", rng=random.Random(i))
        bot.open_link()
        bot.walk()
        runs.append(Participant.objects.get(prolific_pid=f"RJ{i}"))
    late = Bot(study.public_code, pid="RJ9")
    late.open_link()
    assert late.enter()[0] == 403  # every arm is full
    victim = runs[0]
    page = owner.post("/admin/studies/participant/", {"action": "reject_runs", "_selected_action": [victim.pk]})
    assert page.status_code == 200 and "Reason" in page.content.decode()
    owner.post("/admin/studies/participant/", {
        "action": "reject_runs", "_selected_action": [victim.pk], "apply": "1", "reason": "Answered in under a second",
    })
    victim.refresh_from_db()
    assert victim.status == Participant.Status.REJECTED and victim.rejected_reason == "Answered in under a second"
    assert victim.answers.count() == 20  # the data are kept
    assert late.enter()[0] == 201  # the slot is free again
    assert Participant.objects.get(prolific_pid="RJ9").arm_id == victim.arm_id
    wide = {r["prolific_pid"]: r for r in csv_rows(owner, study, "wide")}
    assert wide["RJ0"]["status"] == "rejected" and wide["RJ0"]["rejected_reason"] == "Answered in under a second"


def test_time_limits_are_enforced_by_the_server_and_end_at_the_timed_out_exit():
    study = configured(time_limits={"total_minutes": 30, "step_minutes": {"trial": 2}, "warn_seconds": 45})
    bot = Bot(study.public_code, pid="TL1")
    bot.open_link()
    bot.enter()
    assert bot.state["time_limit"]["scope"] == "study" and bot.state["time_limit"]["warn_seconds"] == 45
    bot.continue_()
    assert bot.state["kind"] == "trial" and bot.state["time_limit"]["scope"] == "step"
    run = Participant.objects.get(prolific_pid="TL1")
    # The trial has been on screen for three minutes: the next write is refused, the run times out.
    Participant.objects.filter(pk=run.pk).update(step_shown_at=run.step_shown_at - timedelta(minutes=3))
    status, refused = bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": 0})
    assert status == 409 and refused["error"] == "timed_out"
    assert refused["state"]["kind"] == "exit" and refused["state"]["exit"] == {
        "outcome": "timed_out", "code": "TIMEUP", "redirect_url": "", "text": "",
    }
    run.refresh_from_db()
    assert run.status == Participant.Status.TIMED_OUT and run.answers.count() == 0
    assert selectors.arm_fill(study=study)[0]["ended"] + selectors.arm_fill(study=study)[1]["ended"] \
        + selectors.arm_fill(study=study)[2]["ended"] == 1
    # A run past the whole study's limit times out on a mere read of its state.
    other = Bot(study.public_code, pid="TL2")
    other.open_link()
    other.enter()
    Participant.objects.filter(prolific_pid="TL2").update(started_at=run.started_at - timedelta(minutes=31))
    assert other.refresh()["kind"] == "exit" and other.state["exit"]["outcome"] == "timed_out"


def test_the_exposure_columns_follow_what_a_bot_did_with_a_known_timing(owner):
    study = configured()
    for arm in study.arms.all():
        arm.cap = None if arm.feedback == "cdeepex" else 0
        arm.save()
    bot = Bot(study.public_code, pid="EX1")
    bot.open_link()
    bot.enter()
    bot.continue_()
    first = bot.state
    # Hidden 400 ms before answering and 700 ms after; the animation ends; two replays.
    assert bot.post("events", {"events": [
        {"kind": "hidden", "step": first["step"], "t": 100},
        {"kind": "visible", "step": first["step"], "t": 500, "payload": {"hidden_ms": 400, "answered": False}},
    ]})[0] == 201
    status, answered = bot._record(bot.api.answer(first["step"], stimulus=first["stimulus"], choice=0, client_ms=1234))
    assert status == 200
    bot.state = answered
    assert bot.post("events", {"events": [
        {"kind": "animation_end", "step": first["step"], "payload": {"trial": 0}},
        {"kind": "replay", "step": first["step"], "payload": {"trial": 0}},
        {"kind": "replay", "step": first["step"], "payload": {"trial": 0}},
        {"kind": "visible", "step": first["step"], "payload": {"hidden_ms": 700, "answered": True}},
    ]})[0] == 201
    bot.continue_()
    second = bot.state
    bot.answer(0)
    # The known timing: the first answer saved at T, the second trial shown at T + 2.5 s.
    run = Participant.objects.get(prolific_pid="EX1")
    a0 = TrialAnswer.objects.get(participant=run, trial_index=0)
    TrialAnswer.objects.filter(pk=a0.pk).update(response_ms=3000)
    TrialAnswer.objects.filter(participant=run, trial_index=1).update(shown_at=a0.answered_at + timedelta(milliseconds=2500))
    rows = csv_rows(owner, study, "tidy")
    r0, r1 = rows[0], rows[1]
    assert (r0["client_response_ms"], r0["hidden_ms"], r0["cleaned_response_ms"]) == ("1234", "1100", "2600")
    assert (r0["feedback_ms"], r0["feedback_visible_ms"]) == ("2500", "1800")
    assert (r0["animation_completed"], r0["replays"]) == ("1", "2")
    assert r1["feedback_ms"] == "" and r1["animation_completed"] == "0" and r1["client_response_ms"] == ""
    assert second["trial"] == 1
    assert InteractionEvent.objects.filter(participant=run).count() == 6


def test_a_bad_event_batch_is_refused_whole_and_events_have_their_own_budget(settings):
    study = configured()
    bot = Bot(study.public_code, pid="EV1")
    bot.open_link()
    bot.enter()
    status, body = bot.post("events", {"events": [{"kind": "ok"}, {"kind": "bad kind!"}]})
    assert status == 400 and InteractionEvent.objects.count() == 0
    status, _ = bot.post("events", {"events": [{"kind": "ok", "step": 99}]})
    assert status == 400 and InteractionEvent.objects.count() == 0
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "participant": "5/minute", "events": "1000/minute"}}
    for _ in range(20):
        assert bot.post("events", {"events": [{"kind": "visible", "payload": {"hidden_ms": 1}}]})[0] == 201
    assert bot.continue_()[0] == 200  # twenty event batches used none of the participant's five requests
    assert CheckAnswer.objects.count() == 0


def test_the_published_consent_texts_promise_the_withdrawal_the_site_offers():
    """Withdrawal is the button on every page (and a message with the Prolific id after the end),
    never "your completion code", which every participant of a study may share."""
    import json
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    texts = [row["fields"]["consent_text"] for name in ("study_a_kannada.json", "study_b_clustering.json")
             for row in json.loads((fixtures / name).read_text()) if row["model"] == "studies.study"]
    german = [t["consent_text"] for t in json.loads((fixtures / "study_texts_de.json").read_text()).values() if isinstance(t, dict)]
    assert len(texts) == 2 and len(german) == 2
    for text in texts:
        assert "completion code" not in text and "Withdraw and delete my data" in text
    for text in german:
        assert "Abschlusscode" not in text and "Teilnahme beenden und meine Daten löschen" in text
