"""Build the analysis DataFrames of a study from the database (a selector module: reads only).

Each function runs a fixed number of queries whatever the number of participants (no N+1):
one ``values_list`` over the answers joined to their participant, arm and stimulus.

Frames, in the schema of `stats` (see `stats.learning`, `stats.clustering`, `stats.exclusions`):

- `study_trials`: ``participant, arm, trial_index, correct, response_ms, choice, true_label,
  model_prediction, completed, total_seconds, rejected_reason`` (Study A, one row per answered
  trial; ``participant`` is the opaque participant code, never a Prolific id).
- `study_ratings`: ``participant, arm, rating`` (the 1..5 ``feedback_rating``).
- `study_groupings`: ``participant, arm, stage, dataset, batch, image_id, cluster,
  predicted_class`` (Study B, one row per image placed; ``batch`` is the plan step, so cluster
  numbers of different batches are kept apart).
- `study_batches`: ``participant, arm, trial_index, response_ms, completed, total_seconds,
  rejected_reason`` (Study B, one row per grouped batch, for the exclusion rules: the time
  spent on a batch is its response time).
- `study_confidence`: ``participant, stage, confidence`` (0..6, keys ``confidence:<stage>``, or
  ``confidence:<stage>:<dataset>`` which adds a ``dataset`` column).
- `study_agent_ratings`: ``participant, agent, rating`` (1..7, keys ``agent_rating:<agent>``).
- ``participants`` (of `study_data`): ``participant, arm, status, completed, started_at, finished_at,
  config_hash, n_answers, is_test, stale`` (everyone enrolled, with or without answers; ``stale``:
  an active run idle past ``dropout_minutes``, `studyapp.studies.facts`; ``n_answers`` counts
  trials (learning) or groupings (clustering)).
- ``checks`` (of `study_data`): ``participant, arm, attention_check, completed, total_seconds,
  rejected_reason`` (`stats.analyse.CHECK_COLUMNS`; both designs): one row per judged attention
  check of a participant, or one row with ``attention_check`` None for a participant without a
  judged check (what is judged is `studyapp.studies.facts.check_verdicts`'s: a quiz with tries left
  in an active run is not yet). It feeds the exclusion decision only (`stats.analyse.analyse`'s
  ``checks``), never the learning or clustering analyses.

Per participant, on every frame that has them, the facts of `studyapp.studies.facts` (the wide
export reads the same): ``completed`` is True for a run that reached the end (a completed run,
or one rejected after it completed); ``total_seconds`` is its ``finished_at - started_at``, else
NaN; ``rejected_reason`` is the researcher's reason for a rejection ("(no reason given)" for a
rejected run without one), else "".

Runs that ended ``failed_checks`` or ``timed_out`` (and rejected ones) stay in every frame, with
``completed`` False: whether they are analysed is the exclusion report's decision (e.g. the rule
``incomplete: true`` leaves them out, and a rejection always does). Test runs (``is_test``: staff
previews and pilots) are left out of every frame unless ``include_test=True``.

Answers that are not numbers where numbers are expected are dropped and counted in
``StudyData.problems`` rather than failing the whole page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from stats.analyse import CHECK_COLUMNS
from studyapp.pipeline.models import Stimulus
from studyapp.studies import facts
from studyapp.studies.models import (
    Grouping,
    Participant,
    QuestionAnswer,
    Study,
    TrialAnswer,
)

#: Per-participant columns repeated on each row of the trials and batches frames.
RUN_COLUMNS = ["completed", "total_seconds", "rejected_reason"]
TRIAL_COLUMNS = [
    "participant", "arm", "trial_index", "correct", "response_ms", "choice", "true_label",
    "model_prediction", *RUN_COLUMNS,
]
RATING_COLUMNS = ["participant", "arm", "rating"]
GROUPING_COLUMNS = [
    "participant", "arm", "stage", "dataset", "batch", "image_id", "cluster", "predicted_class",
]
BATCH_COLUMNS = ["participant", "arm", "trial_index", "response_ms", *RUN_COLUMNS]
CONFIDENCE_COLUMNS = ["participant", "stage", "confidence"]
AGENT_COLUMNS = ["participant", "agent", "rating"]
PARTICIPANT_COLUMNS = [
    "participant", "arm", "status", "completed", "started_at", "finished_at", "config_hash",
    "n_answers", "is_test", "stale",
]
NO_REASON = "(no reason given)"

FEEDBACK_RATING_KEY = "feedback_rating"
CONFIDENCE_PREFIX = "confidence:"
AGENT_PREFIX = "agent_rating:"


@dataclass
class StudyData:
    """Everything the analysis page needs, as DataFrames (empty frames keep their columns)."""

    design: str
    trials: pd.DataFrame
    ratings: pd.DataFrame
    participants: pd.DataFrame
    groupings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GROUPING_COLUMNS))
    batches: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BATCH_COLUMNS))
    confidence: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CONFIDENCE_COLUMNS))
    agent_ratings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=AGENT_COLUMNS))
    checks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CHECK_COLUMNS))
    problems: list[str] = field(default_factory=list)
    include_test: bool = False

    @property
    def n_test(self) -> int:
        """Test runs among the participants (0 unless built with ``include_test=True``)."""
        if not len(self.participants):
            return 0
        return int(self.participants["is_test"].sum())


def _frame(rows, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=columns)


def _as_int(value) -> int | None:
    """A question's JSON value as an integer code, or None (bools and fractions are not codes)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


