"""The end of a plan: reaching it completes the run; the page shows the completion text, the
completion code and where to go next."""

from __future__ import annotations

from typing import Literal

from studyapp.studies import endings
from studyapp.studies.steps.base import Seen, Step, register


@register
class Done(Step):
    kind: Literal["done"] = "done"

    completes_run = True

    def browser_state(self, seen: Seen) -> dict:
        study, p = seen.study, seen.participant
        url = study.completion_redirect_url
        if url and "{code}" in url:
            url = url.replace("{code}", p.completion_code)
        return {
            "completion_text": study.completion_text,
            "completion_code": p.completion_code,
            "redirect_url": url,
            "exit": endings.exit_info(study, "completed", code=p.completion_code),
        }

    def shown_at(self, times, participant, index):
        return participant.finished_at
