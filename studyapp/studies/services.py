"""Writes of the participant flow and study lifecycle (HackSoft style: keyword-only, atomic).

Every function that changes a participant's progress locks the participant row (the read that
also checks the browser's binding: ``access.access_run``), checks the step it was asked about
against the step the server holds, and either applies the change or raises a ``FlowError``
having changed nothing. An error about a step carries the participant;
the API's exception handler adds their current state to the response (this module never builds
what the browser gets: that is `state`).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from functools import wraps

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from studyapp.lib.perf import prepared
from studyapp.lib.perf.prepared import update_one
from studyapp.studies import endings, facts, plans, selectors, versions
from studyapp.studies.designs import flows
from studyapp.studies.errors import (
    InvalidInput,
    NoParticipant,
    RunEnded,
    StudyFull,
    StudyUnavailable,
    TimedOut,
)
from studyapp.studies.models import (
    Arm,
    InteractionEvent,
    Participant,
    Study,
    TrialAnswer,
)
from studyapp.studies.steps import registry
from studyapp.studies.steps.base import Flow, Submitted

logger = logging.getLogger(__name__)
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
    if study.design == Study.Design.HIVE:  # issue 25, protocol 3: the arms and classifier HIVE can use
        from studyapp.studies.designs.hive import hive_problems

        problems += hive_problems(study=study)
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
    holding = facts.holding_slot(study, now, prefix="participants__")  # pilot runs take no slot
    # In the arms' own order: a query with GROUP BY drops Meta.ordering, and a seeded draw (the synthetic
    # participants') must pick the same arm from the same list on every database.
    arms = list(study.arms.annotate(filled=Count("participants", filter=holding)).order_by("position", "pk"))
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
            plan = flows.draw_plan(study=locked, arm=arm, seed=code, order=order or None)
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
                config_hash=version.config_hash,
                version=version,
            )
    except IntegrityError:
        # A concurrent entry with the same PROLIFIC_PID won the race: resume that run.
        if pid:
            return Participant.objects.get(study=study, prolific_pid=pid), False
        raise
    except plans.PlanError as exc:
        # The reason names the study and its data sets: the researcher's log has it, the
        # participant only that the study is not open (nothing in the browser names the data).
        logger.error("Enrolment in study %s refused: %s", study.pk, exc)
        raise StudyUnavailable(gettext("This study is not open at the moment.")) from exc
    return participant, True


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
@prepared.read
def _locked_run(pk: int) -> QuerySet[Participant]:
    return Participant.objects.select_for_update(of=("self",)).select_related("study", "arm").filter(pk=pk).order_by()[:1]


def _lock(participant: Participant | int) -> Participant:
    """The participant's row (``participant``: a row read before, or its primary key, e.g. the
    run a request is bound to, ``access.access_run``), locked until the transaction ends, with its
    study and arm: one query. Only the participant's row is locked (``of=("self",)``): the study
    and arm rows are shared by every run and are only read. ``NoParticipant`` when there is no
    such run (any more).
    """
    rows = _locked_run(participant if isinstance(participant, int) else participant.pk)
    p = rows[0] if rows else None
    if p is None:
        raise NoParticipant()
    if p.status in Participant.ENDED:
        raise RunEnded(gettext("This run has ended."), participant=p)
    if p.status == Participant.Status.ACTIVE and past_time_limit(p, timezone.now()):
        raise TimedOut(gettext("The time for this study is up."), participant=p)
    return p


def past_time_limit(p: Participant, now: datetime) -> bool:
    """Whether an active run is past a limit of ``config.time_limits`` (its version's)."""
    deadline = endings.deadline(p)
    return deadline is not None and now >= deadline[0]


def _ending_timed_out_runs(write):
    """A write that found its run past a time limit (``TimedOut``, raised inside its transaction,
    which rolls back) ends the run as timed out in a transaction of its own, then refuses."""

    @wraps(write)
    def wrapped(*args, **kwargs):
        try:
            return write(*args, **kwargs)
        except TimedOut as exc:
            participant_end(participant=exc.participant, status=Participant.Status.TIMED_OUT)
            raise

    return wrapped


def participant_end(*, participant: Participant, status: str, reason: str = "") -> bool:
    """End an active run without completing it (failed checks, timed out, rejected): it frees its
    arm or order slot and keeps its data. Returns whether the run was active and is now ended.
    A rejection also ends a completed run (``reason`` is kept)."""
    now = timezone.now()
    allowed = [Participant.Status.ACTIVE] + ([Participant.Status.COMPLETED] if status == Participant.Status.REJECTED else [])
    values: dict = {"status": status, "finished_at": participant.finished_at or now}
    if reason:
        values["rejected_reason"] = reason
    exit_code = endings.exit_of(versions.study_of(participant), _OUTCOME_OF.get(status, "")).code
    if exit_code and status != Participant.Status.REJECTED:
        values["completion_code"] = exit_code
    changed = Participant.objects.filter(pk=participant.pk, status__in=allowed).update(**values) > 0
    if changed:
        for field, value in values.items():
            setattr(participant, field, value)
    return changed


_OUTCOME_OF = {Participant.Status.FAILED_CHECKS: "failed_checks", Participant.Status.TIMED_OUT: "timed_out"}


def _advance(p: Participant, now: datetime, *, answered_trial: int | None = None) -> bool:
    """Move ``p`` (locked) to its next step, in one UPDATE. With ``answered_trial``, only if that
    trial's answer is saved, tested by the same statement; returns whether ``p`` moved."""
    values: dict = {"step_index": min(p.step_index + 1, len(p.plan) - 1), "step_shown_at": now, "last_seen_at": now}
    if registry.ends_run(p.plan[values["step_index"]]) and p.status != Participant.Status.COMPLETED:
        values.update(
            status=Participant.Status.COMPLETED,
            finished_at=now,
            completion_code=endings.exit_of(versions.study_of(p), "completed").code or secrets.token_hex(4).upper(),
        )
    answered = None if answered_trial is None else (TrialAnswer, {"participant": p.pk, "trial_index": answered_trial})
    return update_one(p, values, if_exists=answered)


#: The API's actions on a step: each answers the kinds of step whose class lists it in ``actions``.
ACTIONS = ("continue", "answer", "questions", "grouping", "check")


@_ending_timed_out_runs
def step_submit(*, participant: Participant | int, step_index: int, action: str, payload: dict | None = None) -> Submitted:
    """Answer step ``step_index`` of a run with one of `ACTIONS` (``payload``: the request's body).

    Locks the run, finds the step the request names and lets its class validate and store the
    answer and move on (`studyapp.studies.steps`), all in one transaction: a request for a step
    the run is not on, or of another kind than the action's, is refused (``WrongStep``) unless
    the step's replay rule says it repeats what left that step. A write refused by a unique
    constraint (a concurrent repeat: the transaction has rolled back) is the step's to judge
    (`Step.repeated`). Returns what the write left (`Submitted`): the locked run as the write left
    it, and what the response shows.
    """
    p, step = None, None
    payload = payload or {}
    try:
        with transaction.atomic():
            p = _lock(participant)
            step = registry.step_at(p.plan, step_index)
            if step is None or action not in step.actions:
                raise registry.wrong_step(p, step_index)
            return step.submit(_flow(p, step_index), action, payload)
    except IntegrityError:
        repeated = step.repeated(_flow(p, step_index), action, payload) if p is not None and step is not None else None
        if repeated is None:
            raise
        return repeated


def _flow(p: Participant, step_index: int) -> Flow:
    """What a step's answer may write besides its own rows (`Flow`), on the locked run ``p``."""
    now = timezone.now()

    def touch() -> None:
        if _seen_long_ago(p, now):
            p.last_seen_at = now
            p.save(update_fields=["last_seen_at"])

    return Flow(
        participant=p, step_index=step_index, now=now,
        advance=lambda answered_trial=None: _advance(p, now, answered_trial=answered_trial),
        end=lambda status: participant_end(participant=p, status=status),
        touch=touch,
    )


@_ending_timed_out_runs
def time_limit_extend(*, participant: Participant | int) -> Participant:
    """More time (WCAG 2.2.1 Timing Adjustable): extend the limit that ends first, the study's or
    the current step's, by its own length once more, if the configuration allows another
    extension of it (``time_limits.extensions``) and the limits are not marked ``essential``.
    Stored per run (``Participant.time_extensions``). A run already past its limit has timed out."""
    with transaction.atomic():
        p = _lock(participant)
        limit = endings.deadline(p)
        if limit is None:
            raise InvalidInput(gettext("This page has no time limit."))
        scope = limit[1]
        limits = endings.config_of(p).time_limits
        if limits is None or limits.essential:
            raise InvalidInput(gettext("This time limit is part of the study and cannot be extended."))
        if endings.extensions_left(p, scope) <= 0:
            raise InvalidInput(gettext("You have already had all the extra time this study allows."))
        used = dict(p.time_extensions or {})
        if scope == "study":
            used["study"] = int(used.get("study", 0)) + 1
        else:
            steps = dict(used.get("steps") or {})
            steps[str(p.step_index)] = int(steps.get(str(p.step_index), 0)) + 1
            used["steps"] = steps
        p.time_extensions = used
        p.save(update_fields=["time_extensions"])
        return p


def _check_event(kind: object, payload: object) -> None:
    if not isinstance(kind, str) or not (1 <= len(kind) <= 40) or not kind.replace("_", "").isalnum():
        raise InvalidInput(gettext("An event needs a short 'kind' of letters, digits and '_'."))
    if not isinstance(payload, dict) or len(str(payload)) > 2000:
        raise InvalidInput(gettext("An event's payload must be an object of at most 2000 characters."))


def event_log(*, participant: Participant, kind: object, payload: object) -> InteractionEvent:
    if payload is None:
        payload = {}
    _check_event(kind, payload)
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
    if participant.status == Participant.Status.ACTIVE and past_time_limit(participant, now):
        participant_end(participant=participant, status=Participant.Status.TIMED_OUT)  # the server decides
        return
    if _seen_long_ago(participant, now):
        Participant.objects.filter(pk=participant.pk).update(last_seen_at=now)
        participant.last_seen_at = now


def events_log(*, participant: Participant, events: object) -> int:
    """Save a batch of interaction events the page collected (at most 50 per request; each as
    `event_log` checks it, with the step it happened on and the browser's time ``t`` in ms since
    the page loaded). All or nothing: a bad event refuses the batch, having saved none."""
    if not isinstance(events, list) or not 1 <= len(events) <= 50:
        raise InvalidInput(gettext("Send between 1 and 50 events."))
    rows = []
    now = timezone.now()
    for event in events:
        if not isinstance(event, dict):
            raise InvalidInput(gettext("Each event must be an object."))
        kind, payload = event.get("kind"), event.get("payload") or {}
        step = event.get("step", participant.step_index)
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= participant.step_index:
            raise InvalidInput(gettext("An event's step must be a step this run has reached."))
        _check_event(kind, payload)
        if "t" in event:
            if not isinstance(event["t"], int | float) or isinstance(event["t"], bool):
                raise InvalidInput(gettext("An event's time must be a number."))
            payload = {**payload, "t": event["t"]}
        rows.append(InteractionEvent(participant=participant, step_index=step, kind=kind, payload=payload, at=now))
    InteractionEvent.objects.bulk_create(rows)
    return len(rows)


def participant_withdraw(*, participant: Participant) -> None:
    """Delete the participant and everything they answered (consent withdrawn)."""
    participant.delete()


def participant_enroll_pilot(*, study: Study, arm: Arm, order: str = "") -> Participant:
    """A preview or pilot run for staff, in the arm (and, Study B, the order cell) they chose:
    in a draft study too; it takes no arm slot and is left out of analyses and exports."""
    if arm.study_id != study.pk:
        raise InvalidInput("That arm belongs to another study.")
    if study.design == Study.Design.CLUSTERING:
        cells = plans.order_cells(study.parsed_config.datasets)
        order = order or cells[0]
        if order not in cells:
            raise InvalidInput(f"Unknown order cell {order!r}.")
    else:
        order = ""
    now = timezone.now()
    code = secrets.token_urlsafe(16)
    try:
        with transaction.atomic():
            plan = flows.draw_plan(study=study, arm=arm, seed=code, order=order or None)
            version = versions.current_version(study=study)
            return Participant.objects.create(
                study=study, code=code, arm=arm, is_test=True, plan=plan, order_cell=order, step_index=0,
                step_shown_at=now, consent_at=now, started_at=now, last_seen_at=now,
                config_hash=version.config_hash, version=version,
            )
    except plans.PlanError as exc:
        raise StudyUnavailable(str(exc)) from exc


def participant_reject(*, participant: Participant, reason: str) -> bool:
    """The researcher rejects a run (e.g. a bot, a duplicate): its data are kept, it is flagged
    ``rejected`` with the reason, frees its slot and the exclusion report lists it. Deleting is a
    separate action. Returns whether the run was rejected now (not before)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give a reason for the rejection.")
    return participant_end(participant=participant, status=Participant.Status.REJECTED, reason=reason[:2000])


def test_runs_delete(*, study: Study) -> int:
    """Delete every preview or pilot run of ``study`` (with everything they answered)."""
    runs = Participant.objects.filter(study=study, is_test=True)
    n = runs.count()
    runs.delete()
    return n  # the runs, not every row deleted with them (answers, checks, events)
