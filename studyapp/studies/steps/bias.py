"""Bias discovery (the dissertation's biased 8, §3.2.2; Sixt et al., ICLR 2022): after the arm's
explanations of a few of a biased classifier's predictions (the simulation design's learning
items, `studyapp.studies.steps.simulation.LearningItem`), the question "What does the model rely
on?": a **region marked on an image** and, on the last such step, a **choice among candidate
cues** (the study's ``config.bias.candidates``, the planted one among them, in an order the
server fixes per run when it draws the plan).

Answers are `QuestionAnswer` rows (unique per run × key, so stored exactly once):

- ``bias_mark_<item>``: ``"x0,y0,x1,y1"``, the region marked on the step's image (the plan names
  it), in the image's own pixels (x right, y down, x1 and y1 exclusive), checked to lie inside
  the image (a text, so that the wide export's cell is the same in every format);
- ``bias_cue``: the chosen candidate's index in ``config.bias.candidates`` (the browser sends its
  position on the page, as a trial's options are positions; it never sees which one was planted).

The study's ``config.bias`` is typed by ``studyapp.lib.study_config.BiasConfig``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from django.utils.translation import gettext

from studyapp.lib.study_config import BiasConfig
from studyapp.studies import codebook, validation
from studyapp.studies.errors import InvalidInput
from studyapp.studies.selectors import servable_stimuli, stimulus_facts
from studyapp.studies.steps.answers import Answers
from studyapp.studies.steps.base import Seen, register

if TYPE_CHECKING:
    from studyapp.studies.models import Study

MARK_KEY = "bias_mark_{item}"


def parse_box(value: str) -> tuple[int, int, int, int]:
    """A stored mark ``"x0,y0,x1,y1"`` as numbers."""
    x0, y0, x1, y1 = (int(v) for v in str(value).split(","))
    return x0, y0, x1, y1

CUE_KEY = "bias_cue"
#: The grid of cells the keyboard (and a phone) marks a region with, besides drawing it.
GRID = 4


def bias_config(study: Study) -> BiasConfig:
    """The study's ``config.bias`` (``InvalidInput`` when a study of this design has none)."""
    config = study.parsed_config.bias
    if config is None:
        raise InvalidInput("config.bias is not set: the bias design needs its candidate cues (see the bias template)")
    return config


def cued_stimuli(study: Study) -> tuple[list[int], list[int]]:
    """The explained stimuli (ids, the first ``n_explained`` servable ones: every run's) and, of
    all the study's servable stimuli, those that carry the planted cue (``config.bias.cued_share``,
    ``Stimulus.cued``); for the codebook and the analysis, never for the browser. 2 queries per
    study object (kept on it: the codebook asks once per step of every run's plan)."""
    cached = study.__dict__.get("_bias_cued_stimuli")
    if cached is not None:
        return cached
    try:
        n_explained = bias_config(study).n_explained
    except InvalidInput:
        return [], []
    rows = list(servable_stimuli(study=study).values_list("pk", "cued"))
    out = ([pk for pk, _ in rows[:n_explained]], [pk for pk, cued in rows if cued])
    study.__dict__["_bias_cued_stimuli"] = out
    return out


def _cued_note(study: Study, *, explained_too: bool) -> str:
    """What the codebook says of the images that carried the planted cue ("" when none did)."""
    explained, cued = cued_stimuli(study)
    if not cued:
        return ""
    note = f"; the stimuli carrying the planted cue (config.bias.cued_share): {', '.join(map(str, cued))}"
    if explained_too:
        shown = [pk for pk in explained if pk in set(cued)]
        note += (f"; of the explained stimuli ({', '.join(map(str, explained))}) these carried it: "
                 f"{', '.join(map(str, shown)) or 'none'}")
    return note


@register
class BiasMark(Answers):
    """One image; "where on this image does the AI system look?" (a region), and, when
    ``cue_order`` is set, "what does it rely on?" (one of the candidates, in that order)."""

    kind: Literal["bias_mark"] = "bias_mark"
    stimulus: int
    #: position among the run's marks
    item: int = 0
    #: the image's ``[width, height]`` in pixels (fixed when the plan was drawn)
    size: tuple[int, int]
    #: candidates' indices (config order) in the order this run sees them; None: no cue question here
    cue_order: list[int] | None = None

    def browser_state(self, seen: Seen) -> dict:
        study = seen.study
        state: dict = {
            "item": self.item,
            "n_items": BiasMark.count_in(seen.participant.plan),
            "stimulus": self.stimulus,
            "image_url": stimulus_facts(study=study, stimulus_id=self.stimulus).image_url,
            "image_size": list(self.size),
            "grid": GRID,
            "mark_key": self.mark_key,
            "region_question": gettext("Where on this picture does the AI system look to make its decision? Mark that part."),
        }
        if self.cue_order is not None:
            candidates = bias_config(study).candidates
            state["cue_key"] = CUE_KEY
            state["cue_question"] = gettext("What does the AI system rely on?")
            state["cues"] = [{"value": pos, "label": candidates[i]} for pos, i in enumerate(self.cue_order)]
        return state

    @property
    def mark_key(self) -> str:
        return MARK_KEY.format(item=self.item)

    def answer_keys(self) -> list[str]:
        return [self.mark_key] + ([CUE_KEY] if self.cue_order is not None else [])

    def _box(self, value: object) -> list[int]:
        width, height = self.size
        if (not isinstance(value, list) or len(value) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise InvalidInput(gettext("Mark a part of the picture."))
        x0, y0, x1, y1 = value
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise InvalidInput(gettext("The marked part must lie inside the picture."))
        return [x0, y0, x1, y1]

    def _cue(self, value: object) -> int:
        order = self.cue_order or []
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(order):
            raise InvalidInput(gettext("Choose one of the answers."))
        return order[value]

    def clean(self, study: Study, answers: object) -> dict:
        answers = validation.answers_object(answers)
        if set(answers) != set(self.answer_keys()):
            raise InvalidInput(gettext("Answer every question on this page.") if set(answers) < set(self.answer_keys())
                               else gettext("Unexpected question in the answers."))
        out: dict = {self.mark_key: ",".join(map(str, self._box(answers[self.mark_key])))}
        if self.cue_order is not None:
            out[CUE_KEY] = self._cue(answers[CUE_KEY])
        return out

    def stored_keys(self, answers: dict) -> dict:
        """The browser's answers as stored (what a repeat is compared with); nothing for bad ones."""
        try:
            return self.clean(None, answers)  # type: ignore[arg-type] - clean reads nothing of the study
        except InvalidInput:
            return {}

    def codebook_entries(self, study: Study) -> dict[str, codebook.Column]:
        out = {self.mark_key: codebook.Column(
            self.mark_key,
            f"Region marked on bias image {self.item + 1} as where the model looks: x0,y0,x1,y1 in the image's "
            "pixels (x right, y down, x1 and y1 exclusive); the image is the plan's" + _cued_note(study, explained_too=False),
            pattern=r"^\d+,\d+,\d+,\d+$",
        )}
        if self.cue_order is not None:
            try:
                candidates = bias_config(study).candidates
            except InvalidInput:
                candidates = []
            out[CUE_KEY] = codebook.Column(
                CUE_KEY, "Answer to: What does the AI system rely on? (index of the candidate cue in config.bias.candidates; "
                "the order shown was fixed per run)" + _cued_note(study, explained_too=True), type="integer",
                coding=tuple((i, c) for i, c in enumerate(candidates)),
            )
        return out

    def progress_label(self) -> str:
        return f"bias mark {self.item + 1}"
