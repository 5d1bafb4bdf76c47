"""Bots walk Study A through the API in every arm, including submissions that must fail."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from studyapp.studies.models import Participant, QuestionAnswer, Study, TrialAnswer
from tests.studyapp.bots import Bot
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    return learning_study()


@pytest.fixture
def owner(db):
    user = get_user_model().objects.create_user("owner", password="pw-owner-123", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def test_bots_complete_the_study_in_every_arm_and_arms_fill_evenly(study):
    bots = [Bot(study.public_code, pid=f"PID{i:03d}", rng=random.Random(i)) for i in range(9)]
    for bot in bots:
        bot.open_link()
        final = bot.walk(rating=1 + bots.index(bot) % 5)
        assert final["kind"] == "done" and final["completion_code"]
    arms = Counter(Participant.objects.values_list("arm__name", flat=True))
    assert arms == {"Control": 3, "GCAM": 3, "CDeepEx": 3}
    assert TrialAnswer.objects.count() == 9 * 20
    assert QuestionAnswer.objects.filter(key="feedback_rating").count() == 9


def test_feedback_matches_the_arm_and_invalid_explanations_are_never_served(study):
    seen = {}
    for i in range(3):
        bot = Bot(study.public_code, rng=random.Random(i))
        bot.open_link()
        bot.enter()
        arm = Participant.objects.get(code=bot.state["participant"]).arm
        bot.continue_()
        status, data = bot.answer(0)
        assert status == 200
        seen[arm.feedback] = data["feedback"]["assets"]
        served = {bot.state["stimulus"]}
        while bot.state["kind"] == "trial":
            if not bot.state["answered"]:
                served.add(bot.state["stimulus"])
                bot.answer(1)
            bot.continue_()
        # The first stimulus' CDeepEx explanation failed the validity gate: it is never shown.
        assert study.stimuli.get(position=0).pk not in served
    assert seen["control"] == {}
    assert set(seen["gradcam"]) == {"overlay"}
    assert set(seen["cdeepex"]) >= {"gif"}


def test_correct_follows_the_model_prediction_by_default_and_truth_when_configured(study):
    bot = Bot(study.public_code)
    bot.open_link()
    bot.walk(choose=lambda s: s["options"][0]["value"])
    for a in TrialAnswer.objects.select_related("stimulus"):
        assert a.correct_label == a.stimulus.model_prediction
        assert a.correct == (a.choice == a.stimulus.model_prediction)
    # Some stimuli are model-wrong, so the two definitions really differ on this data.
    assert TrialAnswer.objects.exclude(stimulus__true_label=models_f("stimulus__model_prediction")).exists()

    Study.objects.filter(pk=study.pk).update(correct_mode=Study.CorrectMode.TRUTH)
    bot2 = Bot(study.public_code, rng=random.Random(5))
    bot2.open_link()
    bot2.walk()
    for a in TrialAnswer.objects.filter(participant__code=bot2.state["participant"]).select_related("stimulus"):
        assert a.correct_label == a.stimulus.true_label


def models_f(name):
    from django.db.models import F

    return F(name)


def test_same_prolific_pid_resumes_its_own_run_and_never_gets_a_second(study):
    bot = Bot(study.public_code, pid="PIDX")
    bot.open_link()
    bot.enter()
    bot.continue_()
    bot.answer(0)
    step = bot.state["step"]
    # A new browser with the same PROLIFIC_PID resumes the run where it was.
    again = Bot(study.public_code, pid="PIDX")
    state = again.open_link()
    assert state["participant"] == bot.state["participant"] and state["step"] == step and state["answered"]
    status, data = again.enter()
    assert status == 200 and data["participant"] == bot.state["participant"]
    assert Participant.objects.count() == 1


def test_out_of_order_and_repeated_requests_are_refused_or_harmless(study):
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    instructions_step = bot.state["step"]
    # Skipping ahead is refused, and the response tells the client where it really is.
    status, data = bot.post(f"steps/{instructions_step + 3}/continue")
    assert status == 409 and data["error"] == "wrong_step" and data["state"]["step"] == instructions_step
    # Answering before the trial is reached is refused.
    status, data = bot.post(f"steps/{instructions_step + 1}/answer", {"stimulus": 1, "choice": 0})
    assert status == 409
    assert bot.continue_()[0] == 200
    trial_step = bot.state["step"]
    # Leaving a trial without answering is refused.
    status, data = bot.post(f"steps/{trial_step}/continue")
    assert status == 400 and TrialAnswer.objects.count() == 0
    # No choice / a choice that is not an option / a tampered stimulus id: refused, nothing saved.
    stim = bot.state["stimulus"]
    for body in ({"stimulus": stim}, {"stimulus": stim, "choice": len(study.classes)},
                 {"stimulus": stim + 1, "choice": 0}, {"stimulus": stim, "choice": "x"},
                 {"stimulus": stim, "choice": True}):
        status, data = bot.post(f"steps/{trial_step}/answer", body)
        assert status == 400, (body, data)
    assert TrialAnswer.objects.count() == 0
    # The answer; an identical repeat is harmless; a different second answer is refused.
    status, first = bot.answer(0)
    assert status == 200
    status, repeat = bot.post(f"steps/{trial_step}/answer", {"stimulus": stim, "choice": 0})
    assert status == 200 and repeat["feedback"] == first["feedback"]
    status, data = bot.post(f"steps/{trial_step}/answer", {"stimulus": stim, "choice": 1})
    assert status == 409 and data["error"] == "already_answered"
    assert TrialAnswer.objects.count() == 1 and TrialAnswer.objects.get().choice == study.classes[0]
    # Moving on, then replaying "continue" for the trial just left: harmless, no step skipped.
    assert bot.continue_()[0] == 200
    after = bot.state["step"]
    status, data = bot.post(f"steps/{trial_step}/continue")
    assert status == 200 and data["step"] == after
    # An answer to a past trial with another choice is refused.
    status, data = bot.post(f"steps/{trial_step}/answer", {"stimulus": stim, "choice": 1})
    assert status == 409
    # Reload shows the current step.
    assert bot.refresh()["step"] == after


def test_a_refused_step_answers_with_the_state_the_server_holds(study):
    """The services raise errors naming the participant; the API's handler adds their state."""
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    status, data = bot.post(f"steps/{bot.state['step'] + 2}/continue")
    assert status == 409 and data["error"] == "wrong_step" and data["state"] == bot.refresh()
    bot.continue_()
    status, first = bot.answer(0)
    assert status == 200
    status, data = bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": 1})
    assert status == 409 and data["error"] == "already_answered"
    assert data["state"] == bot.refresh() and data["state"]["feedback"] == first["feedback"]
    # Input errors carry no state: the client stays where it is.
    status, data = bot.post(f"steps/{bot.state['step']}/continue", {})
    assert status == 200
    status, data = bot.post(f"steps/{bot.state['step']}/answer", {"stimulus": bot.state["stimulus"], "choice": len(study.classes)})
    assert status == 400 and data["error"] == "invalid" and "state" not in data


