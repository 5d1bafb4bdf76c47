"""`manage.py synthetic_participants`: bots with a planted learning effect through the real API."""

from __future__ import annotations

import io
import random

import pytest
from django.core.management import CommandError, call_command

from stats import learning
from studyapp.analysis import frames
from studyapp.studies import services
from studyapp.studies.models import Participant, QuestionAnswer, Study, TrialAnswer
from tests.studyapp.factories import learning_study

pytestmark = pytest.mark.django_db


def run(**options) -> str:
    out = io.StringIO()
    call_command("synthetic_participants", stdout=out, **options)
    return out.getvalue()


def test_the_planted_effect_is_recovered_from_what_the_bots_answered(monkeypatch):
    study = learning_study()
    # The server draws arms with a system RNG; seed it so that the run is the same every time.
    monkeypatch.setattr(services, "_rng", random.Random(3))
    out = run(study=study.slug, n=30, seed=7, power=True, power_sims=400)

    participants = Participant.objects.filter(study=study)
    assert participants.count() == 30
    assert set(participants.values_list("status", flat=True)) == {"completed"}
    assert sorted(participants.values_list("prolific_pid", flat=True)) == sorted(f"synthetic-7-{i}" for i in range(30))
    assert TrialAnswer.objects.filter(participant__study=study).count() == 30 * 20
    assert QuestionAnswer.objects.filter(participant__study=study, key="feedback_rating").count() == 30

    trials = frames.study_trials(study=study)
    totals = learning.participant_totals(trials, n_trials=20)
    assert totals.groupby("arm").size().to_dict() == {"CDeepEx": 10, "Control": 10, "GCAM": 10}
    family = learning.pairwise_welch(totals, learning.DISSERTATION_PAIRS, alpha=0.05)
    by = {t.hypothesis: t for t in family.tests}
    assert by["CDeepEx > Control"].p < 0.01 and by["CDeepEx > Control"].hedges_g > 0.8
    means = totals.groupby("arm")["total_correct"].mean()
    assert means["Control"] < means["GCAM"] < means["CDeepEx"]

    # The printed summary is the same analysis.
    assert "30 participant(s), 30 of them synthetic; 30 completed." in out
    line = next(x for x in out.splitlines() if x.strip().startswith("CDeepEx > Control") and "t =" in x)
    assert f"p = {by['CDeepEx > Control'].p:.4g}" in line and line.endswith(": significant")
    assert "Response-time rules are not applied" in out
    # The simulation says how often such a study detects the planted effect.
    assert "Power by simulation (planted curves, 10 per arm" in out
    detected = next(x for x in out.splitlines() if x.strip().startswith("CDeepEx > Control") and "detected in" in x)
    assert float(detected.split("detected in ")[1].split("%")[0]) > 90

    # A rerun with the same seed resumes the same runs instead of adding participants.
    run(study=study.slug, n=3, seed=7)
    assert Participant.objects.filter(study=study).count() == 30


def test_null_curves_and_power_only():
    study = learning_study()
    out = run(study=study.slug, n=0, curves="null", power=True, power_n=8, power_sims=300, alpha=0.05)
    assert "0 participant(s)" in out
    assert "a (false) positive in" in out
    share = float(next(x for x in out.splitlines() if "CDeepEx > Control" in x and "positive in" in x)
                  .split("positive in ")[1].split("%")[0])
    assert share < 12  # about alpha = 5%


def test_the_command_refuses_what_it_cannot_do():
    study = learning_study(open_it=False)
    with pytest.raises(CommandError, match="open it first"):
        run(study=study.slug, n=2)
    with pytest.raises(CommandError, match="No study"):
        run(study="nope", n=1)
    Study.objects.filter(pk=study.pk).update(status="open")
    with pytest.raises(CommandError, match="caps leave 45 place"):
        run(study=study.slug, n=46)
    assert not Participant.objects.exists()
