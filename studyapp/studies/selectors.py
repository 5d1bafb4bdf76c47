"""Reads that cross relations: participant state, readiness, fill, exports."""

from __future__ import annotations

import random
from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from studyapp.pipeline.models import ExplanationAsset, Stimulus
from studyapp.studies import plans
from studyapp.studies.errors import InvalidInput
from studyapp.studies.models import Arm, Participant, Study

# The explanation method each feedback kind needs precomputed (None: nothing to precompute).
FEEDBACK_METHOD = {
    Arm.Feedback.CONTROL: None,
    Arm.Feedback.GRADCAM: ExplanationAsset.Method.GRADCAM,
    Arm.Feedback.CDEEPEX: ExplanationAsset.Method.CDEEPEX,
    Arm.Feedback.XGEMS: ExplanationAsset.Method.XGEMS,
    Arm.Feedback.WITHIN: None,
}


def media_url(path: str) -> str:
    return reverse("media", kwargs={"path": path})


def heatmap_method(study: Study) -> str:
    """The 1-Heatmap baseline: ExcitationBP as in the paper, or DeepLIFT (complementary study)."""
    return (study.config or {}).get("heatmap_method", ExplanationAsset.Method.EXCITATION_BP)


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
        for dataset in (study.config or {}).get("datasets", []):
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


# ---------------------------------------------------------------------------------------------
# What the participant's browser gets. Nothing here may reveal a trial's correct label before
# that trial's answer is saved.
# ---------------------------------------------------------------------------------------------
def _options(study: Study) -> list[dict]:
    return [{"value": c, "label": n} for c, n in zip(study.classes, study.class_names, strict=True)]


def _name_of(study: Study, class_id: int) -> str:
    return dict(zip(study.classes, study.class_names, strict=True)).get(class_id, str(class_id))


def feedback_assets(*, stimulus_id: int, feedback: str) -> dict:
    method = FEEDBACK_METHOD.get(feedback)
    if method is None:
        return {}
    asset = (
        ExplanationAsset.objects.filter(stimulus_id=stimulus_id, method=method, valid=True)
        .order_by("-created_at")
        .first()
    )
    if asset is None:
        return {}
    return {role: media_url(path) for role, path in asset.files.items()}


def participant_state(*, participant: Participant) -> dict:
    p = participant
    study = p.study
    step = p.current_step
    n_trials = sum(1 for s in p.plan if s["kind"] == "trial")
    state: dict = {
        "study": study.slug,
        "participant": p.code,
        "step": p.step_index,
        "n_steps": len(p.plan),
        "kind": step["kind"],
        "design": study.design,
    }
    if step["kind"] == "instructions":
        state.update(
            cover_story=study.cover_story,
            instructions=_instructions(study, p.arm),
            arm_instruction=p.arm.instruction,
            n_trials=n_trials,
        )
    elif step["kind"] == "trial":
        stimulus = Stimulus.objects.only("image").get(pk=step["stimulus"])
        state.update(
            trial=step["trial"],
            n_trials=n_trials,
            stimulus=step["stimulus"],
            image_url=media_url(stimulus.image),
            options=_options(study),
            question="Which symbol is this?",
        )
        answer = p.answers.filter(trial_index=step["trial"]).first()
        state["answered"] = answer is not None
        if answer is not None:
            state["feedback"] = trial_feedback(participant=p, answer=answer)
    elif step["kind"] == "questions":
        state.update(key=step["key"], title=step.get("title", ""), questions=step["questions"])
    elif step["kind"] == "grouping":
        state.update(grouping_state(participant=p, step=step))
    elif step["kind"] == "rating":
        state.update(
            key=step["key"],
            question=study.rating_question,
            scale=[{"value": i + 1, "label": label} for i, label in enumerate(study.rating_scale)],
        )
    elif step["kind"] == "done":
        state.update(
            completion_text=study.completion_text,
            completion_code=p.completion_code,
            redirect_url=_redirect(study, p),
        )
    return state


def _instructions(study: Study, arm: Arm) -> list[str]:
    """The numbered steps; the arm's bullet is shown separately, as in the dissertation."""
    return list(study.instructions)


def _redirect(study: Study, p: Participant) -> str:
    url = study.completion_redirect_url
    if url and "{code}" in url:
        url = url.replace("{code}", p.completion_code)
    return url


def trial_feedback(*, participant: Participant, answer) -> dict:
    study = participant.study
    return {
        "choice": answer.choice,
        "choice_label": _name_of(study, answer.choice),
        "correct": answer.correct,
        "correct_answer": answer.correct_label,
        "correct_label": _name_of(study, answer.correct_label),
        "kind": participant.arm.feedback,
        "assets": feedback_assets(stimulus_id=answer.stimulus_id, feedback=participant.arm.feedback),
    }


STAGE_TEXT = {
    "NoVis": "Group these images into groups of images that you think belong together.",
    "1-Heatmap": "The AI agent uses the heatmap of each image to make its decision. Hover over an image "
    "(or use the button) to see its heatmap, then group the images the way you think the agent would.",
    "XNN": "The AI agent uses a combination of these heatmaps to make its decision. The number above each "
    "heatmap is how much it counts for the decision (red: for, blue: against). Group the images the way you "
    "think the agent would.",
}


