"""One typed reader of ``Study.config``: each key has one default and one place that parses it.

``Study.config`` is a JSON object edited in the admin and partly written by the pipeline (the
ids of the models it trained or chose). Code never reads it with ``config.get(key, default)``:
it calls :func:`read_config` and uses the attributes of :class:`StudyConfig`, so that a key's
default and its parsing live here and nowhere else.

Three groups of keys:

- **design** (the researcher's): ``source``, ``notes``, ``trial_question``, ``datasets``, ``spare_stimuli``, ``wrong_share``,
  ``explain_seed``, ``explain_batch``, ``generator_classes``, ``cdeepex``, ``gradcam_target``, ``gradcam_layer``, ``gad``, ``apem_floor``, ``morph_floor``,
  ``apem_ceiling``, ``apem_search``, ``heatmap_method``, ``heatmap_colormap``,
  ``images_per_class``, ``n_sets``, ``set_size``, ``n_xfeatures``, ``max_groups``,
  ``group_rule``, ``n_groups``, ``stage_text``, ``demographics``, ``cub_classes``, ``cel_classes``;
- **participant flow**: ``comprehension`` (the quiz), ``catch_trials``, ``time_limits``, ``exits``
  (per-outcome completion codes and redirects);
- **analysis** (pre-registered): ``exclusions``, ``tests``, ``alpha``, ``sequential`` (the
  stopping rule, typed by :class:`SequentialConfig`). The first three's meaning is checked
  by the statistics package (``stats.exclusions.ExclusionRules`` and the planned tests), which
  is the one parser of their contents; here they are only typed as JSON;
- **pipeline-written**: ``classifier_id``, ``generator_id``, ``models``, ``selection_shortfall``.

Unknown keys are kept (``extra="allow"``) so that an older stored configuration still loads;
:func:`validate_config` is the strict check a form uses on save, and it names the field.
Framework-free on purpose (pydantic only): the pipeline, the studies app and the commands all
import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: The colour maps a study may draw its heatmaps in (``config.heatmap_colormap``); the same names
#: as ``explainers.render.COLORMAPS`` (a test holds them equal; this module does not import torch).
HEATMAP_COLORMAPS: tuple[str, ...] = ("cividis", "viridis", "magma", "inferno", "plasma", "jet")

#: Study B's data sets, in the paper's order (XNN paper §4.1: CUB gulls and CEL cell images).
DEFAULT_DATASETS: tuple[str, ...] = ("CUB", "CEL")


class SequentialConfig(BaseModel):
    """The pre-registered stopping rule (``config.sequential``; see ``stats.sequential``).

    Looks after every ``look_every`` completed participants per arm up to ``max_n_per_arm``;
    Lan–DeMets ``spending`` at ``alpha`` (one-sided for a "greater"/"less" comparison); stop for
    futility at an interim look when z < ``futility_z`` (None: never; non-binding).
    ``statistic``: the planned comparison's Welch test on the totals (the published analysis) or
    the trial-level model's learning-rate contrast.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    comparison: tuple[str, str, Literal["greater", "less", "two-sided"]]
    look_every: int = Field(ge=2)
    max_n_per_arm: int = Field(ge=2)
    spending: Literal["obrien_fleming", "pocock"] = "obrien_fleming"
    alpha: float = Field(0.05, gt=0, lt=1)
    futility_z: float | None = 0.0
    statistic: Literal["welch", "trial"] = "welch"

    @model_validator(mode="after")
    def _looks_fit(self) -> SequentialConfig:
        if self.max_n_per_arm < self.look_every:
            raise ValueError("max_n_per_arm must be at least look_every")
        if self.comparison[0] == self.comparison[1]:
            raise ValueError("the comparison needs two different arms")
        return self


class QuizQuestion(BaseModel):
    """One comprehension question: ``answer`` is the index of the right option."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")
    label: str = Field(min_length=1)
    options: list[str] = Field(min_length=2)
    answer: int = Field(ge=0)

    @model_validator(mode="after")
    def _answer_is_an_option(self) -> QuizQuestion:
        if self.answer >= len(self.options):
            raise ValueError(f"answer {self.answer} is not an option index (0..{len(self.options) - 1})")
        return self


class ComprehensionConfig(BaseModel):
    """The quiz after the instructions (``config.comprehension``): ``attempts`` tries in all; after
    the last failure the run ends at the failed-checks exit (``"exit"``) or goes on flagged
    (``"continue"``: the failed quiz counts as a failed attention check)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    questions: list[QuizQuestion] = Field(min_length=1)
    attempts: int = Field(3, ge=1, le=10)
    on_fail: Literal["exit", "continue"] = "exit"


