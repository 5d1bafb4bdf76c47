"""A catch item (instructed response) among the trials or batches (``config.catch_trials``)."""

from __future__ import annotations

from typing import Literal

from django.utils.translation import gettext

from studyapp.studies import validation, versions
from studyapp.studies.selectors import stimulus_facts
from studyapp.studies.steps.base import Flow, Seen, register
from studyapp.studies.steps.check import Check


@register
class Catch(Check):
    """A catch item (``config.catch_trials[catch]``), answered once; without options it shows one
    of the study's images (``stimulus``) with the study's names."""

    kind: Literal["catch"] = "catch"
    catch: int
    stimulus: int | None = None

    def browser_state(self, seen: Seen) -> dict:
        """Its prompt and options (with an image of the study for a Study A item)."""
        item = versions.config_of(seen.participant).catch_trials[self.catch]
        options = list(item.options) if item.options is not None else list(seen.study.class_names)
        prompt = item.prompt or gettext("Attention check: please choose “{answer}”.")
        state: dict = {
            "prompt": prompt.replace("{answer}", options[item.answer]),
            "options": [{"value": i, "label": label} for i, label in enumerate(options)],
        }
        if self.stimulus is not None:
            state["image_url"] = stimulus_facts(study=seen.study, stimulus_id=self.stimulus).image_url
        return state

    def score(self, flow: Flow, answers: object) -> tuple[bool, int, dict]:
        p = flow.participant
        item = versions.config_of(p).catch_trials[self.catch]
        cleaned = validation.validate_choices(answers, {"catch": len(item.options or versions.study_of(p).class_names)})
        return cleaned["catch"] == item.answer, 1, cleaned