class Run(NamedTuple):
    """What the exclusion rules read of a participant's run as a whole."""

    completed: bool
    total_seconds: float
    rejected_reason: str


def protocol_runs(study: Study, *, include_test: bool = False):
    """What every protocol's frame starts from: the study's runs (test runs only with
    ``include_test``), a queryset, and per run's pk its ``(arm name, plan)`` (1 query)."""
    runs = _people(study, include_test)
    return runs, {pk: (arm, plan or []) for pk, arm, plan in runs.values_list("pk", "arm__name", "plan")}


def model_answers(study: Study) -> dict[int, tuple[int, int]]:
    """Stimulus pk -> (the model's prediction, the true label) of the study's stimuli (1 query)."""
    return {pk: (pred, true) for pk, pred, true in
            Stimulus.objects.filter(study=study).values_list("pk", "model_prediction", "true_label")}


def _people(study: Study, include_test: bool):
    people = Participant.objects.filter(study=study)
    return people if include_test else people.filter(is_test=False)


def _run(status: str, plan, step_index: int, started, finished, reason: str) -> Run:
    seconds = facts.total_seconds(
        status=status, plan=plan, step_index=step_index, started_at=started, finished_at=finished
    )
    reason = (reason or "").strip() or (NO_REASON if status == Participant.Status.REJECTED else "")
    return Run(facts.reached_end(status, plan, step_index), math.nan if seconds is None else seconds, reason)


