"""Reads that cross relations: which methods a study needs, servable stimuli and sets, readiness
and arm fill; and what every participant request reads of a
study's stimuli and assets, kept per process (:func:`study_content`).

What the browser gets is built in `state`; the checks of submitted answers live in `validation`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from studyapp.lib.perf import prepared
from studyapp.lib.perf.caches import ProcessCache
from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.pipeline.storage import media_url
from studyapp.studies import facts, plans
from studyapp.studies.models import Arm, Participant, Study, TrialAnswer

# The explanation method each feedback kind needs precomputed (None: nothing to precompute).
FEEDBACK_METHOD = {
    Arm.Feedback.CONTROL: None,
    Arm.Feedback.GRADCAM: ExplanationAsset.Method.GRADCAM,
    Arm.Feedback.CDEEPEX: ExplanationAsset.Method.CDEEPEX,
    Arm.Feedback.XGEMS: ExplanationAsset.Method.XGEMS,
    Arm.Feedback.GAD: ExplanationAsset.Method.GAD,
    Arm.Feedback.NEAREST: ExplanationAsset.Method.NEAREST,
    Arm.Feedback.WITHIN: None,
}


def heatmap_method(study: Study) -> str:
    """The 1-Heatmap baseline: ExcitationBP as in the paper, DeepLIFT (complementary study) or GAD."""
    return study.parsed_config.heatmap_method


def study_methods(*, study: Study) -> list[str]:
    if study.design == Study.Design.CLUSTERING:
        return sorted({heatmap_method(study), ExplanationAsset.Method.XNN})
    methods = {FEEDBACK_METHOD[a.feedback] for a in study.arms.all()}
    return sorted(m for m in methods if m)


def servable_stimuli(*, study: Study):
    """Stimuli with a valid explanation for every method the study's arms show, in order."""
    qs = Stimulus.objects.filter(study=study)
    for method in study_methods(study=study):
        qs = qs.filter(
            Exists(ExplanationAsset.objects.filter(stimulus=OuterRef("pk"), method=method, valid=True))
        )
    return qs.order_by("position", "pk")


def servable_sets(*, study: Study) -> dict[str, dict[int, list[int]]]:
    """Clustering design: data set -> set index -> stimulus ids, for complete, servable sets only."""
    all_sets: dict[str, dict[int, list[int]]] = {}
    for pk, group, set_index in Stimulus.objects.filter(study=study).values_list("pk", "group", "set_index").order_by("position", "pk"):
        all_sets.setdefault(group, {}).setdefault(set_index, []).append(pk)
    ok = set(servable_stimuli(study=study).values_list("pk", flat=True))
    return {
        group: {i: ids for i, ids in sets.items() if all(pk in ok for pk in ids)}
        for group, sets in all_sets.items()
    }


def dataset_class_counts(*, study: Study) -> dict[str, int]:
    """Clustering design: data set -> the number of classes its images come from (true labels)."""
    rows = Stimulus.objects.filter(study=study).values("group").annotate(n=Count("true_label", distinct=True))
    return {r["group"]: r["n"] for r in rows.order_by()}


def trial_answer(*, participant_id: int, trial_index: int) -> TrialAnswer | None:
    """The saved answer of a run's trial, or None: one query."""
    rows = _answer(participant_id, trial_index)
    return rows[0] if rows else None


@prepared.read
def _answer(participant_id: int, trial_index: int) -> QuerySet[TrialAnswer]:
    return TrialAnswer.objects.filter(participant_id=participant_id, trial_index=trial_index).order_by()[:1]


