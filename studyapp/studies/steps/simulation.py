"""Forward simulation (Hase & Bansal, ACL 2020; Colin et al., NeurIPS 2022): test items on which
the participant predicts the model's answer (no feedback), and learning items that show an image,
the model's answer and the arm's explanation.

A test item is a `Trial` underneath (it shares the trial's answer storage, replay rule and
options): its answer is one `TrialAnswer` row under its own trial index (unique per run), stored
against the model's answer (a simulation study's ``correct_mode`` is ``prediction``), so a row's
``correct`` is "the guess equals the model's answer". Unlike a learning trial, the answer moves the
run on in the same request and the browser is never told whether it was right.

A *counterfactual* test item (``item_kind="counterfactual"``, when the study's config asks for
``counterfactual_items``) shows a changed input whose model answer is known: the last frame of a
stimulus's morph (CDeepEx/xGEMs) as the page displays it (``image``, decoded from the stored
animation and stored as a PNG, see `studyapp.studies.designs.simulation.counterfactual_items`);
``model_answer`` is the classifier's answer on that decoded frame (the worker's gate ran the
classifier on the displayed frames and stored it as the asset's ``top1``). Its answer is stored
against that class, under the source stimulus's id; the browser sees the same state as for any
test item (nothing says that the image was changed, nor how).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from django.utils.translation import gettext

from studyapp.pipeline.storage import animation_ms, media_url
from studyapp.studies import versions
from studyapp.studies.selectors import stimulus_facts
from studyapp.studies.steps.base import Flow, Seen, Step, Submitted, register
from studyapp.studies.steps.trial import (
    HEATMAP_FEEDBACK,
    SilentTrial,
    Trial,
    _name_of,
    answer_options,
    feedback_assets,
    legend_url,
    option_of,
)

if TYPE_CHECKING:
    from studyapp.studies.models import Arm, Study


@register
class SimulationItem(SilentTrial):
    """A test item: the image and the study's class names; "what will the model answer?"."""

    kind: Literal["simulation_test"] = "simulation_test"  # type: ignore[assignment]
    #: ``"pre"`` (before the learning phase) or ``"post"`` (after it)
    phase: Literal["pre", "post"]
    #: ``"forward"`` (an image of the data set) or ``"counterfactual"`` (a morph's last displayed frame)
    item_kind: Literal["forward", "counterfactual"] = "forward"
    #: a counterfactual item: the morph asset, the stored PNG of its last frame, the model's answer on it (class id)
    asset: int | None = None
    image: str | None = None
    model_answer: int | None = None


    def answer_facts(self) -> tuple[str, str, bool]:
        return self.phase, self.item_kind, False  # a test item is answered without an explanation

    def browser_state(self, seen: Seen) -> dict:
        p, study = seen.participant, seen.study
        items = [p.plan[i] for i in SimulationItem.positions_in(p.plan) if p.plan[i].get("phase") == self.phase]
        return {
            "trial": self.trial,
            "phase": self.phase,
            "item": next((i for i, item in enumerate(items) if item.get("trial") == self.trial), 0),
            "n_items": len(items),
            "stimulus": self.stimulus,
            "image_url": media_url(self.image) if self.image else stimulus_facts(study=study, stimulus_id=self.stimulus).image_url,
            "options": answer_options(study),
            "question": gettext("What will the AI system answer?"),  # the study's trial_question is the learning design's
            "answered": False,
        }

    def correct_label_of(self, study: Study) -> int:
        if self.item_kind == "counterfactual" and self.model_answer is not None:
            return self.model_answer
        return super().correct_label_of(study)

    def pin_assets(self, study: Study, arm: Arm) -> dict | None:
        return None  # a test item shows no explanation

    def progress_label(self) -> str:
        return f"{self.phase}-test {self.trial + 1}"


@register
class LearningItem(Step):
    """A learning item: the image, the model's answer and the arm's explanation (as a learning
    trial's feedback shows it); the participant continues. Nothing is answered, nothing stored
    but the move on (the step's ``shown_at`` is the run's)."""

    kind: Literal["simulation_learn"] = "simulation_learn"
    stimulus: int
    #: position among the run's learning items
    item: int = 0
    #: the explanation asset shown, pinned at enrolment: method -> asset id
    assets: dict[str, int] | None = None

    actions = ("continue",)

    def browser_state(self, seen: Seen) -> dict:
        study, arm = seen.study, seen.arm
        facts = stimulus_facts(study=study, stimulus_id=self.stimulus)
        assets = feedback_assets(study=study, stimulus_id=self.stimulus, feedback=arm.feedback, pinned=self.assets)
        colormap = versions.config_of(seen.participant).heatmap_colormap
        return {
            "item": self.item,
            "n_items": LearningItem.count_in(seen.participant.plan),
            "stimulus": self.stimulus,
            "image_url": facts.image_url,
            "model_answer": option_of(study, facts.model_prediction),
            "model_answer_label": _name_of(study, facts.model_prediction),
            "explanation": {
                "kind": arm.feedback,
                "assets": assets,
                **({"legend": legend_url(colormap)} if arm.feedback in HEATMAP_FEEDBACK and assets else {}),
                **({"animation_ms": animation_ms(assets.get("gif") or assets.get("webp", ""))} if "gif" in assets or "webp" in assets else {}),
            },
        }

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        if flow.just_left:
            return Submitted(flow.participant)
        flow.require_current()
        flow.advance()
        return Submitted(flow.participant)

    def pin_assets(self, study: Study, arm: Arm) -> dict | None:
        return Trial(trial=0, stimulus=self.stimulus).pin_assets(study, arm)

    def progress_label(self) -> str:
        return f"learning {self.item + 1}"
