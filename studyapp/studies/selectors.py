"""Reads that cross relations: which methods a study needs, servable stimuli and sets, the plan,
readiness, arm fill and where unfinished runs are.

What the browser gets is built in `state`; the checks of submitted answers live in `validation`.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.studies import plans
from studyapp.studies.models import Arm, Participant, Study

# The explanation method each feedback kind needs precomputed (None: nothing to precompute).
FEEDBACK_METHOD = {
    Arm.Feedback.CONTROL: None,
    Arm.Feedback.GRADCAM: ExplanationAsset.Method.GRADCAM,
    Arm.Feedback.CDEEPEX: ExplanationAsset.Method.CDEEPEX,
    Arm.Feedback.XGEMS: ExplanationAsset.Method.XGEMS,
    Arm.Feedback.WITHIN: None,
}


def heatmap_method(study: Study) -> str:
    """The 1-Heatmap baseline: ExcitationBP as in the paper, or DeepLIFT (complementary study)."""
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
    return qs.order_by("position")


def servable_sets(*, study: Study) -> dict[str, dict[int, list[int]]]:
    """Clustering design: data set -> set index -> stimulus ids, for complete, servable sets only."""
    all_sets: dict[str, dict[int, list[int]]] = {}
    for pk, group, set_index in Stimulus.objects.filter(study=study).values_list("pk", "group", "set_index").order_by("position"):
        all_sets.setdefault(group, {}).setdefault(set_index, []).append(pk)
    ok = set(servable_stimuli(study=study).values_list("pk", flat=True))
    return {
        group: {i: ids for i, ids in sets.items() if all(pk in ok for pk in ids)}
        for group, sets in all_sets.items()
    }


def study_plan(*, study: Study, arm: Arm, seed: str) -> list[dict]:
    if study.design == Study.Design.CLUSTERING:
        return plans.clustering_plan(study=study, sets=servable_sets(study=study), seed=seed)
    ids = list(servable_stimuli(study=study).values_list("pk", flat=True))
    return plans.learning_plan(study=study, arm=arm, stimulus_ids=ids, seed=seed)


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
    stale_before = timezone.now() - timedelta(minutes=study.dropout_minutes)
    rows = study.arms.annotate(
        completed=Count("participants", filter=Q(participants__status=Participant.Status.COMPLETED)),
        active=Count(
            "participants",
            filter=Q(participants__status=Participant.Status.ACTIVE, participants__last_seen_at__gte=stale_before),
        ),
        stale=Count(
            "participants",
            filter=Q(participants__status=Participant.Status.ACTIVE, participants__last_seen_at__lt=stale_before),
        ),
    )
    return [
        {"arm": a.name, "feedback": a.feedback, "cap": a.cap, "completed": a.completed, "active": a.active, "stale": a.stale}
        for a in rows
    ]


def step_histogram(*, study: Study) -> list[dict]:
    """How many unfinished runs are at each step, split into active and stale (idle too long)."""
    stale_before = timezone.now() - timedelta(minutes=study.dropout_minutes)
    rows: dict[tuple[int, str], dict] = {}
    for step_index, plan, last_seen in Participant.objects.filter(
        study=study, status=Participant.Status.ACTIVE
    ).values_list("step_index", "plan", "last_seen_at"):
        step = plan[step_index]
        label = step["kind"] + (f" {step['trial'] + 1}" if step["kind"] == "trial" else "") + (
            f" {step['stage']}/{step['dataset']}" if step["kind"] == "grouping" else ""
        )
        row = rows.setdefault((step_index, label), {"step": step_index + 1, "label": label, "active": 0, "stale": 0})
        row["active" if last_seen >= stale_before else "stale"] += 1
    return [rows[k] for k in sorted(rows)]