def study_readiness(*, study: Study) -> list[str]:
    """What stops the study from opening, in words a researcher can act on. Empty when ready."""
    problems = []
    arms = list(study.arms.all())
    if not arms:
        problems.append("it has no arms")
    if study.design == Study.Design.CLUSTERING:
        sets = servable_sets(study=study)
        for dataset in study.parsed_config.datasets:
            n = len(sets.get(dataset, {}))
            if n < 3:
                problems.append(f"{dataset}: {n} image sets with valid heatmaps for every image; 3 stages need at least 3")
        return problems
    if len(study.classes) != 2 or len(study.class_names) != 2:
        problems.append("a learning study needs exactly two classes and two made-up names")
    if not study.rating_scale:
        problems.append("the rating scale is empty")
    total = Stimulus.objects.filter(study=study).count()
    servable = servable_stimuli(study=study).count()
    if servable < study.n_trials:
        problems.append(
            f"{servable} of {total} stimuli have valid explanations for every arm "
            f"({', '.join(study_methods(study=study)) or 'none needed'}); {study.n_trials} trials need {study.n_trials}"
        )
    return problems


def arm_fill(*, study: Study) -> list[dict]:
    """Each arm's runs by their place in the bookkeeping (`facts`: holding a slot), test runs apart."""
    now = timezone.now()
    real = Q(participants__is_test=False)
    rows = study.arms.annotate(
        completed=Count("participants", filter=real & Q(participants__status=Participant.Status.COMPLETED)),
        active=Count(
            "participants",
            filter=facts.holding_slot(study, now, prefix="participants__") & Q(participants__status=Participant.Status.ACTIVE),
        ),
        stale=Count("participants", filter=real & facts.stale(study, now, prefix="participants__")),
        ended=Count("participants", filter=real & Q(participants__status__in=Participant.ENDED)),
        test=Count("participants", filter=Q(participants__is_test=True)),
    )
    return [
        {"arm": a.name, "feedback": a.feedback, "cap": a.cap, "completed": a.completed, "active": a.active, "stale": a.stale,
         "ended": a.ended, "test": a.test}
        for a in rows
    ]


def order_fill_counts(*, study: Study, now) -> dict[str, int]:
    """Clustering design: completed plus active (not stale) participants per order cell."""
    rows = (
        Participant.objects.filter(study=study).filter(facts.holding_slot(study, now))
        .values("order_cell").annotate(n=Count("pk")).order_by()
    )
    return {r["order_cell"]: r["n"] for r in rows}


def order_fill(*, study: Study) -> list[dict]:
    """Clustering design: each counterbalancing cell with its completed, active and stale runs
    (the status page; the same bookkeeping as `arm_fill`), in the Latin square's sequence."""
    if study.design != Study.Design.CLUSTERING:
        return []
    counts: dict[str, dict[str, int]] = {}
    rows = (
        Participant.objects.filter(study=study, is_test=False)
        .annotate(slot=facts.slot_state(study, timezone.now()))
        .values("order_cell", "slot").annotate(n=Count("pk")).order_by()
    )
    for row in rows:
        if row["slot"] != "ended":
            counts.setdefault(row["order_cell"], {"completed": 0, "active": 0, "stale": 0})[row["slot"]] += row["n"]
    cells = plans.order_cells(study.parsed_config.datasets)
    out = []
    for cell in cells + sorted(set(counts) - set(cells)):
        c = counts.get(cell, {"completed": 0, "active": 0, "stale": 0})
        label = plans.order_label(cell) if "|" in cell else (cell or "(none recorded)")
        out.append({"cell": cell, "label": label, **c, "holding": c["completed"] + c["active"]})
    return out


# ---------------------------------------------------------------------------------------------
# What every participant request reads: a study's stimuli and valid assets, kept per process
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StimulusFacts:
    """What the flow needs of a stimulus: its image's URL, and the two labels an answer is scored by."""

    image_url: str
    true_label: int
    model_prediction: int


@dataclass(frozen=True)
class AssetFacts:
    """The newest valid explanation asset of one stimulus and method: file URLs by role, metrics."""

    urls: dict[str, str]
    metrics: dict
    pk: int = 0


@dataclass(frozen=True)
class StudyContent:
    stimuli: dict[int, StimulusFacts]
    assets: dict[tuple[int, str], AssetFacts]
    loaded_at: float
    by_pk: dict[int, AssetFacts] | None = None


