"""Do the automatic metrics predict people? (issue 25, item 5): a study's answers with the metrics of
the explanation asset behind each, and `stats.protocols.metrics_people`'s item-level model on them.

The long frame has one row per answer that an explanation asset goes with: ``participant``,
``item`` (the stimulus id), ``arm``, ``method`` (the asset's), ``asset``, the outcome (``correct``:
0/1, or a rating) and one column per metric of the asset: every number in its ``metrics`` JSON
(APEM score ``apem``, ``eps_minus``/``eps_plus``, the gate's numbers) and the morph columns
(``morph_size`` = the displayed morph's pixel change, ``morph_latent_distance``), except the numbers
that measure nothing about the explanation (`NOT_METRICS`: class ids, the optimiser's step counts,
flags). Lists (an XNN asset's per-x-feature numbers) are averaged.

The model is fitted **per explanation method** (each method has its own metrics, and a Grad-CAM map
has no morph size) and **one metric at a time** (APEM is ε⁺ − ε⁻ exactly, so a joint model of the
three is not identified; one metric at a time is the question Nguyen et al. asked of each score).
With more than one arm on a method the model adjusts for the arm. A metric missing on any of the
method's answers, or one that does not vary, is dropped with a sentence that says so.

**Which answers, and which asset: the hook a design declares.** A design says which of its answers
are outcomes and which asset each went with by an *outcome source*: a function
``(study, runs) -> Iterable[OutcomeRow]`` (``runs``: the `Participant` queryset to read, test runs
already filtered). The adapter finds it, for ``Study.design == NAME``, as

1. a function registered here with ``@outcome_source(NAME)`` (the learning design's is below), else
2. ``metrics_outcomes`` in the module ``studyapp.analysis.NAME`` (the simulation design's is
   `studyapp.analysis.simulation.metrics_outcomes`): a new protocol writes its own there, next to its analysis, and nothing here changes. Set ``metrics_outcomes.outcome = "rating"``
   on the function when its outcome is a rating rather than correct/incorrect.

A design without a source has no section ("this design declares no outcomes ..."). The built-in sources:

- learning: each trial's answer (correct or not) with the asset its feedback showed (pinned in the
  plan). The explanation follows that answer, so here the model asks whether the items whose
  explanations score higher are the items people get right (item difficulty and the metric go
  together), not whether the explanation helped on that item.
- simulation: each post-test answer (its guess equals the model's answer or not) with the asset the
  participant's arm shows for that image (test items show no explanation, so: the explanation of the
  item under the arm's method). The control arm has none and is left out.
- decision (`studyapp.analysis.decision.metrics_outcomes`): each final answer (correct against the
  true class) with the asset its advice showed; the answers alone went with none.
- hive (`studyapp.analysis.hive.metrics_outcomes`): each agreement answer's confidence (a rating,
  1-4) with the map of the model's answer; distinction answers go with four maps and are left out.
- bias declares none: its outcome (found the cue or not) belongs to a participant, not to one asset.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
from django.db.models import QuerySet
from statsmodels.stats.multitest import multipletests

from stats.protocols import metrics_people as model
from stats.protocols.schema import ARM, ITEM, PARTICIPANT
from stats.schema import AnalysisInputError
from studyapp.pipeline.models import ExplanationAsset
from studyapp.studies.models import Participant, Study, TrialAnswer
from studyapp.studies.selectors import FEEDBACK_METHOD
from studyapp.studies.steps.trial import Trial

__all__ = ["OutcomeRow", "MethodResult", "MetricsPeople", "outcome_source", "metrics_frame", "metrics_people_results",
           "arm_assets", "METRIC_LABELS", "metric_label"]

METHOD = "method"
ASSET = "asset"
#: Readable names of the metrics the pipeline stores (others are shown by their key).
METRIC_LABELS = {
    "apem": "APEM score (ε⁺ − ε⁻)",
    "eps_minus": "ε⁻ (perturbing the relevant pixels)",
    "eps_plus": "ε⁺ (perturbing the irrelevant pixels)",
    "morph_size": "morph size (pixel change)",
    "morph_latent_distance": "morph latent distance",
    "nearest_distance": "distance to the nearest examples (mean of the k shown)",
}
#: Columns of `ExplanationAsset` that are metrics, by their name in the frame.
COLUMN_METRICS = {"morph_size": "morph_pixel_change", "morph_latent_distance": "morph_latent_distance"}
#: Numbers in ``metrics`` that are not metrics of the explanation: class ids (``top1``, ``top2``),
#: the optimiser's bookkeeping, a flag, the gate's copies of the columns above, and data-set rows.
NOT_METRICS = frozenset({
    "top1", "top2", "frames", "steps", "evaluations", "converged", "path_overshoot", "optimiser_llh_gap",
    "apem_at_ceiling", "pixel_change", "latent_distance",
    "nearest_train_index",  # which training images the nearest-examples strip shows: row numbers, not a measure
})


class OutcomeRow(NamedTuple):
    """One answer that an explanation went with: the run's pk, the stimulus id, the outcome
    (bool for correct, a number for a rating) and the asset's pk (None: no explanation)."""

    participant: int
    item: int
    outcome: bool | float
    asset: int | None