class CatchItem(BaseModel):
    """An instructed-response item mixed into the trials or batches (``config.catch_trials``),
    after the ``after``-th trial (Study A) or batch (Study B), the same for every arm.

    ``options`` None (Study A only): one of the study's images with the two class names, and
    ``answer`` is the index of the name the prompt asks for; otherwise a question with these
    options (both designs). ``prompt`` may use ``{answer}`` for the option asked for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: int = Field(ge=0)
    prompt: str = ""
    options: list[str] | None = Field(None, min_length=2)
    answer: int = Field(ge=0)

    @model_validator(mode="after")
    def _answer_is_an_option(self) -> CatchItem:
        n = len(self.options) if self.options is not None else 2
        if self.answer >= n:
            raise ValueError(f"answer {self.answer} is not an option index (0..{n - 1})")
        return self


class TimeLimits(BaseModel):
    """Optional limits (``config.time_limits``), enforced by the server: ``total_minutes`` from
    enrolment, ``step_minutes`` per step kind (e.g. ``{"trial": 2, "grouping": 8}``); the page
    warns ``warn_seconds`` before a limit. A run past a limit ends at the timed-out exit.

    WCAG 2.2.1 (Timing Adjustable): the warning offers more time, ``extensions`` times per limit,
    each adding the limit's own length again (the default, 1, doubles it), unless the researcher
    marks the limits ``essential`` (a time limit that is part of what the study measures); each
    run's extensions are stored (``Participant.time_extensions``) and exported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_minutes: float | None = Field(None, gt=0)
    step_minutes: dict[Literal["instructions", "quiz", "trial", "catch", "questions", "grouping", "rating"], float] = Field(
        default_factory=dict
    )
    warn_seconds: int = Field(60, ge=0)
    extensions: int = Field(1, ge=0, le=10, description="times a participant may extend each limit")
    essential: bool = Field(False, description="the limits are essential to the study: never extended")

    @model_validator(mode="after")
    def _positive(self) -> TimeLimits:
        bad = [k for k, v in self.step_minutes.items() if v <= 0]
        if bad:
            raise ValueError(f"step_minutes.{bad[0]} must be greater than 0")
        return self


#: How a run can end; each may have its own completion code and redirect (``config.exits``).
OUTCOMES = ("completed", "no_consent", "full", "failed_checks", "withdrew", "timed_out")


