"""What the steps answered with questions share: the ``questions`` action, the answers stored as
`QuestionAnswer` rows (one per key, a column of the wide export each), the replay rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studyapp.studies import versions
from studyapp.studies.models import QuestionAnswer
from studyapp.studies.steps.base import Flow, ShownTimes, Step, Submitted

if TYPE_CHECKING:
    from datetime import datetime

    from studyapp.studies.models import Participant, Study


class Answers(Step):
    """A step answered with ``{"answers": {key: value}}`` (the questions API action), stored as
    one `QuestionAnswer` per key. Subclasses say which keys they store (`answer_keys`) and how an
    answer is checked (`clean`)."""

    actions = ("questions",)

    def answer_keys(self) -> list[str]:
        """The keys this step's answers are stored under (the wide export's columns)."""
        raise NotImplementedError

    def clean(self, study: Study, answers: object) -> dict:
        """The answers, checked (``InvalidInput`` with a sentence the participant can act on)."""
        raise NotImplementedError

    def stored_keys(self, answers: dict) -> dict:
        """``answers`` keyed by the stored keys (the browser may key them otherwise)."""
        return answers

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        """Save the answers and move on; a repeat of the answers that left the step changes nothing."""
        p, answers = flow.participant, payload.get("answers")
        if flow.just_left and self._same_answers(p, answers):
            return Submitted(p)
        flow.require_current()
        cleaned = self.clean(versions.study_of(p), answers)
        QuestionAnswer.objects.bulk_create(
            [QuestionAnswer(participant=p, key=k, value=v, shown_at=p.step_shown_at, answered_at=flow.now) for k, v in cleaned.items()]
        )
        flow.advance()
        return Submitted(p)

    def _same_answers(self, p: Participant, answers: object) -> bool:
        if not isinstance(answers, dict):
            return False
        answers = self.stored_keys(answers)
        saved = dict(p.questions.values_list("key", "value"))
        return all(saved.get(k) == v for k, v in answers.items()) and bool(answers)

    def shown_at(self, times: ShownTimes, participant: Participant, index: int) -> datetime | None:
        keys = self.answer_keys()
        return next((times.question[(participant.pk, k)] for k in keys if times.question.get((participant.pk, k))), None)
