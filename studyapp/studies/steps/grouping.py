"""A clustering batch (XNN paper §4.1): the batch's images in a per-participant shuffled order,
with the stage's heatmaps, grouped by the participant; saved with its purity against the model's
predictions. Nothing here reveals a class: images are identified by stimulus id only."""

from __future__ import annotations

import random
from typing import Literal

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from stats.clustering import purity
from studyapp.pipeline.models import ExplanationAsset
from studyapp.studies import plans, validation, versions
from studyapp.studies.errors import AlreadyAnswered
from studyapp.studies.models import Arm, Study
from studyapp.studies.models import Grouping as GroupingRow
from studyapp.studies.selectors import heatmap_method, stimulus_facts, valid_asset
from studyapp.studies.steps.base import Flow, Seen, Step, Submitted, register
from studyapp.studies.steps.trial import legend_url

#: The stages' default texts, in the study's language (a study's ``stage_text`` replaces them).
STAGE_TEXT = {
    "NoVis": _("Group these images into groups of images that you think belong together."),
    "1-Heatmap": _("The AI agent uses the heatmap of each image to make its decision. Hover over an image "
    "(or use the button) to see its heatmap, then group the images the way you think the agent would."),
    "XNN": _("The AI agent uses a combination of these heatmaps to make its decision. The number above each "
    "heatmap is how much it counts for the decision (red: for, blue: against). Group the images the way you "
    "think the agent would."),
}


def stage_method(study: Study, stage: str) -> str | None:
    """The explanation method a stage shows (None for NoVis)."""
    return {plans.STAGE_HEATMAP: heatmap_method(study), plans.STAGE_XNN: ExplanationAsset.Method.XNN}.get(stage)


@register
class Grouping(Step):
    kind: Literal["grouping"] = "grouping"
    stage: str
    dataset: str
    set_index: int
    stimuli: list[int]
    #: the group rule ``{"rule": "exactly" | "at_most" | "free", "n": k}`` (none in plans drawn before it)
    groups: dict | None = None
    #: the explanation asset each image shows, pinned at enrolment: stimulus id -> asset id
    assets: dict[str, int] | None = None

    actions = ("grouping",)

    def browser_state(self, seen: Seen) -> dict:
        participant, study = seen.participant, versions.study_of(seen.participant)
        stage = self.stage
        pinned = self.assets or {}
        order = list(self.stimuli)
        random.Random(f"{participant.code}:{participant.step_index}").shuffle(order)  # noqa: S311 - seeded for reproducible designs, not secrets
        method = stage_method(study, stage)
        images = []
        for pk in order:
            item: dict = {"id": pk, "url": stimulus_facts(study=study, stimulus_id=pk).image_url}
            asset = valid_asset(study=study, stimulus_id=pk, method=method, pinned=pinned.get(str(pk))) if method else None
            if stage == plans.STAGE_HEATMAP and asset:
                item["heatmap"] = asset.urls["heatmap"]
            elif stage == plans.STAGE_XNN and asset:
                n = len(asset.metrics.get("contributions", []))
                item["xfeatures"] = [
                    {"index": i, "url": asset.urls[f"x{i}"], "contribution": round(asset.metrics["contributions"][i], 3)}
                    for i in range(n)
                ]
            images.append(item)
        return {
            "stage": stage,
            "dataset_position": Grouping.count_in(participant.plan[: participant.step_index]) + 1,
            "n_batches": Grouping.count_in(participant.plan),
            "instruction": str(study.parsed_config.stage_text.get(stage, STAGE_TEXT[stage])),
            **({"legend": legend_url(versions.config_of(participant).heatmap_colormap)} if method else {}),
            "images": images,
            **self._limits(study),
        }

    def _limits(self, study: Study) -> dict:
        """How many groups the board offers and accepts: ``min_groups``, ``max_groups`` and the rule
        in words (`validation.group_rule`; empty for a plan drawn before the rule existed)."""
        rule = validation.group_rule(self.groups)
        if rule is None:
            return {"min_groups": 1, "max_groups": study.parsed_config.max_groups, "group_rule": ""}
        return {"min_groups": rule["n"] if rule["rule"] == "exactly" else 1, "max_groups": rule["n"],
                "group_rule": validation.group_rule_text(rule)}

    def submit(self, flow: Flow, action: str, payload: dict) -> Submitted:
        """Save the batch's grouping, with its purity against the model's predictions, and move on.

        An identical repeat is harmless; a grouping with an image missing or an image from
        elsewhere is refused and changes nothing. A batch's grouping is saved and its step left in
        one transaction, so only a step already left can have one (the current step is not looked up).
        """
        p, assignment = flow.participant, payload.get("assignment")
        if not flow.is_current:
            existing = GroupingRow.objects.filter(participant=p, step_index=flow.step_index).first()
            if existing is not None:
                if isinstance(assignment, dict) and {str(k): v for k, v in assignment.items()} == existing.assignment:
                    return Submitted(p)
                raise AlreadyAnswered(gettext("This batch is already grouped."), participant=p)
        flow.require_current()
        cleaned = validation.validate_grouping(
            study=versions.study_of(p), stimuli=self.stimuli, groups=self.groups, assignment=assignment
        )
        predicted = {pk: stimulus_facts(study=p.study, stimulus_id=pk).model_prediction for pk in cleaned}
        ids = sorted(cleaned)
        now = flow.now
        GroupingRow.objects.create(
            participant=p,
            step_index=flow.step_index,
            stage=self.stage,
            dataset=self.dataset,
            set_index=self.set_index,
            assignment={str(k): cleaned[k] for k in ids},
            purity=purity([cleaned[k] for k in ids], [predicted[k] for k in ids]),
            shown_at=p.step_shown_at or now,
            saved_at=now,
        )
        flow.advance()
        return Submitted(p)

    def pin_assets(self, study: Study, arm: Arm) -> dict | None:
        method = stage_method(study, self.stage)
        if method is None:
            return None
        pinned = {}
        for pk in self.stimuli:
            asset = valid_asset(study=study, stimulus_id=pk, method=method)
            if asset is not None:
                pinned[str(pk)] = asset.pk
        return pinned

    def progress_label(self) -> str:
        return f"{self.kind} {self.stage}/{self.dataset}"
