"""The HIVE study's results as `stats.protocols.hive` takes them, and its analysis.

`hive_frame` reads the database into the protocol's long frame (one row per participant × item ×
phase): the agreement items' confidence codes (``hive_agreement_<i>`` `QuestionAnswer` rows, the
item's stimulus and its model correctness read from the run's plan and the stimulus) and the
distinction items' chosen positions (``hive_distinction_<i>``) with the position of the model's
answer's map (where the plan's ``order`` put rank 0). `hive_results` runs
`stats.protocols.hive.analyse` on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from stats.protocols import hive as protocol
from stats.protocols.schema import ARM, ITEM, MODEL_CORRECT, PARTICIPANT, PHASE
from studyapp.analysis.frames import model_answers, protocol_runs
from studyapp.studies.models import Participant, QuestionAnswer, Study
from studyapp.studies.steps.hive import (
    AgreementItem,
    DistinctionItem,
    agreement_key,
    distinction_key,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from django.db.models import QuerySet

    from studyapp.analysis.metrics_people import OutcomeRow

__all__ = ["hive_frame", "hive_results", "metrics_outcomes"]

COLUMNS = [*protocol.COLUMNS, MODEL_CORRECT, protocol.CONFIDENCE, protocol.ANSWER, protocol.MODEL_ANSWER]


def hive_frame(study: Study, *, include_test: bool = False) -> pd.DataFrame:
    """The protocol's frame of ``study`` (test runs only with ``include_test``); 3 queries."""
    runs, plans = protocol_runs(study, include_test=include_test)
    correct = {pk: pred == true for pk, (pred, true) in model_answers(study).items()}
    items: dict[tuple[int, str], tuple[str, dict]] = {}  # (participant, answer key) -> (phase, stored step)
    for pid, (_, plan) in plans.items():
        for i in AgreementItem.positions_in(plan):
            items[(pid, agreement_key(plan[i]["item"]))] = (protocol.AGREEMENT, plan[i])
        for i in DistinctionItem.positions_in(plan):
            items[(pid, distinction_key(plan[i]["item"]))] = (protocol.DISTINCTION, plan[i])
    rows = []
    answers = QuestionAnswer.objects.filter(participant__in=runs, key__startswith="hive_").values_list("participant_id", "key", "value")
    for pid, key, value in answers.order_by("participant_id", "pk"):
        found = items.get((pid, key))
        if found is None:  # the ``_hit`` companion of a distinction answer, or another design's key
            continue
        phase, step = found
        row = {PARTICIPANT: pid, ARM: plans[pid][0], ITEM: step["stimulus"], PHASE: phase, MODEL_CORRECT: None,
               protocol.CONFIDENCE: None, protocol.ANSWER: None, protocol.MODEL_ANSWER: None}
        if phase == protocol.AGREEMENT:
            row |= {MODEL_CORRECT: correct[step["stimulus"]], protocol.CONFIDENCE: value}
        else:
            row |= {MODEL_CORRECT: correct[step["stimulus"]], protocol.ANSWER: value, protocol.MODEL_ANSWER: step["order"].index(0)}
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def hive_results(study: Study, *, include_test: bool = False, level: float = 0.95) -> protocol.HiveResult:
    """Agreement by model correctness and distinction accuracy against chance (1/4), per arm
    (``AnalysisInputError`` when the data cannot give them)."""
    return protocol.analyse(hive_frame(study, include_test=include_test), n_options=4, level=level)


def metrics_outcomes(study: Study, runs: QuerySet[Participant]) -> Iterator[OutcomeRow]:
    """The outcome source of `studyapp.analysis.metrics_people` for this design: each agreement
    answer (the confidence code, 1-4: a rating) with the map of the model's answer it was shown
    (rank 0, pinned in the plan). Distinction answers go with four maps, not one, and are left out;
    the control arm's rows have no map. 2 queries."""
    from studyapp.analysis.metrics_people import OutcomeRow

    shown: dict[tuple[int, str], tuple[int, int | None]] = {}
    for pk, plan in runs.values_list("pk", "plan"):
        for i in AgreementItem.positions_in(plan or []):
            step = plan[i]
            shown[(pk, agreement_key(step["item"]))] = (step["stimulus"], (step.get("assets") or {}).get("0"))
    answers = QuestionAnswer.objects.filter(participant__in=runs, key__startswith="hive_agreement").values_list("participant_id", "key", "value")
    for pid, key, value in answers.order_by("participant_id", "pk"):
        if (pid, key) in shown:
            stimulus, asset = shown[(pid, key)]
            yield OutcomeRow(pid, stimulus, float(value), asset)


metrics_outcomes.outcome = "rating"  # type: ignore[attr-defined]