OutcomeSource = Callable[[Study, "QuerySet[Participant]"], Iterable[OutcomeRow]]
_SOURCES: dict[str, OutcomeSource] = {}


def outcome_source(design: str) -> Callable[[OutcomeSource], OutcomeSource]:
    """Register ``fn`` as the outcome source of ``Study.design == design`` (see the module docstring)."""

    def register(fn: OutcomeSource) -> OutcomeSource:
        _SOURCES[design] = fn
        return fn

    return register


def source_of(design: str) -> OutcomeSource | None:
    if design in _SOURCES:
        return _SOURCES[design]
    name = f"studyapp.analysis.{design}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module exists but something it imports does not: say so
            raise
        return None
    return getattr(module, "metrics_outcomes", None)


def arm_assets(study: Study) -> dict[tuple[int, str], int]:
    """(stimulus id, method) -> the newest valid asset's pk: what a run of an arm with that method is
    shown for the stimulus when its plan pinned none (as `selectors.valid_asset` picks it). 1 query."""
    out: dict[tuple[int, str], int] = {}
    rows = (ExplanationAsset.objects.filter(stimulus__study=study, valid=True)
            .order_by("-created_at", "-pk").values_list("stimulus_id", "method", "pk"))
    for stimulus, method, pk in rows:
        out.setdefault((stimulus, method), pk)
    return out


def arm_methods(study: Study) -> dict[str, str | None]:
    """Arm name -> the method of the explanation it shows (None: none)."""
    return {name: FEEDBACK_METHOD.get(feedback) for name, feedback in study.arms.values_list("name", "feedback")}


@outcome_source(Study.Design.LEARNING)
def learning_outcomes(study: Study, runs: QuerySet[Participant]) -> Iterable[OutcomeRow]:
    """Each trial's answer with the asset its feedback showed (pinned at enrolment; the arm's newest
    valid asset for a plan that pinned none). 4 queries."""
    pinned: dict[tuple[int, int], int] = {}
    arm_of: dict[int, str | None] = {}
    methods = arm_methods(study)
    for pk, arm, plan in runs.values_list("pk", "arm__name", "plan"):
        arm_of[pk] = methods.get(arm)
        for i in Trial.positions_in(plan or []):
            if plan[i].get("assets"):
                pinned[(pk, plan[i]["trial"])] = sorted(plan[i]["assets"].items())[0][1]
    fallback = arm_assets(study)
    for pid, trial, stimulus, correct in TrialAnswer.objects.filter(participant__in=runs).values_list(
            "participant_id", "trial_index", "stimulus_id", "correct").order_by("participant_id", "trial_index"):
        method = arm_of.get(pid)
        asset = pinned.get((pid, trial)) or (fallback.get((stimulus, method)) if method else None)
        yield OutcomeRow(pid, stimulus, bool(correct), asset)