def grouping_state(*, participant: Participant, step: dict) -> dict:
    """Images of a batch, in a per-participant shuffled order, with the stage's heatmaps.

    Nothing here reveals a class: images are identified by stimulus id only.
    """
    stage = step["stage"]
    study = participant.study
    stimuli = {s.pk: s for s in Stimulus.objects.filter(pk__in=step["stimuli"]).only("pk", "image")}
    order = list(step["stimuli"])
    random.Random(f"{participant.code}:{participant.step_index}").shuffle(order)
    method = {"1-Heatmap": heatmap_method(study), "XNN": ExplanationAsset.Method.XNN}.get(stage)
    assets = {}
    if method:
        for a in ExplanationAsset.objects.filter(stimulus_id__in=order, method=method, valid=True).order_by("created_at"):
            assets[a.stimulus_id] = a
    images = []
    for pk in order:
        item = {"id": pk, "url": media_url(stimuli[pk].image)}
        asset = assets.get(pk)
        if stage == "1-Heatmap" and asset:
            item["heatmap"] = media_url(asset.files["heatmap"])
        elif stage == "XNN" and asset:
            n = len(asset.metrics.get("contributions", []))
            item["xfeatures"] = [
                {"index": i, "url": media_url(asset.files[f"x{i}"]), "contribution": round(asset.metrics["contributions"][i], 3)}
                for i in range(n)
            ]
        images.append(item)
    return {
        "stage": stage,
        "dataset_position": sum(1 for s in participant.plan[: participant.step_index] if s["kind"] == "grouping") + 1,
        "n_batches": sum(1 for s in participant.plan if s["kind"] == "grouping"),
        "instruction": (study.config or {}).get("stage_text", {}).get(stage, STAGE_TEXT[stage]),
        "images": images,
        "max_groups": int((study.config or {}).get("max_groups", 10)),
    }


def validate_grouping(*, study: Study, step: dict, assignment: object) -> dict[int, int]:
    """``{stimulus id: group number}`` covering exactly the batch's images."""
    if not isinstance(assignment, dict) or not assignment:
        raise InvalidInput("Put every image into a group.")
    max_groups = int((study.config or {}).get("max_groups", 10))
    cleaned: dict[int, int] = {}
    for key, group in assignment.items():
        try:
            pk = int(key)
        except (TypeError, ValueError):
            raise InvalidInput(f"Unknown image {key!r}.") from None
        if not isinstance(group, int) or isinstance(group, bool) or not 0 <= group < max_groups:
            raise InvalidInput(f"Groups are numbered 0 to {max_groups - 1}.")
        cleaned[pk] = group
    expected = set(step["stimuli"])
    unknown = set(cleaned) - expected
    if unknown:
        raise InvalidInput(f"{len(unknown)} image(s) do not belong to this batch.")
    missing = expected - set(cleaned)
    if missing:
        raise InvalidInput(f"{len(missing)} image(s) are not in a group yet. Put every image into a group.")
    return cleaned


def validate_questions(*, study: Study, step: dict, answers: object) -> dict:
    if not isinstance(answers, dict):
        raise InvalidInput("Answers must be an object of question -> value.")
    if step["kind"] == "questions":
        return _validate_question_list(step["questions"], answers)
    if step["kind"] == "rating":
        value = answers.get(step["key"])
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= len(study.rating_scale):
            raise InvalidInput(f"Pick one of the {len(study.rating_scale)} options.")
        if set(answers) != {step["key"]}:
            raise InvalidInput("Unexpected question in the answers.")
        return {step["key"]: value}
    raise InvalidInput("This step takes no answers.")


def _validate_question_list(questions: list[dict], answers: dict) -> dict:
    keys = {q["key"] for q in questions}
    extra = set(answers) - keys
    if extra:
        raise InvalidInput(f"Unexpected answers: {', '.join(sorted(extra))}.")
    cleaned: dict = {}
    for q in questions:
        value = answers.get(q["key"])
        if q["type"] == "text":
            if value in (None, ""):
                if not q.get("optional"):
                    raise InvalidInput(f"Please answer: {q['label']}")
                value = ""
            if not isinstance(value, str) or len(value) > 5000:
                raise InvalidInput(f"{q['label']}: at most 5000 characters of text.")
            cleaned[q["key"]] = value.strip()
        elif q["type"] == "choice":
            if value not in q["options"]:
                raise InvalidInput(f"Please choose one option for: {q['label']}")
            cleaned[q["key"]] = value
        elif q["type"] == "scale":
            first = int(q.get("first_value", 1))
            if not isinstance(value, int) or isinstance(value, bool) or not first <= value < first + len(q["options"]):
                raise InvalidInput(f"Please pick one of the options for: {q['label']}")
            cleaned[q["key"]] = value
        else:  # pragma: no cover - configuration error
            raise InvalidInput(f"Unknown question type {q['type']!r}.")
    return cleaned
