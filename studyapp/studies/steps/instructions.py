"""The instructions page: the study's numbered steps and, in a learning study, the arm's bullet."""

from __future__ import annotations

from typing import Literal

from studyapp.studies.models import Study
from studyapp.studies.steps.base import UNKNOWN, Flow, Seen, Step, Submitted, register
from studyapp.studies.steps.trial import Trial


@register
class Instructions(Step):
    kind: Literal["instructions"] = "instructions"
    #: clustering design: the run's counterbalancing cell (kept for analysis)
    order: str | None = None

    actions = ("continue",)

    def browser_state(self, seen: Seen) -> dict:
        study = seen.study
        return {
            "cover_story": study.cover_story,
            "instructions": list(study.instructions),
            # A within-subject study's one "arm" describes the design (stages, counterbalancing):
            # only a learning study's arm bullet is for participants.
            "arm_instruction": seen.arm.instruction if study.design != Study.Design.CLUSTERING else "",
            "n_trials": Trial.count_in(seen.participant.plan),
        }

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        """Leave the page; a repeat of the request that left it changes nothing."""
        if flow.just_left:
            return Submitted(flow.participant, answer=UNKNOWN)
        flow.require_current()
        flow.advance()
        return Submitted(flow.participant, answer=None)