def _numbers(metrics: dict | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if key in NOT_METRICS:
            continue
        if isinstance(value, list) and value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            out[key] = float(sum(value) / len(value))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


@dataclass(frozen=True)
class MetricsFrame:
    frame: pd.DataFrame
    #: the outcome column's name (``correct`` or ``rating``)
    outcome: str
    #: metric columns of the frame, in order
    metrics: list[str]
    #: answers without an explanation (left out), e.g. the control arm's
    n_unexplained: int


def metrics_frame(study: Study, *, include_test: bool = False) -> MetricsFrame:
    """The long frame (see the module docstring); ``AnalysisInputError`` for a design with no source."""
    source = source_of(study.design)
    if source is None:
        raise AnalysisInputError(f"the {study.design} design declares no outcomes that an explanation goes with")
    outcome = getattr(source, "outcome", model.CORRECT)
    runs = Participant.objects.filter(study=study)
    if not include_test:
        runs = runs.filter(is_test=False)
    arms = dict(runs.values_list("pk", "arm__name"))
    rows = list(source(study, runs))
    explained = [r for r in rows if r.asset is not None]
    assets: dict[int, tuple[str, dict[str, float]]] = {}
    for pk, method, metrics, *cols in ExplanationAsset.objects.filter(pk__in={r.asset for r in explained}).values_list(
            "pk", "method", "metrics", *COLUMN_METRICS.values()):
        columns = {name: float(v) for name, v in zip(COLUMN_METRICS, cols, strict=True) if v is not None}
        assets[pk] = (method, _numbers(metrics) | columns)
    records = []
    for r in explained:
        if r.asset not in assets:
            continue
        method, numbers = assets[r.asset]
        records.append({PARTICIPANT: r.participant, ITEM: r.item, ARM: arms.get(r.participant), METHOD: method,
                        ASSET: r.asset, outcome: float(r.outcome), **numbers})
    base = [PARTICIPANT, ITEM, ARM, METHOD, ASSET, outcome]
    frame = pd.DataFrame(records) if records else pd.DataFrame(columns=base)
    order = list(METRIC_LABELS)
    names = sorted((c for c in frame.columns if c not in base), key=lambda c: (order.index(c) if c in order else len(order), c))
    return MetricsFrame(frame[base + names], outcome, names, len(rows) - len(explained))


@dataclass(frozen=True)
class MethodResult:
    method: str
    arms: list[str]
    n_answers: int
    n_participants: int
    n_items: int
    #: one row per metric fitted (`stats.protocols.metrics_people.MetricsModel.coefficients` plus
    #: ``n_participants``, ``n_items``, ``df``)
    coefficients: pd.DataFrame
    #: sentences: metrics dropped (missing, no variation) and models that could not be fitted
    dropped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MetricsPeople:
    outcome: str
    level: float
    methods: list[MethodResult]
    n_unexplained: int


def metrics_people_results(study: Study, *, include_test: bool = False, level: float = 0.95) -> MetricsPeople:
    """Per method, each metric's coefficient on the outcome (two-way cluster-robust OLS, one metric
    at a time, adjusted for the arm where the method has several). ``AnalysisInputError`` when there
    is nothing to fit (no source, no explained answers yet). The p-values are also given Holm-adjusted
over the method's metrics (``p_holm``): with a dozen gate numbers, one in twenty reaches p < 0.05 by chance."""
    data = metrics_frame(study, include_test=include_test)
    frame = data.frame
    if frame.empty:
        raise AnalysisInputError("no answers that an explanation went with yet")
    results = []
    for method, rows in frame.groupby(METHOD, sort=True):
        dropped: list[str] = []
        usable = []
        for m in data.metrics:
            values = rows[m]
            missing = int(values.isna().sum())
            if missing == len(rows):
                continue  # another method's metric
            if missing:
                dropped.append(f"{metric_label(m)} is missing on {missing} of {len(rows)} answers: left out.")
            elif values.nunique() < 2:
                dropped.append(f"{metric_label(m)} does not vary ({values.iloc[0]:g} on every answer): left out.")
            else:
                usable.append(m)
        arms = sorted(rows[ARM].dropna().unique())
        coefs = []
        for m in usable:
            try:
                fitted = model.fit(rows, outcome=data.outcome, metrics=[m], adjust_for=[ARM] if len(arms) > 1 else [],
                                   level=level)
            except AnalysisInputError as exc:
                dropped.append(f"{metric_label(m)}: {exc}.")
                continue
            coefs.append(fitted.coefficients.assign(n_participants=fitted.n_participants, n_items=fitted.n_items,
                                                    df=fitted.df, sd=float(rows[m].std())))
        table = pd.concat(coefs, ignore_index=True) if coefs else pd.DataFrame()
        if coefs:
            table["p_holm"] = multipletests(table["p_value"].fillna(1.0), method="holm")[1]
        results.append(MethodResult(str(method), [str(a) for a in arms], len(rows), int(rows[PARTICIPANT].nunique()),
                                    int(rows[ITEM].nunique()), table, dropped))
    return MetricsPeople(data.outcome, level, results, data.n_unexplained)


def metric_label(metric: str) -> str:
    """How the page names a metric: its readable name, else "gate number <key>"."""
    return METRIC_LABELS.get(metric, f"gate number {metric}")