class ExitConfig(BaseModel):
    """Where one outcome sends the participant: a Prolific completion code and/or a redirect URL
    (``{code}`` in it is replaced by the code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field("", max_length=40, pattern=r"^[A-Za-z0-9_-]*$")
    redirect_url: str = Field("", max_length=500, pattern=r"^(https?://\S+)?$")
    text: str = ""


class BiasConfig(BaseModel):
    """``Study.config["bias"]``: the bias protocol's settings.

    ``candidates``: the cues a participant chooses among (neutral words; the planted one among
    them), ``planted``: the index of the planted one; ``cue_box``: the planted region
    ``[x0, y0, x1, y1]`` in image pixels when the researcher declares it (their own classifier),
    else (None) the box the study's classifier was trained with (``metadata["planted_cue"]``);
    ``image_size``: ``[width, height]`` of the images in pixels (None: the data set's);
    ``n_explained``: explained predictions shown; ``n_marks``: images a region is marked on;
    ``cued_share``: the share of the study's stimuli that carry the planted cue, drawn on them when
    they are selected exactly as at training (0, the default: the data set's clean test images, as
    in the dissertation; Sixt et al. showed images with the cue, which a heatmap can point at).
    A declared ``cue_box`` is drawn as a square of grey ``cue_grey``; the classifier's own
    planted cue is drawn with its stored grey.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidates: list[str] = Field(min_length=2)
    planted: int = Field(ge=0)
    cue_box: tuple[int, int, int, int] | None = None
    image_size: tuple[int, int] | None = None
    n_explained: int = Field(6, ge=1)
    n_marks: int = Field(2, ge=1)
    cued_share: float = Field(0.0, ge=0, le=1)
    cue_grey: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _fits(self) -> BiasConfig:
        if self.planted >= len(self.candidates):
            raise ValueError(f"planted must index one of the {len(self.candidates)} candidates")
        if len({c.strip().casefold() for c in self.candidates}) != len(self.candidates) or not all(c.strip() for c in self.candidates):
            raise ValueError("the candidates must be different, non-empty texts")
        if self.cue_box is not None and (self.cue_box[2] <= self.cue_box[0] or self.cue_box[3] <= self.cue_box[1] or min(self.cue_box) < 0):
            raise ValueError("cue_box is x0, y0, x1, y1 with x1 > x0 >= 0 and y1 > y0 >= 0")
        if self.cued_share > 0 and self.cue_box is not None and self.cue_box[2] - self.cue_box[0] != self.cue_box[3] - self.cue_box[1]:
            raise ValueError("cued_share draws the cue_box as a square: cue_box must be one (x1 - x0 == y1 - y0)")
        return self

    @property
    def planted_cue(self) -> str:
        return self.candidates[self.planted]


class StudyConfig(BaseModel):
    """The typed view of one study's configuration (defaults are the published studies')."""

    model_config = ConfigDict(extra="allow", frozen=True)

    source: str = ""
    # Study A (learning): stimulus selection and explanation parameters.
    spare_stimuli: int = Field(4, ge=0, description="stimuli drawn beyond n_trials, in case a gate refuses some")
    # None (the dissertation's "images from the two pre-selected classes"): drawn at random from
    # the test images of each class, so the model's accuracy sets the right/wrong mix; a number
    # balances the draw (that share of each class's images are ones the model gets wrong).
    wrong_share: float | None = Field(
        None, ge=0, le=1, description="share of stimuli the classifier gets wrong; null: drawn at random (the model's own mix)",
    )
    # Where the published design is silent and what was chosen (shown in the admin, the data
    # package's README and the report; templates add where the study came from): the
    # researcher's words, not read by any code.
    notes: str = Field("", description="where the source is silent and what this study chose")
    # The question above each trial's image (Study A); empty: the interface's own, "Which symbol is this?"
    # in the study's language (the published wording). A study on other images words its own.
    # Forward-simulation studies: counterfactual test items per test phase (the last displayed frame of
    # a morph, scored against the model's answer on it; studyapp.studies.designs.simulation). A
    # negative count is refused when a run is drawn, with the study named.
    counterfactual_items: int = Field(0, description="counterfactual test items per test phase (simulation design)")
    trial_question: str = Field("", description="the question shown above a trial's image; empty: 'Which symbol is this?'")
    explain_seed: int = 0
    explain_batch: int = Field(16, ge=1, description="stimuli per explain task")
    # The classes the study's generator (VAE/WGAN) is trained on: "all" of the data set's (the
    # default: the dissertation's generators model the whole input domain, so the inequality
    # constraints of CDeepEx can bind and xGEMs' third-class failure can show), or only the
    # "study"'s two classes. See studyapp.pipeline.training.generator_params.
    generator_classes: Literal["all", "study"] = Field("all", description="classes the generator is trained on")
    cdeepex: dict[str, Any] = Field(default_factory=dict, description="CDeepExConfig overrides")
    gradcam_target: str = Field("prediction", description="recorded in the asset parameters")
    # The layer Grad-CAM reads, by its dotted name in the classifier (e.g. "body.3", "layer4.1");
    # None: the classifier's own (the layer named at registration, MnistNet's conv2) or else the
    # last convolution its forward pass runs (explainers.nets.external.gradcam_view).
    gradcam_layer: str | None = Field(None, min_length=1, description="Grad-CAM layer (dotted name); None: the classifier's own")
    # GAD maps (Study A arm "gad", Study B heatmap_method "gad"): overrides of
    # studyapp.pipeline.params.GAD_DEFAULTS (method, keep, ig_steps, n_train, epochs, lr, alphas).
    gad: dict[str, Any] = Field(default_factory=dict, description="GAD settings overrides")
    # APEM on every heatmap asset (explainers.apem): the validity gate refuses an asset whose
    # APEM (eps_plus - eps_minus) is below apem_floor; None: no floor (the numbers are stored).
    apem_floor: float | None = None
    apem_ceiling: float = Field(1000.0, gt=0, description="largest eps tried (unit steps)")
    apem_search: Literal["scan", "bisect"] = Field("bisect", description="explainers.apem.APEM search")
    # Morphs (CDeepEx, xGEMs): the gate refuses a morph whose last displayed frame differs from
    # the input by less than this mean absolute pixel change (0..1); None: no floor (the size is stored).
    morph_floor: float | None = Field(None, ge=0, le=1, description="smallest mean |pixel change| of a morph's last frame")
    # Study B (clustering).
    datasets: tuple[str, ...] = DEFAULT_DATASETS
    images_per_class: int = Field(50, ge=1)
    n_sets: int = Field(5, ge=1)
    set_size: int = Field(10, ge=1)
    n_xfeatures: int = Field(7, ge=1)
    heatmap_method: Literal["excitation_bp", "deeplift", "gad"] = Field(
        "excitation_bp", description="Study B's 1-Heatmap: ExcitationBP (the paper), DeepLIFT or GAD"
    )
    # The colour map every heatmap asset is drawn in (explainers.render.COLORMAPS); part of the
    # asset parameters, the stimulus manifest and the codebook. New studies: cividis, perceptually
    # ordered and readable with red-green colour-vision deficiency; the published templates set
    # "jet", what the papers showed.
    heatmap_colormap: Literal["cividis", "viridis", "magma", "inferno", "plasma", "jet"] = Field(
        "cividis", description="colour map of the heatmaps (cividis, viridis, magma, inferno, plasma or jet)"
    )
    max_groups: int = Field(10, ge=2, description="group numbers a grouping may use: 0 .. max_groups - 1")
    # How many groups a participant makes of one batch: exactly (the default) or at most
    # ``n_groups``; None: as many as the data set has classes (4 in the paper), counted when the
    # plan is drawn. The rule is stored in each grouping step of the plan.
    # "free": any number from 1 up to the batch size (at most max_groups), and the number is not
    # told (the published design: the paper says nothing of telling it).
    group_rule: Literal["exactly", "at_most", "free"] = "exactly"
    n_groups: int | None = Field(None, ge=2)
    stage_text: dict[str, str] = Field(default_factory=dict)
    # The questions asked first: a list of questions, or the name of a preset in
    # ``studyapp.studies.plans.DEMOGRAPHIC_PRESETS``; None is "age_bands" (the questions of the
    # first version of the site).
    demographics: list[dict[str, Any]] | Literal["xnn_paper", "age_bands"] | None = None
    cub_classes: list[str] | None = None
    cel_classes: list[str] | None = None
    # Analysis: JSON here; their contents are parsed by the statistics package, which reports a
    # malformed rule on the analysis page instead of refusing to show it (see ``analysis()``).
    exclusions: Any = None
    tests: Any = None
    alpha: Any = None
    # The pre-registered sequential stopping rule (None: a fixed-n study). Typed here, so a
    # malformed plan is refused on save; in ``config`` it is part of the configuration hash.
    sequential: SequentialConfig | None = None
    # The participant flow (issue 14): checks, limits and exits, all frozen with the version.
    comprehension: ComprehensionConfig | None = None
    catch_trials: list[CatchItem] = Field(default_factory=list)
    time_limits: TimeLimits | None = None
    exits: dict[Literal["completed", "no_consent", "full", "failed_checks", "withdrew", "timed_out"], ExitConfig] = Field(
        default_factory=dict
    )
    # The bias-discovery design (issue 25, protocol 4): candidate cues, the planted one, its box.
    bias: BiasConfig | None = None
    # Written by the pipeline.
    classifier_id: int | None = None
    generator_id: int | None = None
    models: dict[str, Any] = Field(default_factory=dict)
    selection_shortfall: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _groups_fit_the_batch(self) -> StudyConfig:
        if self.n_groups is not None and self.n_groups > min(self.max_groups, self.set_size):
            raise ValueError(
                f"n_groups ({self.n_groups}) must be at most max_groups ({self.max_groups}) and set_size ({self.set_size})"
            )
        return self

    def analysis(self) -> dict[str, Any]:
        """The pre-registered analysis keys that are set, as stored, for ``stats.analyse``."""
        return {k: getattr(self, k) for k in ANALYSIS_KEYS if k in self.model_fields_set}


ANALYSIS_KEYS = ("tests", "alpha", "exclusions")


class StudyConfigError(ValueError):
    """A configuration that does not parse; the message names the field."""


def _message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "config"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)