#: How long a process trusts what it read of a study's assets; a precompute run on a study that is
#: open adds assets, and they are served after at most this long.
CONTENT_TTL_SECONDS = 60.0
#: (study pk, updated_at, config_hash) -> what was read; an edited study's old entry ages out.
_content: ProcessCache[tuple, StudyContent] = ProcessCache("study content", maxsize=32)


def _asset_facts(files: dict, metrics: dict, pk: int = 0) -> AssetFacts:
    return AssetFacts(urls={role: media_url(path) for role, path in files.items()}, metrics=metrics or {}, pk=pk)


def study_content(*, study: Study, reload: bool = False) -> StudyContent:
    """The study's stimuli and valid assets, read in two queries and kept in this process.

    Kept under the study's primary key, ``updated_at`` and ``config_hash``: every edit of the
    study (a save moves ``updated_at``; a configuration hash refreshed by ``update``) reads them
    again. Stimuli and assets are never edited (the pipeline creates them, the admin shows them
    read-only, a rebuild makes new rows), so what was read stays true; new assets are seen after
    at most :data:`CONTENT_TTL_SECONDS`, and a stimulus or asset missing here is asked for (see
    :func:`stimulus_facts` and :func:`valid_asset`).
    """
    key = (study.pk, study.updated_at, study.config_hash)
    content = _content.get(key)
    if content is not None and not reload and time.monotonic() - content.loaded_at < CONTENT_TTL_SECONDS:
        return content
    stimuli = {
        pk: StimulusFacts(image_url=media_url(image), true_label=true_label, model_prediction=prediction)
        for pk, image, true_label, prediction in Stimulus.objects.filter(study=study).values_list(
            "pk", "image", "true_label", "model_prediction"
        )
    }
    assets, by_pk = {}, {}
    rows = ExplanationAsset.objects.filter(stimulus__study=study, valid=True).order_by("created_at", "pk")
    for pk, stimulus_id, method, files, metrics in rows.values_list("pk", "stimulus_id", "method", "files", "metrics"):
        by_pk[pk] = assets[(stimulus_id, method)] = _asset_facts(files, metrics, pk)  # the newest wins
    return _content.put(key, StudyContent(stimuli=stimuli, assets=assets, loaded_at=time.monotonic(), by_pk=by_pk))


def stimulus_facts(*, study: Study, stimulus_id: int) -> StimulusFacts:
    """A stimulus of ``study`` (``Stimulus.DoesNotExist`` if it has none with this id)."""
    facts = study_content(study=study).stimuli.get(stimulus_id)
    if facts is None:  # made since this process read the study: read it again, once
        facts = study_content(study=study, reload=True).stimuli.get(stimulus_id)
    if facts is None:
        raise Stimulus.DoesNotExist(f"Study {study.slug} has no stimulus {stimulus_id}.")
    return facts


def valid_asset(*, study: Study, stimulus_id: int, method: str, pinned: int | None = None) -> AssetFacts | None:
    """The asset a run shows for a stimulus of ``study``: the one its plan pinned at enrolment
    (``pinned``, see `studyapp.studies.steps.registry.pin_assets`), else the newest valid asset of ``method``, or None.

    A study opens only when every stimulus it shows has one, so a miss here is rare: it is asked
    of the database, so that an asset made since the content was read is served at once.
    """
    content = study_content(study=study)
    if pinned:
        facts = (content.by_pk or {}).get(pinned)
        if facts is None:  # made since this process read the study, or no longer the newest
            row = (
                ExplanationAsset.objects.filter(pk=pinned, stimulus_id=stimulus_id, stimulus__study=study)
                .values_list("files", "metrics", "pk").first()
            )
            facts = _asset_facts(*row) if row else None
        if facts is not None:
            return facts
    facts = content.assets.get((stimulus_id, method))
    if facts is None:
        row = (
            ExplanationAsset.objects.filter(stimulus_id=stimulus_id, stimulus__study=study, method=method, valid=True)
            .order_by("-created_at", "-pk")
            .values_list("files", "metrics", "pk")
            .first()
        )
        facts = _asset_facts(*row) if row else None
    return facts
