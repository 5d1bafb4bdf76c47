"""Build the analysis DataFrames of a study from the database (a selector module: reads only).

Each function runs a fixed number of queries whatever the number of participants (no N+1):
one ``values_list`` over the answers joined to their participant, arm and stimulus.

Frames, in the schema of `stats` (see `stats.learning`, `stats.clustering`, `stats.exclusions`):

- `study_trials`: ``participant, arm, trial_index, correct, response_ms, choice, true_label,
  model_prediction, completed`` (Study A, one row per answered trial; ``participant`` is the
  opaque participant code, never a Prolific id).
- `study_ratings`: ``participant, arm, rating`` (the 1..5 ``feedback_rating``).
- `study_groupings`: ``participant, arm, stage, dataset, batch, image_id, cluster,
  predicted_class`` (Study B, one row per image placed; ``batch`` is the plan step, so cluster
  numbers of different batches are kept apart).
- `study_batches`: ``participant, arm, trial_index, response_ms, completed`` (Study B, one row
  per grouped batch, for the exclusion rules: the time spent on a batch is its response time).
- `study_confidence`: ``participant, stage, confidence`` (0..6, keys ``confidence:<stage>``, or
  ``confidence:<stage>:<dataset>`` which adds a ``dataset`` column).
- `study_agent_ratings`: ``participant, agent, rating`` (1..7, keys ``agent_rating:<agent>``).
- `study_participants`: ``participant, arm, status, completed, started_at, finished_at,
  config_hash, n_answers`` (everyone enrolled, with or without answers).

Answers that are not numbers where numbers are expected are dropped and counted in
``StudyData.problems`` rather than failing the whole page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from django.db.models import Count

from studyapp.pipeline.models import Stimulus
from studyapp.studies.models import Grouping, Participant, QuestionAnswer, Study, TrialAnswer

TRIAL_COLUMNS = [
    "participant", "arm", "trial_index", "correct", "response_ms", "choice", "true_label",
    "model_prediction", "completed",
]
RATING_COLUMNS = ["participant", "arm", "rating"]
GROUPING_COLUMNS = [
    "participant", "arm", "stage", "dataset", "batch", "image_id", "cluster", "predicted_class",
]
BATCH_COLUMNS = ["participant", "arm", "trial_index", "response_ms", "completed"]
CONFIDENCE_COLUMNS = ["participant", "stage", "confidence"]
AGENT_COLUMNS = ["participant", "agent", "rating"]
PARTICIPANT_COLUMNS = [
    "participant", "arm", "status", "completed", "started_at", "finished_at", "config_hash",
    "n_answers",
]

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
    problems: list[str] = field(default_factory=list)


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


def study_participants(*, study: Study) -> pd.DataFrame:
    """Everyone enrolled; ``n_answers`` counts trials (learning) or groupings (clustering)."""
    answers = "groupings" if study.design == Study.Design.CLUSTERING else "answers"
    rows = (
        Participant.objects.filter(study=study)
        .annotate(n_answers=Count(answers))
        .order_by("started_at", "pk")
        .values_list(
            "code", "arm__name", "status", "started_at", "finished_at", "config_hash", "n_answers"
        )
    )
    frame = _frame(
        (
            (code, arm, status, status == Participant.Status.COMPLETED, started, finished, h, n)
            for code, arm, status, started, finished, h, n in rows
        ),
        PARTICIPANT_COLUMNS,
    )
    frame["completed"] = frame["completed"].astype(bool)
    return frame


def study_trials(*, study: Study) -> pd.DataFrame:
    rows = (
        TrialAnswer.objects.filter(participant__study=study)
        .order_by("participant__started_at", "participant_id", "trial_index")
        .values_list(
            "participant__code", "participant__arm__name", "trial_index", "correct", "response_ms",
            "choice", "stimulus__true_label", "stimulus__model_prediction", "participant__status",
        )
    )
    frame = _frame(
        (
            (*row[:-1], row[-1] == Participant.Status.COMPLETED)
            for row in rows.iterator(chunk_size=5000)
        ),
        TRIAL_COLUMNS,
    )
    frame["correct"] = frame["correct"].astype(bool)
    frame["completed"] = frame["completed"].astype(bool)
    for col in ("trial_index", "response_ms", "choice", "true_label", "model_prediction"):
        frame[col] = frame[col].astype("int64")
    return frame


def _question_rows(study: Study, **lookup):
    return (
        QuestionAnswer.objects.filter(participant__study=study, **lookup)
        .order_by("participant__started_at", "participant_id", "key")
        .values_list("participant__code", "participant__arm__name", "key", "value")
    )


def study_ratings(*, study: Study, problems: list[str] | None = None) -> pd.DataFrame:
    rows, bad = [], 0
    for code, arm, _, value in _question_rows(study, key=FEEDBACK_RATING_KEY):
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


def study_groupings(*, study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(groupings, batches)``: one row per image placed, and one row per batch."""
    groupings = list(
        Grouping.objects.filter(participant__study=study)
        .order_by("participant__started_at", "participant_id", "step_index")
        .values_list(
            "participant__code", "participant__arm__name", "participant__status", "stage",
            "dataset", "step_index", "assignment", "shown_at", "saved_at",
        )
    )
    ids = {int(k) for g in groupings for k in g[6]}
    predicted = dict(
        Stimulus.objects.filter(pk__in=ids).values_list("pk", "model_prediction")
    ) if ids else {}
    rows, batches = [], []
    order: dict[str, int] = {}
    for code, arm, status, stage, dataset, step, assignment, shown, saved in groupings:
        for image_id, cluster in assignment.items():
            rows.append(
                (code, arm, stage, dataset, step, int(image_id), cluster, predicted.get(int(image_id)))
            )
        index = order.get(code, 0)
        order[code] = index + 1
        batches.append(
            (code, arm, index, max(0, int((saved - shown).total_seconds() * 1000)),
             status == Participant.Status.COMPLETED)
        )
    frame = _frame(rows, GROUPING_COLUMNS)
    batch_frame = _frame(batches, BATCH_COLUMNS)
    batch_frame["completed"] = batch_frame["completed"].astype(bool)
    return frame, batch_frame


def study_confidence(*, study: Study, problems: list[str] | None = None) -> pd.DataFrame:
    rows, bad, with_dataset = [], 0, False
    for code, _, key, value in _question_rows(study, key__startswith=CONFIDENCE_PREFIX):
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


def study_agent_ratings(*, study: Study, problems: list[str] | None = None) -> pd.DataFrame:
    rows, bad = [], 0
    for code, _, key, value in _question_rows(study, key__startswith=AGENT_PREFIX):
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


def study_data(*, study: Study) -> StudyData:
    """All frames of `study` (the Study B frames only for the clustering design)."""
    problems: list[str] = []
    data = StudyData(
        design=study.design,
        trials=study_trials(study=study),
        ratings=study_ratings(study=study, problems=problems),
        participants=study_participants(study=study),
        problems=problems,
    )
    if study.design == Study.Design.CLUSTERING:
        data.groupings, data.batches = study_groupings(study=study)
        data.confidence = study_confidence(study=study, problems=problems)
        data.agent_ratings = study_agent_ratings(study=study, problems=problems)
    return data
