"""The learning design's last question: the rating of the feedback on the study's scale
(``rating_question``, ``rating_scale``; dissertation Figure 5.9), stored as a number 1..n."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from django.utils.translation import gettext

from studyapp.studies import codebook, validation
from studyapp.studies.errors import InvalidInput
from studyapp.studies.steps.answers import Answers
from studyapp.studies.steps.base import Seen, register

if TYPE_CHECKING:
    from studyapp.studies.models import Study


@register
class Rating(Answers):
    kind: Literal["rating"] = "rating"
    key: str

    def browser_state(self, seen: Seen) -> dict:
        study = seen.study
        return {
            "key": self.key,
            "question": study.rating_question,
            "scale": [{"value": i + 1, "label": label} for i, label in enumerate(study.rating_scale)],
        }

    def answer_keys(self) -> list[str]:
        return [self.key]

    def clean(self, study: Study, answers: object) -> dict:
        answers = validation.answers_object(answers)
        value = answers.get(self.key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= len(study.rating_scale):
            raise InvalidInput(gettext("Pick one of the %(n)d options.") % {"n": len(study.rating_scale)})
        if set(answers) != {self.key}:
            raise InvalidInput(gettext("Unexpected question in the answers."))
        return {self.key: value}

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        if not study.rating_scale:
            return {}
        return {self.key: codebook.Column(
            self.key, f"Answer to: {study.rating_question}", type="integer",
            coding=tuple((i + 1, str(label)) for i, label in enumerate(study.rating_scale)),
        )}
