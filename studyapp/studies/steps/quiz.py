"""The comprehension quiz after the instructions (``config.comprehension``)."""

from __future__ import annotations

from typing import Literal

from django.utils.translation import gettext

from studyapp.studies import validation, versions
from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import CheckAnswer, Participant
from studyapp.studies.steps.base import Flow, Seen, register
from studyapp.studies.steps.check import Check


@register
class Quiz(Check):
    """The comprehension quiz: a try that gets every question right moves on; a wrong one is
    stored and the participant tries again, up to ``comprehension.attempts`` tries; after the last
    failure the run ends at the failed-checks exit (``on_fail: "exit"``) or moves on flagged
    (``"continue"``)."""

    kind: Literal["quiz"] = "quiz"

    def browser_state(self, seen: Seen) -> dict:
        """The questions (never their answers), the instructions to read again, and how many tries
        are left; ``retry`` after a wrong try."""
        p = seen.participant
        quiz = versions.config_of(p).comprehension
        if quiz is None:
            return {"questions": [], "attempts_left": 0}
        tries = p.checks.filter(step_index=p.step_index).count()
        return {
            "title": gettext("Check your understanding"),
            "questions": [{"key": q.key, "label": q.label, "options": list(q.options)} for q in quiz.questions],
            "instructions": list(seen.study.instructions),
            "attempts_left": max(0, quiz.attempts - tries),
            "retry": tries > 0,
        }

    def score(self, flow: Flow, answers: object) -> tuple[bool, int, dict]:
        quiz = versions.config_of(flow.participant).comprehension
        if quiz is None:  # a plan drawn with a quiz whose version has none cannot happen; refuse
            raise InvalidInput(gettext("This step has no questions."))
        cleaned = validation.validate_choices(answers, {q.key: len(q.options) for q in quiz.questions})
        passed = all(cleaned[q.key] == q.answer for q in quiz.questions)
        attempt = CheckAnswer.objects.filter(participant=flow.participant, step_index=flow.step_index).count() + 1
        return passed, attempt, cleaned

    def stays(self, flow: Flow, passed: bool, attempt: int) -> bool:
        quiz = versions.config_of(flow.participant).comprehension
        if passed or quiz is None:
            return False
        if attempt < quiz.attempts:
            return True  # try again
        if quiz.on_fail == "exit":
            flow.end(Participant.Status.FAILED_CHECKS)
            return True
        return False

