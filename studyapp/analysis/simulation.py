"""The forward-simulation study's results as `stats.protocols.simulation` takes them, and its analysis.

`simulation_frame` reads the database into the protocol's long frame (one row per participant ×
item × phase): the test items' answers (`TrialAnswer` rows of the run's ``simulation_test`` steps,
their phase read from the run's plan) and the learning items the plan showed (``learn`` rows, not
scored; the protocol refuses an item that both taught and tested a participant). The guess and the
model's answer are the data set's class ids (never shown to participants). A counterfactual test
item (a morph's last displayed frame, see `studyapp.studies.designs.simulation`) is the item
``cf<asset pk>`` of kind ``counterfactual``, its model answer the classifier's on that frame and
``model_correct`` whether that answer is the source image's true label. `simulation_results`
runs `stats.protocols.simulation.analyse` on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from django.db.models import QuerySet

from stats.protocols import simulation as protocol
from stats.protocols.schema import ARM, ITEM, MODEL_CORRECT, PARTICIPANT, PHASE
from studyapp.analysis.frames import model_answers, protocol_runs
from studyapp.analysis.metrics_people import OutcomeRow, arm_assets, arm_methods
from studyapp.studies.models import Participant, Study, TrialAnswer
from studyapp.studies.steps.simulation import LearningItem, SimulationItem

__all__ = ["simulation_frame", "simulation_results", "metrics_outcomes"]


def simulation_frame(study: Study, *, include_test: bool = False) -> pd.DataFrame:
    """The protocol's frame of ``study`` (test runs only with ``include_test``); 3 queries."""
    runs, plans = protocol_runs(study, include_test=include_test)
    facts = model_answers(study)
    step_of = {(pk, plan[i].get("trial")): plan[i] for pk, (_, plan) in plans.items() for i in SimulationItem.positions_in(plan)}
    rows = []
    for pid, trial, stimulus, choice in TrialAnswer.objects.filter(participant__in=runs).values_list(
        "participant_id", "trial_index", "stimulus_id", "choice"
    ).order_by("participant_id", "trial_index"):
        step = step_of.get((pid, trial))
        if step is None:  # a learning trial of another design's kind: not a simulation answer
            continue
        pred, true = facts[stimulus]
        if step.get("item_kind") == protocol.COUNTERFACTUAL:
            # the changed input is its own item; the model's answer is the one on that input
            rows.append(_row(pid, plans[pid][0], f"cf{step.get('asset')}", step["phase"], step.get("model_answer"), true,
                             choice, kind=protocol.COUNTERFACTUAL))
            continue
        rows.append(_row(pid, plans[pid][0], stimulus, step["phase"], pred, true, choice))
    for pid, (arm, plan) in plans.items():
        for i in LearningItem.positions_in(plan):
            stimulus = plan[i].get("stimulus")
            if stimulus in facts:
                pred, true = facts[stimulus]
                rows.append(_row(pid, arm, stimulus, protocol.LEARN, pred, true, None))
    return pd.DataFrame(rows, columns=list(protocol.COLUMNS))


def _row(pid: int, arm: str, item: int | str, phase: str, pred: int, true: int, answer: int | None, *,
         kind: str = protocol.FORWARD) -> dict:
    return {PARTICIPANT: pid, ARM: arm, ITEM: item, PHASE: phase, protocol.ITEM_KIND: kind,
            MODEL_CORRECT: pred == true, protocol.MODEL_ANSWER: pred, protocol.ANSWER: answer}


def simulation_results(study: Study, *, control_arm: str = "Control", include_test: bool = False,
                       level: float = 0.95) -> protocol.SimulationResult:
    """Simulation accuracy pre/post/change per arm, the explanation effect and Colin's utility, all
    items and split by model correct/wrong (``AnalysisInputError`` when the data cannot give them,
    e.g. no control arm answered yet)."""
    return protocol.analyse(simulation_frame(study, include_test=include_test), control_arm=control_arm, level=level)


def metrics_outcomes(study: Study, runs: QuerySet[Participant]) -> Iterator[OutcomeRow]:
    """The outcome source of `studyapp.analysis.metrics_people` for this design: each post-test
    answer (the guess equals the model's answer or not) with the asset the run's arm shows for that
    image (a test item shows none; the control arm's rows have no asset). 4 queries."""
    methods = arm_methods(study)
    arm_method: dict[int, str | None] = {}
    post: set[tuple[int, int]] = set()
    for pk, arm, plan in runs.values_list("pk", "arm__name", "plan"):
        arm_method[pk] = methods.get(arm)
        post |= {(pk, plan[i].get("trial")) for i in SimulationItem.positions_in(plan or []) if plan[i].get("phase") == "post"}
    assets = arm_assets(study)
    for pid, trial, stimulus, correct in TrialAnswer.objects.filter(participant__in=runs).values_list(
            "participant_id", "trial_index", "stimulus_id", "correct").order_by("participant_id", "trial_index"):
        if (pid, trial) in post:
            method = arm_method.get(pid)
            yield OutcomeRow(pid, stimulus, bool(correct), assets.get((stimulus, method)) if method else None)