def _participants_and_checks(
    study: Study, *, include_test: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Run]]:
    """``(participants, checks, runs)`` in one query: every participant joined to their check
    rows (a LEFT JOIN, so participants without checks come once)."""
    answers = Grouping if study.design == Study.Design.CLUSTERING else TrialAnswer
    n_answers = (
        answers.objects.filter(participant=OuterRef("pk"))
        .order_by().values("participant").annotate(n=Count("pk")).values("n")
    )
    rows = (
        _people(study, include_test)
        .annotate(
            n_answers=Coalesce(Subquery(n_answers, output_field=IntegerField()), Value(0)),
            slot=facts.slot_state(study, timezone.now()),
        )
        .order_by("started_at", "pk")
        .values_list(
            "code", "arm__name", "status", "started_at", "finished_at", "config_hash", "n_answers",
            "is_test", "slot", "rejected_reason", "step_index", "plan", facts.VERSION_QUIZ, "checks__kind",
            "checks__step_index", "checks__attempt", "checks__passed",
        )
    )
    people: dict[str, tuple] = {}
    runs: dict[str, Run] = {}
    found: dict[str, list[tuple]] = {}
    quizzes: dict[str, dict | None] = {}
    for code, arm, status, started, finished, h, n, test, slot, reason, step, plan, quiz, *check in rows:
        if code not in people:
            runs[code] = _run(status, plan, step, started, finished, reason)
            people[code] = (
                code, arm, status, runs[code].completed, started, finished, h, n, bool(test), slot == "stale",
            )
            found[code] = []
            quizzes[code] = quiz
        if check[0] is not None:
            found[code].append(tuple(check))
    checks = []
    for code, person in people.items():
        arm, status, run = person[1], person[2], runs[code]
        judged = facts.check_verdicts(found[code], status=status, attempts=facts.attempts_of_quiz(study, quizzes[code]))
        # A run with neither checks nor answers gave no data: it is not a participant of the report.
        for passed in judged or ([None] if person[7] else []):
            checks.append((code, arm, passed, run.completed, run.total_seconds, run.rejected_reason))
    participants = _frame(people.values(), PARTICIPANT_COLUMNS)
    participants["completed"] = participants["completed"].astype(bool)
    participants["is_test"] = participants["is_test"].astype(bool)
    participants["stale"] = participants["stale"].astype(bool)
    check_frame = _frame(checks, CHECK_COLUMNS)
    check_frame["attention_check"] = check_frame["attention_check"].astype(object)
    check_frame["completed"] = check_frame["completed"].astype(bool)
    check_frame["total_seconds"] = check_frame["total_seconds"].astype(float)
    return participants, check_frame, runs


def study_test_runs(*, study: Study) -> int:
    """How many test runs (staff previews and pilots) the study has."""
    return Participant.objects.filter(study=study, is_test=True).count()


def _runs(study: Study, include_test: bool) -> dict[str, Run]:
    return _participants_and_checks(study, include_test=include_test)[2]


def _with_runs(frame: pd.DataFrame, runs: dict[str, Run]) -> pd.DataFrame:
    """Fill the per-participant ``RUN_COLUMNS`` of `frame` from `runs`."""
    empty = Run(False, math.nan, "")
    of = [runs.get(code, empty) for code in frame["participant"]]
    frame["completed"] = pd.Series([r.completed for r in of], index=frame.index, dtype=bool)
    frame["total_seconds"] = pd.Series([r.total_seconds for r in of], index=frame.index, dtype=float)
    frame["rejected_reason"] = pd.Series([r.rejected_reason for r in of], index=frame.index, dtype=object)
    return frame


def _answers_of(model, study: Study, include_test: bool):
    rows = model.objects.filter(participant__study=study)
    return rows if include_test else rows.filter(participant__is_test=False)


def study_trials(
    *, study: Study, include_test: bool = False, runs: dict[str, Run] | None = None
) -> pd.DataFrame:
    """`runs` (from the participants' query) saves a query; without it, one more is made."""
    rows = (
        _answers_of(TrialAnswer, study, include_test)
        .order_by("participant__started_at", "participant_id", "trial_index")
        .values_list(
            "participant__code", "participant__arm__name", "trial_index", "correct", "response_ms",
            "choice", "stimulus__true_label", "stimulus__model_prediction",
        )
    )
    frame = _frame(rows.iterator(chunk_size=5000), TRIAL_COLUMNS[: -len(RUN_COLUMNS)])
    frame = _with_runs(frame, runs if runs is not None else _runs(study, include_test))
    frame["correct"] = frame["correct"].astype(bool)
    for col in ("trial_index", "response_ms", "choice", "true_label", "model_prediction"):
        frame[col] = frame[col].astype("int64")
    return frame


def _question_rows(study: Study, include_test: bool = False, **lookup):
    return (
        _answers_of(QuestionAnswer, study, include_test).filter(**lookup)
        .order_by("participant__started_at", "participant_id", "key")
        .values_list("participant__code", "participant__arm__name", "key", "value")
    )


def study_ratings(
    *, study: Study, problems: list[str] | None = None, include_test: bool = False
) -> pd.DataFrame:
    rows, bad = [], 0
    for code, arm, _, value in _question_rows(study, include_test, key=FEEDBACK_RATING_KEY):
        number = _as_int(value)
        if number is None:
            bad += 1
            continue
        rows.append((code, arm, number))
    if bad and problems is not None:
        problems.append(f"{bad} feedback rating(s) are not whole numbers and were left out.")
    frame = _frame(rows, RATING_COLUMNS)
    frame["rating"] = frame["rating"].astype("int64")
    return frame


