"""HIVE's two tasks (Kim, Meister, Ramaswamy, Fong & Russakovsky, "HIVE: Evaluating the Human
Interpretability of Visual Explanations", ECCV 2022), one step kind each.

- `AgreementItem`: the image, the model's answer (the study's made-up name) and the arm's
  explanation of it; how confident the participant is that the answer is correct, on HIVE's
  4-point scale in HIVE's own words (`confidence_labels`; coded 1-4 as
  `stats.protocols.hive.HIVE_CONFIDENCE`, higher = more confident that it is correct).
- `DistinctionItem`: the image and the explanations of the model's four most probable classes
  side by side, in an order the server fixed at enrolment (``order``: the class rank shown at
  each position), labelled A-D and never named; "Which one is the model's answer?" (HIVE asked
  "Which class do you think the model predicts?" of maps numbered 1-4; the platform never says
  "class" to participants).

Both are answered with the ``questions`` action and stored as `QuestionAnswer` rows (unique per
run × key, so each acknowledged answer is stored exactly once; a repeat of the answer that left
the step changes nothing, anything else is refused): ``hive_agreement_<i>`` = the confidence
code; ``hive_distinction_<i>`` = the chosen position (0-3 = A-D) and ``hive_distinction_<i>_hit``
= 1 if that position shows the model's answer (its rank-0 map), else 0. The browser gets the positions
and the maps' URLs only: which position is the prediction is in the stored plan, never sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from django.utils.translation import gettext

from stats.protocols.hive import HIVE_CONFIDENCE
from studyapp.pipeline.params import HIVE_RANKS
from studyapp.studies import codebook, validation, versions
from studyapp.studies.errors import InvalidInput
from studyapp.studies.selectors import FEEDBACK_METHOD, stimulus_facts, valid_asset
from studyapp.studies.steps.answers import Answers
from studyapp.studies.steps.base import Seen, register
from studyapp.studies.steps.trial import HEATMAP_FEEDBACK, _name_of, legend_url

if TYPE_CHECKING:
    from studyapp.studies.models import Arm, Study

#: The positions of a distinction item, as labelled on the page.
LETTERS = ("A", "B", "C", "D")


def agreement_key(item: int) -> str:
    return f"hive_agreement_{item}"


def distinction_key(item: int) -> str:
    return f"hive_distinction_{item}"


def confidence_labels() -> dict[int, str]:
    """HIVE's 4-point scale, code -> label, verbatim from the study's own agreement page (the HIVE
    repository's ``hit_templates/task_protopnet_agreement.html``: "Q. What do you think about the
    model's prediction?"). The codes are the paper's and `stats.protocols.hive.HIVE_CONFIDENCE`'s
    (4 = fairly confident that it is correct ... 1 = fairly confident that it is incorrect); that
    module's short labels are its own, the analysis reads the codes."""
    return {
        4: gettext("Fairly confident that prediction is correct"),
        3: gettext("Somewhat confident that prediction is correct"),
        2: gettext("Somewhat confident that prediction is incorrect"),
        1: gettext("Fairly confident that prediction is incorrect"),
    }


def confidence_scale() -> list[dict]:
    """The scale as the page shows it, most confident of correct first (as HIVE listed it)."""
    labels = confidence_labels()
    return [{"value": code, "label": labels[code]} for code in sorted(HIVE_CONFIDENCE, reverse=True)]


def _choice(value: object, n: int, message: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
        raise InvalidInput(message)
    return int(value)


def _only(answers: dict, key: str) -> None:
    if set(answers) != {key}:
        raise InvalidInput(gettext("Unexpected question in the answers."))


@register
class AgreementItem(Answers):
    """The image, the model's answer and the arm's explanation; the participant's confidence that
    the answer is correct (1-4). The control arm sees the answer without an explanation."""

    kind: Literal["hive_agreement"] = "hive_agreement"
    item: int
    stimulus: int
    #: the explanation shown (the prediction's map), pinned at enrolment by the design: rank -> asset id
    assets: dict[str, int] | None = None

    def browser_state(self, seen: Seen) -> dict:
        study, arm = seen.study, seen.arm
        facts = stimulus_facts(study=study, stimulus_id=self.stimulus)
        urls = _urls(study, arm, self.stimulus, (self.assets or {}).get("0"))
        return {
            "key": agreement_key(self.item),
            "item": self.item,
            "n_items": AgreementItem.count_in(seen.participant.plan),
            "stimulus": self.stimulus,
            "image_url": facts.image_url,
            "model_answer_label": _name_of(study, facts.model_prediction),
            "explanation": {
                "kind": arm.feedback, "assets": urls,
                **({"legend": legend_url(versions.config_of(seen.participant).heatmap_colormap)} if urls and arm.feedback in HEATMAP_FEEDBACK else {}),
            },
            "question": gettext("What do you think about the model's prediction?"),  # HIVE's wording
            "scale": confidence_scale(),
        }

    def answer_keys(self) -> list[str]:
        return [agreement_key(self.item)]

    def clean(self, study: Study, answers: object) -> dict:
        answers = validation.answers_object(answers)
        key = agreement_key(self.item)
        value = answers.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value not in HIVE_CONFIDENCE:
            raise InvalidInput(gettext("Pick one of the %(n)d options.") % {"n": len(HIVE_CONFIDENCE)})
        _only(answers, key)
        return {key: value}

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        key = agreement_key(self.item)
        return {key: codebook.Column(
            key, f"HIVE agreement item {self.item + 1} (stimulus {self.stimulus}): confidence that the model's answer is correct "
                 "(\"What do you think about the model's prediction?\")",
            type="integer", coding=tuple(sorted(confidence_labels().items())),
        )}

    def progress_label(self) -> str:
        return f"agreement {self.item + 1}"


@register
class DistinctionItem(Answers):
    """The explanations of the model's four most probable classes, in the order the server drew
    (``order[position]`` = the class rank shown there; rank 0 is the model's answer); the
    participant picks the one that explains the model's answer."""

    kind: Literal["hive_distinction"] = "hive_distinction"
    item: int
    stimulus: int
    #: the class rank shown at each position A-D (a permutation of 0..3), drawn at enrolment
    order: list[int]
    #: the four maps, pinned at enrolment by the design: rank (as a string) -> asset id
    assets: dict[str, int] | None = None

    def browser_state(self, seen: Seen) -> dict:
        study, arm = seen.study, seen.arm
        facts = stimulus_facts(study=study, stimulus_id=self.stimulus)
        pinned = self.assets or {}
        options = []
        for position, rank in enumerate(self.order):
            urls = _urls(study, arm, self.stimulus, pinned.get(str(rank)))
            options.append({"value": position, "label": LETTERS[position], "url": next(iter(urls.values()), "")})
        return {
            "key": distinction_key(self.item),
            "item": self.item,
            "n_items": DistinctionItem.count_in(seen.participant.plan),
            "stimulus": self.stimulus,
            "image_url": facts.image_url,
            "options": options,
            "question": gettext("Which one is the model's answer?"),
            **({"legend": legend_url(versions.config_of(seen.participant).heatmap_colormap)} if arm.feedback in HEATMAP_FEEDBACK else {}),
        }

    def answer_keys(self) -> list[str]:
        return [distinction_key(self.item), f"{distinction_key(self.item)}_hit"]

    def clean(self, study: Study, answers: object) -> dict:
        answers = validation.answers_object(answers)
        key = distinction_key(self.item)
        position = _choice(answers.get(key), len(self.order), gettext("Choose one of the %(n)d explanations.") % {"n": len(self.order)})
        _only(answers, key)
        return {key: position, f"{key}_hit": int(self.order[position] == 0)}

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        key = distinction_key(self.item)
        return {
            key: codebook.Column(
                key, f"HIVE distinction item {self.item + 1} (stimulus {self.stimulus}): the position chosen (0-3 = A-D) "
                     f"among the maps of the model's top four classes, shown in order of class rank {self.order}",
                type="integer", coding=tuple(enumerate(LETTERS)),
            ),
            f"{key}_hit": codebook.Column(
                f"{key}_hit", f"HIVE distinction item {self.item + 1}: the chosen map is the model's answer's (chance 1/4)",
                type="integer", coding=((0, "another class's map"), (1, "the model's answer's map")),
            ),
        }

    def progress_label(self) -> str:
        return f"distinction {self.item + 1}"


def _urls(study: Study, arm: Arm, stimulus_id: int, pinned: int | None) -> dict:
    """The files of a pinned map (none for the control arm, or where nothing was pinned)."""
    method = FEEDBACK_METHOD.get(arm.feedback)
    if not method or not pinned:
        return {}
    asset = valid_asset(study=study, stimulus_id=stimulus_id, method=method, pinned=pinned)
    return dict(asset.urls) if asset else {}


__all__ = ["HIVE_RANKS", "LETTERS", "AgreementItem", "DistinctionItem", "agreement_key", "confidence_labels", "confidence_scale", "distinction_key"]
