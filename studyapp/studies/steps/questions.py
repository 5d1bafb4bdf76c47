"""A questionnaire page (demographics, a batch's confidence, the last questions): each question a
choice, a scale or free text. The browser keys the answers by position (``q0``...), since the
stored keys name the design (``confidence:XNN:CUB`` names a stage and a data set)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from studyapp.studies import codebook, validation
from studyapp.studies.steps.answers import Answers
from studyapp.studies.steps.base import Seen, register

if TYPE_CHECKING:
    from studyapp.studies.models import Study


@register
class Questions(Answers):
    kind: Literal["questions"] = "questions"
    key: str
    title: str = ""
    questions: list[dict]

    def browser_state(self, seen: Seen) -> dict:
        return {"key": "questions", "title": self.title, "questions": browser_questions(self.questions)}

    def answer_keys(self) -> list[str]:
        return [self.key] + [q["key"] for q in self.questions]

    def stored_keys(self, answers: dict) -> dict:
        return validation.from_browser_keys(self.questions, answers)

    def clean(self, study: Study, answers: object) -> dict:
        answers = validation.answers_object(answers)
        return validation.validate_question_list(self.questions, self.stored_keys(answers))

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        return {q["key"]: codebook.question_column(q) for q in self.questions}


def browser_questions(questions: list[dict]) -> list[dict]:
    """A questions step as the browser gets it: each question's key is its position (``q0``,
    ``q1``...); `validation.from_browser_keys` maps the positions back."""
    return [{**q, "key": validation.browser_key(i)} for i, q in enumerate(questions)]
