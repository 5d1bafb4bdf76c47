"""The AI-assisted decision study's results as `stats.protocols.reliance` takes them, and its analysis.

`decision_frame` reads the database into the protocol's long frame (one row per participant ×
item × phase): the `TrialAnswer` rows of the run's ``decision_alone`` (phase ``alone``) and
``decision_assisted`` (phase ``assisted``) steps, their phase and item read from the run's plan,
with the image's true class and the model's answer (the data set's class ids, never shown to
participants as such). `decision_results` runs `stats.protocols.reliance.analyse` on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from stats.protocols import reliance as protocol
from stats.protocols.schema import ARM, ITEM, PARTICIPANT, PHASE
from studyapp.analysis.frames import model_answers, protocol_runs
from studyapp.studies.models import Participant, Study, TrialAnswer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from django.db.models import QuerySet

    from studyapp.analysis.metrics_people import OutcomeRow
from studyapp.studies.steps.decision import ALONE, ASSISTED, DecisionAlone, DecisionAssisted

__all__ = ["decision_frame", "decision_results"]


def decision_frame(study: Study, *, include_test: bool = False) -> pd.DataFrame:
    """The protocol's frame of ``study`` (test runs only with ``include_test``); 3 queries."""
    runs, plans = protocol_runs(study, include_test=include_test)
    facts = model_answers(study)
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


def metrics_outcomes(study: Study, runs: QuerySet[Participant]) -> Iterator[OutcomeRow]:
    """The outcome source of `studyapp.analysis.metrics_people` for this design: each final answer
    (the assisted half; correct against the true class) with the asset its advice showed (pinned in
    the plan; else the arm's newest valid asset). The control arm's rows have no asset. 3 queries."""
    from studyapp.analysis.metrics_people import OutcomeRow, arm_assets, arm_methods

    methods = arm_methods(study)
    arm_method: dict[int, str | None] = {}
    shown: dict[tuple[int, int], int | None] = {}
    for pk, arm, plan in runs.values_list("pk", "arm__name", "plan"):
        arm_method[pk] = methods.get(arm)
        for i in DecisionAssisted.positions_in(plan or []):
            pinned = plan[i].get("assets") or {}
            shown[(pk, plan[i]["trial"])] = sorted(pinned.items())[0][1] if pinned else None
    fallback = arm_assets(study)
    for pid, trial, stimulus, correct in TrialAnswer.objects.filter(participant__in=runs).values_list(
            "participant_id", "trial_index", "stimulus_id", "correct").order_by("participant_id", "trial_index"):
        if (pid, trial) not in shown:  # the answer alone: no explanation went with it
            continue
        method = arm_method.get(pid)
        asset = shown[(pid, trial)] or (fallback.get((stimulus, method)) if method else None)
        yield OutcomeRow(pid, stimulus, bool(correct), asset)
