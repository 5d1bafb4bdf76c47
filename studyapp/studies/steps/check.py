"""The checks: the comprehension quiz after the instructions and the catch items (instructed
responses) among the trials or batches. Each try is a `CheckAnswer` (the exclusion rules'
``attention_check``); nothing tells which answer was wrong."""

from __future__ import annotations

from studyapp.studies.models import CheckAnswer
from studyapp.studies.steps.base import Flow, Step, Submitted


class Check(Step):
    """What the quiz and the catch items share: answered through the ``check`` action, each try stored."""

    actions = ("check",)

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        """Answer the check (``answers``: key -> option index); a replay of a check just passed is harmless."""
        p = flow.participant
        if flow.just_left:
            return Submitted(p)
        flow.require_current()
        passed, attempt, cleaned = self.score(flow, payload.get("answers"))
        CheckAnswer.objects.create(
            participant=p, step_index=flow.step_index, kind=self.kind, attempt=attempt, answers=cleaned,
            passed=passed, shown_at=p.step_shown_at or flow.now, answered_at=flow.now,
        )
        if self.stays(flow, passed, attempt):
            return Submitted(p)
        flow.advance()
        return Submitted(p)

    def score(self, flow: Flow, answers: object) -> tuple[bool, int, dict]:
        """``(passed, attempt, cleaned answers)``."""
        raise NotImplementedError

    def stays(self, flow: Flow, passed: bool, attempt: int) -> bool:
        """Whether the run does not move on after this try (it tries again, or it has ended)."""
        return False