def study_groupings(
    *, study: Study, include_test: bool = False, runs: dict[str, Run] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(groupings, batches)``: one row per image placed, and one row per batch."""
    groupings = list(
        _answers_of(Grouping, study, include_test)
        .order_by("participant__started_at", "participant_id", "step_index")
        .values_list(
            "participant__code", "participant__arm__name", "stage",
            "dataset", "step_index", "assignment", "shown_at", "saved_at",
        )
    )
    ids = {int(k) for g in groupings for k in g[5]}
    predicted = dict(
        Stimulus.objects.filter(pk__in=ids).values_list("pk", "model_prediction")
    ) if ids else {}
    rows, batches = [], []
    order: dict[str, int] = {}
    for code, arm, stage, dataset, step, assignment, shown, saved in groupings:
        for image_id, cluster in assignment.items():
            rows.append(
                (code, arm, stage, dataset, step, int(image_id), cluster, predicted.get(int(image_id)))
            )
        index = order.get(code, 0)
        order[code] = index + 1
        batches.append((code, arm, index, max(0, int((saved - shown).total_seconds() * 1000))))
    frame = _frame(rows, GROUPING_COLUMNS)
    batch_frame = _frame(batches, BATCH_COLUMNS[: -len(RUN_COLUMNS)])
    batch_frame = _with_runs(batch_frame, runs if runs is not None else _runs(study, include_test))
    return frame, batch_frame


def study_confidence(
    *, study: Study, problems: list[str] | None = None, include_test: bool = False
) -> pd.DataFrame:
    rows, bad, with_dataset = [], 0, False
    for code, _, key, value in _question_rows(study, include_test, key__startswith=CONFIDENCE_PREFIX):
        number = _as_int(value)
        if number is None:
            bad += 1
            continue
        parts = key[len(CONFIDENCE_PREFIX):].split(":")
        with_dataset = with_dataset or len(parts) > 1
        rows.append((code, parts[0], number, parts[1] if len(parts) > 1 else None))
    if bad and problems is not None:
        problems.append(f"{bad} confidence answer(s) are not whole numbers and were left out.")
    frame = _frame(rows, [*CONFIDENCE_COLUMNS, "dataset"])
    frame["confidence"] = frame["confidence"].astype("int64")
    if not with_dataset:
        frame = frame.drop(columns="dataset")
    return frame


def study_agent_ratings(
    *, study: Study, problems: list[str] | None = None, include_test: bool = False
) -> pd.DataFrame:
    rows, bad = [], 0
    for code, _, key, value in _question_rows(study, include_test, key__startswith=AGENT_PREFIX):
        number = _as_int(value)
        if number is None:
            bad += 1
            continue
        rows.append((code, key[len(AGENT_PREFIX):], number))
    if bad and problems is not None:
        problems.append(f"{bad} agent rating(s) are not whole numbers and were left out.")
    frame = _frame(rows, AGENT_COLUMNS)
    frame["rating"] = frame["rating"].astype("int64")
    return frame


def study_data(*, study: Study, include_test: bool = False) -> StudyData:
    """All frames of `study` (the Study B frames only for the clustering design); test runs
    only with ``include_test=True``."""
    problems: list[str] = []
    participants, checks, runs = _participants_and_checks(study, include_test=include_test)
    data = StudyData(
        design=study.design,
        trials=study_trials(study=study, include_test=include_test, runs=runs),
        ratings=study_ratings(study=study, problems=problems, include_test=include_test),
        participants=participants,
        checks=checks,
        problems=problems,
        include_test=include_test,
    )
    if study.design == Study.Design.CLUSTERING:
        data.groupings, data.batches = study_groupings(study=study, include_test=include_test, runs=runs)
        data.confidence = study_confidence(study=study, problems=problems, include_test=include_test)
        data.agent_ratings = study_agent_ratings(study=study, problems=problems, include_test=include_test)
    return data
