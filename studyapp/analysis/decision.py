"""The AI-assisted decision study's results as `stats.protocols.reliance` takes them, and its analysis.

`decision_frame` reads the database into the protocol's long frame (one row per participant ×
item × phase): the `TrialAnswer` rows of the run's ``decision_alone`` (phase ``alone``) and
``decision_assisted`` (phase ``assisted``) steps, their phase and item read from the run's plan,
with the image's true class and the model's answer (the data set's class ids, never shown to
participants as such). `decision_results` runs `stats.protocols.reliance.analyse` on it.
"""

from __future__ import annotations

import pandas as pd

from stats.protocols import reliance as protocol
from stats.protocols.schema import ARM, ITEM, PARTICIPANT, PHASE
from studyapp.pipeline.models import Stimulus
from studyapp.studies.models import Participant, Study, TrialAnswer
from studyapp.studies.steps.decision import ALONE, ASSISTED, DecisionAlone, DecisionAssisted

__all__ = ["decision_frame", "decision_results"]


def decision_frame(study: Study, *, include_test: bool = False) -> pd.DataFrame:
    """The protocol's frame of ``study`` (test runs only with ``include_test``); 3 queries."""
    runs = Participant.objects.filter(study=study)
    if not include_test:
        runs = runs.filter(is_test=False)
    plans = {pk: (arm, plan or []) for pk, arm, plan in runs.values_list("pk", "arm__name", "plan")}
    facts = {pk: (pred, true) for pk, pred, true in
             Stimulus.objects.filter(study=study).values_list("pk", "model_prediction", "true_label")}
    phase_of = {
        (pk, plan[i].get("trial")): phase
        for pk, (_, plan) in plans.items()
        for cls, phase in ((DecisionAlone, ALONE), (DecisionAssisted, ASSISTED))
        for i in cls.positions_in(plan)
    }
    rows = []
    for pid, trial, stimulus, choice in TrialAnswer.objects.filter(participant__in=runs).values_list(
        "participant_id", "trial_index", "stimulus_id", "choice"
    ).order_by("participant_id", "trial_index"):
        phase = phase_of.get((pid, trial))
        if phase is None:  # an answer of another design's kind: not a decision
            continue
        pred, true = facts[stimulus]
        rows.append({PARTICIPANT: pid, ARM: plans[pid][0], ITEM: stimulus, PHASE: phase,
                     protocol.TRUTH: true, protocol.MODEL_ANSWER: pred, protocol.ANSWER: choice})
    return pd.DataFrame(rows, columns=list(protocol.COLUMNS))


def decision_results(study: Study, *, reference_arm: str = "Control", include_test: bool = False,
                     level: float = 0.95) -> protocol.ReliancePanel:
    """Human alone, AI alone and team accuracy, over-/under-reliance, RAIR and RSR per arm and
    each arm against ``reference_arm``, all items and split by model correct/wrong
    (``AnalysisInputError`` when the data cannot give them, e.g. nothing answered yet)."""
    return protocol.analyse(decision_frame(study, include_test=include_test), reference_arm=reference_arm, level=level)