def test_the_write_layer_never_builds_the_browsers_state():
    import ast
    from pathlib import Path

    import studyapp.studies.services as services_module

    tree = ast.parse(Path(services_module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {"state", "studyapp.studies.state"} & imported


def test_another_participants_code_gives_nothing(study):
    alice, mallory = Bot(study.public_code, rng=random.Random(1)), Bot(study.public_code, rng=random.Random(2))
    alice.open_link()
    alice.enter()
    mallory.open_link()
    # Mallory knows Alice's code but the API never takes a code from the client.
    status, data = mallory.get(f"state?participant={alice.state['participant']}")
    assert data["kind"] == "consent"
    status, _ = mallory.post(f"steps/{alice.state['step']}/continue", {"participant": alice.state["participant"]})
    assert status == 403
    assert Participant.objects.get(code=alice.state["participant"]).step_index == alice.state["step"]


def test_csrf_is_enforced_for_anonymous_participants(study):
    bot = Bot(study.public_code)
    bot.open_link()
    status, _ = bot.post("enter", {"consent": True}, csrf=False)
    assert status == 403 and Participant.objects.count() == 0


def test_consent_is_required_and_stored_with_its_time(study):
    bot = Bot(study.public_code)
    bot.open_link()
    assert bot.state["kind"] == "consent" and "research study" in bot.state["consent_text"]
    status, declined = bot.post("enter", {"consent": False})  # "I do not consent": its own exit, no run
    assert status == 200 and declined["kind"] == "exit" and declined["exit"]["outcome"] == "no_consent"
    assert Participant.objects.count() == 0
    bot.enter()
    assert Participant.objects.get().consent_at is not None


def test_closed_or_full_study_takes_no_new_participants(study):
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)
    bot = Bot(study.public_code)
    assert bot.open_link()["kind"] == "unavailable"
    assert bot.enter()[0] == 403
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    study.arms.update(cap=1)
    for i in range(3):
        b = Bot(study.public_code, rng=random.Random(i))
        b.open_link()
        assert b.enter()[0] == 201
    late = Bot(study.public_code)
    late.open_link()
    status, data = late.enter()
    assert status == 403 and data["error"] == "study_full"
    assert Participant.objects.count() == 3


def test_a_dropouts_slot_reopens_after_the_configured_time(study):
    from datetime import timedelta

    from django.utils import timezone

    study.arms.update(cap=1)
    for i in range(3):
        b = Bot(study.public_code, rng=random.Random(i))
        b.open_link()
        b.enter()
    stale = Participant.objects.first()
    Participant.objects.filter(pk=stale.pk).update(last_seen_at=timezone.now() - timedelta(minutes=study.dropout_minutes + 1))
    late = Bot(study.public_code)
    late.open_link()
    assert late.enter()[0] == 201
    assert Participant.objects.order_by("-pk").first().arm_id == stale.arm_id


def test_withdraw_deletes_the_participants_data(study):
    bot = Bot(study.public_code)
    bot.open_link()
    bot.enter()
    bot.continue_()
    bot.answer(0)
    bot.post("events", {"kind": "replay", "payload": {"trial": 0}})
    status, _ = bot.post("withdraw", {"confirm": True})
    assert status == 200
    assert Participant.objects.count() == 0 and TrialAnswer.objects.count() == 0
    assert bot.refresh()["kind"] == "consent"


def test_the_stimulus_sequence_is_the_same_across_arms(study):
    sequences = {}
    for i in range(3):
        bot = Bot(study.public_code, rng=random.Random(i))
        bot.open_link()
        bot.enter()
        p = Participant.objects.get(code=bot.state["participant"])
        sequences[p.arm.name] = [s["stimulus"] for s in p.plan if s["kind"] == "trial"]
    assert len(set(map(tuple, sequences.values()))) == 1 and len(next(iter(sequences.values()))) == 20


def test_seeded_order_differs_per_participant_but_is_stored(study):
    Study.objects.filter(pk=study.pk).update(stimulus_order=Study.StimulusOrder.SEEDED)
    plans = []
    for i in range(3):
        bot = Bot(study.public_code, rng=random.Random(i))
        bot.open_link()
        bot.enter()
        plans.append([s["stimulus"] for s in Participant.objects.get(code=bot.state["participant"]).plan if s["kind"] == "trial"])
    assert len({tuple(p) for p in plans}) > 1
    assert all(sorted(p) == sorted(plans[0]) for p in plans)


def test_admin_pages_and_exports_need_staff(study, owner):
    outsider = Client()
    for url in (f"/admin/studies/study/{study.pk}/export/tidy.csv", f"/admin/studies/study/{study.pk}/dashboard/"):
        assert outsider.get(url).status_code == 302  # to the login page
        assert owner.get(url).status_code == 200
    member = get_user_model().objects.create_user("member", password="pw-member-123")
    client = Client()
    client.force_login(member)
    assert client.get(f"/admin/studies/study/{study.pk}/export/tidy.csv").status_code == 302


def test_dashboard_says_why_explanations_are_refused(study, owner):
    page = owner.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    assert "final top-2 is not {true, probe}" in page
    assert "Ready" in page


def test_monitor_shows_who_is_at_which_step(study, owner):
    from datetime import timedelta

    from django.utils import timezone

    a, b = Bot(study.public_code, rng=random.Random(1)), Bot(study.public_code, rng=random.Random(2))
    for bot in (a, b):
        bot.open_link()
        bot.enter()
    a.continue_()
    Participant.objects.filter(code=b.state["participant"]).update(last_seen_at=timezone.now() - timedelta(days=1))
    page = owner.get(f"/admin/studies/study/{study.pk}/dashboard/").content.decode()
    table = page.split('id="step-histogram"')[1].split("</table>")[0]
    assert "<td>trial 1</td><td>1</td><td>0</td>" in table
    assert "<td>instructions</td><td>0</td><td>1</td>" in table