def read_config(raw: Mapping[str, Any] | None) -> StudyConfig:
    """Parse a stored configuration (``None`` or ``{}`` gives every default)."""
    try:
        return StudyConfig.model_validate(dict(raw or {}))
    except ValidationError as e:
        raise StudyConfigError(_message(e)) from None


def validate_config(raw: object) -> StudyConfig:
    """The strict check made on save: a JSON object whose keys are all known and whose values
    parse. Raises :class:`StudyConfigError` naming the first bad field(s)."""
    if not isinstance(raw, Mapping):
        raise StudyConfigError("config: must be a JSON object")
    unknown = sorted(set(raw) - set(StudyConfig.model_fields))
    if unknown:
        raise StudyConfigError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(StudyConfig.model_fields))})")
    config = read_config(raw)
    # The statistics package is the one parser of the analysis keys' contents.
    from stats.analyse import settings_from_config
    from stats.exclusions import ExclusionRules

    for key in ANALYSIS_KEYS:
        if key in config.model_fields_set:
            _, problems = settings_from_config({key: raw[key]}, design="", levels=())
            if problems:
                raise StudyConfigError(f"{key}: {problems[0]}")
    if isinstance(config.exclusions, Mapping):
        try:
            ExclusionRules.from_config(config.exclusions)
        except ValueError as e:
            raise StudyConfigError(f"exclusions: {e}") from None
    return config
