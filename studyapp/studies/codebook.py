"""The data dictionary of every export: one entry per column, the one source of what a column means.

Each `Column` gives a column's meaning, its type (a Table Schema type: ``string``, ``integer``,
``number``, ``datetime``), its unit, its allowed values and, for the ordinal scales, its coding
(code -> label, lowest first; the Likert codes are those of the analysis schema, `stats.schema`).
It turns itself into a Table Schema field (`Column.field`, for ``datapackage.json``), a schema.org
``PropertyValue`` (`Column.variable`, for Psych-DS ``dataset_description.json``) and checks one
CSV cell (`Column.check`, for the import).

- `ENTRIES`: the fixed columns of each export kind (`studyapp.studies.exports.KINDS`: tidy, wide,
  groupings, events, checks).
- `PATTERNS`: the columns whose names carry a number or a key: the wide export's per-trial
  ``correct_<n>`` and ``rt_ms_<n>`` and the answers to the questions every design asks
  (``feedback_rating``, ``confidence:<stage>[:<dataset>]``, ``agent_rating:<agent>``).
- `study_entries`: what one study adds: its arm names as the allowed values of ``arm``; the
  columns its participants' steps filled (the questions they were asked, each with its options)
  are the steps' own (`studyapp.studies.steps.registry.study_entries`).

`columns` resolves a header and raises `MissingEntry` naming every column without an entry, so a
column added to an export without a dictionary entry fails the data package's test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from stats.schema import AGENT_RATING_LABELS, CONFIDENCE_LABELS, FEEDBACK_RATING_LABELS
from studyapp.lib.study_config import HEATMAP_COLORMAPS
from studyapp.studies.models import Arm, CheckAnswer, Participant, Study

TYPES = ("string", "integer", "number", "datetime")


class MissingEntry(KeyError):
    """Columns of an export that the dictionary has no entry for."""

    def __init__(self, kind: str, names: list[str]):
        self.kind, self.names = kind, list(names)
        super().__init__(f"the {kind} export has column(s) without a dictionary entry: {', '.join(self.names)}")


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    type: str = "string"
    unit: str = ""
    #: allowed values (for ``string``) or codes (for ``integer``); empty = any
    values: tuple = ()
    #: code -> label of an ordinal or coded scale, lowest code first
    coding: tuple[tuple[int, str], ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str = ""
    #: a cell may not be blank
    required: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: type must be one of {TYPES}, not {self.type!r}")

    @property
    def allowed(self) -> tuple:
        return tuple(code for code, _ in self.coding) if self.coding else self.values

    def field(self) -> dict:
        """This column as a Frictionless Table Schema field descriptor."""
        out: dict = {"name": self.name, "type": self.type, "description": self.description}
        if self.unit:
            out["unit"] = self.unit
        if self.coding:
            out["categories"] = [{"value": code, "label": label} for code, label in self.coding]
        constraints: dict = {}
        if self.required:
            constraints["required"] = True
        if self.allowed:
            constraints["enum"] = list(self.allowed)
        if self.minimum is not None:
            constraints["minimum"] = self.minimum
        if self.maximum is not None:
            constraints["maximum"] = self.maximum
        if self.pattern:
            constraints["pattern"] = self.pattern
        if constraints:
            out["constraints"] = constraints
        return out

    def variable(self) -> dict:
        """This column as a schema.org ``PropertyValue`` (Psych-DS ``variableMeasured``)."""
        out: dict = {"@type": "PropertyValue", "name": self.name, "description": self.description,
                     "additionalType": self.type}
        if self.unit:
            out["unitText"] = self.unit
        if self.minimum is not None:
            out["minValue"] = self.minimum
        if self.maximum is not None:
            out["maxValue"] = self.maximum
        if self.coding:
            out["valueReference"] = [{"@type": "PropertyValue", "value": c, "name": label} for c, label in self.coding]
        elif self.values:
            out["valueReference"] = [{"@type": "PropertyValue", "value": v} for v in self.values]
        return out

    def row(self) -> dict:
        """This column as one row of the human-readable dictionary (``codebook.csv``)."""
        return {
            "name": self.name, "type": self.type, "unit": self.unit, "description": self.description,
            "allowed_values": "; ".join(f"{c} = {label}" for c, label in self.coding)
            if self.coding else "; ".join(str(v) for v in self.values),
            "minimum": "" if self.minimum is None else self.minimum,
            "maximum": "" if self.maximum is None else self.maximum,
            "required": int(self.required),
        }

    def check(self, cell: str) -> str | None:
        """What is wrong with one CSV cell (stripped text) for this column, or None."""
        if cell == "":
            return "a value is required" if self.required else None
        value: object = cell
        if self.type in ("integer", "number"):
            try:
                number = float(cell)
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or (self.type == "integer" and not number.is_integer()):
                return "not a whole number" if self.type == "integer" else "not a number"
            if self.minimum is not None and number < self.minimum:
                return f"below the minimum {self.minimum:g}"
            if self.maximum is not None and number > self.maximum:
                return f"above the maximum {self.maximum:g}"
            value = int(number) if self.type == "integer" else number
        elif self.type == "datetime":
            try:
                datetime.fromisoformat(cell)
            except ValueError:
                return "not an ISO 8601 date and time (e.g. 2026-01-31T14:05:00+00:00)"
        elif self.pattern and not re.fullmatch(self.pattern, cell):
            return f"does not match the pattern {self.pattern}"
        if self.allowed and value not in self.allowed:
            shown = ", ".join(f"{c} ({label})" for c, label in self.coding) if self.coding else ", ".join(map(str, self.values))
            return f"not one of the allowed values: {shown}"
        return None


def _coding(scale: Mapping[int, str]) -> tuple[tuple[int, str], ...]:
    return tuple(sorted(scale.items()))


def _entries(*columns: Column) -> dict[str, Column]:
    return {c.name: c for c in columns}


SHA256 = "[0-9a-f]{64}"
_CORRECT = ((0, "incorrect"), (1, "correct"))
_PASSED = ((0, "failed"), (1, "passed"))

# --------------------------------------------------------------------------- shared columns
PARTICIPANT = Column("participant", "The participant's run: an opaque code the site drew at enrolment.", required=True)
PROLIFIC_PID = Column(
    "prolific_pid", "The participant's Prolific id, as kept, hashed (first 16 hex digits of a salted SHA-256, "
    "stable within one deployment) or dropped (blank) by the export's ids setting.",
)
ARM = Column("arm", "The arm (condition) the participant was assigned to.", required=True)
FEEDBACK = Column(
    "feedback", "What the arm shows after each answer: " + "; ".join(f"{v} = {label}" for v, label in Arm.Feedback.choices) + ".",
    values=tuple(Arm.Feedback.values), required=True,
)
CONFIG_HASH = Column(
    "config_hash", "SHA-256 of the study's configuration (design fields and arms) when the participant enrolled.",
    pattern=SHA256,
)
SOFTWARE_VERSION = Column("software_version", "The version of the study software that wrote the export (studyapp.__version__).")
STUDY_VERSION = Column(
    "study_version", "The study version the run was enrolled under, see versions.json (blank for runs enrolled "
    "before versions existed).", type="integer", minimum=1,
)
DATASET_INDEX = Column("dataset_index", "Row of the image in its data set split.", type="integer", minimum=0)
TRUE_LABEL = Column("true_label", "The image's class in the data set (class id).", type="integer", minimum=0)
_COMMON = (PARTICIPANT, PROLIFIC_PID, ARM, CONFIG_HASH, SOFTWARE_VERSION, STUDY_VERSION)


def _time(name: str, what: str, *, required: bool = True) -> Column:
    return Column(name, f"{what} (ISO 8601, UTC).", type="datetime", required=required)


# --------------------------------------------------------------------------- the exports
TIDY = _entries(
    *_COMMON, FEEDBACK, DATASET_INDEX, TRUE_LABEL,
    Column("trial_index", "Position of the trial in the participant's sequence, from 0.", type="integer", minimum=0, required=True),
    Column("phase", "The phase of the answer: learn (a learning trial, its feedback shown after the answer); pre or post "
           "(a forward-simulation test item before or after the learning phase, answered without an explanation); "
           "alone or assisted (an AI-assisted decision item answered alone, then with the model's answer and the arm's "
           "explanation); blank for other designs.", values=("learn", "pre", "post", "alone", "assisted")),
    Column("item_kind", "A forward-simulation test item's kind: forward (an image of the data set) or counterfactual "
           "(the last displayed frame of a morph, whose model answer is the morph's target class); blank otherwise.",
           values=("forward", "counterfactual")),
    Column("stimulus_id", "The stimulus (image) shown; see stimuli.json.", type="integer", minimum=1, required=True),
    Column("model_prediction", "The classifier's predicted class for the image (class id).", type="integer", minimum=0),
    Column("correct_label", "The class counted as correct in this study (the true label or the model's prediction, "
           "by the study's correct mode).", type="integer", minimum=0),
    Column("choice", "The class the participant chose (class id).", type="integer", minimum=0),
    Column("correct", "Whether the choice was the correct label.", type="integer", coding=_CORRECT, required=True),
    Column("response_ms", "Time from showing the trial to the answer.", type="integer", unit="ms", minimum=0),
    _time("shown_at", "When the trial was shown"),
    _time("answered_at", "When the answer was saved"),
    Column("explanation_apem", "APEM faithfulness of the heatmap the arm showed (blank: no heatmap, or not measured).", type="number"),
    Column("explanation_eps_minus", "APEM epsilon-minus of the heatmap shown (blank: no heatmap, or not measured).", type="number"),
    Column("explanation_eps_plus", "APEM epsilon-plus of the heatmap shown (blank: no heatmap, or not measured).", type="number"),
    Column("explanation_asset_id", "The explanation asset the arm showed (blank for the control arm and for answers given "
           "without an explanation, e.g. forward-simulation test items); see stimuli.json.",
           type="integer", minimum=1),
    Column("explanation_content_hash", "SHA-256 of the JSON object {role: sha256 of the file's bytes} over the asset's files.",
           pattern=SHA256),
    Column("explanation_params_hash", "Hash of everything that determined the asset (method, parameters, models)."),
    Column("explanation_colormap", "The colour map the heatmap shown was drawn in (config.heatmap_colormap; blank: no "
           "heatmap).", values=HEATMAP_COLORMAPS),
    Column("classifier_id", "The classifier whose prediction the trial showed; see stimuli.json.", type="integer", minimum=1),
    Column("classifier_checkpoint_sha256", "SHA-256 of the classifier's checkpoint file."),
    Column("generator_id", "The generator of a morph arm's animation (blank for other arms).", type="integer", minimum=1),
    Column("generator_checkpoint_sha256", "SHA-256 of the generator's checkpoint file."),
    Column("dataset_fingerprint", "SHA-256 of the imported data set arrays."),
    Column("client_response_ms", "The browser's own response time, as it reported it (blank: not reported).",
           type="integer", unit="ms", minimum=0),
    Column("cleaned_response_ms", "response_ms less the time the tab was hidden before the answer.",
           type="integer", unit="ms", minimum=0),
    Column("hidden_ms", "Time the tab was hidden on the trial's step.", type="integer", unit="ms", minimum=0),
    Column("feedback_ms", "From the answer saved to the next step shown, by the server's times (blank: the next "
           "step has no answer yet).", type="integer", unit="ms", minimum=0),
    Column("feedback_visible_ms", "feedback_ms less the time the tab was hidden after the answer (blank as feedback_ms).",
           type="integer", unit="ms", minimum=0),
    Column("animation_completed", "Morph arms: whether the page reported the animation's end (blank for other arms).",
           type="integer", coding=((0, "not completed"), (1, "completed"))),
    Column("replays", "How many times the trial's animation was replayed.", type="integer", minimum=0),
)
WIDE = _entries(
    *_COMMON, FEEDBACK,
    Column("prolific_study_id", "The Prolific study id of the link (kept, hashed or dropped like prolific_pid)."),
    Column("prolific_session_id", "The Prolific session id of the link (kept, hashed or dropped like prolific_pid)."),
    Column("status", "Whether the run reached the end: " + "; ".join(f"{v} = {label}" for v, label in Participant.Status.choices) + ".",
           values=tuple(Participant.Status.values), required=True),
    _time("consent_at", "When consent was given", required=False),
    _time("started_at", "When the run was enrolled"),
    _time("finished_at", "When the run was completed (blank: not completed)", required=False),
    Column("n_answered", "Trials answered.", type="integer", minimum=0, required=True),
    Column("n_correct", "Trials answered correctly.", type="integer", minimum=0, required=True),
    Column("is_test", "Whether the run is a staff preview or pilot (left out of exports unless asked for).",
           type="integer", coding=((0, "real run"), (1, "test run"))),
    Column("rejected_reason", "Why the researcher rejected this run (blank: not rejected; the data are kept)."),
    Column("stale", "1: an active run idle for longer than the study's dropout_minutes when exported (it no longer "
           "holds its arm slot), else 0.", type="integer", coding=((0, "not stale"), (1, "stale"))),
    Column("total_seconds", "From enrolment to the end of a run that reached it: completed, or rejected after it "
           "completed (blank: did not reach the end).", type="number", unit="s", minimum=0),
    Column("quiz_attempts", "Tries at the comprehension quiz (blank: no quiz).", type="integer", minimum=0),
    Column("quiz_passed", "1: a try at the comprehension quiz passed; 0: the last allowed try failed, or the run "
           "ended without a pass (blank: no quiz, or an active run with tries left).", type="integer", coding=_PASSED),
    Column("catch_passed", "Catch trials passed (blank: none).", type="integer", minimum=0),
    Column("catch_failed", "Catch trials failed (blank: none).", type="integer", minimum=0),
    Column("attention_check", "0: a failed quiz or catch trial, 1: every judged check passed, blank: none judged "
           "(a quiz with tries left in an active run is not judged yet; the exclusion rules' attention check).",
           type="integer", coding=((0, "failed"), (1, "passed"))),
    Column("time_extensions", "Times the participant asked for more time at a time-limit warning (WCAG 2.2.1; "
           "config.time_limits.extensions allows each limit that many, each adding its length again).",
           type="integer", minimum=0),
)
GROUPINGS = _entries(
    *_COMMON, DATASET_INDEX, TRUE_LABEL,
    Column("batch", "The plan step of the grouping; cluster numbers are local to it.", type="integer", minimum=0, required=True),
    Column("stage", "The stage of the grouping (NoVis, 1-Heatmap, XNN).", required=True),
    Column("dataset", "The data set label of the batch (e.g. CUB, CEL).", required=True),
    Column("set_index", "Which pre-drawn set of images the batch was.", type="integer", minimum=0),
    Column("image_id", "The stimulus (image) placed; see stimuli.json.", type="integer", minimum=1, required=True),
    Column("cluster", "The group the participant put the image in (numbered within the batch).", type="integer", minimum=0, required=True),
    Column("predicted_class", "The classifier's predicted class for the image (class id).", type="integer", minimum=0, required=True),
    Column("batch_purity", "Purity of the participant's grouping of the batch against the predicted classes (0..1).",
           type="number", minimum=0, maximum=1),
    _time("shown_at", "When the batch was shown"),
    _time("saved_at", "When the grouping was saved"),
)
EVENTS = _entries(
    *_COMMON,
    Column("step_index", "The plan step the event happened on, from 0.", type="integer", minimum=0, required=True),
    Column("step_kind", "The kind of that step (instructions, trial, rating, questions, grouping, done)."),
    Column("kind", "What happened (e.g. replay, tab_hidden): letters, digits and '_'.", pattern="[A-Za-z0-9_]{1,40}", required=True),
    Column("payload", "The event's details as a JSON object."),
    _time("at", "When it happened"),
)
CHECKS = _entries(
    *_COMMON,
    Column("step_index", "The plan step of the check, from 0.", type="integer", minimum=0, required=True),
    Column("kind", "The kind of check: " + "; ".join(f"{v} = {label}" for v, label in CheckAnswer.Kind.choices) + ".",
           values=tuple(CheckAnswer.Kind.values), required=True),
    Column("item", "The catch trial's number (blank for the quiz).", type="integer", minimum=0),
    Column("attempt", "The try at this step, from 1.", type="integer", minimum=1, required=True),
    Column("answers", "What was answered, as a JSON object."),
    Column("passed", "Whether the try passed.", type="integer", coding=_PASSED, required=True),
    _time("shown_at", "When the check was shown"),
    _time("answered_at", "When it was answered"),
)
ENTRIES: dict[str, dict[str, Column]] = {
    "tidy": TIDY, "wide": WIDE, "groupings": GROUPINGS, "events": EVENTS, "checks": CHECKS,
}


# --------------------------------------------------------------------------- named columns
def _per_trial(match: re.Match) -> Column:
    n, what = int(match["n"]), match["what"]
    if what == "correct":
        return Column(match[0], f"Whether trial {n} (trial_index {n - 1}) was answered correctly (blank: not answered).",
                      type="integer", coding=_CORRECT)
    return Column(match[0], f"Response time of trial {n} (trial_index {n - 1}) (blank: not answered).",
                  type="integer", unit="ms", minimum=0)


def _rating(match: re.Match) -> Column:
    return Column(match[0], "The rating of the feedback at the end of the learning design (dissertation Figure 5.9).",
                  type="integer", coding=_coding(FEEDBACK_RATING_LABELS))


def _confidence(match: re.Match) -> Column:
    where = f"the {match['stage']} stage" + (f" on {match['dataset']}" if match["dataset"] else "")
    return Column(match[0], f"Confidence in the groups just made, after {where} (XNN paper Figure 5a-b).",
                  type="integer", coding=_coding(CONFIDENCE_LABELS))


def _agent(match: re.Match) -> Column:
    return Column(match[0], f"The rating of the {match['agent']} agent at the end (XNN paper Figure 5c).",
                  type="integer", coding=_coding(AGENT_RATING_LABELS))


_QUESTION_PATTERNS: list[tuple[re.Pattern, Callable[[re.Match], Column]]] = [
    (re.compile(r"feedback_rating"), _rating),
    (re.compile(r"confidence:(?P<stage>[^:]+)(?::(?P<dataset>[^:]+))?"), _confidence),
    (re.compile(r"agent_rating:(?P<agent>[^:]+)"), _agent),
]
PATTERNS: dict[str, list[tuple[re.Pattern, Callable[[re.Match], Column]]]] = {
    "tidy": [], "groupings": [], "events": [], "checks": [],
    "wide": [(re.compile(r"(?P<what>correct|rt_ms)_(?P<n>[1-9][0-9]*)"), _per_trial), *_QUESTION_PATTERNS],
}


def entry(kind: str, name: str, *, extra: Mapping[str, Column] | None = None) -> Column | None:
    """The dictionary entry of column `name` of export `kind` (`extra` first), or None."""
    if kind not in ENTRIES:
        raise ValueError(f"kind must be one of {tuple(ENTRIES)}")
    if extra and name in extra and (name in ENTRIES[kind] or kind == "wide"):
        return extra[name]
    if name in ENTRIES[kind]:
        return ENTRIES[kind][name]
    for pattern, make in PATTERNS[kind]:
        match = pattern.fullmatch(name)
        if match:
            return make(match)
    return None


def columns(kind: str, header: Iterable[str], *, extra: Mapping[str, Column] | None = None) -> list[Column]:
    """The entries of every column of `header`, in order; `MissingEntry` names those without one."""
    found = {name: entry(kind, name, extra=extra) for name in header}
    missing = [name for name, c in found.items() if c is None]
    if missing:
        raise MissingEntry(kind, missing)
    return [c for c in found.values() if c is not None]


# --------------------------------------------------------------------------- one study
def question_column(question: Mapping) -> Column:
    """The entry of one configured question (a ``questions`` step's item: key, type, label, options)."""
    key, label, kind = question["key"], str(question.get("label", "")), question.get("type")
    described = f"Answer to: {label}"
    for pattern, make in _QUESTION_PATTERNS:  # a question the analysis reads: say which, and where
        match = pattern.fullmatch(key)
        if match:
            described = f"{make(match).description} Asked: {label}"
    if kind == "scale":
        first = int(question.get("first_value", 1))
        options = [str(o) for o in question.get("options", [])]
        # ``values``: each option's code in the order shown (the agent rating shows 'Very Good'
        # first, coded 7); the coding is listed by code, lowest first.
        codes = question.get("values") or range(first, first + len(options))
        coding = tuple(sorted(zip((int(c) for c in codes), options, strict=True)))
        return Column(key, described, type="integer", coding=coding)
    if kind == "choice":
        return Column(key, described, values=tuple(str(o) for o in question.get("options", [])))
    return Column(key, f"{described} (free text)")


def study_entries(study: Study) -> dict[str, Column]:
    """What one study adds to the dictionary of itself: its arms and its rating scale (what its
    plans' steps add is theirs: `studyapp.studies.steps.registry.study_entries`)."""
    arms = tuple(study.arms.order_by("position", "pk").values_list("name", flat=True))
    out = {"arm": replace(ARM, values=arms)}
    if study.rating_scale:
        out["feedback_rating"] = Column(
            "feedback_rating", f"Answer to: {study.rating_question}", type="integer",
            coding=tuple((i + 1, str(label)) for i, label in enumerate(study.rating_scale)),
        )
    return out


def dictionary_rows(kind: str, entries: Iterable[Column]) -> list[dict]:
    """The rows of ``codebook.csv`` for one export: ``file`` plus `Column.row`."""
    return [{"file": kind, **c.row()} for c in entries]


CODEBOOK_COLUMNS = ["file", "name", "type", "unit", "description", "allowed_values", "minimum", "maximum", "required"]
