"""CSV exports a researcher reads: tidy (one row per trial) and wide (one row per participant).

Each row carries the study's configuration hash and the software version. External ids can be
kept, dropped or hashed (salted with the secret key, so hashes are stable within a deployment).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable

from django.conf import settings

import studyapp
from studyapp.studies.models import Participant, QuestionAnswer, Study, TrialAnswer

ID_MODES = ("keep", "drop", "hash")

TIDY_COLUMNS = [
    "participant", "prolific_pid", "arm", "feedback", "trial_index", "stimulus_id", "dataset_index",
    "true_label", "model_prediction", "correct_label", "choice", "correct", "response_ms",
    "shown_at", "answered_at", "config_hash", "software_version",
]


def _external(value: str, mode: str) -> str:
    if mode not in ID_MODES:
        raise ValueError(f"ids must be one of {ID_MODES}")
    if not value or mode == "drop":
        return ""
    if mode == "hash":
        return hashlib.sha256(f"{settings.SECRET_KEY}:{value}".encode()).hexdigest()[:16]
    return value


def tidy_rows(*, study: Study, ids: str = "keep") -> Iterable[dict]:
    answers = (
        TrialAnswer.objects.filter(participant__study=study)
        .select_related("participant", "participant__arm", "stimulus")
        .order_by("participant__started_at", "participant_id", "trial_index")
    )
    for a in answers.iterator(chunk_size=2000):
        p = a.participant
        yield {
            "participant": p.code,
            "prolific_pid": _external(p.prolific_pid, ids),
            "arm": p.arm.name,
            "feedback": p.arm.feedback,
            "trial_index": a.trial_index,
            "stimulus_id": a.stimulus_id,
            "dataset_index": a.stimulus.index,
            "true_label": a.stimulus.true_label,
            "model_prediction": a.stimulus.model_prediction,
            "correct_label": a.correct_label,
            "choice": a.choice,
            "correct": int(a.correct),
            "response_ms": a.response_ms,
            "shown_at": a.shown_at.isoformat(),
            "answered_at": a.answered_at.isoformat(),
            "config_hash": p.config_hash,
            "software_version": studyapp.__version__,
        }


def wide_rows(*, study: Study, ids: str = "keep") -> tuple[list[str], list[dict]]:
    participants = list(
        Participant.objects.filter(study=study).select_related("arm").order_by("started_at", "pk")
    )
    answers: dict[int, dict[int, TrialAnswer]] = {}
    for a in TrialAnswer.objects.filter(participant__study=study):
        answers.setdefault(a.participant_id, {})[a.trial_index] = a
    questions: dict[int, dict[str, object]] = {}
    keys: list[str] = []
    for q in QuestionAnswer.objects.filter(participant__study=study).order_by("pk"):
        questions.setdefault(q.participant_id, {})[q.key] = q.value
        if q.key not in keys:
            keys.append(q.key)
    n_trials = max([study.n_trials] + [max(d) + 1 for d in answers.values() if d])
    columns = [
        "participant", "prolific_pid", "prolific_study_id", "prolific_session_id", "arm", "feedback", "status",
        "consent_at", "started_at", "finished_at", "n_answered", "n_correct", *keys,
    ]
    columns += [f"correct_{i + 1}" for i in range(n_trials)] + [f"rt_ms_{i + 1}" for i in range(n_trials)]
    columns += ["config_hash", "software_version"]
    rows = []
    for p in participants:
        mine = answers.get(p.pk, {})
        row = {
            "participant": p.code,
            "prolific_pid": _external(p.prolific_pid, ids),
            "prolific_study_id": _external(p.prolific_study_id, ids),
            "prolific_session_id": _external(p.prolific_session_id, ids),
            "arm": p.arm.name,
            "feedback": p.arm.feedback,
            "status": p.status,
            "consent_at": p.consent_at.isoformat() if p.consent_at else "",
            "started_at": p.started_at.isoformat(),
            "finished_at": p.finished_at.isoformat() if p.finished_at else "",
            "n_answered": len(mine),
            "n_correct": sum(a.correct for a in mine.values()),
            "config_hash": p.config_hash,
            "software_version": studyapp.__version__,
        }
        row.update({k: questions.get(p.pk, {}).get(k, "") for k in keys})
        for i in range(n_trials):
            a = mine.get(i)
            row[f"correct_{i + 1}"] = "" if a is None else int(a.correct)
            row[f"rt_ms_{i + 1}"] = "" if a is None else a.response_ms
        rows.append(row)
    return columns, rows


def to_csv(columns: list[str], rows: Iterable[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()
