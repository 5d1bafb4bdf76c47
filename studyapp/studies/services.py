"""Writes of the participant flow and study lifecycle (HackSoft style: keyword-only, atomic).

Every function that changes a participant's progress locks the participant row (the read that
also checks the browser's binding: ``access.access_run``), checks the step it was asked about
against the step the server holds, and either applies the change or raises a ``FlowError``
having changed nothing. An error about a step carries the participant;
the API's exception handler adds their current state to the response (this module never builds
what the browser gets: that is `state`).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from stats.clustering import purity
from studyapp.studies import plans, selectors, validation, versions
from studyapp.studies.access import BoundRun
from studyapp.studies.errors import (
    AlreadyAnswered,
    InvalidInput,
    NoParticipant,
    StudyFull,
    StudyUnavailable,
    WrongStep,
)
from studyapp.studies.models import (
    Arm,
    Grouping,
    InteractionEvent,
    Participant,
    QuestionAnswer,
    Study,
    TrialAnswer,
)

_rng = secrets.SystemRandom()
MAX_EXTERNAL_ID = 64


# ---------------------------------------------------------------------------------------------
# Study lifecycle
# ---------------------------------------------------------------------------------------------
def study_refresh_config_hash(*, study: Study) -> str:
    study.config_hash = study.compute_config_hash()
    Study.objects.filter(pk=study.pk).update(config_hash=study.config_hash)
    return study.config_hash


def study_open(*, study: Study) -> None:
    problems = selectors.study_readiness(study=study)
    if problems:
        raise StudyUnavailable("Cannot open the study: " + "; ".join(problems))
    study.status = Study.Status.OPEN
    study.config_hash = study.compute_config_hash()
    study.save(update_fields=["status", "config_hash", "updated_at"])


def study_close(*, study: Study) -> None:
    study.status = Study.Status.CLOSED
    study.save(update_fields=["status", "updated_at"])


# ---------------------------------------------------------------------------------------------
# Enrolment and assignment
# ---------------------------------------------------------------------------------------------
def _clean_external_id(value: object, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(gettext("%(field)s must be a string.") % {"field": name})
    value = value.strip()
    if len(value) > MAX_EXTERNAL_ID or not all(c.isalnum() or c in "-_" for c in value):
        raise InvalidInput(
            gettext("%(field)s must be at most %(n)d letters, digits, '-' or '_'.") % {"field": name, "n": MAX_EXTERNAL_ID}
        )
    return value


def arm_choose(*, study: Study, now: datetime) -> Arm:
    """The arm with the fewest completed plus active participants; ties broken at random.

    An unfinished run idle for longer than ``study.dropout_minutes`` no longer holds its slot.
    Arms at their cap are skipped.
    """
    stale_before = now - timedelta(minutes=study.dropout_minutes)
    holding = Q(participants__status=Participant.Status.COMPLETED) | Q(
        participants__status=Participant.Status.ACTIVE, participants__last_seen_at__gte=stale_before
    )
    arms = list(study.arms.annotate(filled=Count("participants", filter=holding)))
    open_arms = [a for a in arms if a.cap is None or a.filled < a.cap]
    if not open_arms:
        raise StudyFull(gettext("This study is full. Thank you for your interest."))
    fewest = min(a.filled for a in open_arms)
    return _rng.choice([a for a in open_arms if a.filled == fewest])


def order_choose(*, study: Study, now: datetime) -> str:
    """Clustering design: the counterbalancing cell (`plans.order_cells`: the order of XNN and
    1-Heatmap crossed with a balanced Latin square of the data sets) with the fewest completed
    plus active participants, the first in the square's sequence on a tie.

    The bookkeeping is `arm_choose`'s: a run idle for longer than ``study.dropout_minutes`` no
    longer holds its cell, so a dropout's cell is filled again.
    """
    filled = selectors.order_fill_counts(study=study, now=now)
    cells = plans.order_cells(study.parsed_config.datasets)
    return min(cells, key=lambda cell: (filled.get(cell, 0), cells.index(cell)))


def participant_enroll(
    *,
    study: Study,
    consent: bool,
    prolific_pid: str | None = None,
    prolific_study_id: str | None = None,
    prolific_session_id: str | None = None,
) -> tuple[Participant, bool]:
    """Enrol a consenting participant, or return the existing run of this PROLIFIC_PID.

    Returns ``(participant, created)``. The same ``prolific_pid`` never gets a second run.
    """
    pid = _clean_external_id(prolific_pid, "PROLIFIC_PID")
    study_id = _clean_external_id(prolific_study_id, "STUDY_ID")
    session_id = _clean_external_id(prolific_session_id, "SESSION_ID")
    if pid:
        existing = Participant.objects.filter(study=study, prolific_pid=pid).first()
        if existing is not None:
            return existing, False
    if study.status != Study.Status.OPEN:
        raise StudyUnavailable(gettext("This study is not open at the moment."))
    if consent is not True:
        raise InvalidInput(gettext("Consent is required to take part."))
    now = timezone.now()
    try:
        with transaction.atomic():
            # Serialise assignment per study so that concurrent entries see each other.
            locked = Study.objects.select_for_update().get(pk=study.pk)
            arm = arm_choose(study=locked, now=now)
            code = secrets.token_urlsafe(16)
            order = order_choose(study=locked, now=now) if locked.design == Study.Design.CLUSTERING else ""
            plan = selectors.study_plan(study=locked, arm=arm, seed=code, order=order or None)
            plan = selectors.pin_assets(study=locked, arm=arm, plan=plan)
            version = versions.current_version(study=locked)
            participant = Participant.objects.create(
                study=locked,
                code=code,
                arm=arm,
                prolific_pid=pid,
                prolific_study_id=study_id,
                prolific_session_id=session_id,
                plan=plan,
                order_cell=order,
                step_index=0,
                step_shown_at=now,
                consent_at=now,
                started_at=now,
                last_seen_at=now,
                config_hash=locked.config_hash or locked.compute_config_hash(),
                version=version,
            )
    except IntegrityError:
        # A concurrent entry with the same PROLIFIC_PID won the race: resume that run.
        if pid:
            return Participant.objects.get(study=study, prolific_pid=pid), False
        raise
    except plans.PlanError as exc:
        raise StudyUnavailable(str(exc)) from exc
    return participant, True


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
#: What a write of the flow acts on: a row read before, a query of runs, or the run a request is
#: bound to (``access.access_run``).
Runs = Participant | QuerySet[Participant] | BoundRun


def _lock(participant: Runs) -> Participant:
    """The participant's row, locked until the transaction ends, with its study and arm: one query.

    ``participant`` is a row read before (read again here by primary key), a query, or the run a
    request may act on (``access.access_run``), so that the access check and the lock are one
    read. Only the participant's row is locked (``of=("self",)``): the study and arm rows are shared
    by every run and are only read. ``NoParticipant`` when there is no such run (any more).
    """
    if isinstance(participant, BoundRun):
        p = participant.read(for_update=True)
    else:
        runs = participant if isinstance(participant, QuerySet) else Participant.objects.filter(pk=participant.pk)
        p = next(iter(runs.select_for_update(of=("self",)).select_related("study", "arm").order_by()[:1]), None)
    if p is None:
        raise NoParticipant()
    return p


def _check_step(p: Participant, step_index: int, kind: str | tuple[str, ...]) -> dict:
    kinds = (kind,) if isinstance(kind, str) else kind
    if step_index != p.step_index:
        raise WrongStep(
            gettext("Step %(step)d is not your current step (%(current)d).") % {"step": step_index, "current": p.step_index},
            participant=p,
        )
    step = p.current_step
    if step["kind"] not in kinds:
        raise WrongStep(gettext("Step %(step)d is a %(kind)s step.") % {"step": step_index, "kind": step["kind"]}, participant=p)
    return step


def _advance(p: Participant, now: datetime, *, only_if: Exists | None = None) -> bool:
    """Move ``p`` (locked) to its next step, in one UPDATE. With ``only_if``, only where that
    condition holds, tested by the same statement; returns whether ``p`` moved."""
    values: dict = {"step_index": min(p.step_index + 1, len(p.plan) - 1), "step_shown_at": now, "last_seen_at": now}
    if p.plan[values["step_index"]]["kind"] == "done" and p.status != Participant.Status.COMPLETED:
        values.update(
            status=Participant.Status.COMPLETED,
            finished_at=now,
            completion_code=p.study.prolific_completion_code or secrets.token_hex(4).upper(),
        )
    rows = Participant.objects.filter(pk=p.pk)
    if only_if is not None:
        rows = rows.filter(only_if)
    if not rows.update(**values):
        return False
    for field, value in values.items():
        setattr(p, field, value)
    return True


def step_continue(*, participant: Runs, step_index: int) -> tuple[Participant, bool]:
    """Leave a step that needs no answer (instructions) or whose answer is saved (a trial's feedback).

    Returns ``(participant, moved)``. Repeating the request for the step just left is harmless:
    nothing changes (``moved`` is False). A trial is left only if its answer is saved: the update
    that moves on tests that itself.
    """
    with transaction.atomic():
        p = _lock(participant)
        if step_index == p.step_index - 1 and p.plan[step_index]["kind"] in ("instructions", "trial"):
            return p, False  # replay of the request that already moved on
        step = _check_step(p, step_index, ("instructions", "trial"))
        answered = None
        if step["kind"] == "trial":
            answered = Exists(TrialAnswer.objects.filter(participant_id=p.pk, trial_index=step["trial"]))
        if not _advance(p, timezone.now(), only_if=answered):
            raise InvalidInput(gettext("Answer this trial before moving on."))
        return p, True


def trial_submit_answer(
    *, participant: Runs, step_index: int, stimulus_id: object, choice: object
) -> TrialAnswer:
    """Save a trial's answer; the feedback (and correct label) is revealed only after this commits.

    An identical repeat of a saved answer returns the saved answer; a different second answer,
    an answer to another step, or a tampered stimulus id is refused and changes nothing. Stored
    exactly once: the participant's lock serialises a run's requests, and the unique constraint
    on (participant, trial) refuses a second row, so an answer to the current trial is inserted
    without looking first (a repeat fails the insert and is then compared with the saved one).
    The returned answer's ``participant`` is the locked row, as the write left it.
    """
    p = None
    try:
        with transaction.atomic():
            p = _lock(participant)
            study = versions.study_of(p)
            if not isinstance(choice, int) or isinstance(choice, bool) or choice not in study.classes:
                raise InvalidInput(gettext("Choose one of the answers."))
            step = p.current_step
            if step_index != p.step_index or step["kind"] != "trial" or stimulus_id != step["stimulus"]:
                existing = _saved_answer(p, step_index)
                if existing is None:
                    _check_step(p, step_index, "trial")
                    raise InvalidInput(gettext("The image does not match the current trial."))
                return _repeated_or_refused(p, existing, stimulus_id=stimulus_id, choice=choice)
            stimulus = selectors.stimulus_facts(study=study, stimulus_id=step["stimulus"])
            correct_label = (
                stimulus.model_prediction
                if study.correct_mode == Study.CorrectMode.PREDICTION
                else stimulus.true_label
            )
            now = timezone.now()
            shown_at = p.step_shown_at or now
            answer = TrialAnswer.objects.create(
                participant=p,
                trial_index=step["trial"],
                stimulus_id=step["stimulus"],
                choice=choice,
                correct_label=correct_label,
                correct=choice == correct_label,
                shown_at=shown_at,
                answered_at=now,
                response_ms=max(0, int((now - shown_at).total_seconds() * 1000)),
            )
            if _seen_long_ago(p, now):
                p.last_seen_at = now
                p.save(update_fields=["last_seen_at"])
            return answer
    except IntegrityError:
        # The trial has an answer already (the transaction rolled back, nothing changed): this is
        # a repeat, or a second, different answer. Any other integrity error is re-raised.
        existing = _saved_answer(p, step_index) if p is not None else None
        if existing is None:
            raise
        return _repeated_or_refused(p, existing, stimulus_id=stimulus_id, choice=choice)


def _saved_answer(p: Participant, step_index: int) -> TrialAnswer | None:
    trial = _trial_of(p, step_index)
    if trial is None:
        return None
    return selectors.trial_answer(participant_id=p.pk, trial_index=trial)


def _repeated_or_refused(p: Participant, existing: TrialAnswer, *, stimulus_id: object, choice: int) -> TrialAnswer:
    """The saved answer if this one repeats it exactly (a double click, a retry), else refused."""
    if existing.choice == choice and existing.stimulus_id == stimulus_id:
        existing.participant = p
        return existing
    raise AlreadyAnswered(gettext("This trial is already answered."), participant=p)


def _trial_of(p: Participant, step_index: int) -> int | None:
    if 0 <= step_index < len(p.plan) and p.plan[step_index]["kind"] == "trial":
        return p.plan[step_index]["trial"]
    return None


def question_submit(*, participant: Runs, step_index: int, answers: object) -> Participant:
    """Save the answers of a questionnaire step (e.g. the 5-level feedback rating) and move on."""
    with transaction.atomic():
        p = _lock(participant)
        if step_index == p.step_index - 1 and _same_answers(p, p.plan[step_index], answers):
            return p
        step = _check_step(p, step_index, ("rating", "questions"))
        cleaned = validation.validate_questions(study=versions.study_of(p), step=step, answers=answers)
        now = timezone.now()
        QuestionAnswer.objects.bulk_create(
            [QuestionAnswer(participant=p, key=k, value=v, answered_at=now) for k, v in cleaned.items()]
        )
        _advance(p, now)
        return p


def _same_answers(p: Participant, step: dict, answers: object) -> bool:
    if not isinstance(answers, dict) or step["kind"] not in ("rating", "questions"):
        return False
    saved = dict(p.questions.values_list("key", "value"))
    return all(saved.get(k) == v for k, v in answers.items()) and bool(answers)


def grouping_submit(*, participant: Runs, step_index: int, assignment: object) -> Grouping:
    """Save a clustering of one batch, with its purity against the model's predictions, and move on.

    An identical repeat is harmless; a grouping for another step, with an image missing or
    an image from elsewhere, is refused and changes nothing. A batch's grouping is saved and its
    step left in one transaction, so only a step already left can have one (the current step is
    not looked up). The returned grouping's ``participant`` is the locked row, as the write left it.
    """
    with transaction.atomic():
        p = _lock(participant)
        if step_index != p.step_index:
            existing = Grouping.objects.filter(participant=p, step_index=step_index).first()
            if existing is not None:
                if isinstance(assignment, dict) and {str(k): v for k, v in assignment.items()} == existing.assignment:
                    existing.participant = p
                    return existing
                raise AlreadyAnswered(gettext("This batch is already grouped."), participant=p)
        step = _check_step(p, step_index, "grouping")
        cleaned = validation.validate_grouping(study=versions.study_of(p), step=step, assignment=assignment)
        predicted = {pk: selectors.stimulus_facts(study=p.study, stimulus_id=pk).model_prediction for pk in cleaned}
        ids = sorted(cleaned)
        now = timezone.now()
        grouping = Grouping.objects.create(
            participant=p,
            step_index=step_index,
            stage=step["stage"],
            dataset=step["dataset"],
            set_index=step["set_index"],
            assignment={str(k): cleaned[k] for k in ids},
            purity=purity([cleaned[k] for k in ids], [predicted[k] for k in ids]),
            shown_at=p.step_shown_at or now,
            saved_at=now,
        )
        _advance(p, now)
        return grouping


def event_log(*, participant: Participant, kind: object, payload: object) -> InteractionEvent:
    if not isinstance(kind, str) or not (1 <= len(kind) <= 40) or not kind.replace("_", "").isalnum():
        raise InvalidInput(gettext("An event needs a short 'kind' of letters, digits and '_'."))
    if payload is None:
        payload = {}
    if not isinstance(payload, dict) or len(str(payload)) > 2000:
        raise InvalidInput(gettext("An event's payload must be an object of at most 2000 characters."))
    return InteractionEvent.objects.create(
        participant=participant, step_index=participant.step_index, kind=kind, payload=payload, at=timezone.now()
    )


TOUCH_EVERY_SECONDS = 15


def _seen_long_ago(p: Participant, now: datetime) -> bool:
    """Whether ``last_seen_at`` is worth a write: "active" vs "stale" is judged in minutes."""
    return not p.last_seen_at or (now - p.last_seen_at).total_seconds() >= TOUCH_EVERY_SECONDS


def participant_touch(*, participant: Participant) -> None:
    """Record that the participant is still here (a read of their state).

    At most every TOUCH_EVERY_SECONDS (as after an answer): skipping the write keeps reads
    read-only, which matters for SQLite's single writer under load.
    """
    now = timezone.now()
    if _seen_long_ago(participant, now):
        Participant.objects.filter(pk=participant.pk).update(last_seen_at=now)
        participant.last_seen_at = now


def participant_withdraw(*, participant: Participant) -> None:
    """Delete the participant and everything they answered (consent withdrawn)."""
    participant.delete()
