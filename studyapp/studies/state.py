"""What the participant's browser gets: the participant state (what every step has, and what its
step class adds: `studyapp.studies.steps`), and the exits.

The server is the source of truth for where a participant is: every API response, an error's
included, carries ``participant_state`` (the API's exception handler builds it for the errors).
Nothing here may reveal a trial's correct label before that trial's answer is saved, nor a
grouping image's class.
"""

from __future__ import annotations

from django.utils import timezone

from studyapp.studies import endings
from studyapp.studies.models import Participant, Study, TrialAnswer
from studyapp.studies.steps import registry
from studyapp.studies.steps.base import UNKNOWN, Seen
from studyapp.studies.steps.grouping import STAGE_TEXT
from studyapp.studies.versions import arm_of, config_of, study_of

__all__ = ["STAGE_TEXT", "UNKNOWN", "ended_state", "exit_state", "participant_state"]


def participant_state(*, participant: Participant, answer: TrialAnswer | None | object = UNKNOWN) -> dict:
    """The state of ``participant`` (as read or locked, with its study and arm).

    ``answer``: the current trial's saved answer when the caller's write knows it (the answer it
    has just saved, or ``None`` for a step just moved onto); otherwise it is read.
    """
    p = participant
    study = study_of(p)
    step = registry.step_of(p.current_step)
    state: dict = {
        "study": study.public_code,
        "participant": p.code,
        "step": p.step_index,
        "n_steps": len(p.plan),
        "kind": step.kind,
        "design": study.design,
        "progress": {"done": p.step_index, "total": len(p.plan) - 1},
    }
    if p.is_test:
        state["test_run"] = True
    if p.status in Participant.ENDED:
        return {**state, **ended_state(p)}
    if p.status == Participant.Status.ACTIVE and not step.completes_run:
        limit = endings.deadline(p)
        if limit is not None:
            state["time_limit"] = {
                "deadline": limit[0].isoformat(), "scope": limit[1],
                "seconds_left": max(0, round((limit[0] - timezone.now()).total_seconds())),
                "warn_seconds": config_of(p).time_limits.warn_seconds,  # type: ignore[union-attr]
                # WCAG 2.2.1: the warning offers more time while the limit allows another extension.
                "extensions_left": endings.extensions_left(p, limit[1]),
            }
    state.update(step.browser_state(Seen(participant=p, study=study, arm=arm_of(p), answer=answer)))
    return state


def ended_state(p: Participant) -> dict:
    """A run that ended without completing: the exit of its outcome (a rejected run is told
    only that it has ended)."""
    study = study_of(p)
    if p.status == Participant.Status.REJECTED:
        return {"kind": "exit", "exit": {"outcome": "ended", "code": "", "redirect_url": "", "text": ""}}
    outcome = {Participant.Status.FAILED_CHECKS: "failed_checks", Participant.Status.TIMED_OUT: "timed_out"}[p.status]
    return {"kind": "exit", "exit": endings.exit_info(study, outcome, code=p.completion_code)}


def exit_state(study: Study, outcome: str) -> dict:
    """The state of an exit without a run (did not consent, study full, withdrew)."""
    return {"study": study.public_code, "kind": "exit", "exit": endings.exit_info(study, outcome)}
