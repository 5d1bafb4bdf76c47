"""AI-assisted decisions (Nguyen et al., NeurIPS 2021; Schemmer et al., IUI 2023): per item, the
participant answers alone, then sees the model's answer with the arm's explanation and answers
again (keep the own answer or switch).

Each half of an item is a step of its own, a `Trial` underneath (the trial's answer storage,
options by position, replay rule and `repeated`): the answer alone is one `TrialAnswer` under
trial index ``2·item``, the final answer one under ``2·item + 1`` (unique per run, so each is
stored exactly once). The server decides which half the participant is on (the run's step): the
advice is part of the second step's state only, which the run reaches only once the first answer
is saved, and the first step never changes after it. A decision study scores against the ground
truth (``correct_mode`` ``truth``); neither step tells the browser whether an answer was right.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from django.utils.translation import gettext

from studyapp.pipeline.storage import animation_ms
from studyapp.studies import codebook, versions
from studyapp.studies.selectors import stimulus_facts, trial_answer
from studyapp.studies.steps.base import Seen, register
from studyapp.studies.steps.trial import (
    HEATMAP_FEEDBACK,
    SilentTrial,
    _name_of,
    answer_options,
    feedback_assets,
    legend_url,
    option_of,
)

if TYPE_CHECKING:
    from studyapp.studies.models import Arm, Study

#: The two halves of an item, as the analysis names them (stats.protocols.reliance's phases).
ALONE, ASSISTED = "alone", "assisted"


def trial_of(item: int, phase: str) -> int:
    """The trial index of an item's answer in ``phase`` (``alone``: 2·item, ``assisted``: 2·item + 1)."""
    return 2 * item + (1 if phase == ASSISTED else 0)


class _DecisionHalf(SilentTrial):
    """What both halves share: the item's position, answered once, moved on in the same request."""

    #: position among the run's decision items (0, 1, ...)
    item: int = 0


    def _common(self, seen: Seen) -> dict:
        study = seen.study
        return {
            "trial": self.trial,
            "item": self.item,
            "n_items": DecisionAlone.count_in(seen.participant.plan),
            "stimulus": self.stimulus,
            "image_url": stimulus_facts(study=study, stimulus_id=self.stimulus).image_url,
            "options": answer_options(study),
            "answered": False,
        }


@register
class DecisionAlone(_DecisionHalf):
    """The first half: the image and the study's class names; the participant answers alone."""

    kind: Literal["decision_alone"] = "decision_alone"  # type: ignore[assignment]

    def answer_facts(self) -> tuple[str, str, bool]:
        return ALONE, "", False  # answered before any advice

    def browser_state(self, seen: Seen) -> dict:
        return {**self._common(seen), "question": seen.study.parsed_config.trial_question or gettext("Which kind is this picture?")}

    def pin_assets(self, study: Study, arm: Arm) -> dict | None:
        return None  # nothing is explained before the participant has answered alone

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        n = self.trial + 1
        return {
            f"correct_{n}": codebook.Column(
                f"correct_{n}", f"Decision item {self.item + 1}, answer alone (trial_index {self.trial}, before the AI's advice): "
                "whether it was the image's true class (blank: not answered).", type="integer", coding=((0, "incorrect"), (1, "correct"))),
            f"rt_ms_{n}": codebook.Column(
                f"rt_ms_{n}", f"Decision item {self.item + 1}, answer alone (trial_index {self.trial}): response time (blank: not answered).",
                type="integer", unit="ms", minimum=0),
        }

    def progress_label(self) -> str:
        return f"decision {self.item + 1} alone"


@register
class DecisionAssisted(_DecisionHalf):
    """The second half: the same image, the participant's own answer, the model's answer and the
    arm's explanation; the participant answers again (keeps the own answer or switches)."""

    kind: Literal["decision_assisted"] = "decision_assisted"  # type: ignore[assignment]

    def answer_facts(self) -> tuple[str, str, bool]:
        return ASSISTED, "", True  # answered with the model's answer and the arm's explanation

    def browser_state(self, seen: Seen) -> dict:
        p, study, arm = seen.participant, seen.study, seen.arm
        facts = stimulus_facts(study=study, stimulus_id=self.stimulus)
        first = trial_answer(participant_id=p.pk, trial_index=trial_of(self.item, ALONE))
        assets = feedback_assets(study=study, stimulus_id=self.stimulus, feedback=arm.feedback, pinned=self.assets)
        colormap = versions.config_of(p).heatmap_colormap
        return {
            **self._common(seen),
            "question": gettext("What is your final answer?"),
            "own_answer": option_of(study, first.choice) if first is not None else None,
            "own_answer_label": _name_of(study, first.choice) if first is not None else "",
            "model_answer": option_of(study, facts.model_prediction),
            "model_answer_label": _name_of(study, facts.model_prediction),
            "explanation": {
                "kind": arm.feedback,
                "assets": assets,
                **({"legend": legend_url(colormap)} if arm.feedback in HEATMAP_FEEDBACK and assets else {}),
                **({"animation_ms": animation_ms(assets.get("gif") or assets.get("webp", ""))} if "gif" in assets or "webp" in assets else {}),
            },
        }

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        n = self.trial + 1
        return {
            f"correct_{n}": codebook.Column(
                f"correct_{n}", f"Decision item {self.item + 1}, final answer (trial_index {self.trial}, after the AI's answer and "
                "the arm's explanation): whether it was the image's true class (blank: not answered).",
                type="integer", coding=((0, "incorrect"), (1, "correct"))),
            f"rt_ms_{n}": codebook.Column(
                f"rt_ms_{n}", f"Decision item {self.item + 1}, final answer (trial_index {self.trial}): response time (blank: not answered).",
                type="integer", unit="ms", minimum=0),
        }

    def progress_label(self) -> str:
        return f"decision {self.item + 1} with advice"
